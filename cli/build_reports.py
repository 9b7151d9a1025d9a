"""``erp build-reports``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from erp.cli._common import (
    ConfigOpt, JsonOpt, LakeOpt, command, escape, finish, human_bytes, load, out, parse_now,
)
from erp.core.errors import ConfigError

if TYPE_CHECKING:
    from erp.reports.render.build import BuildResult

HELP = """Build static HTML report bundles: one folder per tenant and report.

Each `<out>/<tenant>/<report>/` holds `index.html` (charts, data and scripts all
inline; no network requests; renders under a strict CSP), `data.json`, one CSV
per widget and `embed.html` with the iframe snippet to paste. `<out>/index.html`
lists the bundles and `<out>/manifest.json` holds their sha256 hashes. The same
lake, definitions, range and `--now` give byte-identical files, and files whose
bytes did not change are not rewritten. See docs/build-reports.md.

Example: `erp build-reports --tenant acme --out dist/ --theme auto`
"""


def run(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")] = Path("dist"),
    tenant: Annotated[Optional[list[str]], typer.Option(
        "--tenant", "-t", help="Tenant id (repeatable; default: every tenant).", show_default=False)] = None,
    report: Annotated[Optional[list[str]], typer.Option(
        "--report", "-r", help="Report id (repeatable; default: every report).", show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="First local date (YYYY-MM-DD).",
                                                 show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Last local date (YYYY-MM-DD).",
                                                 show_default=False)] = None,
    theme: Annotated[str, typer.Option("--theme", help="light, dark or auto (follows the viewer's setting).")]
    = "auto",
    transparent: Annotated[bool, typer.Option("--transparent", help="No page background (for embedding).")]
    = False,
    now: Annotated[Optional[str], typer.Option(
        "--now", help="Build as if it were this UTC instant (ISO-8601); fixes 'today' for reproducible builds.",
        show_default=False)] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    _run(out_dir, tenant=tenant, report=report, since=since, until=until, theme=theme, transparent=transparent,
         now=now, lake=lake, config=config, json_out=json_out)


@command
def _run(out_dir: Path, *, tenant: list[str] | None, report: list[str] | None, since: str | None,
         until: str | None, theme: str, transparent: bool, now: str | None, lake: str | None,
         config: Path | None, json_out: bool) -> None:
    # The renderer (Jinja2, polars, the report engines) loads only for this command.
    from erp.reports.definitions import parse_date
    from erp.reports.render.build import build_reports
    from erp.reports.render.bundle import Options
    from erp.reports.render.theme import THEMES

    if theme not in THEMES:
        raise ConfigError(f"--theme: {theme!r} is not one of {', '.join(THEMES)}")
    cfg = load(config, lake=lake)
    result = build_reports(cfg, out_dir, tenants=tenant or None, reports=report or None,
                           since=parse_date(since, "--since") if since else None,
                           until=parse_date(until, "--until") if until else None,
                           now=parse_now(now), options=Options(theme=theme, transparent=transparent))
    finish(result, render, json_out=json_out)


def render(result: BuildResult) -> None:
    table = Table(title=f"bundles in {escape(result.out)}", title_justify="left")
    for col in ("tenant", "report", "files", "size", "index.html", "rewritten"):
        table.add_column(col, justify="left" if col in ("tenant", "report") else "right")
    for b in result.bundles:
        table.add_row(escape(b.tenant_id), escape(b.report_id), str(b.files), human_bytes(b.bytes),
                      human_bytes(b.index_bytes), str(b.written))
    out.print(table)
    out.print(f"{len(result.bundles)} bundle(s): {len(result.written)} file(s) written, "
              f"{len(result.unchanged)} unchanged, {len(result.removed)} removed; "
              f"computing {result.compute_seconds:.2f} s, rendering {result.render_seconds:.2f} s")
    out.print(f"open {escape(result.out)}/index.html")
