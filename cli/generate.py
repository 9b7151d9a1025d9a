"""``erp generate``."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from erp.cli._common import JsonOpt, command, human_bytes, out, print_json
from erp.core.errors import ErpError

HELP = """Write a deterministic synthetic event stream (NDJSON, .gz if the name ends so).

Realistic sessions, skewed tenant sizes, a page_view -> signup -> add_to_cart ->
purchase funnel with drop-off and revenue. The same arguments always give the
same bytes. `--dirty` mixes in bad lines to exercise the rejection path.

Example: `erp generate events.ndjson --events 100000 --tenants 5 --days 30`
"""


def run(
    path: Annotated[Path, typer.Argument(help="Output file (.ndjson or .ndjson.gz).", show_default=False)],
    events: Annotated[int, typer.Option("--events", "-n", min=0, help="Number of lines.")] = 10_000,
    tenants: Annotated[int, typer.Option("--tenants", min=1, help="Number of tenants.")] = 5,
    days: Annotated[int, typer.Option("--days", min=1, help="Days covered.")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    start: Annotated[str, typer.Option("--start", help="First day (YYYY-MM-DD).")] = "2026-09-01",
    dirty: Annotated[float, typer.Option("--dirty", min=0.0, max=1.0,
                                         help="Fraction of deliberately bad lines.")] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    _run(path=path, events=events, tenants=tenants, days=days, seed=seed, start=start, dirty=dirty,
         json_out=json_out)


@command
def _run(*, path: Path, events: int, tenants: int, days: int, seed: int, start: str, dirty: float,
         json_out: bool) -> None:
    from erp.core.generate import generate_events

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise ErpError(f"--start {start!r} is not a date", hint="write it as YYYY-MM-DD") from None
    t0 = datetime.now()
    r = generate_events(path, events=events, tenants=tenants, days=days, seed=seed, start=first, dirty=dirty)
    secs = (datetime.now() - t0).total_seconds()
    if json_out:
        print_json({"ok": True, "path": str(r.path), "events": r.events, "bytes": r.bytes,
                    "tenants": r.tenants, "start": r.start.isoformat(), "days": r.days,
                    "seconds": round(secs, 3)})
        return
    out.print(f"wrote {r.events:,} events ({human_bytes(r.bytes)}) for {len(r.tenants)} tenants over "
              f"{r.days} days to {r.path} in {secs:.1f} s")
