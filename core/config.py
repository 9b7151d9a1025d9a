"""Configuration: ``erp.yaml``, ``tenants.yaml`` and event schemas.

Precedence, highest first: command-line flag > ``ERP_*`` environment variable >
project file (``erp.yaml``) > shipped defaults (``erp/config/erp.yaml``).
Everything is validated once, here, into frozen dataclasses; unknown keys and
bad values raise ``ConfigError`` naming the file, the key and the valid choices.
This is the only module that reads environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from erp.core.errors import ConfigError
from erp.core.tenants import PLAN_TIERS, TENANT_ID_PATTERN, ApiKey, Tenant, is_valid_tenant_id

PROJECT_FILE = "erp.yaml"
ENV_PREFIX = "ERP_"


class ByteSize(int):
    """An int that config files may write as ``16MiB``, ``2GB`` or ``1048576``."""


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4, "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16MiB or a number of bytes")
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2) is not None and m.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 512MiB, 2GB or 1048576")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


@dataclass(frozen=True)
class IngestSettings:
    chunk_bytes: ByteSize = ByteSize(16 * 1024**2)
    """Bytes of input a worker parses at a time."""
    commit_events: int = 200_000
    """Events buffered before they are deduplicated, written and committed."""
    max_line_bytes: ByteSize = ByteSize(1024**2)
    """Longer lines are rejected with reason ``line_too_large``."""
    workers: int = 0
    """Parser processes; 0 = one per core, 1 = parse in-process."""
    skew_threshold_seconds: float = 60.0
    """Clock-skew correction applies when |sent_at - received_at| exceeds this."""
    future_tolerance_seconds: float = 86400.0
    """Timestamps ahead of received_at by up to this are clamped; further ahead rejected."""
    target_file_bytes: ByteSize = ByteSize(128 * 1024**2)
    """``erp compact`` merges a partition's files into files of about this size."""


@dataclass(frozen=True)
class Defaults:
    timezone: str = "UTC"
    retention_days: int | None = None
    anonymize_ip: bool = True
    plan_tier: str = "free"
    storage_quota: ByteSize | None = None


@dataclass(frozen=True)
class Settings:
    lake: str = "lake"
    spool: str = "spool"
    tenants_file: str = "tenants.yaml"
    schemas_dir: str = "schemas"
    reports_dir: str = "reports"
    storage_options: dict = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    ingest: IngestSettings = field(default_factory=IngestSettings)


@dataclass(frozen=True)
class Config:
    """The resolved configuration: settings, tenants, schemas and provenance."""

    settings: Settings
    tenants: Mapping[str, Tenant]
    schemas: Mapping[tuple[str | None, str], dict]
    """JSON Schemas for ``properties``: (tenant_id or None for all, event_type) -> schema."""
    sources: Mapping[str, str]
    """Dotted key -> where its value came from (flag, env, file:line, default)."""
    project_file: Path | None

    @property
    def lake(self) -> str:
        return self.settings.lake

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant's settings; unlisted tenants get the configured defaults."""
        t = self.tenants.get(tenant_id)
        if t is not None:
            return t
        d = self.settings.defaults
        return Tenant(tenant_id=tenant_id, name=tenant_id, plan_tier=d.plan_tier,
                      storage_quota=d.storage_quota, retention_days=d.retention_days,
                      timezone=d.timezone, anonymize_ip=d.anonymize_ip)

    @property
    def restrict_tenants(self) -> bool:
        """True when tenants.yaml lists tenants: then unknown tenants are rejected."""
        return bool(self.tenants)

    def schema_for(self, tenant_id: str, event_type: str) -> dict | None:
        return self.schemas.get((tenant_id, event_type)) or self.schemas.get((None, event_type))


# --- loading ------------------------------------------------------------------

def shipped(*parts: str) -> Path:
    """A file shipped with erp (``config/``, ``templates/``, ``sample_data/``).

    The folders sit beside ``core/`` both in a checkout (editable install) and
    in an installed wheel (``erp/core`` next to ``erp/config``)."""
    return Path(__file__).resolve().parent.parent.joinpath(*parts)


def _shipped_defaults_path() -> Path:
    return shipped("config", "erp.yaml")


