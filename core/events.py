"""The event: its stored schema, the parse context, and the shared rules
(time parsing, generated ids, per-event-type schemas) that the fast parser
(``erp.core.parse``) and the diagnosis of rejected lines (``erp.core.diagnose``)
both follow."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

import pyarrow as pa
import xxhash

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
    ("user_agent", pa.string()),
    ("country", pa.string()),
    ("ip", pa.string()),
    ("properties", pa.string()),
    ("metadata", pa.string()),
    ("ts_skew_corrected", pa.bool_()),
    ("ts_clamped", pa.bool_()),
    ("ingest_batch", pa.string()),
])

#: How ``erp ingest`` writes its per-commit event files (with pyarrow, or with the
#: same choices in ``core/_pqw.c``, see ``erp.core.pqwrite``). A commit writes one
#: small file per (tenant, date) it touches, where each compressed column chunk
#: costs pyarrow a fixed ~40 µs whatever its size: so only the many-valued text
#: columns where it pays after dictionary encoding are zstd-compressed (not page
#: paths, referrers, IPs or stripped metadata: -11% CPU per file for +2% bytes);
#: columns whose values rarely repeat within a file skip the dictionary (-8% CPU,
#: -6% bytes); min/max statistics are kept for the columns readers prune on.
#: ``erp compact`` rewrites merged files with zstd on every column.
EVENT_ZSTD_COLUMNS = ("event_id", "user_id", "anonymous_id", "session_id", "page_url", "user_agent",
                      "properties")
EVENT_PLAIN_COLUMNS = ("event_id", "timestamp", "anonymous_id", "session_id")
INGEST_PARQUET_OPTIONS = dict(
    compression={f.name: ("zstd" if f.name in EVENT_ZSTD_COLUMNS else "none") for f in EVENT_SCHEMA},
    use_dictionary=[f.name for f in EVENT_SCHEMA if f.name not in EVENT_PLAIN_COLUMNS],
    write_statistics=["timestamp", "event_type"])

#: The in-flight table adds the partition columns and the dedup key.
BATCH_SCHEMA = pa.schema(list(EVENT_SCHEMA) + [
    ("tenant_id", pa.string()),
    ("date", pa.date32()),
    ("_key", pa.binary(16)),
])
#: The order of a parsed chunk's rows and of the rows of an event file: partition, then time.
SORT_KEYS = ("tenant_id", "date", "timestamp")

INPUT_FIELDS = ("event_id", "tenant_id", "event_type", "timestamp", "received_at", "sent_at",
                "user_id", "anonymous_id", "session_id", "properties", "metadata")

#: Fields of ``metadata`` promoted to columns and removed from its JSON text
#: (so an IP address is only ever stored in its anonymised column).
PROMOTED_METADATA = ("ip", "user_agent", "country")
TENANT_REGEX = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: Ids and event types may not contain control characters.
CONTROL_CHARS = r"[\x00-\x1f\x7f]"
_CONTROL_RE = re.compile(CONTROL_CHARS)

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH_MS_FLOOR = 100_000_000_000  # 1973-03-03 in ms; smaller numbers look like seconds
MAX_EVENT_TYPE_LEN = 256
MAX_ID_LEN = 256
#: Raw text kept for a rejected line is capped here (a longer line keeps its head).
MAX_KEPT_RAW = 16 * 1024 * 1024


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
    #: tenants whose stored events had reached their storage_quota when the run began
    over_quota: frozenset[str] = frozenset()

    def rules(self, tenant: str) -> TenantRules:
        return self.tenant_rules.get(tenant, self.default_rules)


class ChunkRef(NamedTuple):
    """Where a parser process reads a chunk's bytes itself (see ``erp.core.handoff``),
    and what it checks them against: the file's inode and a digest of the chunk's
    last bytes as the reader saw them (up to 4 KiB, always ending in a newline)."""

    path: str
    start: int
    length: int
    inode: int
    end_digest: int


@dataclass
class Chunk:
    """A block of complete lines from one source. Lines are numbered from 1
    within the chunk (in ``oversized`` and in what the parser rejects); the
    ingest process, which sees the chunks of a source in order, turns them
    into line numbers of the source."""

    source: str
    data: bytes
    end_offset: int
    #: (line number in the chunk, kept head of the raw line, full length) for lines
    #: longer than the reader could hold; they are rejected as line_too_large.
    oversized: list[tuple[int, bytes, int]] = field(default_factory=list)
    #: set when the source ended in the middle of this chunk's last line
    truncated: bool = False
    #: the stream's last bytes before ``end_offset`` (at most 4 KiB) when they are
    #: not in ``data`` (an oversized line, or a chunk left for the parser to read);
    #: the input ledger checks a grown file with them
    tail: bytes | None = None
    #: set when ``data`` is left for the parser process to read from a local file itself
    ref: ChunkRef | None = None


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
    #: the table's Arrow IPC file in shared memory, when it was not sent inline
    table_file: str | None = None


# --- per-event-type schemas ---------------------------------------------------------

#: (tenant, event_type) -> (the schema object compiled, its validator). The schema
#: object is kept and compared by identity, so a process that loads another
#: config (tests, a long-lived server) never validates against a stale schema.
_VALIDATORS: dict[tuple[str | None, str], tuple[Any, Any]] = {}


def schema_validator(ctx: ParseContext, tenant: str, event_type: str) -> Any:
    """The compiled JSON Schema for a tenant's event type (tenant override first), or None."""
    key = (tenant, event_type)
    schema = ctx.schemas.get(key) or ctx.schemas.get((None, event_type))
    cached = _VALIDATORS.get(key)
    if cached is None or cached[0] is not schema:
        v = None
        if schema is not None:
            import jsonschema_rs

            v = jsonschema_rs.validator_for(schema)
        cached = _VALIDATORS[key] = (schema, v)
    return cached[1]


def generated_id(tenant: str, raw: bytes) -> str:
    """A deterministic id from the line's content: the same line gets the same id."""
    h = xxhash.xxh3_128_hexdigest(tenant.encode() + b"\x00" + raw.strip())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def has_control_chars(s: str) -> bool:
    return _CONTROL_RE.search(s) is not None


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
        us = value * 1000
        if us in (float("inf"), float("-inf")):  # a finite number of ms beyond any float of µs
            raise ValueError(f"{value!r} is out of range")
        return int(us)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)  # RFC 3339 allows "z"
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
    """Epoch microseconds as ISO-8601 UTC text; instants outside years 1-9999
    (an epoch-ms timestamp can be anywhere) as the raw number."""
    try:
        return (datetime.fromtimestamp(us / _US, tz=timezone.utc)
                .isoformat().replace("+00:00", "Z"))
    except (ValueError, OverflowError, OSError):
        return f"{us} µs after 1970-01-01T00:00:00Z"


# --- the parser -------------------------------------------------------------------

def epoch_day_to_date(day: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day)
