"""What the collector accepts on the wire, and how it becomes spool records.

Three dialects map onto the one NDJSON event ``erp ingest`` reads (see the
README, "The event"):

* native (``POST /api/v1/events``): one event object, or ``{"events": [...]}``;
  strict: unknown fields and wrong types are refused, ``"timestamp": false`` is
  not a timestamp;
* Segment (``/v1/batch``, ``/v1/track``, ``/v1/page``, ``/v1/identify``,
  ``/v1/screen``): ``messageId`` -> ``event_id``, ``sentAt`` -> ``sent_at``;
* PostHog (``/batch/``, ``/capture/``, ``/e/``): ``uuid`` -> ``event_id``,
  ``distinct_id`` -> ``user_id``.

Every event's raw JSON is measured before it is decoded: over
``MAX_EVENT_BYTES`` it becomes a rejected row (``size_violation``) and the rest
of the batch goes on. In a batch, an event that does not fit its dialect
becomes a rejected row (``invalid_event``) with the reason; a request holding a
single such event is refused with 400 and that reason.
"""

from __future__ import annotations

import itertools
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from erp.core.collect_models import (
    NativeBatch, NativeBatchDoc, NativeEvent, PostHogBatch, PostHogEvent, SegmentBatch, SegmentMessage,
)

MAX_EVENT_BYTES = 32 * 1024
MAX_BODY_BYTES = 20 * 1024 * 1024
#: Raw text kept for a row refused at the door (its full length is recorded).
MAX_KEPT_RAW = 64 * 1024


