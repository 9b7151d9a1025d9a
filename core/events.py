"""The event: its stored schema, and the parser that validates and enriches it.

``parse_chunk`` is the ingest hot path. It takes a block of complete NDJSON
lines and returns the accepted events as an Arrow table (one column per stored
field, plus the partition and dedup-key columns) and the rejected lines with
every reason. It runs in parser processes, so it depends only on its
``ParseContext`` and the chunk.

Fast path: one msgspec decode into a strict struct (no lax coercion: ``"timestamp":
false`` is an error), the free-form objects kept as raw JSON text. A line that
fails anywhere is diagnosed again by the slow path, which collects every reason.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import xxhash

from erp.core.enrich import anonymize_ip, page_path, referrer_domain, UserAgentCache
from erp.core.tenants import INVALID_TENANT_BUCKET, is_valid_tenant_id

# --- the stored schema ----------------------------------------------------------

TS = pa.timestamp("us", tz="UTC")

#: Columns stored in every events Parquet file, in this order. ``tenant_id`` and
#: ``date`` are the Hive partition columns and live in the path, not the file.
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("timestamp", TS),
    ("received_at", TS),
    ("sent_at", TS),
    ("user_id", pa.string()),
    ("anonymous_id", pa.string()),
    ("session_id", pa.string()),
    ("page_url", pa.string()),
    ("page_path", pa.string()),
    ("referrer", pa.string()),
    ("referrer_domain", pa.string()),
    ("revenue", pa.float64()),
    ("currency", pa.string()),
    ("browser", pa.string()),
    ("os", pa.string()),
    ("device_type", pa.string()),
    ("country", pa.string()),
    ("ip", pa.string()),
    ("properties", pa.string()),
    ("metadata", pa.string()),
    ("ts_skew_corrected", pa.bool_()),
    ("ts_clamped", pa.bool_()),
    ("ingest_batch", pa.string()),
])

#: The in-flight table adds the partition columns and the dedup key.
BATCH_SCHEMA = pa.schema(list(EVENT_SCHEMA) + [
    ("tenant_id", pa.string()),
    ("date", pa.date32()),
    ("_key", pa.binary(16)),
])

INPUT_FIELDS = ("event_id", "tenant_id", "event_type", "timestamp", "received_at", "sent_at",
                "user_id", "anonymous_id", "session_id", "properties", "metadata")

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH_MS_FLOOR = 100_000_000_000  # 1973-03-03 in ms; smaller numbers look like seconds
MAX_EVENT_TYPE_LEN = 256
MAX_ID_LEN = 256
#: Raw text kept for a rejected line is capped here (a longer line keeps its head).
MAX_KEPT_RAW = 16 * 1024 * 1024


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    event_type: str
    timestamp: str | int | float
    event_id: str | None = None
    tenant_id: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    session_id: str | int | None = None
    sent_at: str | int | float | None = None
    received_at: str | int | float | None = None
    properties: msgspec.Raw = msgspec.Raw(b"")
    metadata: msgspec.Raw = msgspec.Raw(b"")


class _HotProps(msgspec.Struct):
    page_url: str | None = None
    referrer: str | None = None
    revenue: float | None = None
    currency: str | None = None


class _Meta(msgspec.Struct):
    ip: str | None = None
    user_agent: str | None = None
    country: str | None = None


_NO_PROPS = _HotProps()
_NO_META = _Meta()
_UNSET = object()

_decode_event = msgspec.json.Decoder(_Event).decode
_decode_props = msgspec.json.Decoder(_HotProps).decode
_decode_meta = msgspec.json.Decoder(_Meta).decode


# --- context and results ----------------------------------------------------------

@dataclass(frozen=True)
class TenantRules:
    retention_days: int | None
    anonymize_ip: bool


@dataclass(frozen=True)
class ParseContext:
    """Everything a parser process needs; picklable."""

    batch_id: str
    now_us: int
    default_tenant: str | None = None
    known_tenants: frozenset[str] | None = None  # None = any valid id
    tenant_rules: dict[str, TenantRules] = field(default_factory=dict)
    default_rules: TenantRules = TenantRules(None, True)
    schemas: dict[tuple[str | None, str], dict] = field(default_factory=dict)
    max_line_bytes: int = 1024 * 1024
    skew_threshold_us: int = 60 * _US
    future_tolerance_us: int = 86_400 * _US
    earliest_us: int = 946_684_800 * _US  # 2000-01-01T00:00:00Z

    def rules(self, tenant: str) -> TenantRules:
        return self.tenant_rules.get(tenant, self.default_rules)


@dataclass
class Chunk:
    """A block of complete lines from one source."""

    source: str
    first_line: int
    data: bytes
    end_offset: int
    #: (line number, kept head of the raw line, full length) for lines longer
    #: than the reader could hold; they are rejected as line_too_large.
    oversized: list[tuple[int, bytes, int]] = field(default_factory=list)
    #: set when the source ended in the middle of this chunk's last line
    truncated: bool = False


@dataclass
class Reason:
    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, str]:
        d = {"code": self.code, "message": self.message}
        if self.field:
            d["field"] = self.field
        return d


@dataclass
class Rejected:
    tenant_bucket: str
    source: str
    line: int
    raw: bytes
    reasons: list[Reason]
    raw_length: int | None = None

    def to_record(self, batch_id: str, received_at: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"source": self.source, "line": self.line,
                               "reasons": [r.to_dict() for r in self.reasons],
                               "batch": batch_id, "received_at": received_at}
        try:
            rec["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            rec["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        if self.raw_length is not None and self.raw_length != len(self.raw):
            rec["raw_length"] = self.raw_length
            rec["raw_truncated"] = True
        return rec


@dataclass
class ChunkResult:
    source: str
    end_offset: int
    lines: int
    blank: int
    bytes: int
    table: pa.Table | None
    rejected: list[Rejected]


# --- worker state ---------------------------------------------------------------

_CTX: ParseContext | None = None
_UA = UserAgentCache()
_VALIDATORS: dict[tuple[str | None, str], Any] = {}
_VALID_TENANTS: set[str] = set()


def init_worker(ctx: ParseContext) -> None:
    """Process-pool initializer: install the context once per parser process."""
    global _CTX
    _CTX = ctx
    _VALIDATORS.clear()


def parse_chunk_in_worker(chunk: Chunk) -> ChunkResult:
    assert _CTX is not None, "init_worker was not called"
    return parse_chunk(_CTX, chunk)


def _validator(ctx: ParseContext, tenant: str, event_type: str) -> Any:
    key = (tenant, event_type)
    if key in _VALIDATORS:
        return _VALIDATORS[key]
    schema = ctx.schemas.get(key) or ctx.schemas.get((None, event_type))
    v = None
    if schema is not None:
        import jsonschema_rs

        v = jsonschema_rs.validator_for(schema)
    _VALIDATORS[key] = v
    return v


# --- time -----------------------------------------------------------------------

def parse_time(value: Any) -> int:
    """ISO-8601 text or epoch milliseconds -> epoch microseconds (UTC).

    Text without an offset is taken as UTC. Raises ValueError with a message.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected ISO-8601 text or epoch milliseconds, got {value!r}")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value!r}")
        if 0 < abs(value) < _EPOCH_MS_FLOOR:
            raise ValueError(f"{value!r} looks like epoch seconds; send epoch milliseconds "
                             "or ISO-8601 text")
        return int(value * 1000)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"unparseable timestamp {value[:64]!r}; use ISO-8601 such as "
                             "2026-09-01T12:00:00Z or epoch milliseconds") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds
    raise ValueError(f"expected ISO-8601 text or epoch milliseconds, got {type(value).__name__}")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def format_us(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc).fromtimestamp(us / _US, tz=timezone.utc)
            .isoformat().replace("+00:00", "Z"))


