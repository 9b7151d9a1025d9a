"""The report engine: a definition, a tenant and a range in; the report JSON out.

The tenant's timezone comes from the config (``tenants.yaml`` or the defaults);
each widget gets a :class:`~erp.reports.source.LakeSource` scoped to that tenant
(which answers event counts from fresh rollups and everything else from the
raw lake, with the same numbers either way).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from erp.core.config import Config
from erp.core.errors import ConfigError, TenantError
from erp.core.lake import Lake
from erp.core.tenants import validate_tenant_id
from erp.reports.api import EventSource, Window, widget_types
from erp.reports.definitions import Report, today_in
from erp.reports.source import LakeSource


def resolve_window(cfg: Config, report: Report, tenant: str, since: date | None, until: date | None,
                   now: datetime) -> Window:
    tz = cfg.tenant(tenant).timezone
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    d_since, d_until = report.range.resolve(today_in(tz, now))
    if since is not None:
        d_since = since
    if until is not None:
        d_until = until
    if d_until < d_since:
        raise ConfigError(f"the range ends ({d_until}) before it starts ({d_since})",
                          hint="pass --since and --until as YYYY-MM-DD with since <= until")
    return Window(tenant, tz, d_since, d_until, now.astimezone(timezone.utc))


def check_tenant(cfg: Config, report: Report, tenant: str) -> str:
    validate_tenant_id(tenant)
    if cfg.restrict_tenants and tenant not in cfg.tenants:
        raise TenantError(f"unknown tenant {tenant!r}", tenant=tenant,
                          hint=f"tenants.yaml lists: {', '.join(sorted(cfg.tenants))}")
    if not report.applies_to(tenant):
        raise TenantError(f"report {report.id!r} is not enabled for tenant {tenant!r} "
                          f"(its tenants: {', '.join(report.tenants or ())})", tenant=tenant,
                          hint=f"add {tenant} to tenants: in {report.path}")
    return tenant


def compute_report(cfg: Config, lake: Lake | str | None, report: Report, tenant: str,
                   since: date | None = None, until: date | None = None,
                   now: datetime | None = None, *, source: EventSource | None = None,
                   use_rollups: bool = True) -> dict[str, Any]:
    """The report JSON (``docs/reports.md``) for one tenant."""
    check_tenant(cfg, report, tenant)
    now = now or datetime.now(timezone.utc)
    window = resolve_window(cfg, report, tenant, since, until, now)
    if source is None:
        if not isinstance(lake, Lake):
            lake = Lake(lake or cfg.lake, cfg.settings.storage_options)
        source = LakeSource(lake, tenant, use_rollups=use_rollups)
    types = widget_types()
    widgets = []
    for w in report.widgets:
        data = types[w.type].compute(w.spec, source, window)
        widgets.append({"widget_id": w.id, "type": w.type, "title": w.title, "data": data})
    return {"report_id": report.id, "report_name": report.title, "tenant_id": tenant,
            "range": window.to_json(), "widgets": widgets}
