"""The collector's wire models: strict msgspec types for the native API and the
fields the Segment- and PostHog-compatible endpoints read. msgspec never
coerces: ``"timestamp": false`` is not a timestamp, ``"1"`` is not a number.
They also give the OpenAPI description its request schemas."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Scalar = str | Int64
#: Epoch milliseconds within the years 1-9999 (what ISO-8601 text can say too).
EpochMs = Annotated[int, msgspec.Meta(ge=-62_135_596_800_000, le=253_402_300_799_999)]
Time = str | EpochMs


class NativeEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One event of the native API."""

    event_type: str
    event_id: str | None = None
    tenant_id: str | None = None
    timestamp: Time | None = None
    sent_at: Time | None = None
    user_id: Scalar | None = None
    anonymous_id: Scalar | None = None
    session_id: Scalar | None = None
    properties: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class NativeBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]
    sent_at: Time | None = None


class NativeBatchDoc(msgspec.Struct, forbid_unknown_fields=True):
    """The batch envelope, for the API description."""

    events: list[NativeEvent]
    sent_at: Time | None = None


class SegmentMessage(msgspec.Struct):
    type: str | None = None
    messageId: str | None = None
    event: str | None = None
    name: str | None = None
    userId: Scalar | None = None
    anonymousId: Scalar | None = None
    timestamp: Time | None = None
    originalTimestamp: Time | None = None
    sentAt: Time | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    writeKey: str | None = None


class SegmentBatch(msgspec.Struct):
    batch: list[msgspec.Raw]
    sentAt: Time | None = None
    writeKey: str | None = None
    context: dict[str, Any] | None = None


class SegmentBatchDoc(msgspec.Struct):
    batch: list[SegmentMessage]
    sentAt: Time | None = None
    writeKey: str | None = None
    context: dict[str, Any] | None = None


class PostHogEvent(msgspec.Struct):
    event: str
    distinct_id: Scalar | None = None
    properties: dict[str, Any] | None = None
    timestamp: Time | None = None
    uuid: str | None = None
    api_key: str | None = None
    token: str | None = None
    type: str | None = None


class PostHogBatch(msgspec.Struct):
    batch: list[msgspec.Raw]
    api_key: str | None = None
    token: str | None = None
    sent_at: Time | None = None


class PostHogBatchDoc(msgspec.Struct):
    batch: list[PostHogEvent]
    api_key: str | None = None
    sent_at: Time | None = None
