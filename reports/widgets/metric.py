"""``metric``: one KPI over the range, with the previous period of equal length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time as dtime, timezone
from typing import Any

import polars as pl

from erp.reports.api import EventSource, Filter, Window, _iso, parse_filters, register
from erp.reports.widgets._common import (
    Measure, apply_filters, check_keys, columns_for, measure_expr, parse_measure, ratio, value,
)
from erp.core.errors import ConfigError

KEYS = ("measure", "property", "filters", "unit")


@dataclass(frozen=True)
class MetricSpec:
    measure: Measure
    filters: tuple[Filter, ...]
    unit: str | None


class Metric:
    name = "metric"

    def validate(self, spec: dict[str, Any], where: str) -> MetricSpec:
        check_keys(spec, KEYS, where)
        unit = spec.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise ConfigError(f"{where}.unit: expected text such as USD, got {unit!r}")
        return MetricSpec(parse_measure(spec, where), parse_filters(spec.get("filters"), where), unit)

    def compute(self, spec: MetricSpec, source: EventSource, window: Window) -> dict[str, Any]:
        prev = window.previous()
        start, split, end = prev.start_utc, window.start_utc, window.end_utc
        cur, old = _counts_from_rollup(spec, source, start, split, end)
        if cur is None:
            cur, old = _users_from_rollup(spec, source, start, split, end)
        if cur is None:
            lf = source.events(start, end, columns_for(spec.filters, spec.measure.property))
            lf = apply_filters(lf, spec.filters)
            is_cur = pl.col("timestamp") >= split
            row = lf.select(measure_expr(spec.measure, is_cur).alias("cur"),
                            measure_expr(spec.measure, ~is_cur).alias("old")).collect()
            cur, old = row["cur"][0], row["old"][0]
        v, p = value(spec.measure, cur), value(spec.measure, old)
        diff = None if v is None or p is None else v - p
        change = diff if diff is None or isinstance(diff, int) else round(diff, 6) + 0.0
        return {
            "measure": spec.measure.kind,
            "property": spec.measure.property,
            "unit": spec.unit,
            "value": v,
            "previous": p,
            "change": change,
            "change_relative": ratio(diff, p),
            "incomplete": not window.complete,
            "previous_range": {"since": prev.since.isoformat(), "until": prev.until.isoformat(),
                               "start_utc": _iso(prev.start_utc), "end_utc": _iso(prev.end_utc)},
        }


def _counts_from_rollup(spec: MetricSpec, source: EventSource, start, split, end):
    """Event counts from the hourly rollup when the source has one that answers."""
    rollup = getattr(source, "hourly_counts", None)
    if rollup is None or spec.measure.kind != "events":
        return None, None
    if any(f.property != "event_type" for f in spec.filters):
        return None, None
    lf = rollup(start, end)
    if lf is None:
        return None, None
    lf = apply_filters(lf, spec.filters)
    is_cur = pl.col("hour_start") >= split
    row = lf.select(pl.col("events").filter(is_cur).sum().alias("cur"),
                    pl.col("events").filter(~is_cur).sum().alias("old")).collect()
    return int(row["cur"][0] or 0), int(row["old"][0] or 0)


def _users_from_rollup(spec: MetricSpec, source: EventSource, start, split, end):
    """Distinct users from the per-day user rollup when the periods are whole UTC days."""
    rollup = getattr(source, "user_days", None)
    if rollup is None or spec.measure.kind != "users" or spec.filters:
        return None, None
    if split.astimezone(timezone.utc).time() != dtime(0):
        return None, None
    lf = rollup(start, end)
    if lf is None:
        return None, None
    is_cur = pl.col("date") >= split.date()
    row = lf.select(pl.col("user_key").filter(is_cur).n_unique().alias("cur"),
                    pl.col("user_key").filter(~is_cur).n_unique().alias("old")).collect()
    return int(row["cur"][0]), int(row["old"][0])


register(Metric())