# --- the parser -------------------------------------------------------------------

class _Columns:
    __slots__ = tuple(f.name for f in BATCH_SCHEMA)

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, [])

    def table(self) -> pa.Table:
        arrays = []
        for f in BATCH_SCHEMA:
            values = getattr(self, f.name)
            if f.type == TS:
                arrays.append(pa.array(values, pa.int64()).cast(TS))
            elif f.name == "date":
                arrays.append(pa.array(values, pa.int32()).cast(pa.date32()))
            else:
                arrays.append(pa.array(values, f.type))
        return pa.Table.from_arrays(arrays, schema=BATCH_SCHEMA)


def _as_id(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


def parse_chunk(ctx: ParseContext, chunk: Chunk) -> ChunkResult:
    cols = _Columns()
    rejected: list[Rejected] = []
    blank = 0
    lines = chunk.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    line_no = chunk.first_line - 1
    last_index = len(lines) - 1
    known = ctx.known_tenants
    default_tenant = ctx.default_tenant
    for i, raw in enumerate(lines):
        line_no += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw or raw.isspace():
            blank += 1
            continue
        if len(raw) > ctx.max_line_bytes:
            rejected.append(_too_large(ctx, chunk.source, line_no, raw, len(raw)))
            continue
        if chunk.truncated and i == last_index:
            rejected.append(Rejected(_bucket_of(raw, default_tenant), chunk.source, line_no, raw,
                                     [Reason("truncated_input", "the input ended in the middle of this "
                                             "line (truncated file or gzip stream)")]))
            continue
        try:
            ev = _decode_event(raw)
            tenant = ev.tenant_id
            if tenant is None:
                tenant = default_tenant
            elif default_tenant is not None and tenant != default_tenant:
                raise _Reject
            if tenant not in _VALID_TENANTS:
                if tenant is None or not is_valid_tenant_id(tenant):
                    raise _Reject
                _VALID_TENANTS.add(tenant)
            if known is not None and tenant not in known:
                raise _Reject
            et = ev.event_type
            if not et or len(et) > MAX_EVENT_TYPE_LEN or not et.isprintable():
                raise _Reject
            eid = ev.event_id
            if eid is None:
                eid = _generated_id(tenant, raw)
            elif not eid or len(eid) > MAX_ID_LEN or not eid.isprintable():
                raise _Reject
            ts = parse_time(ev.timestamp)
            recv = ctx.now_us if ev.received_at is None else parse_time(ev.received_at)
            sent = None if ev.sent_at is None else parse_time(ev.sent_at)
            corrected = clamped = False
            if sent is not None and ev.received_at is not None and abs(sent - recv) > ctx.skew_threshold_us:
                ts = recv - (sent - ts)
                corrected = True
            if ts > recv:
                if ts - recv > ctx.future_tolerance_us:
                    raise _Reject
                ts, clamped = recv, True
            rules = ctx.tenant_rules.get(tenant, ctx.default_rules)
            if ts < ctx.earliest_us or (rules.retention_days is not None
                                        and ts < ctx.now_us - rules.retention_days * _DAY_US):
                raise _Reject
            pb = bytes(ev.properties)
            if pb and pb != b"null":
                if pb[:1] != b"{":
                    raise _Reject
                props_text = pb.decode("utf-8")
                hot = _decode_props(pb)
                v = _VALIDATORS.get((tenant, et), _UNSET)
                if v is _UNSET:
                    v = _validator(ctx, tenant, et)
                if v is not None and not v.is_valid(orjson.loads(pb)):
                    raise _Reject
            else:
                props_text, hot = "{}", _NO_PROPS
            mb = bytes(ev.metadata)
            if mb and mb != b"null":
                if mb[:1] != b"{":
                    raise _Reject
                meta = _decode_meta(mb)
                meta_text = mb.decode("utf-8")
            else:
                meta, meta_text = _NO_META, "{}"
        except (_Reject, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
            rejected.append(diagnose(ctx, chunk.source, line_no, raw))
            continue
        ua = meta.user_agent
        browser, os_, device = _UA.parse(ua) if ua else (None, None, None)
        ip = meta.ip
        if ip is not None and rules.anonymize_ip:
            ip = anonymize_ip(ip)
        url = hot.page_url
        ref = hot.referrer
        cols.event_id.append(eid)
        cols.event_type.append(et)
        cols.timestamp.append(ts)
        cols.received_at.append(recv)
        cols.sent_at.append(sent)
        cols.user_id.append(_as_id(ev.user_id))
        cols.anonymous_id.append(_as_id(ev.anonymous_id))
        cols.session_id.append(_as_id(ev.session_id))
        cols.page_url.append(url)
        cols.page_path.append(page_path(url) if url else None)
        cols.referrer.append(ref)
        cols.referrer_domain.append(referrer_domain(ref) if ref else None)
        cols.revenue.append(hot.revenue)
        cols.currency.append(hot.currency)
        cols.browser.append(browser)
        cols.os.append(os_)
        cols.device_type.append(device)
        cols.country.append(meta.country)
        cols.ip.append(ip)
        cols.properties.append(props_text)
        cols.metadata.append(meta_text)
        cols.ts_skew_corrected.append(corrected)
        cols.ts_clamped.append(clamped)
        cols.ingest_batch.append(ctx.batch_id)
        cols.tenant_id.append(tenant)
        cols.date.append(ts // _DAY_US)
        cols._key.append(xxhash.xxh3_128_digest(eid.encode("utf-8")))
    for line, head, length in chunk.oversized:
        rejected.append(_too_large(ctx, chunk.source, line, head, length))
    table = cols.table() if cols.event_id else None
    return ChunkResult(source=chunk.source, end_offset=chunk.end_offset, lines=len(lines),
                       blank=blank, bytes=len(chunk.data), table=table, rejected=rejected)


class _Reject(Exception):
    """Internal: the fast path gives up; ``diagnose`` finds every reason."""


def _generated_id(tenant: str, raw: bytes) -> str:
    """A deterministic id from the line's content: the same line gets the same id."""
    h = xxhash.xxh3_128_hexdigest(tenant.encode() + b"\x00" + raw.strip())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _bucket_of(raw: bytes, default_tenant: str | None) -> str:
    if default_tenant:
        return default_tenant
    try:
        t = orjson.loads(raw).get("tenant_id")
    except Exception:
        return INVALID_TENANT_BUCKET
    return t if is_valid_tenant_id(t) else INVALID_TENANT_BUCKET


def _too_large(ctx: ParseContext, source: str, line: int, head: bytes, length: int) -> Rejected:
    kept = head[:MAX_KEPT_RAW]
    return Rejected(ctx.default_tenant or INVALID_TENANT_BUCKET, source, line, kept,
                    [Reason("line_too_large", f"line is {length} bytes; the limit is "
                            f"{ctx.max_line_bytes} (ingest.max_line_bytes)")], raw_length=length)


# --- the slow path: every reason ----------------------------------------------------

_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "event_id": ((str,), "text"),
    "tenant_id": ((str,), "text"),
    "event_type": ((str,), "text"),
    "timestamp": ((str, int, float), "ISO-8601 text or epoch milliseconds"),
    "received_at": ((str, int, float), "ISO-8601 text or epoch milliseconds"),
    "sent_at": ((str, int, float), "ISO-8601 text or epoch milliseconds"),
    "user_id": ((str, int), "text"),
    "anonymous_id": ((str, int), "text"),
    "session_id": ((str, int), "text"),
    "properties": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
}
_HOT_TYPES = {"page_url": (str,), "referrer": (str,), "revenue": (int, float), "currency": (str,)}
_META_TYPES = {"ip": (str,), "user_agent": (str,), "country": (str,)}


def diagnose(ctx: ParseContext, source: str, line_no: int, raw: bytes) -> Rejected:
    """Collect every reason a line is rejected (slow path; rejected lines only)."""
    reasons: list[Reason] = []
    bucket = ctx.default_tenant or INVALID_TENANT_BUCKET
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(bucket, source, line_no, raw,
                        [Reason("invalid_utf8", f"line is not valid UTF-8 (byte {exc.start})")])
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Rejected(bucket, source, line_no, raw, [Reason("malformed_json", f"not valid JSON: {exc}")])
    if not isinstance(doc, dict):
        return Rejected(bucket, source, line_no, raw,
                        [Reason("not_an_object", f"expected a JSON object, got {type(doc).__name__}")])
    for k in doc:
        if k not in _TYPES:
            reasons.append(Reason("unknown_field", f"unknown field {k!r}; valid fields: "
                                  + ", ".join(INPUT_FIELDS), field=k))
    for name in ("event_type", "timestamp"):
        if doc.get(name) is None:
            reasons.append(Reason("missing_field", f"required field {name!r} is missing", field=name))
    for name, (types_, desc) in _TYPES.items():
        v = doc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, types_)):
            reasons.append(Reason("invalid_type", f"{name} must be {desc}, got {_json_type(v)}", field=name))
    bad = {r.field for r in reasons if r.code == "invalid_type"}

    # tenant
    tenant = doc.get("tenant_id") if "tenant_id" not in bad else None
    if tenant is None:
        tenant = ctx.default_tenant
        if tenant is None and "tenant_id" not in bad:
            reasons.append(Reason("missing_tenant", "no tenant_id in the record and no --tenant given",
                                  field="tenant_id"))
    elif ctx.default_tenant is not None and tenant != ctx.default_tenant:
        reasons.append(Reason("tenant_mismatch", f"record says tenant {tenant[:80]!r} but the input "
                              f"belongs to {ctx.default_tenant!r}", field="tenant_id"))
    if tenant is not None:
        if not is_valid_tenant_id(tenant):
            reasons.append(Reason("invalid_tenant_id", f"tenant id {tenant[:80]!r} does not match "
                                  "^[a-z0-9][a-z0-9_-]{0,62}$", field="tenant_id"))
            tenant = None
        elif ctx.known_tenants is not None and tenant not in ctx.known_tenants:
            reasons.append(Reason("unknown_tenant", f"tenant {tenant!r} is not in tenants.yaml",
                                  field="tenant_id"))
    if tenant is not None:
        bucket = tenant

    et = doc.get("event_type")
    if isinstance(et, str) and (not et or len(et) > MAX_EVENT_TYPE_LEN or not et.isprintable()):
        reasons.append(Reason("invalid_event_type", "event_type must be 1-256 printable characters",
                              field="event_type"))
    eid = doc.get("event_id")
    if isinstance(eid, str) and (not eid or len(eid) > MAX_ID_LEN or not eid.isprintable()):
        reasons.append(Reason("invalid_event_id", "event_id must be 1-256 printable characters",
                              field="event_id"))

    # time
    times: dict[str, int] = {}
    for name in ("timestamp", "received_at", "sent_at"):
        v = doc.get(name)
        if v is None or name in bad:
            continue
        try:
            times[name] = parse_time(v)
        except ValueError as exc:
            reasons.append(Reason("invalid_timestamp", f"{name}: {exc}", field=name))
    if "timestamp" in times:
        ts = times["timestamp"]
        recv = times.get("received_at", ctx.now_us)
        sent = times.get("sent_at")
        if sent is not None and "received_at" in times and abs(sent - recv) > ctx.skew_threshold_us:
            ts = recv - (sent - ts)
        if ts - recv > ctx.future_tolerance_us:
            reasons.append(Reason("timestamp_future", f"timestamp {format_us(ts)} is more than "
                                  f"{ctx.future_tolerance_us // _US} s after it was received "
                                  f"({format_us(recv)})", field="timestamp"))
        rules = ctx.rules(tenant) if tenant else ctx.default_rules
        if ts < ctx.earliest_us:
            reasons.append(Reason("timestamp_too_old", f"timestamp {format_us(ts)} is before "
                                  f"{format_us(ctx.earliest_us)}", field="timestamp"))
        elif rules.retention_days is not None and ts < ctx.now_us - rules.retention_days * _DAY_US:
            reasons.append(Reason("timestamp_too_old", f"timestamp {format_us(ts)} is older than the "
                                  f"tenant's retention of {rules.retention_days} days", field="timestamp"))

    # free-form objects
    props = doc.get("properties")
    if isinstance(props, dict):
        for k, types_ in _HOT_TYPES.items():
            v = props.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, types_)):
                reasons.append(Reason("invalid_type", f"properties.{k} must be "
                                      f"{'a number' if k == 'revenue' else 'text'}, got {_json_type(v)}",
                                      field=f"properties.{k}"))
        if tenant and isinstance(et, str):
            v = _validator(ctx, tenant, et)
            if v is not None:
                for err in v.iter_errors(props):
                    path = ".".join(str(p) for p in getattr(err, "instance_path", []) or [])
                    reasons.append(Reason("schema_violation", f"{et} schema: {err.message}",
                                          field="properties" + (f".{path}" if path else "")))
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        for k, types_ in _META_TYPES.items():
            v = meta.get(k)
            if v is not None and not isinstance(v, types_):
                reasons.append(Reason("invalid_type", f"metadata.{k} must be text, got {_json_type(v)}",
                                      field=f"metadata.{k}"))
    if not reasons:  # the fast path refused something the slow path accepts: say so, never drop
        reasons.append(Reason("invalid_event", "the event could not be parsed"))
    return Rejected(bucket, source, line_no, raw, reasons)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, str):
        return f"text {v[:40]!r}"
    return "an array" if isinstance(v, list) else "an object"


def epoch_day_to_date(day: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day)