def _yaml_lines(text: str) -> dict[str, int]:
    """Map dotted key paths of a YAML mapping document to 1-based line numbers."""
    out: dict[str, int] = {}
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return out

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{prefix}{k.value}"
                out[key] = k.start_mark.line + 1
                walk(v, key + ".")
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                key = f"{prefix[:-1]}[{i}]"
                out[key] = v.start_mark.line + 1
                walk(v, key + ".")

    walk(node, "")
    return out


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("file not found", path=path,
                          hint="create it, or run `erp init` to write example config files") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", path=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}",
                          hint="check indentation and quoting near that line") from exc
    return data, _yaml_lines(text)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, *, where: str, key: str, from_text: bool) -> Any:
    """Check ``value`` against annotation ``tp``; ``from_text`` allows env strings."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (from_text and str(value).lower() in ("", "null", "none")):
            if type(None) in typing.get_args(tp):
                return None
        return _coerce(value, args[0], where=where, key=key, from_text=from_text)
    try:
        if tp is ByteSize:
            return ByteSize(parse_size(value))
        if tp is bool:
            if isinstance(value, bool):
                return value
            if from_text and str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(value).lower() in ("1", "true", "yes", "on")
            raise ValueError(f"expected true or false, got {value!r}")
        if tp is int:
            if isinstance(value, bool) or not (isinstance(value, int) or from_text):
                raise ValueError(f"expected a whole number, got {value!r}")
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"expected a whole number, got {value!r}") from None
        if tp is float:
            if isinstance(value, bool) or not (isinstance(value, (int, float)) or from_text):
                raise ValueError(f"expected a number, got {value!r}")
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if tp is str:
            if not isinstance(value, str) and not from_text:
                raise ValueError(f"expected text, got {value!r}")
            return str(value)
        if tp is dict or origin is dict:
            if from_text:
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {value!r}")
            return dict(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), path=where, key=key) from exc
    raise ConfigError(f"unsupported setting type {tp!r}", path=where, key=key)  # pragma: no cover


@dataclass
class _Layer:
    data: Mapping[str, Any]
    source: str  # e.g. "erp.yaml" or "shipped defaults"
    lines: Mapping[str, int]
    base_dir: Path | None  # relative paths resolve here; None = leave as given


_PATH_KEYS = ("lake", "spool", "tenants_file", "schemas_dir", "reports_dir")


def _build(cls: type, layers: list[_Layer], prefix: str, sources: dict[str, str],
           env: Mapping[str, str], flags: Mapping[str, Any]) -> Any:
    types_ = _field_types(cls)
    # unknown keys, in every file layer
    for layer in layers:
        section = _section(layer.data, prefix)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"expected a mapping, got {type(section).__name__}",
                              path=layer.source, key=prefix.rstrip(".") or "(top level)")
        for k in section:
            if k not in types_:
                line = layer.lines.get(prefix + str(k))
                where = f"{layer.source}:{line}" if line else layer.source
                raise ConfigError(f"unknown key {k!r}", path=where, key=prefix + str(k),
                                  hint="valid keys here: " + ", ".join(sorted(types_)))
    values: dict[str, Any] = {}
    for name, tp in types_.items():
        dotted = prefix + name
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, layers, dotted + ".", sources, env, flags)
            continue
        value, src, from_text = dataclasses.MISSING, "built-in default", False
        for layer in layers:  # lowest precedence first
            section = _section(layer.data, prefix)
            if isinstance(section, dict) and name in section:
                value = section[name]
                line = layer.lines.get(dotted)
                src = f"{layer.source}:{line}" if line else layer.source
                if name in _PATH_KEYS and not prefix and layer.base_dir is not None:
                    value = _resolve_path(value, layer.base_dir)
        env_name = ENV_PREFIX + dotted.upper().replace(".", "__")
        if env_name in env:
            value, src, from_text = env[env_name], f"env {env_name}", True
        if dotted in flags and flags[dotted] is not None:
            value, src, from_text = flags[dotted], "command-line flag", False
        if value is dataclasses.MISSING:
            continue
        values[name] = _coerce(value, tp, where=src, key=dotted, from_text=from_text)
        sources[dotted] = src
    obj = cls(**values)
    for name in types_:
        sources.setdefault(prefix + name, "built-in default")
    return obj


def _section(data: Mapping[str, Any], prefix: str) -> Any:
    cur: Any = data
    for part in [p for p in prefix.split(".") if p]:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _resolve_path(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or "://" in value or os.path.isabs(value):
        return value
    return str((base / value).resolve())


def find_project_file(cwd: Path, env: Mapping[str, str], explicit: str | Path | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("ERP_CONFIG"):
        return Path(env["ERP_CONFIG"])
    candidate = cwd / PROJECT_FILE
    return candidate if candidate.is_file() else None


def load_config(config_file: str | Path | None = None, *, flags: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    """Load and validate the configuration.

    ``flags`` maps dotted keys (``lake``, ``ingest.workers``) to command-line
    values (None = not given). ``env`` defaults to ``os.environ``.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    flags = {k: v for k, v in (flags or {}).items() if v is not None}

    project = find_project_file(cwd, env, config_file)
    shipped = _shipped_defaults_path()
    data, lines = _read_yaml(shipped)
    # the defaults' relative paths (lake, tenants.yaml, schemas/) sit beside the
    # project file when there is one, else in the working directory
    home = project.parent.resolve() if project is not None else cwd
    layers = [_Layer(data or {}, "shipped defaults (erp/config/erp.yaml)", lines, home)]

    if project is not None:
        pdata, plines = _read_yaml(project)
        if pdata is None:
            pdata = {}
        if not isinstance(pdata, dict):
            raise ConfigError("expected a mapping of settings at the top level", path=project)
        layers.append(_Layer(pdata, str(project), plines, project.parent.resolve()))

    sources: dict[str, str] = {}
    settings: Settings = _build(Settings, layers, "", sources, env, flags)
    for key in ("lake", "spool", "tenants_file", "schemas_dir", "reports_dir"):
        v = getattr(settings, key)
        if sources.get(key, "").startswith(("env ", "command-line")):
            settings = dataclasses.replace(settings, **{key: _resolve_path(v, cwd)})
    _check_defaults(settings.defaults, sources)
    _check_ranges(settings, sources)
    tenants = load_tenants(_local(settings.tenants_file), settings.defaults)
    schemas = load_schemas(_local(settings.schemas_dir))
    return Config(settings=settings, tenants=tenants, schemas=schemas, sources=sources,
                  project_file=project)


