"""``erp report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from erp.cli._common import (
    ConfigOpt, JsonOpt, LakeOpt, TenantOpt, command, escape, load, out, parse_now, print_json,
)
from erp.core.errors import TenantError

HELP = """Compute one report for one tenant and print it.

The range is the definition's (`range:`) in the tenant's timezone unless
`--since`/`--until` (local dates, inclusive) say otherwise. Counts come from
fresh rollups where they answer the question and from the raw lake otherwise;
the numbers are the same. `--json` prints the report JSON (docs/reports.md).

Example: `erp report traffic --tenant acme --since 2026-09-01 --until 2026-09-30 --json`
"""


def run(report_id: Annotated[str, typer.Argument(help="The report's id (erp reports list).", show_default=False)],
        tenant: TenantOpt = None,
        since: Annotated[Optional[str], typer.Option("--since", help="First local date (YYYY-MM-DD).",
                                                     show_default=False)] = None,
        until: Annotated[Optional[str], typer.Option("--until", help="Last local date (YYYY-MM-DD).",
                                                     show_default=False)] = None,
        now: Annotated[Optional[str], typer.Option("--now", hidden=True,
                                                   help="Pretend it is this UTC instant (ISO-8601).")] = None,
        lake: LakeOpt = None, config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    _run(report_id, tenant=tenant, since=since, until=until, now=now, lake=lake, config=config,
         json_out=json_out)


@command
def _run(report_id: str, *, tenant: str | None, since: str | None, until: str | None, now: str | None,
         lake: str | None, config: Path | None, json_out: bool) -> None:
    if not tenant:
        raise TenantError("--tenant is required", hint=f"erp report {report_id} --tenant acme")
    from erp.reports.definitions import get_report, load_reports, parse_date, reports_folder
    from erp.reports.engine import compute_report  # polars loads only for this command

    cfg = load(config, lake=lake)
    report = get_report(load_reports(reports_folder(cfg)), report_id)
    at = parse_now(now)
    data = compute_report(cfg, None, report, tenant,
                          parse_date(since, "--since") if since else None,
                          parse_date(until, "--until") if until else None, at)
    if json_out:
        print_json(data)
        return
    render(data)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(data: dict[str, Any]) -> None:
    r = data["range"]
    out.print(f"[bold]{escape(data['report_name'])}[/] ({escape(data['report_id'])}) — tenant "
              f"{escape(data['tenant_id'])}, {r['since']} … {r['until']} ({escape(r['timezone'])})"
              + ("" if r["complete"] else " [yellow](incomplete)[/]"))
    for w in data["widgets"]:
        d, title = w["data"], escape(w["title"])
        if w["type"] == "metric":
            rel = d["change_relative"]
            change = "" if d["change"] is None else (
                f"  {'+' if d['change'] >= 0 else ''}{_fmt(d['change'])}"
                + ("" if rel is None else f" ({rel * 100:+.1f} %)") + " vs previous period")
            unit = f" {escape(d['unit'])}" if d.get("unit") else ""
            out.print(f"\n[bold]{title}[/]: {_fmt(d['value'])}{unit}{escape(change)}"
                      + (" [yellow](incomplete)[/]" if d["incomplete"] else ""))
        elif w["type"] == "time_series":
            t = Table(d["interval"], *[escape(s["label"]) for s in d["series"]], title=title, title_justify="left")
            for i, b in enumerate(d["buckets"]):
                mark = " *" if b["incomplete"] else ""
                t.add_row(escape(b["label"]) + mark, *[_fmt(s["values"][i]) for s in d["series"]])
            t.add_row("[bold]total[/]", *[_fmt(s["total"]) for s in d["series"]])
            out.print()
            out.print(t)
        elif w["type"] == "table":
            t = Table(*[escape(b) for b in d["by"]], "events", "users", "share", title=title, title_justify="left")
            for row in d["rows"]:
                t.add_row(*[escape(x) for x in row["labels"]], _fmt(row["events"]), _fmt(row["users"]),
                          f"{row['share'] * 100:.1f} %")
            if d["other"]:
                o = d["other"]
                t.add_row("(other)", *[""] * (len(d["by"]) - 1), _fmt(o["events"]), _fmt(o["users"]),
                          f"{o['share'] * 100:.1f} %")
            t.add_row("[bold]total[/]", *[""] * (len(d["by"]) - 1), _fmt(d["total"]["events"]),
                      _fmt(d["total"]["users"]), "")
            out.print()
            out.print(t)
        else:  # widget types from other modules: their JSON
            import json

            out.print(f"\n[bold]{title}[/] ({escape(w['type'])})")
            out.print(escape(json.dumps(d, indent=1)[:4000]))
