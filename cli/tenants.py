"""``erp tenants``."""

from __future__ import annotations

from pathlib import Path

import typer

from erp.cli._common import ConfigOpt, command, escape, load, out, print_json
from erp.core.tenants import generate_api_key, hash_api_key, validate_tenant_id

app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)


@app.command("key", help="Create an API key for a tenant. Prints the key once (give it to the "
                         "tenant) and the hash line to paste into tenants.yaml; erp stores only hashes.\n\n"
                         "Example: `erp tenants key --tenant acme --id web`")
def key(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
        key_id: str = typer.Option("default", "--id", help="A name for the key (to revoke it later)."),
        json_out: bool = typer.Option(False, "--json", help="Print a machine-readable JSON result.")) -> None:
    _key(tenant=tenant, key_id=key_id, json_out=json_out)


@command
def _key(*, tenant: str, key_id: str, json_out: bool) -> None:
    validate_tenant_id(tenant)
    k = generate_api_key()
    h = hash_api_key(k)
    if json_out:
        print_json({"ok": True, "tenant_id": tenant, "id": key_id, "key": k, "hash": h})
        return
    out.print(f"key for {tenant} (shown once): [bold]{k}[/]")
    out.print("add to tenants.yaml under the tenant's api_keys:")
    out.print(f"  - id: {escape(key_id)}\n    hash: {h}")


@app.command("list", help="List the tenants from tenants.yaml.\n\nExample: `erp tenants list --json`")
def list_(config: ConfigOpt = None,
          json_out: bool = typer.Option(False, "--json", help="Print a machine-readable JSON result.")) -> None:
    _list(config=config, json_out=json_out)


@command
def _list(*, config: Path | None, json_out: bool) -> None:
    cfg = load(config)
    rows = [{"tenant_id": t.tenant_id, "name": t.name, "plan_tier": t.plan_tier, "timezone": t.timezone}
            for t in cfg.tenants.values()]
    if json_out:
        print_json({"ok": True, "tenants": rows})
        return
    if not rows:
        out.print("no tenants listed; any valid tenant id is accepted")
    for r in rows:
        out.print(f"{r['tenant_id']}\t{escape(r['name'])}\t{r['plan_tier']}\t{r['timezone']}")
