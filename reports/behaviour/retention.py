"""The ``retention`` widget: first-time or recurring cohorts of a start event, and
the share of each cohort with a return event k periods later. Rules: docs/behaviour.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from erp.reports.api import EventSource, Filter, Window, parse_filters, register

from ._common import PERIODS, Selector, check_keys, choice, parse_int, parse_selector, parse_unit, range_periods
from ._matrix import matrix, members_and_returns

KEYS = ("start_event", "return_event", "period", "periods", "mode", "count", "unit", "filters")
MODES = ("first_time", "recurring")
COUNTS = ("on", "on_or_after")
MAX_PERIODS = 400


@dataclass(frozen=True)
class RetentionSpec:
    start: Selector
    ret: Selector
    period: str = "week"
    periods: int = 8
    mode: str = "first_time"
    count: str = "on"
    filters: tuple[Filter, ...] = ()


class Retention:
    name = "retention"

    def validate(self, spec: dict[str, Any], where: str) -> RetentionSpec:
        check_keys(spec, KEYS, where)
        parse_unit(spec, ("users",), where)
        start, _ = parse_selector(spec.get("start_event", "any"), f"{where}.start_event")
        ret, _ = parse_selector(spec.get("return_event", "any"), f"{where}.return_event")
        return RetentionSpec(start, ret, choice(spec, "period", PERIODS, "week", where),
                             parse_int(spec, "periods", 8, 1, MAX_PERIODS, where),
                             choice(spec, "mode", MODES, "first_time", where),
                             choice(spec, "count", COUNTS, "on", where),
                             parse_filters(spec.get("filters"), where))

    def compute(self, spec: RetentionSpec, source: EventSource, window: Window) -> dict[str, Any]:
        periods = range_periods(window, spec.period)
        members, returns = members_and_returns(source, window, spec.start, spec.ret, spec.filters, spec.period,
                                               periods, spec.periods, first_time=spec.mode == "first_time")
        out: dict[str, Any] = {"period": spec.period, "periods": spec.periods, "mode": spec.mode,
                               "count": spec.count}
        out.update(matrix(window, spec.period, periods, spec.periods, members, returns,
                          on_or_after=spec.count == "on_or_after"))
        return out


retention = register(Retention())
