"""What every command shares: option types, config loading, output, exit codes.

Exit codes: 0 success; 1 a user, data or config problem (the message says
what, where and how to fix it); 2 an internal error (``--debug`` shows the
traceback). 130 when interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from erp.core.config import Config, load_config
from erp.core.errors import ConfigError, ErpError

EXIT_OK, EXIT_USER, EXIT_INTERNAL = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="Project file (default: ./erp.yaml, or $ERP_CONFIG).", show_default=False)]
LakeOpt = Annotated[Optional[str], typer.Option(
    "--lake", help="Lake folder or URL (s3://bucket/prefix); overrides erp.yaml and $ERP_LAKE.",
    show_default=False)]
TenantOpt = Annotated[Optional[str], typer.Option(
    "--tenant", "-t", help="Tenant id.", show_default=False)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")]

def debug_on() -> bool:
    """Whether the root command got ``--debug``."""
    import click

    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def load(config: Path | None, **flags: Any) -> Config:
    return load_config(config, flags=flags)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def finish(result: Any, render: Callable[[Any], None], *, json_out: bool, failed: bool = False) -> None:
    """A command's last step: the result as JSON (``{"ok", **result.to_dict()}``) or
    rendered for people; exit 1 when ``failed`` (the result is shown either way)."""
    if json_out:
        print_json({"ok": not failed, **result.to_dict()})
    else:
        render(result)
    if failed:
        raise typer.Exit(EXIT_USER)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: ErpError -> exit 1 with message and hint; anything else
    -> exit 2. With ``--json`` the error is printed as JSON on stdout too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("json_out"))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/] — nothing half-written is visible; run the same command again to finish")
            raise typer.Exit(130) from None
        except ErpError as exc:
            if as_json:
                print_json({"ok": False, **exc.to_dict()})
            err.print(f"[bold red]error:[/] {escape(exc.message)}")
            if exc.hint:
                err.print(f"[dim]hint:[/] {escape(exc.hint)}")
            if debug_on():
                err.print(escape(traceback.format_exc()))
            raise typer.Exit(EXIT_USER) from None
        except Exception as exc:  # the CLI edge: anything unexpected is an internal error
            if as_json:
                print_json({"ok": False, "error": "InternalError", "message": f"{type(exc).__name__}: {exc}"})
            err.print(f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}")
            if debug_on():
                err.print(escape(traceback.format_exc()))
            else:
                err.print("[dim]run again with --debug for the traceback, and please report it[/]")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def escape(text: str) -> str:
    from rich.markup import escape as _e

    return _e(text)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def parse_now(raw: str | None) -> datetime:
    """``--now``: an ISO-8601 instant (UTC when it has no offset); the current time when absent."""
    if raw is None:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now: {raw!r} is not an ISO-8601 instant, e.g. 2026-09-30T12:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
