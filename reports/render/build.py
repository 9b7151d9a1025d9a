"""``erp build-reports``: compute every selected report for every selected tenant
and write its bundle (``dist/<tenant>/<report>/``), then the manifest and index.

Each bundle is computed for one tenant through the engine (which reads only that
tenant's partitions) and rendered from that JSON alone, so a bundle never holds
another tenant's data. The output depends only on the lake, the definitions, the
range and ``now``: no build time, absolute path or random id is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

from erp.core.config import Config
from erp.core.errors import ConfigError, TenantError
from erp.core.lake import Lake
from erp.core.tenants import is_valid_tenant_id, validate_tenant_id
from erp.reports.definitions import Report, get_report, load_reports, reports_folder
from erp.reports.engine import check_tenant, compute_report
from erp.reports.render.bundle import ID_RE, Options, render_bundle
from erp.reports.render.output import (
    BundleEntry, WriteStats, entry_from_manifest, read_manifest, write_bundle, write_index,
)


@dataclass
class BuiltBundle:
    tenant_id: str
    report_id: str
    path: str
    files: int
    bytes: int
    index_bytes: int
    written: int
    compute_seconds: float
    render_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "report_id": self.report_id, "path": self.path, "files": self.files,
                "bytes": self.bytes, "index_bytes": self.index_bytes, "files_written": self.written,
                "compute_seconds": round(self.compute_seconds, 4), "render_seconds": round(self.render_seconds, 4)}


@dataclass
class BuildResult:
    out: str
    bundles: list[BuiltBundle] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    compute_seconds: float = 0.0
    render_seconds: float = 0.0
    write_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "bundles": [b.to_dict() for b in self.bundles],
                "files_written": len(self.written), "files_unchanged": len(self.unchanged),
                "files_removed": len(self.removed), "written": self.written, "removed": self.removed,
                "compute_seconds": round(self.compute_seconds, 3), "render_seconds": round(self.render_seconds, 3),
                "write_seconds": round(self.write_seconds, 3)}


def plan(cfg: Config, lake: Lake, defs: dict[str, Report], tenants: list[str] | None,
         reports: list[str] | None) -> list[tuple[str, Report]]:
    """The (tenant, report) pairs to build, sorted. Named tenants and reports must exist
    and apply; otherwise every tenant gets every report enabled for it."""
    chosen = [get_report(defs, r) for r in reports] if reports else [defs[k] for k in sorted(defs)]
    if not chosen:
        raise ConfigError(f"no report definitions in {reports_folder(cfg)}",
                          hint="add report YAML files to reports_dir (see docs/reports.md)")
    if tenants:
        names = sorted({validate_tenant_id(t) for t in tenants})
    else:
        names = sorted(cfg.tenants) if cfg.restrict_tenants else lake.tenants()
        if not names:
            raise TenantError(f"no tenants to build: tenants.yaml lists none and the lake {lake.url} has no events",
                              hint="ingest events first (erp ingest) or pass --tenant")
    pairs = []
    for t in names:
        for r in chosen:
            if r.applies_to(t):
                pairs.append((t, r))
            elif tenants and reports:
                check_tenant(cfg, r, t)  # raises: the user asked for exactly this pair
        if tenants and cfg.restrict_tenants and t not in cfg.tenants:
            raise TenantError(f"unknown tenant {t!r}", tenant=t,
                              hint=f"tenants.yaml lists: {', '.join(sorted(cfg.tenants))}")
    if not pairs:
        raise ConfigError("nothing to build: no selected report is enabled for the selected tenants",
                          hint="check `tenants:` in the report definitions (erp reports list)")
    return pairs


def sparklines(report: Report, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sparklines for metric tiles, taken from a series of the same report that has the
    same measure and filters (no extra computing): a metric without such a series has
    none. Returns ``{metric widget id: {"values", "incomplete", "interval"}}``."""
    found: dict[Any, dict[str, Any]] = {}
    for wdef, wjson in zip(report.widgets, data.get("widgets") or []):
        spec = wdef.spec
        if wdef.type != "time_series" or getattr(spec, "breakdown", True) is not None:
            continue
        d = wjson.get("data") or {}
        incomplete = [bool(b.get("incomplete")) for b in d.get("buckets") or []]
        for sdef, sjson in zip(getattr(spec, "series", ()), d.get("series") or []):
            key = (sdef.measure, tuple(spec.filters) + tuple(sdef.filters))
            found.setdefault(key, {"values": sjson.get("values") or [], "incomplete": incomplete,
                                   "interval": d.get("interval")})
    out = {}
    for wdef in report.widgets:
        if wdef.type == "metric":
            key = (getattr(wdef.spec, "measure", None), tuple(getattr(wdef.spec, "filters", ())))
            if key in found:
                out[wdef.id] = found[key]
    return out


