"""Report definitions: YAML files, validated at load into frozen models.

One report per file::

    id: traffic
    title: Traffic overview
    tenants: all                  # or [acme, globex]
    range: last_30_days           # last_<N>_days, month_to_date, {since: D, until: D}
    widgets: [{id, type, title, ...type-specific keys}]

Every error names the file, the widget index and the key, and lists the valid
values (see docs/reports.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from erp.core.errors import ConfigError
from erp.core.tenants import TENANT_ID_PATTERN, is_valid_tenant_id
from erp.reports.api import widget_types

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
REPORT_KEYS = ("id", "title", "description", "tenants", "range", "widgets")
WIDGET_KEYS = ("id", "type", "title")
_LAST_N = re.compile(r"^last_(\d{1,3})_days$")
NAMED_RANGES = "last_<N>_days (N from 1 to 366, e.g. last_7_days, last_30_days), month_to_date, " \
               "or {since: YYYY-MM-DD, until: YYYY-MM-DD}"


@dataclass(frozen=True)
class Range:
    kind: str  # "last_days" | "month_to_date" | "fixed"
    days: int = 0
    since: date | None = None
    until: date | None = None

    def resolve(self, today: date) -> tuple[date, date]:
        if self.kind == "last_days":
            return today - timedelta(days=self.days - 1), today
        if self.kind == "month_to_date":
            return today.replace(day=1), today
        assert self.since is not None and self.until is not None
        return self.since, self.until

    def to_json(self) -> Any:
        if self.kind == "last_days":
            return f"last_{self.days}_days"
        if self.kind == "month_to_date":
            return "month_to_date"
        return {"since": str(self.since), "until": str(self.until)}


@dataclass(frozen=True)
class WidgetDef:
    id: str
    type: str
    title: str
    spec: Any  # what the widget type's validate() returned


@dataclass(frozen=True)
class Report:
    id: str
    title: str
    description: str | None
    tenants: tuple[str, ...] | None  # None = every tenant
    range: Range
    widgets: tuple[WidgetDef, ...]
    path: str

    def applies_to(self, tenant_id: str) -> bool:
        return self.tenants is None or tenant_id in self.tenants

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "tenants": "all" if self.tenants is None else list(self.tenants),
                "range": self.range.to_json(), "path": self.path,
                "widgets": [{"id": w.id, "type": w.type, "title": w.title} for w in self.widgets]}


def parse_range(raw: Any, where: str) -> Range:
    if raw is None:
        return Range("last_days", days=30)
    if isinstance(raw, str):
        if raw == "month_to_date":
            return Range("month_to_date")
        m = _LAST_N.match(raw)
        if m and 1 <= int(m.group(1)) <= 366:
            return Range("last_days", days=int(m.group(1)))
        raise ConfigError(f"{where}: {raw!r} is not a range; use {NAMED_RANGES}")
    if isinstance(raw, dict):
        unknown = set(raw) - {"since", "until"}
        if unknown or not {"since", "until"} <= set(raw):
            raise ConfigError(f"{where}: an explicit range needs exactly the keys since and until, got "
                              f"{sorted(map(str, raw))}")
        since = parse_date(raw["since"], f"{where}.since")
        until = parse_date(raw["until"], f"{where}.until")
        if until < since:
            raise ConfigError(f"{where}: until {until} is before since {since}")
        return Range("fixed", since=since, until=until)
    raise ConfigError(f"{where}: {raw!r} is not a range; use {NAMED_RANGES}")


def parse_date(raw: Any, where: str) -> date:
    if isinstance(raw, datetime):
        raw = raw.date()
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is not a date; write YYYY-MM-DD, e.g. 2026-09-01") from None


def parse_report(data: Any, path: str) -> Report:
    """Validate one definition (the parsed YAML of ``path``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(REPORT_KEYS)}")
    for key in data:
        if key not in REPORT_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(REPORT_KEYS)}")
    rid = data.get("id")
    if not isinstance(rid, str) or not ID_RE.match(rid):
        raise ConfigError(f"{path}: id: expected lowercase letters, digits, _ or - ({ID_RE.pattern}), "
                          f"got {rid!r}")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"{path}: title: expected non-empty text, got {title!r}")
    desc = data.get("description")
    if desc is not None and not isinstance(desc, str):
        raise ConfigError(f"{path}: description: expected text, got {desc!r}")
    tenants = data.get("tenants", "all")
    if tenants == "all":
        tenant_list = None
    elif isinstance(tenants, list) and tenants and all(is_valid_tenant_id(t) for t in tenants):
        tenant_list = tuple(tenants)
    else:
        raise ConfigError(f"{path}: tenants: expected all or a non-empty list of tenant ids "
                          f"({TENANT_ID_PATTERN}), got {tenants!r}")
    rng = parse_range(data.get("range"), f"{path}: range")
    raw_widgets = data.get("widgets")
    if not isinstance(raw_widgets, list) or not raw_widgets:
        raise ConfigError(f"{path}: widgets: expected a non-empty list of widgets")
    types = widget_types()
    widgets: list[WidgetDef] = []
    seen: set[str] = set()
    for i, w in enumerate(raw_widgets):
        where = f"{path}: widgets[{i}]"
        if not isinstance(w, dict):
            raise ConfigError(f"{where}: expected a mapping with id, type, title")
        wid = w.get("id")
        if not isinstance(wid, str) or not ID_RE.match(wid):
            raise ConfigError(f"{where}.id: expected lowercase letters, digits, _ or - "
                              f"({ID_RE.pattern}), got {wid!r}")
        if wid in seen:
            raise ConfigError(f"{where}.id: {wid!r} is used by another widget of this report")
        seen.add(wid)
        wtype = w.get("type")
        if wtype not in types:
            raise ConfigError(f"{where}.type: {wtype!r} is not one of {', '.join(sorted(types))}")
        wtitle = w.get("title", wid)
        if not isinstance(wtitle, str):
            raise ConfigError(f"{where}.title: expected text, got {wtitle!r}")
        spec = {k: v for k, v in w.items() if k not in WIDGET_KEYS}
        try:
            parsed = types[wtype].validate(spec, where)
        except ConfigError:
            raise
        widgets.append(WidgetDef(wid, wtype, wtitle, parsed))
    return Report(rid, title, desc, tenant_list, rng, tuple(widgets), path)


