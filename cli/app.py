"""The ``erp`` command: the Typer app and its error handling (``erp.cli.main``
is the import-light entry point)."""

from __future__ import annotations

import sys

import typer

try:  # recent typer releases vendor click; older ones use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from erp.cli import collect, compact, config, demo, generate, ingest, tenants
from erp.cli import build_reports, query, report, reports, rollup
from erp.cli._common import EXIT_USER, DebugOpt
from erp.core import __version__

app = typer.Typer(
    name="erp",
    help="Event lake, rollups and embeddable analytics reports from the command line.\n\n"
         "Start with `erp demo`. Exit codes: 0 ok, 1 a user/data/config problem, 2 an internal error.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"erp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: DebugOpt = False,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Event lake, rollups and embeddable analytics reports from the command line."""


app.command("ingest", help=ingest.HELP)(ingest.run)
app.command("demo", help=demo.HELP)(demo.run)
app.command("generate", help=generate.HELP, no_args_is_help=True)(generate.run)
app.command("compact", help=compact.HELP)(compact.run)
app.command("build-reports", help=build_reports.HELP)(build_reports.run)
app.command("collect", help=collect.HELP)(collect.run)
app.add_typer(config.app, name="config")
app.command("rollup", help=rollup.HELP)(rollup.run)
app.command("report", help=report.HELP, no_args_is_help=True)(report.run)
app.add_typer(reports.app, name="reports")
app.command("query", help=query.HELP, no_args_is_help=True)(query.run)
app.add_typer(tenants.app, name="tenants")


def run() -> None:
    """Run the command line. Usage errors exit 1 (a user problem), like other errors."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except click_exceptions.ClickException as exc:
        exc.show()
        no_args = type(exc).__name__ == "NoArgsIsHelpError"  # `erp` alone: help, not an error
        sys.exit(0 if no_args else EXIT_USER)
    sys.exit(code or 0)

