"""``erp demo``: the first run, end to end on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from erp.cli import ingest as ingest_cli
from erp.cli._common import JsonOpt, command, escape, human_bytes, out, print_json
from erp.core.catalog import catalog
from erp.core.config import load_config, shipped
from erp.core.ingest import ingest
from erp.core.lake import Lake

HELP = """Run erp end to end on the bundled sample data, in a local folder.

Ingests `sample_data/events.ndjson` (a few thousand generated events for five
tenants, with some deliberately bad lines) into `<dir>/lake`, then shows what
landed. Needs no server and no config; safe to run again (the second run skips
what is already in).

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
    dir = dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    # The demo is self-contained: shipped defaults only, lake inside --dir.
    cfg = load_config(None, flags={"lake": str(dir / "lake")}, env={}, cwd=dir)
    result = ingest(cfg, [str(sample_path())])
    cat = catalog(Lake(cfg.settings.lake))
    if json_out:
        print_json({"ok": True, "ingest": result.to_dict(), "lake": cat.to_dict()})
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
    out.print("\nnext steps:")
    out.print(f"  python -c \"import duckdb; duckdb.sql(\\\"SELECT tenant_id, event_type, count(*) FROM "
              f"read_parquet('{escape(cfg.settings.lake)}/events/**/*.parquet', hive_partitioning=true) "
              f"GROUP BY ALL ORDER BY ALL\\\").show()\"")
    out.print("  erp generate big.ndjson --events 1000000 && erp ingest big.ndjson --lake " + escape(cfg.settings.lake))
