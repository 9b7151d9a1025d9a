"""The real client libraries from PyPI send to a real collector on 127.0.0.1.

The collector answers every third event request with 500 *after* spooling it
(test-only fault injection), so the SDKs retry batches that were in fact
stored: after ``erp ingest --spool`` every event must be in the lake exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from collect_support import KEYS, ThreadCollector, drain_lib, write_project
from conftest import read_events

N = 25


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def collector(project: Path):
    c = ThreadCollector(project, fault_500_every=3).start()
    yield c
    c.stop()


def finish(c: ThreadCollector, project: Path, sent_ids: list[str], tenant: str) -> dict:
    metrics = httpx.get(c.url + "/metrics").text
    assert 'status="500"' in metrics, "no request failed: the retry path was not exercised"
    c.stop()
    result = drain_lib(project)
    df = read_events(project.parent / "lake")
    stored = df["event_id"].to_list()
    assert sorted(stored) == sorted(sent_ids), "every event exactly once"
    assert set(df["tenant_id"]) == {tenant}
    assert result["duplicates"] > 0  # retried batches arrived again and were dropped by event_id
    return {r["event_id"]: r for r in df.iter_rows(named=True)}


def test_segment_sdk_with_retries(collector: ThreadCollector, project: Path) -> None:
    from segment.analytics import Client

    errors: list = []
    client = Client(KEYS["acme"], host=collector.url, upload_size=5, upload_interval=0.05, max_retries=6,
                    on_error=lambda e, batch: errors.append(e))
    ids = []
    for i in range(N):
        if i % 5 == 0:
            ok, msg = client.page(user_id=f"u{i}", name="Home", properties={"url": f"https://a.example/p/{i}?q=1"})
        else:
            ok, msg = client.track(user_id=f"u{i}", event="Order Completed", properties={"revenue": float(i)})
        assert ok
        ids.append(msg["messageId"])
    client.flush()
    client.join()
    assert not errors, errors
    rows = finish(collector, project, ids, "acme")
    assert rows[ids[0]]["event_type"] == "page_view" and rows[ids[0]]["page_path"] == "/p/0"
    assert rows[ids[1]]["event_type"] == "Order Completed" and rows[ids[1]]["revenue"] == 1.0
    assert rows[ids[1]]["user_id"] == "u1" and rows[ids[1]]["sent_at"] is not None


def test_rudderstack_sdk_gzip_with_retries(collector: ThreadCollector, project: Path) -> None:
    from rudderstack.analytics.client import Client

    logging.getLogger("backoff").setLevel(logging.CRITICAL)
    errors: list = []
    client = Client(KEYS["globex"], host=collector.url, gzip=True, upload_size=5, upload_interval=0.05,
                    max_retries=6, on_error=lambda e, batch: errors.append(e))
    ids = []
    for i in range(N):
        ok, msg = client.track(user_id=f"u{i}", event="signup", properties={"plan": "pro"},
                               anonymous_id=f"a{i}")
        assert ok
        ids.append(msg["messageId"])
    client.flush()
    client.join()
    assert not errors, errors
    assert 'erp_collect_request_bodies_total{encoding="gzip"}' in httpx.get(collector.url + "/metrics").text
    assert 'encoding="identity"' not in httpx.get(collector.url + "/metrics").text
    rows = finish(collector, project, ids, "globex")
    assert {r["event_type"] for r in rows.values()} == {"signup"}
    assert rows[ids[3]]["anonymous_id"] == "a3"


def test_posthog_sdk_with_retries(collector: ThreadCollector, project: Path) -> None:
    from posthog import Posthog

    logging.getLogger("posthog").setLevel(logging.CRITICAL)
    client = Posthog(KEYS["acme"], host=collector.url, flush_at=5, flush_interval=0.05, max_retries=6,
                     gzip=True, enable_local_evaluation=False)
    ids = []
    for i in range(N):
        event = "$pageview" if i % 2 else "clicked"
        uid = client.capture(event, distinct_id=f"d{i}",
                             properties={"$current_url": f"https://b.example/x/{i}", "$session_id": "s1"})
        assert uid
        ids.append(uid)
    client.flush()
    client.shutdown()
    rows = finish(collector, project, ids, "acme")
    assert rows[ids[1]]["event_type"] == "page_view" and rows[ids[1]]["page_path"] == "/x/1"
    assert rows[ids[0]]["event_type"] == "clicked" and rows[ids[0]]["user_id"] == "d0"
    assert rows[ids[0]]["session_id"] == "s1"
