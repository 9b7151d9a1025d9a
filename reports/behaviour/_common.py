"""What the behavioural widgets share: event selectors, durations, local calendar
periods as integers, spec checking and JSON-safe numbers.

Periods are integers so that "the k-th period after" is plain arithmetic:

- day: days since 1970-01-01 of the local date;
- week: Monday-start weeks since the week of 1969-12-29 (1970-01-01 is a Thursday);
- month: ``year * 12 + month - 1`` of the local date.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import NUMERIC_COLUMNS, Filter, Window, filter_expr, parse_filters, property_expr

EPOCH = date(1970, 1, 1)
PERIODS = ("day", "week", "month")
UTC = timezone.utc


def check_keys(spec: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(spec).__name__}")
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    return spec


def choice(spec: dict[str, Any], key: str, allowed: Sequence[str], default: str, where: str) -> str:
    v = spec.get(key, default)
    if v not in allowed:
        raise ConfigError(f"{where}.{key}: {v!r} is not one of {', '.join(allowed)}")
    return v


def parse_int(spec: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: expected a whole number from {lo} to {hi}, got {v!r}")
    return v


def parse_unit(spec: dict[str, Any], allowed: Sequence[str], where: str) -> str:
    return choice(spec, "unit", allowed, "users", where)


# --- event selectors -------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """An event type, any of a list of them, or every event (``types is None``), plus filters."""

    types: tuple[str, ...] | None
    filters: tuple[Filter, ...] = ()

    def expr(self) -> pl.Expr:
        parts: list[pl.Expr] = []
        if self.types is not None:
            parts.append(pl.col("event_type").is_in(list(self.types)).fill_null(False))
        f = filter_expr(self.filters)
        if f is not None:
            parts.append(f)
        return pl.all_horizontal(parts) if parts else pl.lit(True)

    def label(self) -> str:
        return "any" if self.types is None else " or ".join(self.types)

    def to_json(self) -> Any:
        return None if self.types is None else list(self.types)


def parse_types(value: Any, where: str, *, allow_any: bool = True) -> tuple[str, ...] | None:
    if value == "any":
        if allow_any:
            return None
        raise ConfigError(f"{where}: 'any' is not allowed here; name an event type or a list of them")
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(t, str) and t for t in value):
        if allow_any and "any" in value:
            raise ConfigError(f"{where}: 'any' cannot be part of a list; write any alone")
        return tuple(dict.fromkeys(value))
    want = "an event type, a list of event types" + (", or any" if allow_any else "")
    raise ConfigError(f"{where}: expected {want}; got {value!r}")


def parse_selector(value: Any, where: str, *, allow_any: bool = True,
                   name_key: bool = False) -> tuple[Selector, str | None]:
    """A selector written as ``signup``, ``[a, b]``, ``any`` or
    ``{event: ..., filters: [...], name: ...}``; returns it and the optional name."""
    if isinstance(value, dict):
        allowed = ("event", "filters", "name") if name_key else ("event", "filters")
        check_keys(value, allowed, where)
        if "event" not in value:
            raise ConfigError(f"{where}.event: missing; give an event type, a list of them"
                              + (", or any" if allow_any else ""))
        types = parse_types(value["event"], f"{where}.event", allow_any=allow_any)
        filters = parse_filters(value.get("filters"), where)
        name = value.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{where}.name: expected non-empty text, got {name!r}")
        return Selector(types, filters), name
    return Selector(parse_types(value, where, allow_any=allow_any)), None


# --- durations -------------------------------------------------------------------------

_DURATION = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any, where: str) -> timedelta | None:
    """``7d``/``36h``/``90m``/``30s``/``2w`` or ``none`` (unbounded)."""
    if value == "none":
        return None
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"{where}: expected a duration like 30m, 36h, 7d, 2w, or none; got {value!r}")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


# --- local periods ---------------------------------------------------------------------

def utc_ts(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Make sure ``timestamp`` is UTC-aware microseconds (frames in tests may be naive)."""
    dtype = lf.collect_schema()["timestamp"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return lf.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    if isinstance(dtype, pl.Datetime) and dtype.time_zone != "UTC":
        return lf.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC"))
    return lf


def local_day_expr(tz: str, col: str = "timestamp") -> pl.Expr:
    """Days since 1970-01-01 of the local date of a UTC timestamp."""
    return pl.col(col).dt.convert_time_zone(tz).dt.date().cast(pl.Int32)


def period_expr(period: str, tz: str, col: str = "timestamp") -> pl.Expr:
    day = local_day_expr(tz, col)
    if period == "day":
        return day
    if period == "week":
        return (day + 3) // 7
    local = pl.col(col).dt.convert_time_zone(tz)
    return (local.dt.year().cast(pl.Int32) * 12 + local.dt.month().cast(pl.Int32) - 1)


def period_of(period: str, d: date) -> int:
    days = (d - EPOCH).days
    if period == "day":
        return days
    if period == "week":
        return (days + 3) // 7
    return d.year * 12 + d.month - 1


def period_start(period: str, p: int) -> date:
    """The first local day of period ``p``."""
    if period == "day":
        return EPOCH + timedelta(days=p)
    if period == "week":
        return EPOCH + timedelta(days=p * 7 - 3)
    return date(p // 12, p % 12 + 1, 1)


def period_bounds_utc(window: Window, period: str, p: int) -> tuple[datetime, datetime]:
    """``[start, end)`` of local period ``p`` as UTC instants (DST-correct)."""
    return (window.local_midnight_utc(period_start(period, p)),
            window.local_midnight_utc(period_start(period, p + 1)))


def range_periods(window: Window, period: str) -> list[int]:
    """Every period that overlaps the report's range (the range widened to whole periods)."""
    return list(range(period_of(period, window.since), period_of(period, window.until) + 1))


# --- numbers ---------------------------------------------------------------------------

def pct(num: int | float, den: int | float) -> float | None:
    return None if not den else round(100.0 * num / den, 2)


def seconds(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def median_mean(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return seconds(statistics.median(values)), seconds(statistics.fmean(values))


def text_expr(name: str) -> pl.Expr:
    """A property as text (a breakdown value): numbers like their JSON text (12.0 -> "12")."""
    e = property_expr(name)
    if name in NUMERIC_COLUMNS:
        f = e.cast(pl.Float64)
        return (pl.when(f == f.floor()).then(f.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(f.cast(pl.String)))
    return e.cast(pl.String)


def numeric_expr(name: str) -> pl.Expr:
    """A property as a number (null when absent or not a number)."""
    if name in NUMERIC_COLUMNS:
        return pl.col(name).cast(pl.Float64)
    return property_expr(name).cast(pl.String).cast(pl.Float64, strict=False)


def rounded(v: float | None, digits: int = 4) -> float | None:
    if v is None:
        return None
    r = round(float(v), digits)
    return 0.0 if r == 0 else r