class RequestError(Exception):
    """A request the collector refuses as a whole (4xx), with what to fix."""

    def __init__(self, status: int, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint

    def body(self) -> dict[str, Any]:
        out = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


# --- bodies -------------------------------------------------------------------------------

def decode_body(body: bytes, content_encoding: str | None, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, decompressed, at most ``limit`` bytes (else 413).

    Decompression stops as soon as the output passes the limit, so a small
    gzip bomb costs at most ``limit`` bytes of memory."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise RequestError(415, "unsupported_encoding", f"Content-Encoding {content_encoding!r} is not supported",
                           "send the body uncompressed or with Content-Encoding: gzip")
    out = bytearray()
    data = body
    try:
        while data:
            d = zlib.decompressobj(31 if enc != "deflate" else 15)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise _too_large(None, limit)
            if not d.eof:
                raise RequestError(400, "bad_gzip", "the gzip body is truncated",
                                   "send the whole compressed body")
            data = d.unused_data  # concatenated gzip members
    except zlib.error as exc:
        raise RequestError(400, "bad_gzip", f"the body is not valid {enc}: {exc}",
                           "compress the body with gzip, or drop the Content-Encoding header") from exc
    return bytes(out)


def _too_large(n: int | None, limit: int) -> RequestError:
    size = f" ({n:,} bytes)" if n is not None else ""
    return RequestError(413, "body_too_large",
                        f"the request body{size} is over the {limit:,}-byte limit (after decompression)",
                        f"send smaller batches; each event may be up to {MAX_EVENT_BYTES:,} bytes")


def _json(data: bytes, tp: Any, what: str) -> Any:
    try:
        return msgspec.json.decode(data, type=tp)
    except msgspec.ValidationError as exc:
        raise RequestError(400, "invalid_body", f"{what}: {exc}",
                           "see the API description at /docs or /openapi.json") from exc
    except msgspec.DecodeError as exc:
        raise RequestError(400, "malformed_json", f"the body is not valid JSON: {exc}",
                           "send one JSON document (UTF-8); check quoting and commas") from exc


# --- the result of reading one request ------------------------------------------------------

def _id_prefix() -> str:
    u = str(uuid.uuid4())  # 8-4-4-4-12 hex, version 4
    return u[:24]


_ID_PREFIX = _id_prefix()
_ID_COUNTER = itertools.count(1)


class _Ids:
    """Event ids for events sent without one, shaped like a UUIDv4: 74 random
    bits drawn once per collector process, then a 48-bit counter (no random
    draw per request: the system's random source costs ~50 us a call here)."""

    __slots__ = ()

    def __call__(self) -> str:
        return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


@dataclass
class RequestInfo:
    received_at: str  # ISO-8601 UTC
    ip: str | None
    user_agent: str | None
    source: str  # e.g. "collect POST /v1/batch"


@dataclass
class Parsed:
    """Events ready for the spool, and the rows refused at the door."""

    key: str | None = None  # an API key found in the body (Segment writeKey, PostHog api_key)
    claimed_tenants: set = field(default_factory=set)  # tenant_id values events named (native)
    records: list[bytes] = field(default_factory=list)  # encoded events, without tenant_id
    ids: list[str | None] = field(default_factory=list)  # per input event; None = rejected
    rejected: list[dict[str, Any]] = field(default_factory=list)  # index, code, message (+ raw)
    single: bool = False
    new_id: Any = field(default_factory=_Ids)

    def encode(self, tenant: str) -> tuple[bytes, bytes]:
        """(events NDJSON, rejected rows NDJSON), with the authenticated tenant
        written first into every record (the records never carry their own)."""
        head = b'{"tenant_id":' + orjson.dumps(tenant) + b","
        ev = bytearray()
        for rec in self.records:
            ev += head
            ev += memoryview(rec)[1:]
            ev += b"\n"
        rj = bytearray()
        for row in self.rejected:
            rj += safe_dumps(row["row"])
            rj += b"\n"
        return bytes(ev), bytes(rj)

    def summary(self) -> list[dict[str, Any]]:
        return [{"index": r["index"], "reason": r["code"], "message": r["message"]} for r in self.rejected]


def _reject(p: Parsed, info: RequestInfo, index: int, raw: bytes, code: str, message: str,
            field_name: str | None = None) -> None:
    row: dict[str, Any] = {"source": info.source, "line": index + 1,
                           "reasons": [{"code": code, "message": message, "field": field_name}],
                           "received_at": info.received_at}
    head = raw[:MAX_KEPT_RAW]
    row["raw"] = head.decode("utf-8", "replace")
    if len(head) != len(raw):
        row["raw_length"] = len(raw)
        row["raw_truncated"] = True
    p.rejected.append({"index": index, "code": code, "message": message, "row": row})
    p.ids.append(None)


def _size_ok(p: Parsed, info: RequestInfo, index: int, raw: bytes) -> bool:
    if len(raw) <= MAX_EVENT_BYTES:
        return True
    _reject(p, info, index, raw, "size_violation",
            f"the event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,} bytes per event")
    return False


def _decode_event(p: Parsed, info: RequestInfo, index: int, raw: bytes, tp: type, single: bool) -> Any:
    try:
        return msgspec.json.decode(raw, type=tp)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        msg = f"event {index}: {exc}" if not single else str(exc)
        if single:
            raise RequestError(400, "invalid_event", msg, _HINTS.get(tp, "")) from exc
        _reject(p, info, index, raw, "invalid_event", msg)
        return None


_HINTS: dict[type, str] = {
    NativeEvent: "an event has event_type (text), timestamp (ISO-8601 text or epoch ms), optional "
                 "event_id, user_id, anonymous_id, session_id, sent_at, properties {}, metadata {}",
    SegmentMessage: "see the Segment HTTP tracking API: type, event, userId/anonymousId, properties, timestamp",
    PostHogEvent: "a PostHog event has event (text), distinct_id, properties {}, timestamp, uuid",
}


def _meta(info: RequestInfo, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if info.ip:
        m["ip"] = info.ip
    if info.user_agent:
        m["user_agent"] = info.user_agent
    if extra:
        m.update({k: v for k, v in extra.items() if v is not None})
    return m


def _add(p: Parsed, info: RequestInfo, index: int, raw: bytes, rec: dict[str, Any]) -> None:
    try:
        enc = orjson.dumps({k: v for k, v in rec.items() if v is not None})
    except TypeError as exc:  # integers beyond 64 bits, lone surrogates in text
        _bad(p, info, index, raw, f"cannot be stored: {exc} (integers must fit in 64 bits; text must be "
                                  "valid Unicode)")
        return
    p.records.append(enc)
    p.ids.append(rec["event_id"])


def safe_dumps(obj: Any) -> bytes:
    """JSON bytes of an answer or a rejected row, whatever text it quotes."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        import json

        return json.dumps(obj, ensure_ascii=True, default=str).encode()


# --- native ------------------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


def parse_native(body: bytes, info: RequestInfo) -> Parsed:
    top = _json(body, dict[str, msgspec.Raw], "expected a JSON object: one event, or {\"events\": [...]}")
    p = Parsed()
    if "events" in top:
        batch = _json(body, NativeBatch, "batch envelope")
        raws, batch_sent = batch.events, batch.sent_at
        if not raws:
            raise RequestError(400, "empty_batch", "the events list is empty", "send at least one event")
    else:
        p.single = True
        raws, batch_sent = [msgspec.Raw(body)], None
    events: list[NativeEvent | None] | None = None
    if not p.single and all(len(r) <= MAX_EVENT_BYTES for r in raws):
        try:  # the common case: one decode for the whole batch
            events = list(msgspec.json.decode(body, type=NativeBatchDoc).events)
        except (msgspec.ValidationError, msgspec.DecodeError):
            events = None  # some event is bad: go one by one to say which
    head = b'{"received_at":' + orjson.dumps(info.received_at) + b","
    meta_defaults = _meta(info)
    for i, raw in enumerate(raws):
        if events is not None:
            ev = events[i]
        else:
            data = bytes(raw)
            if not _size_ok(p, info, i, data):
                continue
            ev = _decode_event(p, info, i, data, NativeEvent, p.single)
            if ev is None:
                continue
        if ev.tenant_id is not None:
            p.claimed_tenants.add(ev.tenant_id)
            ev.tenant_id = None  # written from the API key instead
        if ev.event_id is None:
            ev.event_id = p.new_id()
        if ev.timestamp is None:
            ev.timestamp = info.received_at
        if ev.sent_at is None:
            ev.sent_at = batch_sent
        if ev.metadata is None:
            ev.metadata = meta_defaults or None
        else:
            for k, v in meta_defaults.items():
                ev.metadata.setdefault(k, v)
        try:
            enc = _ENCODER.encode(ev)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. integers beyond 64 bits
            _bad(p, info, i, bytes(raw), f"cannot be stored: {exc} (integers must fit in 64 bits; text must "
                                         "be valid Unicode)")
            continue
        p.records.append(head + enc[1:])
        p.ids.append(ev.event_id)
    return p


# --- Segment ----------------------------------------------------------------------------

SEGMENT_TYPES = {"track": None, "page": "page_view", "screen": "screen_view", "identify": "identify",
                 "group": "group", "alias": "alias"}


def parse_segment(body: bytes, info: RequestInfo, call: str) -> Parsed:
    """``call`` is ``batch`` or the message type of a single-call endpoint."""
    p = Parsed()
    if call == "batch":
        env = _json(body, SegmentBatch, "a Segment batch is {\"batch\": [...]}")
        raws, sent, ctx, p.key = env.batch, env.sentAt, env.context, env.writeKey
    else:
        p.single = True
        raws, sent, ctx = [msgspec.Raw(body)], None, None
    for i, raw in enumerate(raws):
        data = bytes(raw)
        if not _size_ok(p, info, i, data):
            continue
        msg = _decode_event(p, info, i, data, SegmentMessage, p.single)
        if msg is None:
            continue
        if p.key is None and msg.writeKey:
            p.key = msg.writeKey
        kind = msg.type if call == "batch" else call
        if kind not in SEGMENT_TYPES:
            _bad(p, info, i, data, f"unknown message type {kind!r}; valid: " + ", ".join(SEGMENT_TYPES))
            continue
        event_type = SEGMENT_TYPES[kind] or msg.event
        if not event_type:
            _bad(p, info, i, data, "a track call needs `event` (the event name)")
            continue
        props = dict(msg.traits or {}) if kind in ("identify", "group") else dict(msg.properties or {})
        if kind in ("page", "screen") and msg.name is not None:
            props.setdefault("name", msg.name)
        if kind == "page" and isinstance(props.get("url"), str):
            props.setdefault("page_url", props["url"])
        context = {**(ctx or {}), **(msg.context or {})}
        lib = context.get("library") if isinstance(context.get("library"), dict) else {}
        extra = {"sdk": "/".join(str(lib[k]) for k in ("name", "version") if lib.get(k)) or None}
        meta = _meta(info, extra)
        if isinstance(context.get("userAgent"), str):
            meta["user_agent"] = context["userAgent"]
        if isinstance(context.get("ip"), str):
            meta["ip"] = context["ip"]
        session = context.get("sessionId")
        ts = msg.timestamp if msg.timestamp is not None else msg.originalTimestamp
        _add(p, info, i, data, {"event_id": msg.messageId or p.new_id(), "event_type": event_type,
                 "timestamp": ts if ts is not None else info.received_at,
                 "received_at": info.received_at,
                 "sent_at": msg.sentAt if msg.sentAt is not None else sent,
                 "user_id": msg.userId, "anonymous_id": msg.anonymousId,
                 "session_id": session if isinstance(session, (str, int)) and not isinstance(session, bool)
                 else None,
                 "properties": props or None, "metadata": meta or None})
    return p


def _bad(p: Parsed, info: RequestInfo, i: int, raw: bytes, message: str) -> None:
    if p.single:
        raise RequestError(400, "invalid_event", message)
    _reject(p, info, i, raw, "invalid_event", f"event {i}: {message}")


# --- PostHog ----------------------------------------------------------------------------

def parse_posthog(body: bytes, info: RequestInfo) -> Parsed:
    p = Parsed()
    first = body.lstrip()[:1]
    sent: Any = None
    if first == b"[":
        raws = _json(body, list[msgspec.Raw], "expected a JSON list of events")
    else:
        top = _json(body, dict[str, msgspec.Raw], "expected a JSON object: an event, or {\"batch\": [...]}")
        if "batch" in top:
            env = _json(body, PostHogBatch, "a PostHog batch is {\"api_key\": ..., \"batch\": [...]}")
            raws, sent, p.key = env.batch, env.sent_at, env.api_key or env.token
        else:
            p.single = True
            raws = [msgspec.Raw(body)]
    for i, raw in enumerate(raws):
        data = bytes(raw)
        if not _size_ok(p, info, i, data):
            continue
        ev = _decode_event(p, info, i, data, PostHogEvent, p.single)
        if ev is None:
            continue
        props = dict(ev.properties or {})
        if p.key is None:
            tok = ev.api_key or ev.token or props.get("token")
            p.key = tok if isinstance(tok, str) else None
        props.pop("token", None)
        distinct = ev.distinct_id if ev.distinct_id is not None else props.get("distinct_id")
        event_type = ev.event
        if event_type == "$pageview":
            event_type = "page_view"
            if isinstance(props.get("$current_url"), str):
                props.setdefault("page_url", props["$current_url"])
            if isinstance(props.get("$referrer"), str) and props["$referrer"] != "$direct":
                props.setdefault("referrer", props["$referrer"])
        lib = "/".join(str(props[k]) for k in ("$lib", "$lib_version") if props.get(k)) or None
        meta = _meta(info, {"sdk": lib})
        if isinstance(props.get("$ip"), str):
            meta["ip"] = props["$ip"]
        session = props.get("$session_id")
        _add(p, info, i, data, {"event_id": ev.uuid or p.new_id(), "event_type": event_type,
                 "timestamp": ev.timestamp if ev.timestamp is not None else info.received_at,
                 "received_at": info.received_at, "sent_at": sent,
                 "user_id": distinct if isinstance(distinct, (str, int)) and not isinstance(distinct, bool)
                 else None,
                 "session_id": session if isinstance(session, str) else None,
                 "properties": props or None, "metadata": meta or None})
    return p


def json_schema(tp: Any) -> dict[str, Any]:
    """A JSON Schema (with $defs inlined under components) for the API description."""
    (schema,), components = msgspec.json.schema_components([tp], ref_template="#/components/schemas/{name}")
    return {"schema": schema, "components": components}
