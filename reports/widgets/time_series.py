"""``time_series``: series over hour/day/week/month buckets in the tenant's timezone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import EventSource, Filter, Window, parse_filters, property_name, register
from erp.reports.widgets._common import (
    Measure, apply_filters, check_keys, choice, columns_for, measure_expr, parse_int, parse_measure,
    text_expr, value,
)

INTERVALS = ("hour", "day", "week", "month")
CHARTS = ("line", "bar", "area")
KEYS = ("interval", "chart", "series", "breakdown", "filters")
SERIES_KEYS = ("key", "label", "measure", "property", "filters")
NONE, OTHER = "(none)", "(other)"
_KEY_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    measure: Measure
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Breakdown:
    property: str
    limit: int


@dataclass(frozen=True)
class TimeSeriesSpec:
    interval: str
    chart: str
    series: tuple[Series, ...]
    breakdown: Breakdown | None
    filters: tuple[Filter, ...]  # apply to every series


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    label: str
    partial: bool


class TimeSeries:
    name = "time_series"

    def validate(self, spec: dict[str, Any], where: str) -> TimeSeriesSpec:
        check_keys(spec, KEYS, where)
        interval = choice(spec, "interval", INTERVALS, "day", where)
        chart = choice(spec, "chart", CHARTS, "line", where)
        raw = spec.get("series")
        if raw is None:
            raw = [{"label": "Events"}]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}.series: expected a non-empty list of series")
        series: list[Series] = []
        seen: set[str] = set()
        for i, s in enumerate(raw):
            at = f"{where}.series[{i}]"
            if not isinstance(s, dict):
                raise ConfigError(f"{at}: expected a mapping with label, measure, filters")
            check_keys(s, SERIES_KEYS, at)
            label = s.get("label", s.get("measure", "events"))
            if not isinstance(label, str) or not label:
                raise ConfigError(f"{at}.label: expected non-empty text, got {label!r}")
            key = s.get("key")
            if key is not None and (not isinstance(key, str) or not key):
                raise ConfigError(f"{at}.key: expected non-empty text, got {key!r}")
            if key is None:
                base = _KEY_RE.sub("-", label.lower()).strip("-") or "series"
                key, n = base, 2
                while key in seen:
                    key, n = f"{base}-{n}", n + 1
            elif key in seen:
                raise ConfigError(f"{at}.key: {key!r} is used by another series")
            seen.add(key)
            series.append(Series(key, label, parse_measure(s, at), parse_filters(s.get("filters"), at)))
        breakdown = None
        if spec.get("breakdown") is not None:
            b = spec["breakdown"]
            at = f"{where}.breakdown"
            if not isinstance(b, dict):
                raise ConfigError(f"{at}: expected a mapping {{property: P, limit: N}}")
            check_keys(b, ("property", "limit"), at)
            if len(series) != 1:
                raise ConfigError(f"{at}: a breakdown needs exactly one series, got {len(series)}")
            breakdown = Breakdown(property_name(b.get("property"), f"{at}.property"),
                                  parse_int(b, "limit", 5, 1, 50, at))
        return TimeSeriesSpec(interval, chart, tuple(series), breakdown,
                              parse_filters(spec.get("filters"), where))

    def compute(self, spec: TimeSeriesSpec, source: EventSource, window: Window) -> dict[str, Any]:
        bks = buckets(window, spec.interval)
        starts = pl.DataFrame({"bucket_start": [b.start for b in bks], "bucket": list(range(len(bks)))},
                              schema={"bucket_start": pl.Datetime("us", "UTC"), "bucket": pl.Int64})
        if spec.breakdown is None:
            out = [self._series(s, spec, source, window, starts, len(bks)) for s in spec.series]
        else:
            out = self._breakdown(spec, source, window, starts, len(bks))
        tz = window.tz
        return {
            "interval": spec.interval,
            "timezone": window.timezone,
            "chart": spec.chart,
            "breakdown": None if spec.breakdown is None else
            {"property": spec.breakdown.property, "limit": spec.breakdown.limit},
            "buckets": [{"start": b.start.astimezone(tz).isoformat(), "end": b.end.astimezone(tz).isoformat(),
                         "label": b.label, "incomplete": b.end > window.now, "partial": b.partial}
                        for b in bks],
            "series": out,
        }

    def _series(self, s: Series, spec: TimeSeriesSpec, source: EventSource, window: Window,
                starts: pl.DataFrame, n: int) -> dict[str, Any]:
        filters = spec.filters + s.filters
        rolled = _from_rollup(s, filters, source, window, starts)
        if rolled is None:
            rolled = _users_from_rollup(s, filters, source, window, starts)
        if rolled is not None:
            per, total = rolled
        else:
            lf = _bucketed(source, window, filters, starts, s.measure.property)
            per_df = lf.group_by("bucket").agg(measure_expr(s.measure).alias("v")).collect()
            per = dict(zip(per_df["bucket"].to_list(), per_df["v"].to_list()))
            total = lf.select(measure_expr(s.measure).alias("v")).collect()["v"][0]
        return {"key": s.key, "label": s.label, "measure": s.measure.kind, "other": False,
                "values": [_cell(s.measure, per.get(i)) for i in range(n)],
                "total": value(s.measure, total)}

    def _breakdown(self, spec: TimeSeriesSpec, source: EventSource, window: Window,
                   starts: pl.DataFrame, n: int) -> list[dict[str, Any]]:
        s, b = spec.series[0], spec.breakdown
        assert b is not None
        lf = _bucketed(source, window, spec.filters + s.filters, starts, s.measure.property, b.property)
        lf = lf.with_columns(_k=text_expr(b.property)).collect().lazy()
        totals = (lf.group_by("_k").agg(measure_expr(s.measure).alias("v"))
                  .with_columns(pl.col("v").fill_null(float("-inf")).alias("_rank"))
                  .sort(["_rank", "_k"], descending=[True, False], nulls_last=True).collect())
        top = totals["_k"].to_list()[: b.limit]
        more = totals.height > b.limit
        keyed = lf.with_columns(
            _g=pl.when(pl.col("_k").is_in([k for k in top if k is not None]).fill_null(False)
                       | (pl.col("_k").is_null() & pl.lit(None in top)))
            .then(pl.col("_k").fill_null(NONE)).otherwise(pl.lit(OTHER)))
        per = keyed.group_by("_g", "bucket").agg(measure_expr(s.measure).alias("v")).collect()
        tot = keyed.group_by("_g").agg(measure_expr(s.measure).alias("v")).collect()
        per_map = {(g, i): v for g, i, v in per.iter_rows()}
        tot_map = dict(tot.iter_rows())
        groups = [NONE if k is None else k for k in top] + ([OTHER] if more else [])
        out = []
        for g in groups:
            other = more and g == OTHER and len(out) == len(top)
            out.append({"key": g, "label": "Other" if other else g, "measure": s.measure.kind,
                        "other": other, "values": [_cell(s.measure, per_map.get((g, i))) for i in range(n)],
                        "total": value(s.measure, tot_map.get(g))})
        return out


def _cell(m: Measure, v: Any) -> Any:
    return value(m, v)


def _bucketed(source: EventSource, window: Window, filters: tuple[Filter, ...], starts: pl.DataFrame,
              *props: str | None) -> pl.LazyFrame:
    lf = source.events(window.start_utc, window.end_utc, columns_for(filters, *props))
    lf = apply_filters(lf, filters).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    return lf.sort("timestamp").join_asof(starts.lazy(), left_on="timestamp", right_on="bucket_start",
                                          strategy="backward")


def _from_rollup(s: Series, filters: tuple[Filter, ...], source: EventSource, window: Window,
                 starts: pl.DataFrame) -> tuple[dict[int, Any], Any] | None:
    rollup = getattr(source, "hourly_counts", None)
    if rollup is None or s.measure.kind != "events" or any(f.property != "event_type" for f in filters):
        return None
    lf = rollup(window.start_utc, window.end_utc)
    if lf is None:
        return None
    lf = apply_filters(lf, filters).sort("hour_start").join_asof(
        starts.lazy(), left_on="hour_start", right_on="bucket_start", strategy="backward")
    per = lf.group_by("bucket").agg(pl.col("events").sum()).collect()
    d = dict(zip(per["bucket"].to_list(), per["events"].to_list()))
    return d, sum(d.values())


def _users_from_rollup(s: Series, filters: tuple[Filter, ...], source: EventSource, window: Window,
                       starts: pl.DataFrame) -> tuple[dict[int, Any], Any] | None:
    """Distinct users per bucket from the per-day user rollup when every bucket is
    whole UTC days."""
    rollup = getattr(source, "user_days", None)
    if rollup is None or s.measure.kind != "users" or filters:
        return None
    if any(t.hour or t.minute or t.second or t.microsecond for t in starts["bucket_start"].to_list()):
        return None
    lf = rollup(window.start_utc, window.end_utc)
    if lf is None:
        return None
    days = starts.with_columns(pl.col("bucket_start").dt.date().alias("date")).select("date", "bucket").lazy()
    lf = lf.sort("date").join_asof(days.sort("date"), on="date", strategy="backward")
    per, total = pl.collect_all([lf.group_by("bucket").agg(pl.col("user_key").n_unique().alias("v")),
                                 lf.select(pl.col("user_key").n_unique().alias("v"))])
    return dict(zip(per["bucket"].to_list(), per["v"].to_list())), total["v"][0]


def buckets(window: Window, interval: str) -> list[Bucket]:
    """Every bucket of the window, in order (DST-correct; clipped to the window)."""
    tz = window.tz
    out: list[Bucket] = []
    if interval == "hour":
        t, end = window.start_utc, window.end_utc
        walls: list[tuple[datetime, str]] = []
        while t < end:
            local = t.astimezone(tz)
            walls.append((t, local.strftime("%Y-%m-%d %H:00")))
            t += timedelta(hours=1)
        counts: dict[str, int] = {}
        for _, w in walls:
            counts[w] = counts.get(w, 0) + 1
        for t, w in walls:
            label = w
            if counts[w] > 1:
                off = t.astimezone(tz).strftime("%z")
                label = f"{w} {off[:3]}:{off[3:]}"
            out.append(Bucket(t, min(t + timedelta(hours=1), end), label, False))
        return out
    day = window.since
    while day <= window.until:
        if interval == "day":
            first, nxt, label = day, day + timedelta(days=1), day.isoformat()
        elif interval == "week":
            first = day - timedelta(days=day.weekday())
            nxt = first + timedelta(days=7)
            iso = first.isocalendar()
            label = f"{iso[0]}-W{iso[1]:02d}"
        else:
            first = day.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
            label = first.strftime("%Y-%m")
        stop = min(nxt, window.until + timedelta(days=1))
        partial = first < window.since or nxt > window.until + timedelta(days=1)
        out.append(Bucket(window.local_midnight_utc(max(first, window.since)),
                          window.local_midnight_utc(stop), label, partial))
        day = stop
    return out


register(TimeSeries())
