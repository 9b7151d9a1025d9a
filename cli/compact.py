"""``erp compact``."""

from __future__ import annotations

from pathlib import Path

from erp.cli._common import ConfigOpt, JsonOpt, LakeOpt, TenantOpt, command, load, out, print_json

HELP = """Merge small Parquet files in the lake (and its dedup index and ledger).

Frequent small ingests leave many small files per partition; compaction
rewrites each partition as few files of about `ingest.target_file_bytes`,
atomically. Safe to re-run; does nothing when there is nothing to merge.

Example: `erp compact --tenant acme`
"""


def run(tenant: TenantOpt = None, lake: LakeOpt = None, config: ConfigOpt = None,
        json_out: JsonOpt = False) -> None:
    _run(tenant=tenant, lake=lake, config=config, json_out=json_out)


@command
def _run(*, tenant: str | None, lake: str | None, config: Path | None, json_out: bool) -> None:
    from erp.core.compact import compact  # polars and pyarrow load only for this command

    cfg = load(config, lake=lake)
    r = compact(cfg, tenant=tenant)
    if json_out:
        print_json({"ok": True, **r.to_dict()})
        return
    if not r.partitions_compacted and not r.state_files_merged:
        out.print("nothing to compact")
        return
    out.print(f"compacted {r.partitions_compacted:,} partition(s): {r.files_before:,} files -> "
              f"{r.files_after:,} ({r.events:,} events); merged {r.state_files_merged:,} state files")