class Builder:
    """Builds bundles one at a time into ``out`` (``bundle``), then writes the manifest
    and index (``finish``). ``build_reports`` drives it; the benchmark times it per bundle."""

    def __init__(self, cfg: Config, out: Path, *, since: date | None, until: date | None, now: datetime,
                 options: Options, lake: Lake, compute: Callable[..., dict[str, Any]] = compute_report) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.cfg, self.out, self.since, self.until, self.now = cfg, out, since, until, now
        self.options, self.lake, self.compute = options, lake, compute
        self.previous = read_manifest(out)
        self.stats = WriteStats()
        self.entries: dict[str, BundleEntry] = {}
        self.result = BuildResult(out=str(out))

    def bundle(self, tenant: str, report: Report) -> BuiltBundle:
        """Compute, render and write one tenant's bundle of one report."""
        t0 = time.perf_counter()
        data = self.compute(self.cfg, self.lake, report, tenant, self.since, self.until, self.now)
        t1 = time.perf_counter()
        if data.get("tenant_id") != tenant:  # a bundle holds exactly one tenant's data
            raise RuntimeError(f"engine returned tenant {data.get('tenant_id')!r} for {tenant!r}")
        tenant_name = self.cfg.tenant(tenant).name or tenant
        files = render_bundle(data, tenant_name=tenant_name, options=self.options,
                              sparklines=sparklines(report, data))
        t2 = time.perf_counter()
        n_before = len(self.stats.written)
        hashes = write_bundle(self.out, tenant, report.id, files, self.previous.get(f"{tenant}/{report.id}"),
                              self.stats)
        t3 = time.perf_counter()
        size = sum(len(b) for b in files.values())
        self.entries[f"{tenant}/{report.id}"] = BundleEntry(
            tenant, report.id, str(data.get("report_name") or report.id), tenant_name,
            data["range"]["since"], data["range"]["until"], hashes, size)
        built = BuiltBundle(tenant, report.id, f"{tenant}/{report.id}/", len(files), size, len(files["index.html"]),
                            len(self.stats.written) - n_before, t1 - t0, t2 - t1)
        self.result.bundles.append(built)
        self.result.compute_seconds += t1 - t0
        self.result.render_seconds += t2 - t1
        self.result.write_seconds += t3 - t2
        return built

    def finish(self) -> BuildResult:
        """Keep earlier bundles this run did not touch (while their folder exists), then
        write ``manifest.json`` and ``index.html``."""
        out = self.out
        for key, raw in self.previous.items():
            if key not in self.entries and (entry := entry_from_manifest(raw)) is not None:
                if is_valid_tenant_id(entry.tenant_id) and ID_RE.match(entry.report_id) \
                        and (out / entry.tenant_id / entry.report_id / "index.html").is_file():
                    self.entries[key] = entry
        t = time.perf_counter()
        write_index(out, list(self.entries.values()), self.stats)
        r = self.result
        r.write_seconds += time.perf_counter() - t
        r.written, r.unchanged, r.removed = self.stats.written, self.stats.unchanged, self.stats.removed
        return r


def build_reports(cfg: Config, out: Path, *, tenants: list[str] | None = None, reports: list[str] | None = None,
                  since: date | None = None, until: date | None = None, now: datetime,
                  options: Options = Options(), lake: Lake | None = None,
                  compute: Callable[..., dict[str, Any]] = compute_report) -> BuildResult:
    """Build bundles into ``out``. ``now`` (aware) fixes "today": pass the same value for
    byte-identical output."""
    lake = lake or Lake(cfg.lake, cfg.settings.storage_options)
    builder = Builder(cfg, out, since=since, until=until, now=now, options=options, lake=lake, compute=compute)
    for tenant, report in plan(cfg, lake, load_reports(reports_folder(cfg)), tenants, reports):
        builder.bundle(tenant, report)
    return builder.finish()
