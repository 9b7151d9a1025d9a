"""``erp collect``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from erp.cli._common import ConfigOpt, JsonOpt, command, escape, load, out, print_json

HELP = """Run the HTTP collector: receive events and spool them durably for `erp ingest`.

The tenant comes from the API key (`erp tenants key`). Endpoints: the native
API `POST /api/v1/events`, Segment-compatible `/v1/batch` `/v1/track` `/v1/page`
`/v1/identify` `/v1/screen`, PostHog-compatible `/batch/` `/capture/` `/e/`,
plus `/healthz`, `/metrics` (Prometheus) and `/docs` (OpenAPI). An event is
acknowledged only after it is synced to the spool; drain the spool into the
lake with `erp ingest --spool` (e.g. from cron). Stop with Ctrl-C or SIGTERM:
open segments are sealed on the way out.

Example: `erp collect --host 0.0.0.0 --port 8080 --config erp.yaml`
"""


def run(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port.", min=1, max=65535)] = 8080,
    config: ConfigOpt = None,
    segment_bytes: Annotated[int, typer.Option(
        "--segment-bytes", help="Seal a spool segment once it holds this many bytes.", min=1)] = 64 * 1024 * 1024,
    segment_age: Annotated[float, typer.Option(
        "--segment-age", help="Seal a spool segment once it is this many seconds old.", min=0.01)] = 60.0,
    sync: Annotated[str, typer.Option(
        "--sync", help="`group` (adaptive group commit) or `request` (one fdatasync per request; slower).")
    ] = "group",
    retry_after: Annotated[int, typer.Option(
        "--retry-after", help="Retry-After seconds sent with 503 when the spool cannot be written.", min=1)] = 5,
    fault_500_every: Annotated[int, typer.Option(
        "--fault-500-every", hidden=True, min=0,
        help="Tests only: answer every n-th event request with 500 after spooling it.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    _run(host=host, port=port, config=config, segment_bytes=segment_bytes, segment_age=segment_age,
         sync=sync, retry_after=retry_after, fault_500_every=fault_500_every, json_out=json_out)


@command
def _run(*, host: str, port: int, config: Path | None, segment_bytes: int, segment_age: float, sync: str,
         retry_after: int, fault_500_every: int, json_out: bool) -> None:
    from erp.core.collect import CollectSettings, StartInfo, serve  # FastAPI loads only for this command
    from erp.core.errors import ConfigError
    from erp.core.spool import SpoolSettings

    if sync not in ("group", "request"):
        raise ConfigError(f"unknown --sync value {sync!r}", key="--sync", hint="valid: group, request")
    cfg = load(config)
    settings = CollectSettings(
        spool=SpoolSettings(segment_bytes=segment_bytes, segment_age_seconds=segment_age, sync=sync),
        retry_after_seconds=retry_after, fault_500_every=fault_500_every)

    def started(info: StartInfo) -> None:
        url = f"http://{host}:{port}"
        if json_out:
            print_json({"ok": True, "event": "listening", "url": url, "spool": info.spool,
                        "recovered_segments": info.recovered, "tenants_with_keys":
                            sum(1 for t in cfg.tenants.values() if t.api_keys)})
        else:
            out.print(f"collecting on [bold]{url}[/] (API description: {url}/docs); "
                      f"spool: {escape(info.spool)}")
            if info.recovered:
                out.print(f"sealed {info.recovered} segment(s) left open by an earlier run")
            if not any(t.api_keys for t in cfg.tenants.values()):
                out.print("[yellow]warning:[/] no tenant has an API key, so every request is refused (401); "
                          "add one with `erp tenants key --tenant <id>`")
        import sys

        sys.stdout.flush()

    serve(cfg, host=host, port=port, settings=settings, on_start=started)
    if json_out:
        print_json({"ok": True, "event": "stopped"})
    else:
        out.print("stopped; open spool segments were sealed")
