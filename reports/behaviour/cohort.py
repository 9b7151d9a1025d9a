"""The ``cohort`` widget: acquisition cohorts (period of a user's first event) and
their activity, or a value metric such as revenue per member, k periods later.
Rules: docs/behaviour.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import EventSource, Filter, Window, filter_expr, parse_filters, property_name, register

from ._common import Selector, check_keys, choice, numeric_expr, parse_int, parse_selector, parse_unit, \
    period_bounds_utc, period_expr, range_periods, utc_ts
from ._matrix import matrix, members_and_returns

KEYS = ("period", "periods", "cohort_event", "active_event", "value", "unit", "filters")
VALUE_KEYS = ("property", "event", "per_member")
COHORT_PERIODS = ("week", "month")


@dataclass(frozen=True)
class ValueSpec:
    property: str
    selector: Selector
    per_member: bool = True


@dataclass(frozen=True)
class CohortSpec:
    cohort: Selector
    active: Selector
    period: str = "month"
    periods: int = 6
    value: ValueSpec | None = None
    filters: tuple[Filter, ...] = ()


class Cohort:
    name = "cohort"

    def validate(self, spec: dict[str, Any], where: str) -> CohortSpec:
        check_keys(spec, KEYS, where)
        parse_unit(spec, ("users",), where)
        cohort, _ = parse_selector(spec.get("cohort_event", "any"), f"{where}.cohort_event")
        active, _ = parse_selector(spec.get("active_event", "any"), f"{where}.active_event")
        value = None
        if spec.get("value") is not None:
            raw = check_keys(spec["value"], VALUE_KEYS, f"{where}.value")
            prop = property_name(raw.get("property"), f"{where}.value.property")
            sel = active
            if "event" in raw:
                sel, _ = parse_selector(raw["event"], f"{where}.value.event")
            per_member = raw.get("per_member", True)
            if not isinstance(per_member, bool):
                raise ConfigError(f"{where}.value.per_member: expected true or false, got {per_member!r}")
            value = ValueSpec(prop, sel, per_member)
        return CohortSpec(cohort, active, choice(spec, "period", COHORT_PERIODS, "month", where),
                          parse_int(spec, "periods", 6, 1, 400, where), value,
                          parse_filters(spec.get("filters"), where))

    def compute(self, spec: CohortSpec, source: EventSource, window: Window) -> dict[str, Any]:
        periods = range_periods(window, spec.period)
        range_start = period_bounds_utc(window, spec.period, periods[0])[0]
        horizon = period_bounds_utc(window, spec.period, periods[-1] + spec.periods)[1]
        members, active = members_and_returns(source, window, spec.cohort, spec.active, spec.filters,
                                              spec.period, periods, spec.periods, first_time=True)
        values = None
        if spec.value is not None:
            lf = utc_ts(source.events(range_start, horizon))
            f = filter_expr(spec.filters)
            cond = spec.value.selector.expr() if f is None else f & spec.value.selector.expr()
            values = (lf.filter(cond & pl.col("user_key").is_not_null())
                      .select("user_key", q=period_expr(spec.period, window.timezone),
                              v=numeric_expr(spec.value.property))
                      .filter(pl.col("v").is_not_null() & pl.col("v").is_finite()))
        out: dict[str, Any] = {"period": spec.period, "periods": spec.periods,
                               "value": None if spec.value is None else
                               {"property": spec.value.property, "per_member": spec.value.per_member}}
        out.update(matrix(window, spec.period, periods, spec.periods, members, active,
                          values=values, per_member=spec.value.per_member if spec.value else True))
        return out


cohort = register(Cohort())
