"""What the count widgets share: measures, spec checking, JSON-safe numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import COLUMNS, NUMERIC_COLUMNS, Filter, filter_expr, property_expr, property_name

MEASURES = ("events", "users", "sessions", "sum", "avg")
DIGITS = 6


@dataclass(frozen=True)
class Measure:
    kind: str  # one of MEASURES
    property: str | None = None  # for sum / avg


def check_keys(spec: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")


def parse_measure(spec: dict[str, Any], where: str) -> Measure:
    kind = spec.get("measure", "events")
    if kind not in MEASURES:
        raise ConfigError(f"{where}.measure: {kind!r} is not one of {', '.join(MEASURES)}")
    prop = spec.get("property")
    if kind in ("sum", "avg"):
        if prop is None:
            raise ConfigError(f"{where}.property: measure {kind} needs a numeric property "
                              f"(e.g. revenue, or a properties key such as price)")
        prop = property_name(prop, f"{where}.property")
    elif prop is not None:
        raise ConfigError(f"{where}.property: only measures sum and avg take a property")
    return Measure(kind, prop)


def parse_int(spec: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: expected a whole number from {lo} to {hi}, got {v!r}")
    return v


def choice(spec: dict[str, Any], key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    v = spec.get(key, default)
    if v not in allowed:
        raise ConfigError(f"{where}.{key}: {v!r} is not one of {', '.join(allowed)}")
    return v


def numeric_expr(name: str) -> pl.Expr:
    if name in NUMERIC_COLUMNS:
        return pl.col(name).cast(pl.Float64)
    return property_expr(name).cast(pl.String).cast(pl.Float64, strict=False)


def text_expr(name: str) -> pl.Expr:
    """A property as text (the key of a breakdown or a table row)."""
    e = property_expr(name)
    if name in NUMERIC_COLUMNS:
        # 12.0 -> "12", like the JSON text of a properties value
        f = e.cast(pl.Float64)
        return pl.when(f == f.floor()).then(f.cast(pl.Int64, strict=False).cast(pl.String)) \
            .otherwise(f.cast(pl.String))
    return e.cast(pl.String)


def measure_expr(m: Measure, mask: pl.Expr | None = None) -> pl.Expr:
    """The measure as an aggregation (over the rows where ``mask`` holds)."""
    def sel(e: pl.Expr) -> pl.Expr:
        return e.filter(mask) if mask is not None else e

    if m.kind == "events":
        return (mask.cast(pl.Int64).sum() if mask is not None else pl.len().cast(pl.Int64))
    if m.kind == "users":
        return sel(pl.col("user_key")).drop_nulls().n_unique().cast(pl.Int64)
    if m.kind == "sessions":
        return sel(pl.col("session_id")).drop_nulls().n_unique().cast(pl.Int64)
    num = sel(numeric_expr(m.property or ""))
    return num.sum() if m.kind == "sum" else num.mean()


def columns_for(filters: Iterable[Filter], *props: str | None) -> list[str]:
    """Event columns a computation needs (``properties`` for non-promoted keys)."""
    cols = {"timestamp", "user_id", "anonymous_id", "session_id", "event_type"}
    names = [f.property for f in filters] + [p for p in props if p]
    for n in names:
        cols.add(n if n in COLUMNS else "properties")
    return sorted(cols)


def apply_filters(lf: pl.LazyFrame, filters: Iterable[Filter]) -> pl.LazyFrame:
    e = filter_expr(filters)
    return lf.filter(e) if e is not None else lf


def value(m: Measure, v: Any) -> Any:
    """A measure's value as plain JSON: ints for counts, 6-place floats otherwise."""
    if m.kind in ("events", "users", "sessions"):
        return int(v or 0)
    if m.kind == "sum":
        return round(float(v or 0.0), DIGITS) + 0.0
    return None if v is None else round(float(v), DIGITS) + 0.0


def ratio(num: Any, den: Any) -> float | None:
    if num is None or den in (None, 0):
        return None
    return round((num) / den, DIGITS) + 0.0
