"""The contract between the report engine and the widget types.

A widget type is a module-level object with ``name``, ``validate`` and
``compute`` (see :class:`WidgetType`) registered with :func:`register`. The
engine resolves a report's range into a :class:`Window`, hands each widget an
:class:`EventSource` scoped to one tenant, and puts what ``compute`` returns
under the widget's ``data`` key of the report JSON::

    {"report_id", "report_name", "tenant_id", "range": {...},
     "widgets": [{"widget_id", "type", "title", "data": {...}}]}

Event frames carry the lake's event columns (``erp.core.events.EVENT_SCHEMA``)
plus ``user_key`` = ``coalesce(user_id, anonymous_id)``; timestamps are UTC
(``Datetime("us", "UTC")``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Protocol
from zoneinfo import ZoneInfo

import polars as pl

from erp.core.errors import ConfigError

# --- the range a report covers -------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Local calendar days ``since``..``until`` (inclusive) in the tenant's timezone."""

    tenant_id: str
    timezone: str
    since: date
    until: date
    now: datetime  # aware, UTC

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_midnight_utc(self, day: date) -> datetime:
        """The UTC instant at which local ``day`` starts (DST-correct)."""
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(timezone.utc)

    @property
    def start_utc(self) -> datetime:
        return self.local_midnight_utc(self.since)

    @property
    def end_utc(self) -> datetime:
        """Exclusive end: local midnight after ``until``."""
        return self.local_midnight_utc(self.until + timedelta(days=1))

    @property
    def complete(self) -> bool:
        return self.end_utc <= self.now

    def previous(self) -> "Window":
        """The period of equal length (in local days) just before this one."""
        days = (self.until - self.since).days + 1
        return Window(self.tenant_id, self.timezone, self.since - timedelta(days=days),
                      self.since - timedelta(days=1), self.now)

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "timezone": self.timezone, "start_utc": _iso(self.start_utc),
                "end_utc": _iso(self.end_utc), "complete": self.complete}


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- where events come from -----------------------------------------------------------


class EventSource(Protocol):
    """One tenant's events. Implementations never read another tenant's files."""

    tenant_id: str

    def events(self, start_utc: datetime | None, end_utc: datetime | None,
               columns: Iterable[str] | None = None) -> pl.LazyFrame:
        """Events with ``start_utc <= timestamp < end_utc`` (``None``: unbounded), with
        ``user_key`` added. ``columns`` is a hint; more columns may come back."""
        ...


class FrameSource:
    """An :class:`EventSource` over an in-memory frame (tests, references)."""

    def __init__(self, tenant_id: str, frame: pl.DataFrame | pl.LazyFrame) -> None:
        self.tenant_id = tenant_id
        self._frame = frame.lazy()

    def events(self, start_utc: datetime | None, end_utc: datetime | None,
               columns: Iterable[str] | None = None) -> pl.LazyFrame:
        lf = with_user_key(self._frame)
        if start_utc is not None:
            lf = lf.filter(pl.col("timestamp") >= start_utc)
        if end_utc is not None:
            lf = lf.filter(pl.col("timestamp") < end_utc)
        return lf


def with_user_key(lf: pl.LazyFrame) -> pl.LazyFrame:
    names = lf.collect_schema().names()
    if "user_key" in names:
        return lf
    return lf.with_columns(user_key=pl.coalesce(pl.col("user_id"), pl.col("anonymous_id")))


# --- widget types ---------------------------------------------------------------------


class WidgetType(Protocol):
    name: str

    def validate(self, spec: dict[str, Any], where: str) -> Any:
        """Check a widget's YAML mapping; return a parsed spec. Raise ConfigError whose
        message starts with ``where`` (``file.yaml: widgets[2]``) and names the key and
        the allowed values."""
        ...

    def compute(self, spec: Any, source: EventSource, window: Window) -> dict[str, Any]:
        """The widget's ``data``: plain JSON values only (str, int, float, bool, None,
        lists, dicts); dates as ISO strings; deterministic order."""
        ...


_WIDGETS: dict[str, WidgetType] = {}
_PACKAGES = ("erp.reports.widgets", "erp.reports.behaviour")


def register(widget: WidgetType) -> WidgetType:
    _WIDGETS[widget.name] = widget
    return widget


def widget_types() -> dict[str, WidgetType]:
    """Every registered widget type (importing the packages that register them)."""
    for pkg in _PACKAGES:
        importlib.import_module(pkg)
    return dict(_WIDGETS)


# --- filters (shared by every widget type) --------------------------------------------
#
#   filters:
#     - event_type: purchase              # or a list: [purchase, conversion]
#     - property: country                 # a promoted column or a key of `properties`
#       op: in                            # eq neq in not_in contains not_contains
#       value: [DE, FR]                   # gt gte lt lte is_set is_not_set
#
# All items must hold (AND). Property names may use dots for nested keys.

