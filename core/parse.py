"""The ingest hot path: a chunk of NDJSON lines -> accepted events + rejected lines.

Columnar, in three steps:

1. **Validate structure** and find the fields: the native scanner
   (``core/_scan.c``) reads the whole chunk as strict JSON and reports where
   each field's value is; the columns are copied straight out of the chunk,
   with no Python object per line. It takes only what is plainly good and
   leaves everything else (a bad line, an escape in a scalar string, a number
   not in plain form ...) to the general path: one strict msgspec
   ``decode_lines`` of the chunk (required fields, types without lax
   coercion: ``"timestamp": false`` fails, unknown fields) or, if anything
   fails, line by line, each failing line sent to ``diagnose`` for every
   reason. Both paths give the same result for any chunk (tests/test_scan.py);
   without a C compiler at install, every chunk takes the general path.
2. **Build columns**: scalar fields as text columns; the raw
   ``properties``/``metadata`` texts as JSON-text columns, and each distinct
   text decoded once more for the typed hot fields (``page_url``, ``revenue``,
   ``ip`` ...) and enriched once (URL parts, user agent, promoted-key strip,
   IP anonymisation), then spread back to its rows (by the scanner's code per
   line, or by a join on the general path).
3. **Check** with vectorized expressions: tenant rules, timestamps (parse,
   clock-skew correction, future clamp, retention), per-event-type JSON
   Schemas. Rows that fail a check are diagnosed like the rest.

``diagnose`` is the single definition of why a line is rejected; this module
only decides fast whether it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from erp.core.dedup import event_keys
from erp.core.diagnose import diagnose, too_large, truncated
from erp.core.enrich import (
    UserAgentCache, anonymize_ip, anonymize_ipv4_expr, page_path_expr, per_distinct, referrer_domain_expr,
    strip_keys,
)
from erp.core.events import (
    BATCH_SCHEMA, CONTROL_CHARS, MAX_EVENT_TYPE_LEN, MAX_ID_LEN, PROMOTED_METADATA, SORT_KEYS, TENANT_REGEX, Chunk,
    ChunkResult, ParseContext, Rejected, generated_id, parse_time, schema_validator,
)
from erp.core.handoff import attach, exit_with, put_table

_US = 1_000_000
_DAY_US = 86_400 * _US


# gc=False: these hold only strings, numbers and Raw views, never cycles, and
# a chunk makes hundreds of thousands of them (tracking them costs more than decoding)
class _HotProps(msgspec.Struct, gc=False):
    page_url: str | None = None
    referrer: str | None = None
    revenue: float | None = None
    currency: str | None = None


class _Meta(msgspec.Struct, gc=False):
    ip: str | None = None
    user_agent: str | None = None
    country: str | None = None


class _Check(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The input record's structure, strictly typed (validation only)."""

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


_decode_lines = msgspec.json.Decoder(_Check).decode_lines
_decode_one = msgspec.json.Decoder(_Check).decode
_decode_hot = msgspec.json.Decoder(_HotProps).decode
_decode_meta = msgspec.json.Decoder(_Meta).decode
_decode_hot_lines = msgspec.json.Decoder(_HotProps | None).decode_lines
_decode_meta_lines = msgspec.json.Decoder(_Meta | None).decode_lines
_NO_HOT = _HotProps()
_NO_META = _Meta()
_NULL = b"null"


_UA = UserAgentCache()

try:
    from erp.core import _scan as _native  # built from core/_scan.c
except ImportError:  # installed without a C compiler: every chunk takes the general path
    _native = None

#: The fields core/_scan.c reports, in its order, and the kinds of value it tells apart.
SCAN_FIELDS = ("event_type", "timestamp", "event_id", "tenant_id", "user_id", "anonymous_id", "session_id",
               "sent_at", "received_at", "properties", "metadata")
_K_STRING = 2  # and above: a value (K_ABSENT 0, K_NULL 1, K_STRING 2, K_INT 3, K_FLOAT 4, K_OTHER 5)


# --- worker entry points -----------------------------------------------------------

_CTX: ParseContext | None = None
_RESULTS: str | None = None


#: How much lower the parser processes' scheduling priority is than the ingest
#: process's. The ingest process deduplicates, encodes and commits what the
#: parsers return, one commit at a time: the one serial stage. Given the CPU
#: first whenever it has work, it keeps up and the run ends soon after the last
#: chunk is parsed, instead of behind a backlog of commits that only one core
#: can work off. (2M events on 2 cores, 6 alternating pairs: 6.24 -> 5.77 s.)
PARSER_NICE = 5