def _local(p: str) -> Path:
    return Path(p)


def _check_defaults(d: Defaults, sources: Mapping[str, str]) -> None:
    _check_timezone(d.timezone, where=sources.get("defaults.timezone", ""), key="defaults.timezone")
    if d.plan_tier not in PLAN_TIERS:
        raise ConfigError(f"unknown plan tier {d.plan_tier!r}", path=sources.get("defaults.plan_tier"),
                          key="defaults.plan_tier", hint="valid: " + ", ".join(PLAN_TIERS))


#: Lowest allowed value of numeric settings (a zero chunk size would read nothing
#: and mark the input finished; a negative worker count means nothing).
_MINIMUMS: dict[str, tuple[float, str]] = {
    "ingest.chunk_bytes": (1, "at least 1 byte (a few MiB is a good size)"),
    "ingest.commit_events": (1, "at least 1"),
    "ingest.max_line_bytes": (1, "at least 1 byte"),
    "ingest.workers": (0, "0 (one per core) or more"),
    "ingest.skew_threshold_seconds": (0, "0 or more"),
    "ingest.future_tolerance_seconds": (0, "0 or more"),
    "ingest.target_file_bytes": (1, "at least 1 byte (e.g. 128MiB)"),
    "defaults.retention_days": (1, "a whole number of days >= 1, or null to keep forever"),
    "defaults.storage_quota": (0, "a size >= 0, or null for unlimited"),
}


def _check_ranges(settings: Settings, sources: Mapping[str, str]) -> None:
    for key, (low, valid) in _MINIMUMS.items():
        section, name = key.split(".")
        value = getattr(getattr(settings, section), name)
        if value is not None and value < low:
            raise ConfigError(f"{value!r} is out of range", path=sources.get(key), key=key, hint=f"valid: {valid}")


def _check_timezone(tz: str, *, where: str, key: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {tz!r}", path=where or None, key=key,
                          hint="use an IANA name such as UTC, Europe/Berlin or America/New_York") from exc


_TENANT_KEYS = ("tenant_id", "name", "plan_tier", "storage_quota", "retention_days", "timezone",
                "anonymize_ip", "api_keys")