OPS = ("eq", "neq", "in", "not_in", "contains", "not_contains", "gt", "gte", "lt", "lte",
       "is_set", "is_not_set")
NUMERIC_OPS = ("gt", "gte", "lt", "lte")
#: Event columns a filter or breakdown may name directly.
COLUMNS = ("event_type", "user_id", "anonymous_id", "session_id", "page_url", "page_path",
           "referrer", "referrer_domain", "revenue", "currency", "browser", "os",
           "device_type", "country")
NUMERIC_COLUMNS = ("revenue",)
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}(\.[A-Za-z_][A-Za-z0-9_-]{0,127}){0,7}$")


@dataclass(frozen=True)
class Filter:
    property: str
    op: str
    value: Any = None


def property_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not PROPERTY_NAME.match(value):
        raise ConfigError(f"{where}: property must be a column ({', '.join(COLUMNS)}) or a "
                          f"properties key of letters, digits, _ or - (dots for nesting); got {value!r}")
    return value


def parse_filters(raw: Any, where: str) -> tuple[Filter, ...]:
    """Validate a ``filters:`` list."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.filters: expected a list of filters, got {type(raw).__name__}")
    out: list[Filter] = []
    for i, item in enumerate(raw):
        at = f"{where}.filters[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{at}: expected a mapping, got {type(item).__name__}")
        if "event_type" in item:
            extra = set(item) - {"event_type"}
            if extra:
                raise ConfigError(f"{at}: unknown key {sorted(extra)[0]!r} next to event_type")
            types = item["event_type"]
            types = [types] if isinstance(types, str) else types
            if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
                raise ConfigError(f"{at}.event_type: expected an event type or a list of them")
            out.append(Filter("event_type", "in", tuple(types)))
            continue
        unknown = set(item) - {"property", "op", "value"}
        if unknown:
            raise ConfigError(f"{at}: unknown key {sorted(unknown)[0]!r}; allowed: event_type, property, op, value")
        name = property_name(item.get("property"), f"{at}.property")
        op = item.get("op", "eq")
        if op not in OPS:
            raise ConfigError(f"{at}.op: {op!r} is not one of {', '.join(OPS)}")
        value = item.get("value")
        if op in ("is_set", "is_not_set"):
            value = None
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{at}.value: op {op} needs a non-empty list")
            value = tuple(_scalar(v, at) for v in value)
        elif op in NUMERIC_OPS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{at}.value: op {op} needs a number, got {value!r}")
        else:
            value = _scalar(value, at)
        out.append(Filter(name, op, value))
    return tuple(out)


def _scalar(v: Any, at: str) -> Any:
    if isinstance(v, (str, int, float, bool)) and v is not None:
        return v
    raise ConfigError(f"{at}.value: expected a string, number or boolean, got {v!r}")


def property_expr(name: str) -> pl.Expr:
    """A property as an expression: promoted columns keep their type, other keys are
    read from the ``properties`` JSON text as strings (null when absent)."""
    if name in COLUMNS:
        return pl.col(name)
    return pl.col("properties").str.json_path_match("$." + name)


def filter_expr(filters: Iterable[Filter]) -> pl.Expr | None:
    """All filters as one boolean expression (``None`` when there are none)."""
    exprs: list[pl.Expr] = []
    for f in filters:
        col = property_expr(f.property)
        numeric = f.property in NUMERIC_COLUMNS
        if f.op in NUMERIC_OPS:
            num = col if numeric else col.cast(pl.Float64, strict=False)
            e = {"gt": num > f.value, "gte": num >= f.value, "lt": num < f.value, "lte": num <= f.value}[f.op]
        elif f.op == "is_set":
            e = col.is_not_null()
        elif f.op == "is_not_set":
            e = col.is_null()
        else:
            text = col.cast(pl.String) if numeric else col
            value = f.value
            if f.op in ("in", "not_in"):
                values = [_text(v) for v in value]
                e = text.is_in(values)
                e = e.fill_null(False)
                if f.op == "not_in":
                    e = ~e
            elif f.op in ("eq", "neq"):
                e = (text == _text(value)).fill_null(False)
                if f.op == "neq":
                    e = ~e
            else:  # contains / not_contains: literal substring, case-sensitive
                e = text.str.contains(_text(value), literal=True).fill_null(False)
                if f.op == "not_contains":
                    e = ~e
        exprs.append(e)
    if not exprs:
        return None
    return pl.all_horizontal(exprs)


def _text(v: Any) -> str:
    """How a YAML scalar compares with JSON text: booleans as true/false, 2.0 as 2."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