def init_worker(ctx: ParseContext, results: str | None = None, ingest_pid: int | None = None) -> None:
    """Process-pool initializer: install the context once per parser process, and
    the shared-memory folder results go through (None: inline); lower the
    parser's priority (``PARSER_NICE``). The parser ends when the ingest
    process ``ingest_pid`` does, however it ended (kill -9)."""
    global _CTX, _RESULTS
    _CTX, _RESULTS = ctx, results
    try:
        os.nice(PARSER_NICE)
    except OSError:  # pragma: no cover - raising one's own niceness is always allowed on Linux
        pass
    if ingest_pid is not None:
        exit_with(ingest_pid)


def parse_chunk_in_worker(chunk: Chunk) -> ChunkResult:
    assert _CTX is not None, "init_worker was not called"
    return put_table(parse_chunk(_CTX, attach(chunk)), _RESULTS)


# --- step 1: structure ---------------------------------------------------------------

def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of every line (without the newline)."""
    if _native is not None:
        nl = np.frombuffer(_native.newlines(data), dtype=np.int64)
    else:
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    ends = nl if data.endswith(b"\n") else np.append(nl, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.zeros(0, dtype=np.int64)
    return starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False)


def parse_chunk(ctx: ParseContext, chunk: Chunk) -> ChunkResult:
    try:
        return _parse(ctx, chunk, native=_native is not None)
    except _GeneralPath:
        return _parse(ctx, chunk, native=False)


def _parse(ctx: ParseContext, chunk: Chunk, *, native: bool) -> ChunkResult:
    data = chunk.data
    starts, ends = _line_bounds(data) if data else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    n_lines = len(starts)
    rejected: list[Rejected] = []
    blank = 0

    def raw(i: int) -> bytes:
        r = data[starts[i]:ends[i]]
        return r[:-1] if r.endswith(b"\r") else r

    fields: _Fields | None = None
    checks: list[_Check] | None = None
    lengths = ends - starts
    if n_lines and not chunk.truncated and int(lengths.min()) > 1 and int(lengths.max()) <= ctx.max_line_bytes:
        fields = _scanned(data, n_lines) if native else None
        if fields is None:
            try:
                checks = _decode_lines(data)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                checks = None
            if checks is not None and len(checks) != n_lines:
                checks = None  # a line held more than one value ("{...} {...}")
    if fields is not None or checks is not None:
        good = np.arange(n_lines)
    else:
        checks, keep = [], []
        for i in range(n_lines):
            r = raw(i)
            line_no = i + 1
            if not r or r.isspace():
                blank += 1
                continue
            if len(r) > ctx.max_line_bytes:
                rejected.append(too_large(ctx, chunk.source, line_no, r, len(r)))
                continue
            if chunk.truncated and i == n_lines - 1:
                rejected.append(truncated(ctx, chunk.source, line_no, r))
                continue
            try:
                checks.append(_decode_one(r))
                keep.append(i)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                rejected.append(diagnose(ctx, chunk.source, line_no, r))
        good = np.array(keep, dtype=np.int64)
    for line, head, length in chunk.oversized:
        rejected.append(too_large(ctx, chunk.source, line, head, length))

    table = None
    if len(good):
        if fields is None:
            assert checks is not None
            fields = _decoded(checks)
        table, bad_rows = _build(ctx, fields, lambda j: raw(int(good[j])))
        for j in bad_rows:
            i = int(good[j])
            rejected.append(diagnose(ctx, chunk.source, i + 1, raw(i)))
    # oversized lines are not in ``data`` but are lines of the input all the same
    return ChunkResult(source=chunk.source, end_offset=chunk.end_offset, lines=n_lines + len(chunk.oversized),
                       blank=blank, bytes=len(data), table=table, rejected=rejected)


class _GeneralPath(Exception):
    """A chunk the native scanner read needs the general path after all."""


@dataclass
class _Fields:
    """The input fields of a chunk's lines as columns: the scalar ones as text
    (numbers as their JSON text), ``properties``/``metadata`` as their raw JSON
    text ("null" when absent), in ``texts`` (general path; None when that text
    is not valid UTF-8) or ``distinct`` (native path); ``checks`` are the
    decoded records when msgspec read them."""

    columns: dict[str, pl.Series]
    texts: pl.DataFrame | None
    checks: list[_Check] | None
    #: from the native scanner, instead of ``texts``: (code per line, distinct
    #: texts) of properties, then of metadata
    distinct: tuple[pl.Series, pl.Series, pl.Series, pl.Series] | None = None


def _scanned(data: bytes, n_lines: int) -> _Fields | None:
    """The fields of every line through the native scanner; None when the chunk
    needs the general path (see core/_scan.c)."""
    assert _native is not None
    found = _native.scan(data)
    if found is None:
        return None
    kinds_bytes, spans = found
    if len(kinds_bytes) != n_lines * len(SCAN_FIELDS):
        return None
    kinds = np.frombuffer(kinds_bytes, dtype=np.uint8).reshape(n_lines, len(SCAN_FIELDS))
    columns: dict[str, pl.Series] = {}
    distinct = []
    try:
        for f, name in enumerate(SCAN_FIELDS):
            if name in ("properties", "metadata"):
                codes, firsts = _native.distinct(data, spans, kinds_bytes, f, _NULL)
                rows = np.frombuffer(firsts, dtype=np.int64)
                texts = _text_of(name, *_native.gather(data, _rows_of(spans, n_lines, rows),
                                                       kinds[rows].tobytes(), f, _NULL), None)
                distinct += [pl.Series(name, np.frombuffer(codes, dtype=np.uint32)), texts]
                continue
            valid = kinds[:, f] >= _K_STRING
            if not valid.any():
                columns[name] = pl.repeat(None, n_lines, dtype=pl.String, eager=True).alias(name)
                continue
            columns[name] = _text_of(name, *_native.gather(data, spans, kinds_bytes, f, b""),
                                     None if valid.all() else valid)
    except pl.exceptions.PolarsError:  # invalid UTF-8: the general path says where
        return None
    return _Fields(columns, None, None, distinct=(distinct[0], distinct[1], distinct[2], distinct[3]))


def _rows_of(spans: bytes, n_lines: int, rows: np.ndarray) -> bytes:
    """The scanner's spans of some lines only."""
    return np.frombuffer(spans, dtype=np.int64).reshape(n_lines, -1)[rows].tobytes()


