"""Rollups: hourly counts and per-day user activity, rebuilt incrementally.

Tables (Hive-partitioned like the events; dates are UTC dates)::

    rollups/hourly/tenant_id=<t>/date=<D>/part-<commit>-0.parquet
        hour, event_type, <dimensions>, events, users, sessions
    rollups/user_days/tenant_id=<t>/date=<D>/part-<commit>-0.parquet
        user_key, events, sessions, first_seen, last_seen
    _state/rollup/watermark.json

The watermark records, for every (tenant, date) events partition, a fingerprint
of its part files (names and sizes) and the rollup files built from it. A run
rebuilds only partitions whose fingerprint changed (late events, compaction),
drops rollups of partitions that vanished, and with nothing new reads no
Parquet at all. Readers take the rollup files listed in the watermark, so a
reader never sees a half-replaced partition. Each tenant is one commit of the
lake's commit protocol (stage, intent, move), with the watermark in it.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

import polars as pl
import xxhash

from erp.core.config import Config
from erp.core.errors import LakeError
from erp.core.events import EVENT_SCHEMA
from erp.core.lake import Lake, new_batch_id
from erp.core.tenants import tenant_partition, validate_tenant_id

DEFAULT_DIMENSIONS = ("device_type", "country")
WATERMARK = "_state/rollup/watermark.json"
TABLES = ("hourly", "user_days")
VERSION = 1


@dataclass
class RollupResult:
    lake: str
    full: bool
    tenants: int = 0
    partitions_checked: int = 0
    partitions_rebuilt: int = 0
    partitions_removed: int = 0
    hourly_rows: int = 0
    user_day_rows: int = 0
    seconds: float = 0.0
    rebuilt: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"lake": self.lake, "full": self.full, "tenants": self.tenants,
                "partitions_checked": self.partitions_checked,
                "partitions_rebuilt": self.partitions_rebuilt,
                "partitions_removed": self.partitions_removed,
                "hourly_rows": self.hourly_rows, "user_day_rows": self.user_day_rows,
                "seconds": round(self.seconds, 3),
                "rebuilt": {t: d for t, d in sorted(self.rebuilt.items())}}


# --- what the events partitions hold -------------------------------------------------

def event_files(lake: Lake, tenant: str, days: Iterable[str] | None = None) -> dict[str, list[tuple[str, int]]]:
    """date -> sorted [(path, size)] of a tenant's events part files."""
    base = lake.events_dir(tenant)
    out: dict[str, list[tuple[str, int]]] = {}
    if days is None:
        if not lake.fs.exists(base):
            return out
        found = lake.fs.find(base, detail=True)
        for path, info in found.items():
            if not path.endswith(".parquet"):
                continue
            seg = path[len(base):].strip("/").split("/")
            if len(seg) != 2 or not seg[0].startswith("date="):
                continue
            out.setdefault(seg[0][5:], []).append((path, int(info.get("size") or 0)))
    else:
        for d in days:
            ddir = lake.events_dir(tenant, d)
            try:
                listing = lake.fs.ls(ddir, detail=True)
            except FileNotFoundError:
                continue
            files = [(i["name"], int(i.get("size") or 0)) for i in listing
                     if i["name"].endswith(".parquet") and i.get("type", "file") == "file"]
            if files:
                out[d] = files
    return {d: sorted(f) for d, f in out.items()}


def fingerprint(files: list[tuple[str, int]]) -> str:
    names = [(posixpath.basename(p), s) for p, s in sorted(files)]
    return xxhash.xxh3_64_hexdigest(json.dumps(names).encode())


def tenants_in(lake: Lake) -> list[str]:
    base = lake.events_dir()
    if not lake.fs.exists(base):
        return []
    out = []
    for p in lake.fs.ls(base, detail=False):
        name = posixpath.basename(p.rstrip("/"))
        if name.startswith("tenant_id="):
            out.append(name[len("tenant_id="):])
    return sorted(out)


# --- the watermark ---------------------------------------------------------------

