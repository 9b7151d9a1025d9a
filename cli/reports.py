"""``erp reports validate`` and ``erp reports list``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from erp.cli._common import EXIT_USER, ConfigOpt, JsonOpt, command, err, escape, load, out, print_json

app = typer.Typer(help="Report definitions (YAML under reports_dir).", no_args_is_help=True)


@app.command("validate", help="Check every report definition without touching data: keys, types, "
                              "widget settings and filters. Exit 1 if any is invalid.\n\n"
                              "Example: `erp reports validate --json`")
def validate(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    _validate(config=config, json_out=json_out)


@command
def _validate(*, config: Path | None, json_out: bool) -> None:
    from erp.reports.definitions import reports_folder, validate_all  # polars loads only when run

    cfg = load(config)
    reports, errors = validate_all(folder := reports_folder(cfg))
    if json_out:
        print_json({"ok": not errors, "reports_dir": str(folder),
                    "valid": [r.id for r in reports], "errors": [e.to_dict() for e in errors]})
    else:
        for r in reports:
            out.print(f"[green]ok[/]   {escape(r.id)} ({escape(r.path)}, {len(r.widgets)} widgets)")
        for e in errors:
            err.print(f"[bold red]error:[/] {escape(e.message)}")
        out.print(f"{len(reports)} valid, {len(errors)} invalid in {escape(str(folder))}")
    if errors:
        raise typer.Exit(EXIT_USER)


@app.command("list", help="List the report definitions: id, title, tenants, range, widgets.\n\n"
                          "Example: `erp reports list`")
def list_(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    _list(config=config, json_out=json_out)


@command
def _list(*, config: Path | None, json_out: bool) -> None:
    from erp.reports.definitions import load_reports, reports_folder

    cfg = load(config)
    reports = load_reports(reports_folder(cfg))
    if json_out:
        print_json({"ok": True, "reports": [r.summary() for _, r in sorted(reports.items())]})
        return
    t = Table("id", "title", "tenants", "range", "widgets")
    for _, r in sorted(reports.items()):
        s = r.summary()
        t.add_row(escape(r.id), escape(r.title), escape(s["tenants"] if isinstance(s["tenants"], str)
                                                        else ", ".join(s["tenants"])),
                  escape(str(s["range"])), ", ".join(f"{w.id} ({w.type})" for w in r.widgets))
    out.print(t)