def _text_of(name: str, offsets: bytes, values: bytes, valid: np.ndarray | None) -> pl.Series:
    """A String column from gathered values (null where ``valid`` is False);
    invalid UTF-8 raises PolarsError."""
    mask = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    array = pa.Array.from_buffers(pa.large_binary(), len(offsets) // 8 - 1,
                                  [mask, pa.py_buffer(offsets), pa.py_buffer(values)])
    column = pl.from_arrow(array)
    assert isinstance(column, pl.Series)
    return column.cast(pl.String).alias(name)


def _decoded(checks: list[_Check]) -> _Fields:
    """The fields of msgspec-decoded records."""
    columns = {
        "event_type": pl.Series("event_type", [c.event_type for c in checks], dtype=pl.String),
        "timestamp": _text_column("timestamp", [c.timestamp for c in checks], _text),
        "event_id": pl.Series("event_id", [c.event_id for c in checks], dtype=pl.String),
        "tenant_id": pl.Series("tenant_id", [c.tenant_id for c in checks], dtype=pl.String),
        **{name: _text_column(name, [getattr(c, name) for c in checks], _ident)
           for name in ("user_id", "anonymous_id", "session_id")},
        **{name: _text_column(name, [getattr(c, name) for c in checks], _text) for name in ("sent_at", "received_at")},
    }
    try:
        texts = pl.DataFrame({"_p": _utf8_column([c.properties or _NULL for c in checks]),
                              "_m": _utf8_column([c.metadata or _NULL for c in checks])})
    except pl.exceptions.PolarsError:
        texts = None
    return _Fields(columns, texts, checks)


# --- steps 2 and 3: columns, checks, enrichment ----------------------------------------

