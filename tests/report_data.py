"""Helpers for the report tests: event frames in the lake schema, and a small
fixed event log around the 2026 America/New_York fall-back change."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import polars as pl

from erp.core.events import EVENT_SCHEMA

SCHEMA = pl.Schema(pl.from_arrow(EVENT_SCHEMA.empty_table()).schema)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows (any subset of the event columns; ``properties`` may be a dict) as a
    frame with the lake's schema."""
    out = []
    for i, r in enumerate(rows):
        rec = {c: None for c in SCHEMA.names()}
        rec["event_id"] = f"e{i}"
        rec.update(r)
        if isinstance(rec["timestamp"], str):
            rec["timestamp"] = ts(rec["timestamp"])
        if isinstance(rec.get("properties"), dict):
            rec["properties"] = json.dumps(rec["properties"])
        out.append(rec)
    return pl.DataFrame(out, schema=SCHEMA)


#: The fixed log. Tenant timezone America/New_York; 2026-11-01 is the fall-back day
#: (25 hours: local midnight 04:00Z .. next midnight 05:00Z).
FIXED = [
    # previous period (2026-10-30 .. 10-31 local)
    dict(event_type="signup", timestamp="2026-10-30T12:00:00Z", user_id="u3", session_id="s0",
         properties={"plan": "free"}),
    dict(event_type="page_view", timestamp="2026-11-01T03:59:59Z", user_id="u1", page_path="/"),  # Oct 31 23:59 EDT
    # current period (2026-11-01 .. 11-02 local)
    dict(event_type="page_view", timestamp="2026-11-01T04:00:00Z", user_id="u1", session_id="s1",
         page_path="/", device_type="mobile"),                                      # Nov 1 00:00 EDT
    dict(event_type="page_view", timestamp="2026-11-01T05:30:00Z", anonymous_id="a1", session_id="s2",
         page_path="/pricing", device_type="desktop"),                              # 01:30 EDT
    dict(event_type="click", timestamp="2026-11-01T06:30:00Z", user_id="u2", session_id="s3",
         device_type="desktop", properties={"element": "button"}),                   # 01:30 EST
    dict(event_type="purchase", timestamp="2026-11-02T04:30:00Z", user_id="u2", session_id="s3",
         revenue=10.5, properties={"revenue": 10.5, "items": 2}),                   # Nov 1 23:30 EST
    dict(event_type="purchase", timestamp="2026-11-02T05:00:00Z", user_id="u1", revenue=4.5,
         properties={"revenue": 4.5, "items": 1}),                                  # Nov 2 00:00 EST
    dict(event_type="page_view", timestamp="2026-11-02T12:00:00Z", page_path="/pricing",
         properties={"plan": "pro"}),                                               # Nov 2, nobody
]
