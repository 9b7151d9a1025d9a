"""``erp compact``: merge small files, atomically.

Each events partition whose files are smaller than ``ingest.target_file_bytes``
is rewritten as few files of about that size (sorted by timestamp); the dedup
index and the input ledger are merged into one file per tenant / one file. The
rewrite goes through the lake's commit protocol: new files are staged, the
intent lists the files to remove, and a crash is rolled forward by the next
run. A reader that lists a partition during the swap itself may briefly see
both generations; run compaction when no report job reads the same partitions.
On a local lake (Linux), each partition is instead rebuilt beside the live one
and the two folders are exchanged atomically (``Lake.swap_folders``): readers
always see one complete generation.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from erp.core.config import Config
from erp.core.dedup import DEDUP_DIR
from erp.core.events import EVENT_SCHEMA
from erp.core.errors import LakeError
from erp.core.lake import Lake, new_batch_id
from erp.core.ledger import LEDGER_DIR
from erp.core.tenants import tenant_partition


@dataclass
class CompactResult:
    commit_id: str
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    events: int = 0
    state_files_merged: int = 0
    partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


def compact(cfg: Config, *, lake: Lake | None = None, tenant: str | None = None,
            min_files: int = 2) -> CompactResult:
    lake = lake or Lake(cfg.settings.lake, cfg.settings.storage_options)
    target = cfg.settings.ingest.target_file_bytes
    commit_id = new_batch_id() + "-compact"
    result = CompactResult(commit_id)
    with lake.lock():
        lake.recover()
        c = lake.begin(commit_id)
        swaps: list = []
        for t, day in lake.event_partitions(tenant):
            files = lake.list_files(lake.events_dir(t, day), ".parquet")
            small = [f for f in files if lake.fs.size(f) < target]
            if len(small) < min_files:
                continue
            tables = [_read(lake, f, schema=EVENT_SCHEMA) for f in small]
            merged = pa.concat_tables(tables).sort_by([("timestamp", "ascending"), ("event_id", "ascending")])
            size = sum(lake.fs.size(f) for f in small)
            n_out = max(1, -(-size // target))
            rows = -(-merged.num_rows // n_out)
            # Where the file system can swap folders atomically, each partition is
            # rebuilt beside the live one and exchanged with it, so a reader sees
            # one complete generation. Elsewhere (object stores) the new files are
            # moved in and the old ones deleted by the commit below.
            swap = lake.can_swap_folders()
            gen = lake.begin(f"{commit_id}-{result.partitions_compacted:05d}", private=True) if swap else c
            for i in range(n_out):
                piece = merged.slice(i * rows, rows)
                if piece.num_rows:
                    gen.write_parquet(Lake.events_rel(t, day, f"part-{commit_id}-{i}.parquet"), piece)
                    result.files_after += 1
            if swap:
                rel_dir = posixpath.relpath(lake.events_dir(t, day), lake.root)
                swaps.append((gen, rel_dir, [posixpath.basename(f) for f in files if f not in small]))
            else:
                for f in small:
                    c.delete_on_commit(posixpath.relpath(f, lake.root))
            result.files_before += len(small)
            result.events += merged.num_rows
            result.partitions_compacted += 1
            result.partitions.append(f"{t}/{day}")
        if swaps:
            lake.swap_folders(swaps)
        _merge_state(lake, c, result, tenant)
        if c.files or c.deletes:
            lake.commit(c)
    return result


def _merge_state(lake: Lake, c, result: CompactResult, tenant: str | None) -> None:
    ddir = lake.state(DEDUP_DIR)
    tenants = [tenant] if tenant else [p.rsplit("tenant_id=", 1)[1] for p in
                                      (lake.fs.ls(ddir, detail=False) if lake.fs.exists(ddir) else [])
                                      if "tenant_id=" in p]
    for t in sorted(tenants):
        files = lake.list_files(lake.state(DEDUP_DIR, tenant_partition(t)), ".parquet")
        if len(files) < 2:
            continue
        keys = pa.concat_tables([_read(lake, f) for f in files])
        c.write_parquet(posixpath.join("_state", DEDUP_DIR, tenant_partition(t), f"{c.commit_id}.parquet"), keys)
        for f in files:
            c.delete_on_commit(posixpath.relpath(f, lake.root))
        result.state_files_merged += len(files)
    if tenant is None:
        files = lake.list_files(lake.state(LEDGER_DIR), ".ndjson")
        if len(files) >= 2:
            # later entries win: keep the last line per key, in commit order
            latest: dict[str, bytes] = {}
            import json

            for f in files:
                for line in lake.read_bytes(f).splitlines():
                    if line.strip():
                        try:
                            latest[json.loads(line)["key"]] = line
                        except (ValueError, KeyError, TypeError) as exc:
                            raise LakeError(f"the input ledger file {f} is damaged: {exc!r}", path=f,
                                            hint="restore it from a backup, or delete it: the inputs it "
                                                 "lists are then read again by the next ingest") from exc
            c.write_bytes(posixpath.join("_state", LEDGER_DIR, f"{c.commit_id}.ndjson"),
                          b"\n".join(latest.values()) + b"\n")
            for f in files:
                c.delete_on_commit(posixpath.relpath(f, lake.root))
            result.state_files_merged += len(files)


def _read(lake: Lake, path: str, schema: pa.Schema | None = None) -> pa.Table:
    """Read one Parquet file of the lake; a damaged one is a LakeError naming it."""
    try:
        return pq.read_table(path, filesystem=lake.fs, schema=schema)
    except (pa.ArrowException, OSError) as exc:
        raise LakeError(f"{path} is not a readable Parquet file: {exc}", path=path,
                        hint="restore it from a backup (or move it out of the lake) and run erp compact again") from exc
