"""``erp config``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from erp.cli._common import ConfigOpt, LakeOpt, command, escape, load, out, print_json
from erp.core.config import config_rows

app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("show", help="Print every setting, its value and where it came from "
                          "(flag, ERP_* env, erp.yaml:line, shipped default).\n\n"
                          "Example: `erp config show --json`")
def show(config: ConfigOpt = None, lake: LakeOpt = None, json_out: bool = typer.Option(
        False, "--json", help="Print a machine-readable JSON result on stdout.")) -> None:
    _show(config=config, lake=lake, json_out=json_out)


@command
def _show(*, config: Path | None, lake: str | None, json_out: bool) -> None:
    cfg = load(config, lake=lake)
    rows = config_rows(cfg)
    tenants = [{"tenant_id": t.tenant_id, "name": t.name, "plan_tier": t.plan_tier,
                "timezone": t.timezone, "retention_days": t.retention_days,
                "storage_quota": t.storage_quota, "anonymize_ip": t.anonymize_ip,
                "api_keys": len(t.api_keys)} for t in cfg.tenants.values()]
    schemas = sorted(f"{t or '*'}/{e}" for t, e in cfg.schemas)
    if json_out:
        print_json({"ok": True, "project_file": str(cfg.project_file) if cfg.project_file else None,
                    "settings": {k: {"value": v, "source": s} for k, v, s in rows},
                    "tenants": tenants, "schemas": schemas})
        return
    out.print(f"project file: {escape(str(cfg.project_file)) if cfg.project_file else '(none: shipped defaults)'}")
    table = Table("key", "value", "source")
    for k, v, s in rows:
        table.add_row(k, escape(v), escape(s))
    out.print(table)
    if tenants:
        tt = Table("tenant", "name", "plan", "timezone", "retention", "keys", title="tenants", title_justify="left")
        for t in tenants:
            tt.add_row(t["tenant_id"], escape(t["name"]), t["plan_tier"], t["timezone"],
                       "forever" if t["retention_days"] is None else f"{t['retention_days']} d", str(t["api_keys"]))
        out.print(tt)
    else:
        out.print("tenants: none listed (any valid tenant id is accepted with the defaults)")
    out.print("event schemas: " + (", ".join(schemas) if schemas else "none"))