def read_watermark(lake: Lake) -> dict[str, Any]:
    path = lake.path(WATERMARK)
    try:
        data = json.loads(lake.read_bytes(path))
    except FileNotFoundError:
        return {"version": VERSION, "dimensions": list(DEFAULT_DIMENSIONS), "tenants": {}}
    except (OSError, ValueError) as exc:
        raise LakeError(f"cannot read the rollup watermark {path}: {exc}", path=path,
                        hint="run `erp rollup --full` to rebuild every rollup and the watermark") from exc
    return data


# --- computing ---------------------------------------------------------------------

def _scan(lake: Lake, paths: list[str]) -> pl.LazyFrame:
    if lake.is_local:
        lf = pl.scan_parquet(paths, glob=False, hive_partitioning=False, schema=pl.Schema(pl.from_arrow(EVENT_SCHEMA.empty_table()).schema),
                             include_file_paths="_file")
    else:  # pragma: no cover - object stores go through pyarrow's dataset with the lake's fs
        import pyarrow.dataset as ds

        dset = ds.dataset(paths, filesystem=lake.fs, format="parquet", schema=EVENT_SCHEMA)
        lf = pl.scan_pyarrow_dataset(dset).with_columns(_file=pl.lit(None, pl.String))
    return lf


def compute_tables(events: pl.LazyFrame, dimensions: tuple[str, ...]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Both rollup tables from events that carry a ``date`` column (the partition)."""
    lf = events.with_columns(user_key=pl.coalesce(pl.col("user_id"), pl.col("anonymous_id")))
    hourly = (lf.group_by("date", pl.col("timestamp").dt.hour().cast(pl.Int8).alias("hour"),
                          "event_type", *dimensions)
              .agg(pl.len().cast(pl.Int64).alias("events"),
                   pl.col("user_key").drop_nulls().n_unique().cast(pl.Int64).alias("users"),
                   pl.col("session_id").drop_nulls().n_unique().cast(pl.Int64).alias("sessions"))
              .sort("date", "hour", "event_type", *dimensions, nulls_last=True))
    user_days = (lf.filter(pl.col("user_key").is_not_null())
                 .group_by("date", "user_key")
                 .agg(pl.len().cast(pl.Int64).alias("events"),
                      pl.col("session_id").drop_nulls().n_unique().cast(pl.Int64).alias("sessions"),
                      pl.col("timestamp").min().alias("first_seen"),
                      pl.col("timestamp").max().alias("last_seen"))
                 .sort("date", "user_key"))
    return hourly, user_days


def rollup(cfg: Config, *, tenant: str | None = None, since: date | None = None,
           until: date | None = None, full: bool = False,
           dimensions: tuple[str, ...] | None = None) -> RollupResult:
    """Bring the rollups of the lake up to date (only dirty partitions unless ``full``)."""
    lake = Lake(cfg.lake, cfg.settings.storage_options)
    return rollup_lake(lake, tenant=tenant, since=since, until=until, full=full, dimensions=dimensions)


def rollup_lake(lake: Lake, *, tenant: str | None = None, since: date | None = None,
                until: date | None = None, full: bool = False,
                dimensions: tuple[str, ...] | None = None) -> RollupResult:
    t0 = time.perf_counter()
    result = RollupResult(lake.url, full)
    if tenant is not None:
        validate_tenant_id(tenant)
    with lake.lock():
        lake.recover()
        wm = read_watermark(lake)
        dims = tuple(dimensions or wm.get("dimensions") or DEFAULT_DIMENSIONS)
        if wm.get("version") != VERSION or tuple(wm.get("dimensions") or ()) != dims:
            full_all = True  # another layout: every partition is rebuilt
            wm = {"version": VERSION, "dimensions": list(dims), "tenants": {}}
        else:
            full_all = False
        tenants = [tenant] if tenant else sorted(set(tenants_in(lake)) | set(wm["tenants"]))
        for t in tenants:
            validate_tenant_id(t)
            _rollup_tenant(lake, wm, t, dims, since, until, full or full_all, result)
    result.seconds = time.perf_counter() - t0
    return result


def _in_range(d: str, since: date | None, until: date | None) -> bool:
    return (since is None or d >= since.isoformat()) and (until is None or d <= until.isoformat())


def _rollup_tenant(lake: Lake, wm: dict[str, Any], t: str, dims: tuple[str, ...], since: date | None,
                   until: date | None, full: bool, result: RollupResult) -> None:
    files = {d: f for d, f in event_files(lake, t).items() if _in_range(d, since, until)}
    known: dict[str, Any] = wm["tenants"].get(t, {})
    known_in_range = {d: v for d, v in known.items() if _in_range(d, since, until)}
    result.tenants += 1
    result.partitions_checked += len(files)
    dirty = sorted(d for d, f in files.items()
                   if full or known_in_range.get(d, {}).get("fp") != fingerprint(f))
    gone = sorted(d for d in known_in_range if d not in files)
    if not dirty and not gone:
        return
    commit = lake.begin(new_batch_id())
    new_entries: dict[str, dict[str, Any]] = {}
    if dirty:
        paths = [p for d in dirty for p, _ in files[d]]
        lf = _scan(lake, paths).with_columns(
            date=pl.col("_file").str.extract(r"/date=(\d{4}-\d{2}-\d{2})/", 1).str.to_date()
            if lake.is_local else pl.col("timestamp").dt.date())
        hourly, user_days = compute_tables(lf.drop("_file"), dims)
        h, u = pl.collect_all([hourly, user_days], engine="streaming")
        result.hourly_rows += h.height
        result.user_day_rows += u.height
        for d in dirty:
            new_entries[d] = {"fp": fingerprint(files[d]), "hourly": [], "user_days": []}
        for table, df in (("hourly", h), ("user_days", u)):
            if df.height:
                for rel in commit.write_partitioned(df, posixpath.join("rollups", table, tenant_partition(t)),
                                                    ["date"]):
                    d = rel.split("/date=", 1)[1].split("/", 1)[0]
                    new_entries.setdefault(d, {"fp": None, "hourly": [], "user_days": []})[table].append(rel)
    for d in dirty + gone:
        for table in TABLES:
            for rel in known.get(d, {}).get(table, []):
                commit.delete_on_commit(rel)
    tenant_wm = dict(known)
    for d in gone:
        tenant_wm.pop(d, None)
    for d, entry in new_entries.items():
        if entry["fp"] is None:  # an event with a timestamp outside its partition's date
            raise LakeError(f"events of tenant {t} under date={dirty} carry timestamps of {d}",
                            path=lake.events_dir(t), hint="the partition was written by another tool; "
                            "re-ingest it with erp ingest")
        tenant_wm[d] = entry
    if tenant_wm:
        wm["tenants"][t] = dict(sorted(tenant_wm.items()))
    else:
        wm["tenants"].pop(t, None)
    data = json.dumps(wm, sort_keys=True).encode()
    lake.commit(commit, state_files={WATERMARK: data})
    result.partitions_rebuilt += len(dirty)
    result.partitions_removed += len(gone)
    if dirty:
        result.rebuilt[t] = dirty


# --- reading (for the report engine) -------------------------------------------------

def fresh_rollup_files(lake: Lake, tenant: str, days: list[str], table: str = "hourly") -> list[str] | None:
    """The rollup files of ``table`` for a tenant's UTC ``days`` when every one of those
    days is up to date with its events partition; ``None`` when any is stale."""
    validate_tenant_id(tenant)
    wm = read_watermark(lake)
    known = wm.get("tenants", {}).get(tenant, {})
    current = event_files(lake, tenant, days)
    out: list[str] = []
    for d in days:
        entry = known.get(d)
        if d not in current:
            if entry is not None:
                return None  # rolled up, then the events went away: stale
            continue
        if entry is None or entry.get("fp") != fingerprint(current[d]):
            return None
        out.extend(lake.path(rel) for rel in entry.get(table, []))
    return out