def _times(col: pl.Series) -> pl.Series:
    """Text or epoch-ms text -> epoch microseconds (Int64); null where unparseable."""
    if col.null_count() == col.len():
        return pl.repeat(None, col.len(), dtype=pl.Int64, eager=True).alias(col.name)
    fast = _sdk_form(col)
    if fast is not None:
        return fast
    norm = col.str.replace(r"[Zz]$", "+00:00")
    numeric = col.str.contains(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")
    ms = pl.when(numeric).then(col.cast(pl.Float64, strict=False))
    with_offset = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_zone="UTC", time_unit="us")
    naive = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    df = pl.DataFrame({"ms": pl.select(ms).to_series(), "a": with_offset, "b": naive, "numeric": numeric})
    us = df.select(
        pl.when(pl.col("numeric"))
        .then(pl.when((pl.col("ms").abs() >= 1e11) | (pl.col("ms") == 0)).then((pl.col("ms") * 1000).round(0))
              .cast(pl.Int64, strict=False))  # beyond Int64 (an absurd epoch): null, decided below
        .otherwise(pl.coalesce(pl.col("a").dt.epoch("us"), pl.col("b").dt.epoch("us")))
    ).to_series()
    # what Polars reads but the reference parser refuses (year 0, a leap second): the reference decides
    doubtful = col.str.contains(_DOUBTFUL).fill_null(False)
    if doubtful.any():
        us = us.set(doubtful, None)
    # forms the vectorized parser does not know (rare): the reference parser decides
    missing = (us.is_null() & col.is_not_null()).arg_true()
    if len(missing):
        vals = us.to_list()
        for idx in missing.to_list():
            v = col[idx]
            try:
                us_ = parse_time(float(v) if numeric[idx] else v)
            except (ValueError, OverflowError):
                us_ = None
            # outside Int64 microseconds (an absurd epoch): unparseable here; diagnose says why
            vals[idx] = us_ if us_ is None or -(2**63) <= us_ < 2**63 else None
        us = pl.Series(col.name, vals, dtype=pl.Int64)
    return us.rename(col.name)


_SDK_FORM = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z$"
_YEAR_1_US = -62_135_596_800 * _US
_DOUBTFUL = r"^0000|T\d\d:\d\d:60"


def _sdk_form(col: pl.Series) -> pl.Series | None:
    """Epoch microseconds when every value has the form SDKs send
    (``2026-09-01T10:00:00.123Z``), through Arrow's ISO-8601 parser (about ten
    times faster than Polars' strptime; on this form it agrees with the
    reference ``parse_time``, which it is tested against); None otherwise."""
    if not col.str.contains(_SDK_FORM).fill_null(True).all():
        return None
    try:
        parsed = pc.cast(col.to_arrow().cast(pa.string()), pa.timestamp("us", "UTC"))
    except pa.ArrowInvalid:  # an impossible date or time (Feb 30, 24:00, leap second)
        return None
    us = pl.Series(col.name, parsed.cast(pa.int64()), dtype=pl.Int64)
    return us if not (us < _YEAR_1_US).any() else None  # year 0: not a date to the reference parser


class _Invalid(Exception):
    pass