def load_report_file(path: Path) -> Report:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read report definition {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    return parse_report(data, str(path))


def definition_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_reports(folder: str | Path) -> dict[str, Report]:
    """Every definition in ``folder``, by id. Raises on the first invalid file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"report definitions folder {folder} does not exist",
                          hint="set reports_dir in erp.yaml, or create the folder with one YAML file per report")
    out: dict[str, Report] = {}
    for p in definition_files(folder):
        r = load_report_file(p)
        if r.id in out:
            raise ConfigError(f"{p}: id {r.id!r} is already used by {out[r.id].path}")
        out[r.id] = r
    return out


def validate_all(folder: str | Path) -> tuple[list[Report], list[ConfigError]]:
    """Check every file, collecting every error (for ``erp reports validate``)."""
    reports: list[Report] = []
    errors: list[ConfigError] = []
    ids: dict[str, str] = {}
    folder = Path(folder)
    if not folder.is_dir():
        return [], [ConfigError(f"report definitions folder {folder} does not exist",
                                hint="set reports_dir in erp.yaml")]
    for p in definition_files(folder):
        try:
            r = load_report_file(p)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if r.id in ids:
            errors.append(ConfigError(f"{p}: id {r.id!r} is already used by {ids[r.id]}"))
            continue
        ids[r.id] = str(p)
        reports.append(r)
    return reports, errors


def reports_folder(cfg: Any) -> Path:
    """The definitions folder: ``reports_dir``; when that is the shipped default and
    does not exist, the shipped examples (``erp/config/reports``)."""
    folder = Path(cfg.settings.reports_dir)
    if not folder.is_dir() and cfg.sources.get("reports_dir", "").startswith("shipped"):
        from erp.core.config import shipped

        return shipped("config", "reports")
    return folder


def get_report(reports: dict[str, Report], report_id: str) -> Report:
    if report_id not in reports:
        known = ", ".join(sorted(reports)) or "(none)"
        raise ConfigError(f"no report with id {report_id!r}; defined: {known}",
                          hint="erp reports list shows every definition and its file")
    return reports[report_id]


def today_in(tz: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(tz)).date()