def load_tenants(path: Path, defaults: Defaults) -> dict[str, Tenant]:
    """Read ``tenants.yaml``; a missing file means "no tenant list" (any valid id)."""
    if not path.is_file():
        return {}
    data, lines = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"tenants"}:
        raise ConfigError("expected a mapping with one key, 'tenants', holding a list",
                          path=path, hint="see config/tenants.yaml for an example")
    items = data.get("tenants") or []
    if not isinstance(items, list):
        raise ConfigError("expected a list of tenants", path=path, key="tenants")
    out: dict[str, Tenant] = {}
    for i, item in enumerate(items):
        key = f"tenants[{i}]"
        where = f"{path}:{lines.get(key, '?')}"
        if not isinstance(item, dict):
            raise ConfigError("expected a mapping", path=where, key=key)
        for k in item:
            if k not in _TENANT_KEYS:
                raise ConfigError(f"unknown key {k!r}", path=f"{path}:{lines.get(f'{key}.{k}', '?')}",
                                  key=f"{key}.{k}",
                                  hint="valid keys: " + ", ".join(_TENANT_KEYS))
        tid = item.get("tenant_id")
        if not is_valid_tenant_id(tid):
            raise ConfigError(f"invalid tenant_id {tid!r}", path=where, key=f"{key}.tenant_id",
                              hint=f"tenant ids match {TENANT_ID_PATTERN}")
        if tid in out:
            raise ConfigError(f"tenant {tid!r} is listed twice", path=where, key=f"{key}.tenant_id")
        tz = item.get("timezone", defaults.timezone)
        _check_timezone(str(tz), where=where, key=f"{key}.timezone")
        tier = item.get("plan_tier", defaults.plan_tier)
        if tier not in PLAN_TIERS:
            raise ConfigError(f"unknown plan_tier {tier!r}", path=where, key=f"{key}.plan_tier",
                              hint="valid: " + ", ".join(PLAN_TIERS))
        quota = item.get("storage_quota", defaults.storage_quota)
        retention = item.get("retention_days", defaults.retention_days)
        anonymize = item.get("anonymize_ip", defaults.anonymize_ip)
        try:
            quota = None if quota is None else parse_size(quota)
        except ValueError as exc:
            raise ConfigError(str(exc), path=where, key=f"{key}.storage_quota") from exc
        if retention is not None and (isinstance(retention, bool) or not isinstance(retention, int)
                                      or retention < 1):
            raise ConfigError(f"retention_days must be a whole number of days >= 1 or null, got {retention!r}",
                              path=where, key=f"{key}.retention_days")
        if not isinstance(anonymize, bool):
            raise ConfigError(f"anonymize_ip must be true or false, got {anonymize!r}",
                              path=where, key=f"{key}.anonymize_ip")
        keys = []
        for j, k in enumerate(item.get("api_keys") or []):
            kk = f"{key}.api_keys[{j}]"
            if not isinstance(k, dict) or set(k) - {"id", "hash"} or not str(k.get("hash", "")).startswith("sha256:"):
                raise ConfigError("expected {id: ..., hash: 'sha256:<hex>'}", path=where, key=kk,
                                  hint="store only key hashes: `erp tenants key` prints a new key and its hash")
            keys.append(ApiKey(id=str(k.get("id", f"key{j}")), hash=str(k["hash"])))
        out[tid] = Tenant(tenant_id=tid, name=str(item.get("name", tid)), plan_tier=tier,
                          storage_quota=quota, retention_days=retention, timezone=str(tz),
                          anonymize_ip=anonymize, api_keys=tuple(keys))
    return out


def load_schemas(folder: Path) -> dict[tuple[str | None, str], dict]:
    """Event property schemas: ``<folder>/<event_type>.json`` for every tenant and
    ``<folder>/tenants/<tenant_id>/<event_type>.json`` as per-tenant overrides.

    A missing folder falls back to the shipped schemas in ``erp/config/schemas``.
    """
    if not folder.is_dir():
        folder = shipped("config", "schemas")
    out: dict[tuple[str | None, str], dict] = {}
    for p in sorted(folder.glob("*.json")):
        out[(None, p.stem)] = _read_schema(p)
    tdir = folder / "tenants"
    if tdir.is_dir():
        for sub in sorted(tdir.iterdir()):
            if not sub.is_dir():
                continue
            if not is_valid_tenant_id(sub.name):
                raise ConfigError(f"folder name {sub.name!r} is not a valid tenant id", path=sub)
            for p in sorted(sub.glob("*.json")):
                out[(sub.name, p.stem)] = _read_schema(p)
    return out


def _read_schema(path: Path) -> dict:
    import jsonschema_rs

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"not a readable JSON file: {exc}", path=path) from exc
    try:
        jsonschema_rs.validator_for(schema)
    except Exception as exc:  # jsonschema_rs raises ValueError/SchemaError variants
        raise ConfigError(f"not a valid JSON Schema: {exc}", path=path) from exc
    return schema


def config_rows(cfg: Config) -> list[tuple[str, str, str]]:
    """(key, value, source) rows for ``erp config show``."""
    rows: list[tuple[str, str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, prefix + f.name + ".")
            else:
                key = prefix + f.name
                shown = "null" if v is None else json.dumps(v) if isinstance(v, dict) else str(v)
                if key == "storage_options" and v:
                    shown = json.dumps({k: ("***" if "secret" in k or "key" in k else val)
                                        for k, val in v.items()})
                rows.append((key, shown, cfg.sources.get(key, "built-in default")))

    walk(cfg.settings, "")
    return rows
