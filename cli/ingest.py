"""``erp ingest``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from erp.cli._common import (
    ConfigOpt, JsonOpt, LakeOpt, TenantOpt, command, escape, finish, human_bytes, load, out,
)

if TYPE_CHECKING:
    from erp.core.ingest import IngestResult

HELP = """Ingest NDJSON events into the lake: validate, enrich, deduplicate.

Inputs are files, folders (searched recursively for *.ndjson, *.jsonl, *.json,
*.log and their .gz), globs, `-` for standard input, or URLs such as
`s3://bucket/events/`. Good events land in `<lake>/events/tenant_id=…/date=…/`;
every rejected line lands in `<lake>/_rejected/` with its reasons. Re-running
is safe: finished files are skipped, and no event is stored twice.

Example: `erp ingest logs/ --tenant acme`

`--rescan` reads the inputs again from the start although the input ledger
says they are done, e.g. after adding a tenant to tenants.yaml or raising a
storage_quota: lines rejected the first time land now, and events already
stored are skipped as duplicates.

With `--spool` (or with no inputs when the spool folder from erp.yaml exists)
the sealed segments of `erp collect`'s spool are ingested, each deleted only
after its events are committed: `erp ingest --spool`.

Exit code 1 when an input could not be read (or, with --fail-on-rejects, when
any line was rejected); the readable data is still committed.
"""


def run(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Files, folders, globs, '-' (stdin) or URLs. None: drain the collector's spool.",
        show_default=False)] = None,
    tenant: TenantOpt = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", "-w", help="Parser processes (default: ingest.workers; 1 = in-process).",
        min=1, show_default=False)] = None,
    fail_on_rejects: Annotated[bool, typer.Option(
        "--fail-on-rejects", help="Exit 1 if any line was rejected.")] = False,
    spool: Annotated[bool, typer.Option(
        "--spool", help="Drain the sealed segments of the collector's spool (erp.yaml `spool:`).")] = False,
    rescan: Annotated[bool, typer.Option(
        "--rescan", help="Read inputs again even if the ledger says they are done (no duplicates).")] = False,
    json_out: JsonOpt = False,
) -> None:
    if spool or not inputs:
        from erp.cli.drain import drain

        drain(inputs or [], explicit=spool, tenant=tenant, lake=lake, config=config, workers=workers,
              fail_on_rejects=fail_on_rejects, json_out=json_out)
        return
    _run(inputs, tenant=tenant, lake=lake, config=config, workers=workers,
         fail_on_rejects=fail_on_rejects, rescan=rescan, json_out=json_out)


@command
def _run(inputs: list[str], *, tenant: str | None, lake: str | None, config: Path | None,
         workers: int | None, fail_on_rejects: bool, rescan: bool, json_out: bool) -> None:
    import os

    from erp.core import forkserver

    cfg = load(config, lake=lake)
    ing = cfg.settings.ingest
    # the parsers' fork server imports Polars and Arrow on another core while this process does
    forkserver.start_early(inputs, 2 * ing.chunk_bytes, workers or ing.workers or os.cpu_count() or 1)
    from erp.core.ingest import ingest  # polars and pyarrow load only when a command runs
    from erp.core.sources import expand_inputs

    sources = expand_inputs(inputs, stdin=sys.stdin.buffer, storage_options=cfg.settings.storage_options)
    show_progress = not json_out and out.is_terminal
    if show_progress:
        from rich.progress import (
            BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
        )

        total = None if any(s.size is None or s.compressed for s in sources) else sum(s.size or 0 for s in sources)
        with Progress(TextColumn("ingesting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TextColumn("{task.fields[lines]:,} lines"), TimeRemainingColumn(),
                      console=out, transient=True) as bar:
            task = bar.add_task("ingest", total=total, lines=0)
            result = ingest(cfg, inputs, tenant=tenant, workers=workers, sources=sources, rescan=rescan,
                            progress=lambda b, n: bar.update(task, completed=b, lines=n))
    else:
        result = ingest(cfg, inputs, tenant=tenant, workers=workers, sources=sources, rescan=rescan)
    failed = bool(result.failed_sources) or (fail_on_rejects and result.rejected > 0)
    finish(result, render, json_out=json_out, failed=failed)


def render(result: IngestResult) -> None:
    table = Table(title=f"ingest {result.batch_id}", title_justify="left")
    for col in ("tenant", "accepted", "duplicates", "rejected", "top rejection reasons", "partitions"):
        table.add_column(col, justify="right" if col not in ("tenant", "top rejection reasons") else "left")
    for tenant, s in sorted(result.tenants.items()):
        reasons = ", ".join(f"{k} {v:,}" for k, v in s.rejected_by_reason.most_common(3))
        table.add_row(escape(tenant), f"{s.accepted:,}", f"{s.duplicates:,}", f"{s.rejected:,}",
                      escape(reasons), f"{len(s.partitions):,}")
    if result.tenants:
        out.print(table)
    rate = f" ({result.lines / result.seconds:,.0f} lines/s)" if result.seconds > 0 and result.lines else ""
    out.print(f"{result.lines:,} lines ({human_bytes(result.bytes)}) in {result.seconds:.2f} s{rate}: "
              f"[green]{result.accepted:,} accepted[/], {result.duplicates:,} duplicates skipped, "
              f"[{'red' if result.rejected else 'green'}]{result.rejected:,} rejected[/]"
              + (f", {result.blank:,} blank" if result.blank else ""))
    if result.recovered:
        out.print(f"finished {len(result.recovered)} interrupted commit(s) from an earlier run")
    skipped = [s for s in result.sources if s.status == "skipped"]
    if skipped:
        out.print(f"{len(skipped)} input(s) skipped: already ingested (the ledger knows them)")
    for s in result.sources:
        if s.status == "resumed":
            out.print(f"resumed {escape(s.source)} {escape(s.detail)}")
    if result.rejected:
        out.print(f"rejected lines and their reasons: {escape(result.lake)}/_rejected/")
    for s in result.failed_sources:
        out.print(f"[red]failed:[/] {escape(s.source)}: {escape(s.detail)}")
