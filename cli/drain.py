"""``erp ingest --spool``: drain the collector's spool into the lake."""

from __future__ import annotations

from pathlib import Path

from erp.cli._common import command, escape, finish, load, out
from erp.core.drain import DrainResult, drain_spool
from erp.core.errors import InputError


@command
def drain(inputs: list[str], *, explicit: bool, tenant: str | None, lake: str | None, config: Path | None, workers: int | None,
          fail_on_rejects: bool, json_out: bool) -> None:
    if inputs:
        raise InputError("give inputs or --spool, not both", path=" ".join(inputs)[:200],
                         hint="run `erp ingest --spool` and `erp ingest <inputs>` separately")
    cfg = load(config, lake=lake)
    if not explicit and not Path(cfg.settings.spool).is_dir():
        raise InputError("no inputs given, and no spool folder to drain", path=cfg.settings.spool,
                         hint="give files, folders, globs, '-' (stdin) or URLs: `erp ingest events.ndjson`; "
                              "or run `erp collect` so the spool exists")
    result = drain_spool(cfg, workers=workers, tenant=tenant)
    failed = result.failed or (fail_on_rejects and result.rejected > 0)
    finish(result, render, json_out=json_out, failed=failed)


def render(result: DrainResult) -> None:
    from erp.cli.ingest import render as render_ingest

    for res in result.ingests:
        render_ingest(res)
    out.print(f"spool {escape(result.spool)}: {result.segments} sealed segment(s), {result.deleted} drained and "
              f"deleted in {result.seconds:.2f} s; [green]{result.accepted:,} accepted[/], "
              f"{result.duplicates:,} duplicates skipped, {result.rejected:,} rejected"
              + (f" ({result.rejected_rows:,} at the collector)" if result.rejected_rows else ""))
    if result.recovered:
        out.print(f"sealed {result.recovered} segment(s) left open by a stopped collector")
    for name in result.skipped_folders:
        out.print(f"[yellow]skipped[/] {escape(name)}: not a tenant_id=<id> folder")
    for e in result.errors:
        out.print(f"[red]failed:[/] tenant {escape(e['tenant'])}: {escape(e['message'])}"
                  + (f" — {escape(e['hint'])}" if e.get("hint") else ""))
