"""Why a line is rejected: the slow path that collects every reason.

The fast parser (``erp.core.parse``) only decides *whether* a line is
accepted; every line it refuses comes here, so the reasons stored in
``_rejected/`` are complete and come from one place.
"""

from __future__ import annotations

from typing import Any

import orjson

from erp.core.events import (
    INPUT_FIELDS, MAX_EVENT_TYPE_LEN, MAX_ID_LEN, MAX_KEPT_RAW, PROMOTED_METADATA, ParseContext, Reason,
    Rejected, format_us, has_control_chars, parse_time, schema_validator,
)
from erp.core.tenants import INVALID_TENANT_BUCKET, is_valid_tenant_id

_US = 1_000_000
_DAY_US = 86_400 * _US


def _bucket_of(raw: bytes, ctx: ParseContext) -> str:
    if ctx.default_tenant:
        return ctx.default_tenant
    try:
        t = orjson.loads(raw).get("tenant_id")
    except Exception:
        return INVALID_TENANT_BUCKET
    known = ctx.known_tenants is None or t in ctx.known_tenants
    return t if is_valid_tenant_id(t) and known else INVALID_TENANT_BUCKET


def too_large(ctx: ParseContext, source: str, line: int, head: bytes, length: int) -> Rejected:
    kept = head[:MAX_KEPT_RAW]
    return Rejected(ctx.default_tenant or INVALID_TENANT_BUCKET, source, line, kept,
                    [Reason("line_too_large", f"line is {length} bytes; the limit is "
                            f"{ctx.max_line_bytes} (ingest.max_line_bytes)")], raw_length=length)


def truncated(ctx: ParseContext, source: str, line: int, raw: bytes) -> Rejected:
    return Rejected(_bucket_of(raw, ctx), source, line, raw,
                    [Reason("truncated_input", "the input ended in the middle of this line "
                            "(truncated file or gzip stream)")])


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
_META_TYPES = {k: (str,) for k in PROMOTED_METADATA}


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
        elif tenant in ctx.over_quota:
            reasons.append(Reason("quota_exceeded", f"tenant {tenant!r} has reached its storage_quota; "
                                  "raise it in tenants.yaml or lower retention_days, then ingest "
                                  "this file again", field="tenant_id"))
    # A line is filed under the tenant it names only when that tenant may receive
    # it: a mismatch stays with the input's tenant (--tenant), an unknown tenant
    # goes to _invalid, so no input can create or fill another tenant's folder.
    if tenant is not None and not any(r.code in ("tenant_mismatch", "unknown_tenant") for r in reasons):
        bucket = tenant

    et = doc.get("event_type")
    if isinstance(et, str) and (not et or len(et) > MAX_EVENT_TYPE_LEN or has_control_chars(et)):
        reasons.append(Reason("invalid_event_type", "event_type must be 1-256 characters without control characters",
                              field="event_type"))
    eid = doc.get("event_id")
    if isinstance(eid, str) and (not eid or len(eid) > MAX_ID_LEN or has_control_chars(eid)):
        reasons.append(Reason("invalid_event_id", "event_id must be 1-256 characters without control characters",
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
    if props is None and "properties" not in bad:
        props = {}  # an absent object is checked as an empty one, as the fast path does
    if isinstance(props, dict):
        for k, types_ in _HOT_TYPES.items():
            v = props.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, types_)):
                reasons.append(Reason("invalid_type", f"properties.{k} must be "
                                      f"{'a number' if k == 'revenue' else 'text'}, got {_json_type(v)}",
                                      field=f"properties.{k}"))
        if tenant and isinstance(et, str):
            v = schema_validator(ctx, tenant, et)
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
