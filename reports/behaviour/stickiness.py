"""The ``stickiness`` widget: how many users were active on 1, 2, … of the days (or
weeks) of the range. Rules: docs/behaviour.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from erp.reports.api import EventSource, Filter, Window, parse_filters, register

from ._common import Selector, check_keys, choice, parse_selector, parse_unit, pct, period_bounds_utc, \
    range_periods
from ._matrix import scan

KEYS = ("period", "event", "unit", "filters")


@dataclass(frozen=True)
class StickinessSpec:
    active: Selector
    period: str = "day"
    filters: tuple[Filter, ...] = ()


class Stickiness:
    name = "stickiness"

    def validate(self, spec: dict[str, Any], where: str) -> StickinessSpec:
        check_keys(spec, KEYS, where)
        parse_unit(spec, ("users",), where)
        active, _ = parse_selector(spec.get("event", "any"), f"{where}.event")
        return StickinessSpec(active, choice(spec, "period", ("day", "week"), "day", where),
                              parse_filters(spec.get("filters"), where))

    def compute(self, spec: StickinessSpec, source: EventSource, window: Window) -> dict[str, Any]:
        periods = range_periods(window, spec.period)
        start = period_bounds_utc(window, spec.period, periods[0])[0]
        end = period_bounds_utc(window, spec.period, periods[-1])[1]
        per_user = (scan(source, window, start, end, spec.active, spec.filters, spec.period)
                    .group_by("user_key").agg(n=pl.col("q").n_unique()))
        hist = dict(per_user.group_by("n").len().collect().iter_rows())
        users = int(sum(hist.values()))
        buckets = [{"periods": k, "count": int(hist.get(k, 0)), "pct": pct(hist.get(k, 0), users)}
                   for k in range(1, len(periods) + 1)]
        return {"period": spec.period, "total_periods": len(periods), "users": users,
                "incomplete": end > window.now, "buckets": buckets}


stickiness = register(Stickiness())
