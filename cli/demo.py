"""``erp demo``: the first run, end to end on the embedded default."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from erp.cli import build_reports as build_cli
from erp.cli import ingest as ingest_cli
from erp.cli._common import JsonOpt, command, escape, human_bytes, out, print_json
from erp.core.config import load_config, shipped

HELP = """Run erp end to end on the bundled sample data, in a local folder.

Ingests `sample_data/events.ndjson` (a few thousand generated events for five
tenants, with some deliberately bad lines) into `<dir>/lake`, shows what
landed, rolls it up, and builds the shipped example reports (traffic,
conversion, engagement) for every tenant as static HTML bundles in
`<dir>/dist/` (open `<dir>/dist/index.html`). Needs no server and no config;
safe to run again (the second run skips what is already in and rewrites no
unchanged file).

Example: `erp demo --dir /tmp/erp-demo`
"""

SAMPLE = "events.ndjson"


def sample_path() -> Path:
    return shipped("sample_data", SAMPLE)


def run(
    dir: Annotated[Path, typer.Option("--dir", help="Folder for the demo lake.")] = Path("erp-demo"),
    json_out: JsonOpt = False,
) -> None:
    _run(dir=dir, json_out=json_out)


@command
def _run(*, dir: Path, json_out: bool) -> None:
    # The whole pipeline loads only when the demo runs, not for `erp --help`.
    from erp.core.catalog import catalog
    from erp.core.ingest import ingest
    from erp.core.lake import Lake
    from erp.core.rollup import rollup
    from erp.reports.render.build import build_reports

    dir = dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    # The demo is self-contained: shipped defaults only, lake inside --dir.
    cfg = load_config(None, flags={"lake": str(dir / "lake")}, env={}, cwd=dir)
    result = ingest(cfg, [str(sample_path())])
    lake = Lake(cfg.settings.lake)
    cat = catalog(lake)
    rolled = rollup(cfg)
    # the reports cover the sample's days, built as of the day after them, so the
    # bundles are the same on every machine and every day
    days = [c for c in cat.tenants.values() if c.events and c.first_date and c.last_date]
    since = min(date.fromisoformat(c.first_date) for c in days)
    until = max(date.fromisoformat(c.last_date) for c in days)
    now = datetime.combine(until + timedelta(days=1), time(0), tzinfo=timezone.utc)
    built = build_reports(cfg, dir / "dist", since=since, until=until, now=now, lake=lake)
    if json_out:
        print_json({"ok": True, "ingest": result.to_dict(), "lake": cat.to_dict(),
                    "rollup": rolled.to_dict(), "reports": built.to_dict()})
        return
    out.print(f"[bold]erp demo[/] — lake at {escape(cfg.settings.lake)}\n")
    ingest_cli.render(result)
    table = Table(title="what the lake holds", title_justify="left")
    for col in ("tenant", "events", "partitions (days)", "files", "size", "first day", "last day"):
        table.add_column(col, justify="left" if col in ("tenant", "first day", "last day") else "right")
    for t, c in sorted(cat.tenants.items()):
        if c.events:
            table.add_row(escape(t), f"{c.events:,}", f"{c.partitions:,}", f"{c.files:,}", human_bytes(c.bytes),
                          c.first_date or "", c.last_date or "")
    out.print()
    out.print(table)
    out.print(f"\nrollups: {rolled.partitions_rebuilt:,} of {rolled.partitions_checked:,} (tenant, day) "
              f"partitions recomputed ({rolled.hourly_rows:,} hourly rows, {rolled.user_day_rows:,} user-day rows)\n")
    build_cli.render(built)
    out.print("\nnext steps:")
    out.print(f"  python -c \"import duckdb; duckdb.sql(\\\"SELECT tenant_id, event_type, count(*) FROM "
              f"read_parquet('{escape(cfg.settings.lake)}/events/**/*.parquet', hive_partitioning=true) "
              f"GROUP BY ALL ORDER BY ALL\\\").show()\"")
    out.print(f"  erp report traffic --tenant acme --since {since} --until {until} --lake {escape(cfg.settings.lake)}")
    out.print("  erp generate big.ndjson --events 1000000 && erp ingest big.ndjson --lake " + escape(cfg.settings.lake))
