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
import os
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
#: Parquet bytes computed per scan and commit (bounds memory; many small tenants share one).
BATCH_BYTES = 256 * 1024**2


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
    if lake.is_local:
        try:
            dirs = [f"date={d}" for d in days] if days is not None else \
                [e.name for e in os.scandir(base) if e.name.startswith("date=") and e.is_dir()]
        except FileNotFoundError:
            return out
        for name in dirs:
            try:
                with os.scandir(os.path.join(base, name)) as it:
                    files = [(e.path, e.stat().st_size) for e in it
                             if e.name.endswith(".parquet") and e.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                continue
            if files:
                out[name[5:]] = files
    elif days is None:
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
    else:  # object stores go through pyarrow's dataset with the lake's filesystem
        import pyarrow.dataset as ds

        lf = pl.concat([pl.scan_pyarrow_dataset(ds.dataset(p, filesystem=lake.fs, format="parquet",
                                                           schema=EVENT_SCHEMA)).with_columns(_file=pl.lit(p))
                        for p in paths])
    return lf


def compute_tables(events: pl.LazyFrame, dimensions: tuple[str, ...],
                   by: tuple[str, ...] = ()) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Both rollup tables from events that carry a ``date`` column (the partition)
    and the ``by`` columns (e.g. ``tenant_id``)."""
    lf = events.with_columns(user_key=pl.coalesce(pl.col("user_id"), pl.col("anonymous_id")))
    hourly = (lf.group_by(*by, "date", pl.col("timestamp").dt.hour().cast(pl.Int8).alias("hour"),
                          "event_type", *dimensions)
              .agg(pl.len().cast(pl.Int64).alias("events"),
                   pl.col("user_key").drop_nulls().n_unique().cast(pl.Int64).alias("users"),
                   pl.col("session_id").drop_nulls().n_unique().cast(pl.Int64).alias("sessions"))
              .sort(*by, "date", "hour", "event_type", *dimensions, nulls_last=True))
    user_days = (lf.filter(pl.col("user_key").is_not_null())
                 .group_by(*by, "date", "user_key")
                 .agg(pl.len().cast(pl.Int64).alias("events"),
                      pl.col("session_id").drop_nulls().n_unique().cast(pl.Int64).alias("sessions"),
                      pl.col("timestamp").min().alias("first_seen"),
                      pl.col("timestamp").max().alias("last_seen"))
                 .sort(*by, "date", "user_key"))
    return hourly, user_days


def rollup(cfg: Config, *, tenant: str | None = None, since: date | None = None,
           until: date | None = None, full: bool = False,
           dimensions: tuple[str, ...] | None = None) -> RollupResult:
    """Bring the rollups of the lake up to date (only dirty partitions unless ``full``)."""
    lake = Lake(cfg.lake, cfg.settings.storage_options)
    return rollup_lake(lake, tenant=tenant, since=since, until=until, full=full, dimensions=dimensions)


def rollup_lake(lake: Lake, *, tenant: str | None = None, since: date | None = None,
                until: date | None = None, full: bool = False,
                dimensions: tuple[str, ...] | None = None,
                batch_bytes: int = BATCH_BYTES) -> RollupResult:
    t0 = time.perf_counter()
    result = RollupResult(lake.url, full)
    if tenant is not None:
        validate_tenant_id(tenant)
    with lake.lock():
        lake.recover()
        wm = read_watermark(lake)
        dims = tuple(dimensions or wm.get("dimensions") or DEFAULT_DIMENSIONS)
        if wm.get("version") != VERSION or tuple(wm.get("dimensions") or ()) != dims:
            full = True  # another layout: every partition is rebuilt
            wm = {"version": VERSION, "dimensions": list(dims), "tenants": {}}
        tenants = [tenant] if tenant else sorted(set(lake.tenants()) | set(wm["tenants"]))
        plans = [_plan(lake, wm, validate_tenant_id(t), since, until, full, result) for t in tenants]
        plans = [p for p in plans if p.dirty or p.gone]
        # Tenants are computed together in batches of about ``batch_bytes`` of Parquet
        # (one scan, one commit each): few queries for many small tenants, bounded
        # memory for large ones (a tenant larger than a batch is split by dates).
        batch: list[_Plan] = []
        size = 0
        for plan in plans:
            for piece in plan.split(batch_bytes):
                if batch and size + piece.bytes > batch_bytes:
                    _run_batch(lake, wm, batch, dims, result)
                    batch, size = [], 0
                batch.append(piece)
                size += piece.bytes
        if batch:
            _run_batch(lake, wm, batch, dims, result)
    result.seconds = time.perf_counter() - t0
    return result


def _in_range(d: str, since: date | None, until: date | None) -> bool:
    return (since is None or d >= since.isoformat()) and (until is None or d <= until.isoformat())


@dataclass
class _Plan:
    tenant: str
    files: dict[str, list[tuple[str, int]]]  # dirty date -> part files
    dirty: list[str]
    gone: list[str]

    @property
    def bytes(self) -> int:
        return sum(s for d in self.dirty for _, s in self.files[d])

    def split(self, limit: int) -> list["_Plan"]:
        out: list[_Plan] = []
        cur: list[str] = []
        size = 0
        for d in self.dirty:
            b = sum(s for _, s in self.files[d])
            if cur and size + b > limit:
                out.append(_Plan(self.tenant, self.files, cur, []))
                cur, size = [], 0
            cur.append(d)
            size += b
        out.append(_Plan(self.tenant, self.files, cur, self.gone))
        return out


def _plan(lake: Lake, wm: dict[str, Any], t: str, since: date | None, until: date | None, full: bool,
          result: RollupResult) -> _Plan:
    files = {d: f for d, f in event_files(lake, t).items() if _in_range(d, since, until)}
    known: dict[str, Any] = wm["tenants"].get(t, {})
    result.tenants += 1
    result.partitions_checked += len(files)
    dirty = sorted(d for d, f in files.items() if full or known.get(d, {}).get("fp") != fingerprint(f))
    gone = sorted(d for d in known if _in_range(d, since, until) and d not in files)
    return _Plan(t, files, dirty, gone)


def _run_batch(lake: Lake, wm: dict[str, Any], plans: list[_Plan], dims: tuple[str, ...],
               result: RollupResult) -> None:
    commit = lake.begin(new_batch_id())
    paths = [p for plan in plans for d in plan.dirty for p, _ in plan.files[d]]
    frames: dict[str, dict[str, pl.DataFrame]] = {}
    if paths:
        lf = _scan(lake, paths)
        lf = lf.with_columns(
            tenant_id=pl.col("_file").str.extract(r"/tenant_id=([a-z0-9][a-z0-9_-]{0,62})/date=", 1),
            date=pl.col("_file").str.extract(r"/date=(\d{4}-\d{2}-\d{2})/", 1).str.to_date()).drop("_file")
        hourly, user_days = compute_tables(lf, dims, by=("tenant_id",))
        h, u = pl.collect_all([hourly, user_days], engine="streaming")
        result.hourly_rows += h.height
        result.user_day_rows += u.height
        for table, df in (("hourly", h), ("user_days", u)):
            for key, sub in df.partition_by("tenant_id", as_dict=True, include_key=False).items():
                frames.setdefault(key[0], {})[table] = sub
    for plan in plans:
        t = plan.tenant
        known: dict[str, Any] = wm["tenants"].get(t, {})
        entries = {d: {"fp": fingerprint(plan.files[d]), "hourly": [], "user_days": []} for d in plan.dirty}
        for table in TABLES:
            df = frames.get(t, {}).get(table)
            if df is None or not df.height:
                continue
            for rel in commit.write_partitioned(df, posixpath.join("rollups", table, tenant_partition(t)),
                                                ["date"]):
                d = rel.split("/date=", 1)[1].split("/", 1)[0]
                if d not in entries:  # cannot happen: the date comes from the file's folder
                    raise LakeError(f"rollup of tenant {t} produced date {d} outside its partitions",
                                    path=lake.events_dir(t))
                entries[d][table].append(rel)
        for d in plan.dirty + plan.gone:
            for table in TABLES:
                for rel in known.get(d, {}).get(table, []):
                    commit.delete_on_commit(rel)
        tenant_wm = dict(known)
        for d in plan.gone:
            tenant_wm.pop(d, None)
        tenant_wm.update(entries)
        if tenant_wm:
            wm["tenants"][t] = dict(sorted(tenant_wm.items()))
        else:
            wm["tenants"].pop(t, None)
        result.partitions_rebuilt += len(plan.dirty)
        result.partitions_removed += len(plan.gone)
        if plan.dirty:
            result.rebuilt.setdefault(t, []).extend(plan.dirty)
    lake.commit(commit, state_files={WATERMARK: json.dumps(wm, sort_keys=True).encode()})


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