def _objects(checks: list[_Check]) -> tuple[list, list, list, list, list[int]]:
    """Typed hot fields and JSON text of properties/metadata; rows whose free-form
    parts are not objects (or whose hot fields have the wrong type) are returned as bad."""
    hots, metas, ptexts, mtexts, bad = [], [], [], [], []
    for j, c in enumerate(checks):
        try:
            hot, ptext = _one_object(c.properties, _decode_hot, _NO_HOT, bytes.decode)
            meta, mtext = _one_object(c.metadata, _decode_meta, _NO_META, bytes.decode)
        except (_Invalid, msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            bad.append(j)  # diagnose() says why (invalid UTF-8 inside an object is skipped by msgspec)
            hot, meta, ptext, mtext = _NO_HOT, _NO_META, "{}", "{}"
        hots.append(hot)
        metas.append(meta)
        ptexts.append(ptext)
        mtexts.append(mtext)
    return hots, metas, ptexts, mtexts, bad


def _one_object(raw: msgspec.Raw, decode, empty, text) -> tuple:
    """One free-form value: (typed hot fields, JSON text); absent or null is ``{}``."""
    b = bytes(raw)
    if not b or b == _NULL:
        return empty, "{}"
    if b[:1] != b"{":
        raise _Invalid
    return decode(b), text(b)


def _free_form(fields: _Fields) -> tuple[pl.DataFrame, list[int]]:
    """The free-form parts as row-aligned columns (see ``_properties_table`` and
    ``_metadata_table``), plus the rows whose free-form parts are not objects or
    whose hot fields have the wrong type.

    Texts repeat heavily (a chunk of 15k generated events has ~1,700 distinct
    properties and ~3,000 metadata texts), so each distinct text is decoded and
    enriched once, then spread back to its rows. Only a chunk where that fails
    (a bad value, invalid UTF-8) is gone through row by row, after the native
    path hands it to the general one (``_GeneralPath``)."""
    if fields.distinct is not None:
        pcodes, props, mcodes, metas = fields.distinct
        tables = _per_text(props.rename("_p"), metas.rename("_m"))
        if tables is None:
            raise _GeneralPath
        per_text, per_meta = tables[0].drop("_p"), tables[1].drop("_m")
        return pl.concat([per_text.select(pl.all().gather(pcodes)), per_meta.select(pl.all().gather(mcodes))],
                         how="horizontal"), []
    if fields.texts is not None:
        rows = fields.texts
        tables = _per_text(rows.get_column("_p").unique(), rows.get_column("_m").unique())
        if tables is not None:
            out = rows.join(tables[0], on="_p", how="left", maintain_order="left").join(
                tables[1], on="_m", how="left", maintain_order="left")
            return out.drop("_p", "_m"), []
    if fields.checks is None:
        raise _GeneralPath
    return _free_form_by_row(fields.checks)


def _per_text(props: pl.Series, metas: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The properties and metadata tables of distinct texts (``_properties_table``,
    ``_metadata_table``); None when one of them is not an object or null, or a
    hot field has the wrong type."""
    try:
        hots = _decode_hot_lines("\n".join(props.to_list()).encode())
        found = _decode_meta_lines("\n".join(metas.to_list()).encode())
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if len(hots) != len(props) or len(found) != len(metas):
        return None
    return _properties_table(props, hots), _metadata_table(metas, found)


def _utf8_column(raws: list) -> pl.Series:
    """Raw texts (bytes, msgspec.Raw) -> a String column: one joined buffer with
    offsets from the lengths, no object per row. Invalid UTF-8 raises PolarsError."""
    offsets = np.zeros(len(raws) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, raws), dtype=np.int64, count=len(raws)), out=offsets[1:])
    array = pa.Array.from_buffers(pa.large_binary(), len(raws),
                                  [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(raws))])
    column = pl.from_arrow(array)
    assert isinstance(column, pl.Series)
    return column.cast(pl.String)


def _free_form_by_row(checks: list[_Check]) -> tuple[pl.DataFrame, list[int]]:
    hots, metas, ptexts, mtexts, bad = _objects(checks)
    props = _properties_table(pl.Series("_p", ptexts, dtype=pl.String), hots)
    meta = _metadata_table(pl.Series("_m", mtexts, dtype=pl.String), metas)
    return pl.concat([props.drop("_p"), meta.drop("_m")], how="horizontal"), bad


def _properties_table(texts: pl.Series, hots: list[_HotProps | None]) -> pl.DataFrame:
    """Per properties text (``_p``): the stored text and the promoted fields with
    what derives from them."""
    hots = [h if h is not None else _NO_HOT for h in hots]
    referrers = pl.Series("referrer", [h.referrer for h in hots], dtype=pl.String)
    return pl.DataFrame({
        "_p": texts,
        "page_url": pl.Series([h.page_url for h in hots], dtype=pl.String),
        "referrer": referrers,
        "revenue": pl.Series([h.revenue for h in hots], dtype=pl.Float64),
        "currency": pl.Series([h.currency for h in hots], dtype=pl.String),
    }).with_columns(
        properties=pl.col("_p").replace("null", "{}"),
        page_path=page_path_expr(pl.col("page_url")),
    ).with_columns(referrer_domain=per_distinct(referrers, referrer_domain_expr))


def _metadata_table(texts: pl.Series, metas: list[_Meta | None]) -> pl.DataFrame:
    """Per metadata text (``_m``): the stored text (promoted keys removed), the
    promoted fields, the user agent's browser / os / device type, and the IP
    address anonymised (``_ip_anon``; used for tenants that anonymise)."""
    metas = [m if m is not None else _NO_META for m in metas]
    agents = [m.user_agent for m in metas]
    parsed = [_UA.parse(u) if u is not None else (None, None, None) for u in agents]
    table = pl.DataFrame({
        "_m": texts,
        "metadata": strip_keys(texts.replace("null", "{}"), PROMOTED_METADATA),
        "ip": pl.Series([m.ip for m in metas], dtype=pl.String),
        "user_agent": pl.Series(agents, dtype=pl.String),
        "country": pl.Series([m.country for m in metas], dtype=pl.String),
        "browser": pl.Series([p[0] for p in parsed], dtype=pl.String),
        "os": pl.Series([p[1] for p in parsed], dtype=pl.String),
        "device_type": pl.Series([p[2] for p in parsed], dtype=pl.String),
    }).with_columns(_ip_anon=anonymize_ipv4_expr(pl.col("ip")))
    # anything but plain IPv4 (IPv6, junk): the reference function, once per value
    others = table.filter(pl.col("ip").is_not_null() & pl.col("_ip_anon").is_null()).get_column("ip").unique()
    if len(others):
        mapped = {ip: anonymize_ip(ip) for ip in others.to_list()}
        table = table.with_columns(_ip_anon=pl.coalesce(
            pl.col("_ip_anon"), pl.col("ip").replace_strict(mapped, default=None, return_dtype=pl.String)))
    return table


def _text_column(name: str, values: list, convert) -> pl.Series:
    """A String column from decoded values that are almost always text already."""
    if values.count(None) == len(values):
        return pl.repeat(None, len(values), dtype=pl.String, eager=True).alias(name)
    try:
        return pl.Series(name, values, dtype=pl.String, strict=True)
    except TypeError:
        return pl.Series(name, [convert(v) for v in values], dtype=pl.String)


def _build(ctx: ParseContext, fields: _Fields, raw_of) -> tuple[pa.Table | None, list[int]]:
    cols = fields.columns
    n = len(cols["event_type"])
    free, bad_objects = _free_form(fields)

    # event ids (generated from the line when absent) and dedup keys
    event_ids = cols["event_id"]
    if event_ids.null_count():
        ids = event_ids.to_list()
        tenants_in = cols["tenant_id"].to_list()
        for j, eid in enumerate(ids):
            if eid is None:
                ids[j] = generated_id(tenants_in[j] or ctx.default_tenant or "", raw_of(j))
        event_ids = pl.Series("event_id", ids, dtype=pl.String)
    recv_text, sent_text = cols["received_at"], cols["sent_at"]
    df = pl.DataFrame({
        "event_id": event_ids,
        "_key": event_keys(event_ids),
        "tenant_id": cols["tenant_id"],
        "event_type": cols["event_type"],
        "_ts": _times(cols["timestamp"]),
        "_recv_in": _times(recv_text),
        "_sent": _times(sent_text),
        "_has_recv": recv_text.is_not_null(),
        "_has_sent": sent_text.is_not_null(),
        "user_id": cols["user_id"],
        "anonymous_id": cols["anonymous_id"],
        "session_id": cols["session_id"],
        **{col.name: col for col in free.get_columns()},
    })

    default = ctx.default_tenant
    known = list(ctx.known_tenants) if ctx.known_tenants is not None else None
    retention = {t: r.retention_days for t, r in ctx.tenant_rules.items()}
    tenant = pl.coalesce(pl.col("tenant_id"), pl.lit(default, dtype=pl.String)) if default else pl.col("tenant_id")
    recv = pl.coalesce(pl.col("_recv_in"), pl.lit(ctx.now_us, dtype=pl.Int64))
    skewed = (pl.col("_sent").is_not_null() & pl.col("_recv_in").is_not_null()
              & ((pl.col("_sent") - pl.col("_recv_in")).abs() > ctx.skew_threshold_us))
    ts_corr = pl.when(skewed).then(recv - (pl.col("_sent") - pl.col("_ts"))).otherwise(pl.col("_ts"))
    days = pl.col("tenant").replace_strict(retention, default=ctx.default_rules.retention_days,
                                           return_dtype=pl.Int64) if retention else \
        pl.lit(ctx.default_rules.retention_days, dtype=pl.Int64)
    staged = df.with_columns(tenant=tenant, _recv=recv, _skewed=skewed, _tsc=ts_corr).with_columns(_days=days)
    bad = (
        pl.col("tenant").is_null()
        | ~pl.col("tenant").str.contains(TENANT_REGEX)
        | (pl.col("event_type").str.len_chars() == 0)
        | (pl.col("event_type").str.len_chars() > MAX_EVENT_TYPE_LEN)
        | pl.col("event_type").str.contains(CONTROL_CHARS)
        | (pl.col("event_id").str.len_chars() == 0)
        | (pl.col("event_id").str.len_chars() > MAX_ID_LEN)
        | pl.col("event_id").str.contains(CONTROL_CHARS)
        | pl.col("_ts").is_null()
        | (pl.col("_has_recv") & pl.col("_recv_in").is_null())
        | (pl.col("_has_sent") & pl.col("_sent").is_null())
        | (pl.col("_tsc") - pl.col("_recv") > ctx.future_tolerance_us)
        | (pl.col("_tsc") < ctx.earliest_us)
        | (pl.col("_days").is_not_null() & (pl.col("_tsc") < ctx.now_us - pl.col("_days") * _DAY_US))
    )
    if default:
        bad = bad | (pl.col("tenant_id").is_not_null() & (pl.col("tenant_id") != default))
    if known is not None:
        bad = bad | ~pl.col("tenant").is_in(known)
    if ctx.over_quota:
        bad = bad | pl.col("tenant").is_in(list(ctx.over_quota))
    mark = np.zeros(n, dtype=bool)
    mark[bad_objects] = True
    flagged = staged.with_columns(_bad=bad.fill_null(True) | pl.Series(mark))

    # per-event-type JSON Schemas: only rows of event types that have one
    schema_types = {et for (_, et) in ctx.schemas}
    if schema_types:
        cand = flagged.with_row_index("_i").filter(~pl.col("_bad") & pl.col("event_type").is_in(list(schema_types)))
        if cand.height:
            bad_idx = []
            for i, t, et, props in cand.select("_i", "tenant", "event_type", "properties").iter_rows():
                v = schema_validator(ctx, t, et)
                if v is not None and not v.is_valid(orjson.loads(props)):
                    bad_idx.append(i)
            if bad_idx:
                mark = np.zeros(n, dtype=bool)
                mark[bad_idx] = True
                flagged = flagged.with_columns(_bad=pl.col("_bad") | pl.Series(mark))

    bad_rows = flagged.get_column("_bad").arg_true().to_list()
    ok = flagged.filter(~pl.col("_bad")) if bad_rows else flagged  # a filter copies every column
    if ok.height == 0:
        return None, bad_rows
    return _enrich(ctx, ok), bad_rows


def _text(v: object) -> str | None:
    return v if v is None or type(v) is str else repr(v)


def _ident(v: object) -> str | None:
    return v if v is None or type(v) is str else str(v)


def _enrich(ctx: ParseContext, ok: pl.DataFrame) -> pa.Table:
    """Rows that passed every check -> the stored columns (what derives from the
    free-form parts is in ``ok`` already, see ``_free_form``)."""
    anonymize = {t for t, r in ctx.tenant_rules.items() if r.anonymize_ip}
    plain = {t for t, r in ctx.tenant_rules.items() if not r.anonymize_ip}
    if ctx.default_rules.anonymize_ip:
        anon_row = ~pl.col("tenant").is_in(list(plain)) if plain else pl.lit(True)
    else:
        anon_row = pl.col("tenant").is_in(list(anonymize)) if anonymize else pl.lit(False)

    ts = pl.when(pl.col("_tsc") > pl.col("_recv")).then(pl.col("_recv")).otherwise(pl.col("_tsc"))
    out = ok.with_columns(
        ts_clamped=pl.col("_tsc") > pl.col("_recv"),
        ts_skew_corrected=pl.col("_skewed"),
        timestamp=ts,
        ip=pl.when(anon_row).then(pl.col("_ip_anon")).otherwise(pl.col("ip")),
    )
    out = out.with_columns(
        timestamp=pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
        received_at=pl.col("_recv").cast(pl.Datetime("us", "UTC")),
        sent_at=pl.col("_sent").cast(pl.Datetime("us", "UTC")),
        user_id=pl.col("user_id"), tenant_id=pl.col("tenant"),
        date=(pl.col("timestamp") // _DAY_US).cast(pl.Int32).cast(pl.Date),
        ingest_batch=pl.lit(ctx.batch_id, dtype=pl.String),
    )
    # sorted as event files are (the commit then writes slices of the chunks, see
    # ``erp.core.ingest._partitions``); Polars' own string views out, one cast to
    # the batch schema (not via large_string)
    return (out.select(BATCH_SCHEMA.names).sort(list(SORT_KEYS), maintain_order=True)
            .to_arrow(compat_level=pl.CompatLevel.newest()).cast(BATCH_SCHEMA))
