"""``LakeSource``: one tenant's events straight from the lake (and its rollups).

Only ``events/tenant_id=<validated id>/date=<D>/`` folders of the UTC dates a
query needs are listed and scanned (one day of padding each side, for
timezones); the tenant segment comes from ``tenant_partition()``, so no other
tenant's file is ever opened.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

import polars as pl

from erp.core.events import EVENT_SCHEMA
from erp.core.lake import Lake
from erp.core.rollup import event_files, fresh_rollup_files
from erp.core.tenants import validate_tenant_id
from erp.reports.api import with_user_key

_EMPTY = pl.from_arrow(EVENT_SCHEMA.empty_table())
_SCHEMA = pl.Schema(_EMPTY.schema)
_HOUR = timedelta(hours=1)


def _days(start: datetime, end: datetime, pad: int) -> list[str]:
    first = start.astimezone(timezone.utc).date() - timedelta(days=pad)
    last = (end.astimezone(timezone.utc) - timedelta(microseconds=1)).date() + timedelta(days=pad)
    out, d = [], first
    while d <= last:
        out.append(d.isoformat())
        d += timedelta(days=1)
    return out


class LakeSource:
    """An :class:`~erp.reports.api.EventSource` over ``lake`` for one tenant."""

    def __init__(self, lake: Lake, tenant_id: str, *, use_rollups: bool = True) -> None:
        self.tenant_id = validate_tenant_id(tenant_id)
        self.lake = lake
        self.use_rollups = use_rollups
        self._files: dict[tuple[str, ...] | None, list[str]] = {}

    def _paths(self, days: list[str] | None) -> list[str]:
        key = None if days is None else tuple(days)
        if key not in self._files:
            found = event_files(self.lake, self.tenant_id, days)
            self._files[key] = [p for d in sorted(found) for p, _ in found[d]]
        return self._files[key]

    def _scan(self, paths: list[str]) -> pl.LazyFrame:
        if not paths:
            return _EMPTY.lazy()
        if self.lake.is_local:
            return pl.scan_parquet(paths, glob=False, hive_partitioning=False, schema=_SCHEMA)
        import pyarrow.dataset as ds  # pragma: no cover - object stores

        return pl.scan_pyarrow_dataset(ds.dataset(paths, filesystem=self.lake.fs, format="parquet",
                                                  schema=EVENT_SCHEMA))

    def events(self, start_utc: datetime | None, end_utc: datetime | None,
               columns: Iterable[str] | None = None) -> pl.LazyFrame:
        # only the UTC date partitions the range touches (one day of padding each side)
        days = None if start_utc is None or end_utc is None else _days(start_utc, end_utc, 1)
        lf = self._scan(self._paths(days))
        if columns is not None:
            want = set(columns) | {"timestamp", "user_id", "anonymous_id"}
            lf = lf.select([c for c in _SCHEMA.names() if c in want])
        if start_utc is not None:
            lf = lf.filter(pl.col("timestamp") >= start_utc)
        if end_utc is not None:
            lf = lf.filter(pl.col("timestamp") < end_utc)
        return with_user_key(lf)

    def user_days(self, start_utc: datetime, end_utc: datetime) -> pl.LazyFrame | None:
        """``date, user_key`` (one row per user and UTC day) from the user_days rollup for
        the UTC days in ``[start_utc, end_utc)``, or ``None`` when it cannot answer
        exactly (a boundary that is not a UTC midnight, or a stale date)."""
        if not self.use_rollups or not self.lake.is_local:
            return None
        for t in (start_utc, end_utc):
            t = t.astimezone(timezone.utc)
            if t.hour or t.minute or t.second or t.microsecond:
                return None
        files = fresh_rollup_files(self.lake, self.tenant_id, _days(start_utc, end_utc, 0), "user_days")
        if files is None:
            return None
        if not files:
            return pl.DataFrame(schema={"date": pl.Date, "user_key": pl.String}).lazy()
        return pl.scan_parquet(files, glob=False, hive_partitioning=False, include_file_paths="_file").select(
            pl.col("_file").str.extract(r"/date=(\d{4}-\d{2}-\d{2})/", 1).str.to_date().alias("date"),
            pl.col("user_key"))

    def hourly_counts(self, start_utc: datetime, end_utc: datetime) -> pl.LazyFrame | None:
        """``hour_start, event_type, events`` from the hourly rollup, or ``None`` when the
        rollup cannot answer exactly (boundaries inside an hour, or a stale date)."""
        if not self.use_rollups or not self.lake.is_local:
            return None
        for t in (start_utc, end_utc):
            t = t.astimezone(timezone.utc)
            if t.minute or t.second or t.microsecond:
                return None
        files = fresh_rollup_files(self.lake, self.tenant_id, _days(start_utc, end_utc, 0))
        if files is None:
            return None
        schema = {"hour_start": pl.Datetime("us", "UTC"), "event_type": pl.String, "events": pl.Int64}
        if not files:
            return pl.DataFrame(schema=schema).lazy()
        lf = pl.scan_parquet(files, glob=False, hive_partitioning=False, include_file_paths="_file").select(
            (pl.col("_file").str.extract(r"/date=(\d{4}-\d{2}-\d{2})/", 1).str.to_datetime("%Y-%m-%d",
                                                                                          time_zone="UTC")
             + pl.duration(hours=pl.col("hour"))).dt.cast_time_unit("us").alias("hour_start"),
            pl.col("event_type"), pl.col("events"))
        return lf.filter((pl.col("hour_start") >= start_utc) & (pl.col("hour_start") < end_utc))
