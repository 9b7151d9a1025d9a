"""Draining the collector's spool into the lake (``erp ingest --spool``).

For each tenant folder of the spool, in order:

1. segments left open by a dead collector are sealed (``spool.recover``);
2. the sealed ``events`` segments go through the normal ingest pipeline with
   ``tenant=<that tenant>`` (a record naming another tenant is rejected
   ``tenant_mismatch``), so validation, enrichment and the per-tenant
   ``event_id`` dedup are the same as for files;
3. the sealed ``rejected`` segments (rows the collector refused, e.g.
   ``size_violation``) are committed to ``_rejected/`` under a name derived from
   the segment, so a repeated drain rewrites the same file;
4. only then are the segments deleted.

A crash between the lake commit and the delete leaves the segment in place; the
next drain finds it in the input ledger (skipped) or re-reads it, and the
``event_id`` dedup drops what is already stored. Nothing is lost or doubled.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from erp.core.config import Config
from erp.core.errors import ErpError, InputError
from erp.core.ingest import IngestResult, ingest
from erp.core.lake import Lake, new_batch_id
from erp.core.sources import Source
from erp.core.spool import iter_tenant_dirs, recover, sealed_segments
from erp.core.tenants import validate_tenant_id


@dataclass
class DrainResult:
    spool: str
    lake: str
    segments: int = 0
    deleted: int = 0
    recovered: int = 0
    rejected_rows: int = 0
    seconds: float = 0.0
    ingests: list[IngestResult] = field(default_factory=list)
    skipped_folders: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.ingests)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.ingests)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.ingests) + self.rejected_rows

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.failed_sources for r in self.ingests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spool": self.spool, "lake": self.lake, "segments": self.segments, "deleted": self.deleted,
            "recovered_segments": self.recovered, "accepted": self.accepted, "duplicates": self.duplicates,
            "rejected": self.rejected, "rejected_at_collect": self.rejected_rows,
            "seconds": round(self.seconds, 3), "skipped_folders": self.skipped_folders,
            "errors": self.errors, "ingests": [r.to_dict() for r in self.ingests],
        }


def drain_spool(cfg: Config, *, workers: int | None = None, now: datetime | None = None,
                lake: Lake | None = None, tenant: str | None = None) -> DrainResult:
    """Move every sealed spool segment (of ``tenant`` only, if given) into the
    lake; delete each segment only after the commit that holds its events."""
    started = time.perf_counter()
    root = Path(cfg.settings.spool)
    lake = lake or Lake(cfg.settings.lake, cfg.settings.storage_options)
    result = DrainResult(spool=str(root), lake=lake.url)
    if "://" in cfg.settings.spool:
        raise InputError(f"the spool must be a local folder, not {cfg.settings.spool}", path=cfg.settings.spool,
                         hint="set `spool:` in erp.yaml to a folder on the collector's disk")
    if not root.is_dir():
        raise InputError(f"spool folder not found: {root}", path=root,
                         hint="run `erp collect` first, or set `spool:` in erp.yaml (or ERP_SPOOL)")
    if tenant is not None:
        validate_tenant_id(tenant)
    result.recovered = len(recover(root))
    for name, folder in iter_tenant_dirs(root):
        if name is None:
            result.skipped_folders.append(folder.name)
            continue
        if tenant is not None and name != tenant:
            continue
        events = sealed_segments(root, name, "events")
        rejected = sealed_segments(root, name, "rejected")
        result.segments += len(events) + len(rejected)
        try:
            if events:
                _drain_events(cfg, name, events, lake, result, workers=workers, now=now)
            if rejected:
                _drain_rejected(name, rejected, lake, result, now=now)
        except ErpError as exc:
            result.errors.append({"tenant": name, "error": type(exc).__name__, "message": exc.message,
                                  "hint": exc.hint or ""})
    result.seconds = time.perf_counter() - started
    return result


def _drain_events(cfg: Config, tenant: str, paths: list[Path], lake: Lake, result: DrainResult, *,
                  workers: int | None, now: datetime | None) -> None:
    sources = []
    for p in paths:
        st = p.stat()
        sources.append(Source(key=str(p.resolve()), display=f"spool:{p.parent.name}/{p.name}",
                              size=st.st_size, mtime=st.st_mtime))
    res = ingest(cfg, [], tenant=tenant, lake=lake, now=now, workers=workers, sources=sources)
    result.ingests.append(res)
    failed = {s.source for s in res.failed_sources}
    for src, p in zip(sources, paths):
        if src.display in failed:
            continue
        _unlink(p)
        result.deleted += 1


def _drain_rejected(tenant: str, paths: list[Path], lake: Lake, result: DrainResult, *,
                    now: datetime | None) -> None:
    now = now or datetime.now(timezone.utc)
    batch = new_batch_id()
    with lake.lock():
        c = lake.begin(f"{batch}-spool-rejected")
        rows = 0
        for p in paths:
            lines = []
            for raw in p.read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    rec = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # a torn last line of a crashed writer: never acknowledged
                rec["batch"] = batch
                lines.append(orjson.dumps(rec))
            if lines:
                name = p.name.removesuffix(".ndjson") + ".ndjson"
                c.write_bytes(Lake.rejected_rel(tenant, now.date().isoformat(), f"spool-{name}"),
                              b"\n".join(lines) + b"\n")
                rows += len(lines)
        lake.commit(c)
    result.rejected_rows += rows
    for p in paths:
        _unlink(p)
        result.deleted += 1


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


__all__ = ["drain_spool", "DrainResult"]
