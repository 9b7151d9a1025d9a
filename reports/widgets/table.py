"""``table``: breakdown / top-N by one or two properties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import EventSource, Filter, Window, parse_filters, property_name, register
from erp.reports.widgets._common import (
    apply_filters, check_keys, choice, columns_for, parse_int, ratio,
)

KEYS = ("by", "limit", "sort", "filters")
SORTS = ("events", "users")
NONE = "(none)"


@dataclass(frozen=True)
class TableSpec:
    by: tuple[str, ...]
    limit: int
    sort: str
    filters: tuple[Filter, ...]


class Table:
    name = "table"

    def validate(self, spec: dict[str, Any], where: str) -> TableSpec:
        check_keys(spec, KEYS, where)
        by = spec.get("by")
        by = [by] if isinstance(by, str) else by
        if not isinstance(by, list) or not 1 <= len(by) <= 2:
            raise ConfigError(f"{where}.by: expected one or two properties, e.g. [page_path] "
                              f"or [country, device_type]; got {spec.get('by')!r}")
        names = tuple(property_name(p, f"{where}.by[{i}]") for i, p in enumerate(by))
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.by: the two properties must differ")
        return TableSpec(names, parse_int(spec, "limit", 10, 1, 1000, where),
                         choice(spec, "sort", SORTS, "events", where),
                         parse_filters(spec.get("filters"), where))

    def compute(self, spec: TableSpec, source: EventSource, window: Window) -> dict[str, Any]:
        from erp.reports.widgets._common import text_expr

        keys = [f"_k{i}" for i in range(len(spec.by))]
        lf = source.events(window.start_utc, window.end_utc, columns_for(spec.filters, *spec.by))
        lf = apply_filters(lf, spec.filters).select(
            *[text_expr(p).alias(k) for p, k in zip(spec.by, keys)], pl.col("user_key"))
        df = lf.collect()
        total_users = df["user_key"].drop_nulls().n_unique()
        # Distinct counts per group on 64-bit hashes of the user keys are much cheaper
        # than on strings; they are exact when the hashes of this frame's keys do not
        # collide, which is checked (else the strings are used).
        df = df.with_columns(_u=pl.when(pl.col("user_key").is_not_null()).then(pl.col("user_key").hash()))
        ucol = "_u" if df["_u"].drop_nulls().n_unique() == total_users else "user_key"
        other_measure = "users" if spec.sort == "events" else "events"
        rows = (df.lazy().group_by(keys).agg(pl.len().cast(pl.Int64).alias("events"),
                                             pl.col(ucol).drop_nulls().n_unique().cast(pl.Int64).alias("users"))
                .sort([spec.sort, other_measure, *keys], descending=[True, True] + [False] * len(keys),
                      nulls_last=True)
                .collect())
        total_events = df.height
        top = rows.head(spec.limit)
        other = None
        if rows.height > spec.limit:
            rest = df.join(top.select(keys), on=keys, how="anti", nulls_equal=True)
            other = {"events": rest.height, "users": rest[ucol].drop_nulls().n_unique(),
                     "share": ratio(rest.height, total_events) or 0.0}
        out_rows = []
        for r in top.iter_rows(named=True):
            vals = [r[k] for k in keys]
            out_rows.append({"keys": vals, "labels": [NONE if v is None else v for v in vals],
                             "events": r["events"], "users": r["users"],
                             "share": ratio(r["events"], total_events) or 0.0})
        return {"by": list(spec.by), "sort": spec.sort, "limit": spec.limit, "rows": out_rows,
                "other": other, "total": {"events": total_events, "users": total_users}}


register(Table())
