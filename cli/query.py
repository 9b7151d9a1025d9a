"""``erp query``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from erp.cli._common import ConfigOpt, JsonOpt, LakeOpt, TenantOpt, command, escape, load, out, print_json
from erp.core.errors import TenantError
from erp.core.tenants import validate_tenant_id

HELP = """Run DuckDB SQL over one tenant's events (a view named `events`).

The view holds the lake's event columns plus `tenant_id` and `date`, for the
given tenant only. Files, `COPY`, `ATTACH`, extensions and settings are not
available, so no other tenant's data can be read.

Example: `erp query --tenant acme "SELECT event_type, count(*) FROM events GROUP BY 1"`
"""


def run(sql: Annotated[str, typer.Argument(help="The SQL (one statement).", show_default=False)],
        tenant: TenantOpt = None, lake: LakeOpt = None, config: ConfigOpt = None,
        limit: Annotated[int, typer.Option("--limit", help="Print at most this many rows.", min=1)] = 1000,
        json_out: JsonOpt = False) -> None:
    _run(sql, tenant=tenant, lake=lake, config=config, limit=limit, json_out=json_out)


@command
def _run(sql: str, *, tenant: str | None, lake: str | None, config: Path | None, limit: int,
         json_out: bool) -> None:
    if not tenant:
        raise TenantError("--tenant is required", hint="erp query --tenant acme \"SELECT count(*) FROM events\"")
    validate_tenant_id(tenant)
    cfg = load(config, lake=lake)
    if cfg.restrict_tenants and tenant not in cfg.tenants:
        raise TenantError(f"unknown tenant {tenant!r}", tenant=tenant,
                          hint=f"tenants.yaml lists: {', '.join(sorted(cfg.tenants))}")
    from erp.core.lake import Lake  # pyarrow and DuckDB are imported only by this command
    from erp.reports.query import run_query

    r = run_query(Lake(cfg.lake, cfg.settings.storage_options), tenant, sql, limit=limit)
    if json_out:
        print_json({"ok": True, **r.to_dict()})
        return
    t = Table(*[escape(c) for c in r.columns])
    for row in r.rows:
        t.add_row(*[escape("NULL" if v is None else str(v)) for v in row])
    out.print(t)
    out.print(f"{len(r.rows):,} row(s){' (truncated: use --limit)' if r.truncated else ''}")
