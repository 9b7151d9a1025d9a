"""``erp collect`` over real HTTP: a real collector process on 127.0.0.1, then
``erp ingest --spool`` into a real lake."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from collect_support import (
    KEYS, Collector, ThreadCollector, Tmpfs, drain, drain_lib, new_id, now_iso, write_project,
)
from conftest import read_events, read_rejected

ACME = {"Authorization": f"Bearer {KEYS['acme']}"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def collector(project: Path):
    c = ThreadCollector(project).start()
    yield c
    c.stop()


def native(**fields) -> dict:
    ev = {"event_id": new_id(), "event_type": "click", "timestamp": now_iso(), "user_id": "u1"}
    ev.update(fields)
    return ev


def test_native_single_and_batch_land_in_the_lake_once(collector: Collector, project: Path) -> None:
    one = native(properties={"page_url": "https://shop.example/a?b=1", "revenue": 9.5})
    r = httpx.post(collector.url + "/api/v1/events", json=one, headers=ACME)
    assert r.status_code == 202
    body = r.json()
    assert body["event_id"] == one["event_id"] and body["status"] == "accepted" and body["timestamp"]
    # no event_id: the collector generates one and returns it
    r = httpx.post(collector.url + "/api/v1/events", json={"event_type": "signup"}, headers=ACME)
    generated = r.json()["event_id"]
    assert r.status_code == 202 and len(generated) == 36
    batch = [native() for _ in range(5)]
    r = httpx.post(collector.url + "/api/v1/events", json={"events": batch}, headers=ACME)
    assert r.status_code == 202
    assert r.json()["event_ids"] == [e["event_id"] for e in batch]
    # a retry of the same batch must not double anything
    assert httpx.post(collector.url + "/api/v1/events", json={"events": batch}, headers=ACME).status_code == 202
    collector.stop()
    result = drain(project)  # through the CLI once
    assert result["ok"] and result["duplicates"] == 5
    df = read_events(project.parent / "lake")
    assert df.height == 7
    assert set(df["event_id"]) == {one["event_id"], generated, *(e["event_id"] for e in batch)}
    assert set(df["tenant_id"]) == {"acme"}
    row = df.filter(pl.col("event_id") == one["event_id"]).row(0, named=True)
    assert row["page_path"] == "/a" and row["revenue"] == 9.5 and row["ip"] == "127.0.0.0"
    assert row["received_at"] is not None
    # drained segments are gone; a second drain finds nothing
    assert not list((project.parent / "spool").rglob("*.ndjson"))
    assert drain_lib(project)["segments"] == 0


def test_every_error_status_says_what_to_fix(collector: Collector) -> None:
    url = collector.url + "/api/v1/events"
    cases = [
        (httpx.post(url, json=native()), 401, "unauthorized"),
        (httpx.post(url, json=native(), headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"),
        (httpx.post(url, json=native(), headers={**ACME, "X-Tenant-ID": "globex"}), 403, "forbidden"),
        (httpx.post(url, json=native(tenant_id="globex"), headers=ACME), 403, "forbidden"),
        (httpx.post(url, content=b'{"event_type": "x",', headers=ACME), 400, "malformed_json"),
        (httpx.post(url, json=native(timestamp=False), headers=ACME), 400, "invalid_event"),
        (httpx.post(url, json=native(colour="red"), headers=ACME), 400, "invalid_event"),
        (httpx.post(url, json=[native()], headers=ACME), 400, "invalid_body"),
        (httpx.post(url, content=b'{"event_type": "x", "user_id": 1180591620717411303424}', headers=ACME), 400,
         "invalid_event"),
        (httpx.post(url, json={"events": []}, headers=ACME), 400, "empty_batch"),
        # epoch ms beyond year 9999 never reaches the drain (it would stop the ingest of the whole spool)
        (httpx.post(url, json=native(timestamp=9_223_372_036_854_775_807), headers=ACME), 400, "invalid_event"),
        (httpx.post(url, json=native(timestamp=1e300), headers=ACME), 400, "invalid_event"),
        (httpx.post(url, content=b"", headers=ACME), 400, "empty_body"),
        (httpx.post(url, content=b"not gzip", headers={**ACME, "Content-Encoding": "gzip"}), 400, "bad_gzip"),
        (httpx.post(url, content=b"{}", headers={**ACME, "Content-Encoding": "br"}), 415, "unsupported_encoding"),
        (httpx.post(collector.url + "/v1/batch", json={"batch": [{"type": "track", "event": "x"}]}), 401,
         "unauthorized"),
        (httpx.post(collector.url + "/batch/", json={"api_key": "nope", "batch": []}), 401, "unauthorized"),
    ]
    for r, status, code in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = r.json()
        assert body["error"] == code and body["message"], body
        if status in (401, 403, 413, 415):
            assert body["hint"]
    assert cases[0][0].headers["www-authenticate"].startswith("Bearer")
    assert "timestamp" in cases[5][0].json()["message"]  # names the field to fix
    assert "colour" in cases[6][0].json()["message"]
    assert "user_id" in cases[8][0].json()["message"]


def test_body_limits_and_gzip_bomb(collector: Collector) -> None:
    url = collector.url + "/api/v1/events"
    big = json.dumps({"events": [native(properties={"pad": "x" * 30_000}) for _ in range(700)]}).encode()
    assert len(big) > 20 * 1024 * 1024
    r = httpx.post(url, content=big, headers=ACME, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # a gzip bomb: 30 KB on the wire, 64 MB inflated; refused without inflating it all
    bomb = gzip.compress(b'{"events": [' + b" " * (64 * 1024 * 1024) + b"]}", 9)
    assert len(bomb) < 200_000
    t0 = time.monotonic()
    r = httpx.post(url, content=bomb, headers={**ACME, "Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 413 and "after decompression" in r.json()["message"]
    assert time.monotonic() - t0 < 5
    # the collector is still healthy afterwards
    assert httpx.get(collector.url + "/healthz").json()["status"] == "ok"


def test_oversized_event_is_a_rejected_row_and_the_rest_is_accepted(collector: Collector, project: Path) -> None:
    small = [native(), native()]
    huge = native(properties={"blob": "y" * 40_000})
    r = httpx.post(collector.url + "/api/v1/events", headers={**ACME, "Content-Encoding": "gzip"},
                   content=gzip.compress(json.dumps({"events": [small[0], huge, small[1]]}).encode()))
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2 and body["event_ids"][1] is None
    assert body["rejected"][0]["index"] == 1 and body["rejected"][0]["reason"] == "size_violation"
    collector.stop()
    drain_lib(project)
    lake = project.parent / "lake"
    assert set(read_events(lake)["event_id"]) == {e["event_id"] for e in small}
    (rej,) = read_rejected(lake)
    assert rej["bucket"] == "acme" and rej["reasons"][0]["code"] == "size_violation"
    assert json.loads(rej["raw"]) == huge and rej["line"] == 2
    assert rej["source"] == "collect POST /api/v1/events"


def test_segment_and_posthog_endpoints_map_ids_and_users(collector: Collector, project: Path) -> None:
    gk, ts = KEYS["globex"], now_iso()
    calls = [
        ("/v1/track", {"writeKey": gk, "event": "Order Completed", "userId": "u7", "messageId": "seg-1",
                       "timestamp": ts, "properties": {"revenue": 12.0}}),
        ("/v1/page", {"writeKey": gk, "name": "Home", "anonymousId": "a1", "messageId": "seg-2",
                      "properties": {"url": "https://g.example/home?x=1"}}),
        ("/v1/identify", {"writeKey": gk, "userId": "u7", "messageId": "seg-3", "traits": {"plan": "pro"}}),
        ("/v1/screen", {"writeKey": gk, "userId": "u7", "messageId": "seg-4", "name": "Main"}),
        ("/capture/", {"api_key": gk, "event": "$pageview", "distinct_id": "d9", "uuid": "ph-1",
                       "properties": {"$current_url": "https://g.example/p", "$session_id": "s1"}}),
        ("/e/", [{"token": gk, "event": "clicked", "distinct_id": "d9", "uuid": "ph-2"}]),
    ]
    for path, body in calls:
        r = httpx.post(collector.url + path, json=body)
        assert r.status_code == 200, (path, r.text)
    r = httpx.post(collector.url + "/v1/track", json={"event": "x", "messageId": "seg-9"},
                   auth=(gk, ""))  # HTTP Basic, as the SDKs send it
    assert r.status_code == 200
    # a single call without an event name is refused with the reason
    r = httpx.post(collector.url + "/v1/track", json={"writeKey": gk, "userId": "u"})
    assert r.status_code == 400 and "event" in r.json()["message"]
    collector.stop()
    drain_lib(project)
    df = read_events(project.parent / "lake").sort("event_id")
    assert set(df["tenant_id"]) == {"globex"}
    by_id = {r["event_id"]: r for r in df.iter_rows(named=True)}
    assert set(by_id) == {"seg-1", "seg-2", "seg-3", "seg-4", "seg-9", "ph-1", "ph-2"}
    assert by_id["seg-1"]["event_type"] == "Order Completed" and by_id["seg-1"]["user_id"] == "u7"
    assert by_id["seg-1"]["revenue"] == 12.0
    assert by_id["seg-2"]["event_type"] == "page_view" and by_id["seg-2"]["page_path"] == "/home"
    assert by_id["seg-2"]["anonymous_id"] == "a1"
    assert by_id["seg-3"]["event_type"] == "identify" and json.loads(by_id["seg-3"]["properties"]) == {"plan": "pro"}
    assert by_id["seg-4"]["event_type"] == "screen_view"
    assert by_id["ph-1"]["event_type"] == "page_view" and by_id["ph-1"]["user_id"] == "d9"
    assert by_id["ph-1"]["session_id"] == "s1" and by_id["ph-1"]["page_path"] == "/p"
    assert by_id["ph-2"]["event_type"] == "clicked"


def test_sent_at_drives_clock_skew_correction(collector: Collector, project: Path) -> None:
    # the client's clock is 2 hours fast: timestamp and sentAt both read 2 h ahead
    from datetime import datetime, timedelta, timezone

    fast = datetime.now(timezone.utc) + timedelta(hours=2)
    body = {"batch": [{"type": "track", "event": "x", "messageId": "skew-1",
                       "timestamp": (fast - timedelta(minutes=5)).isoformat()}],
            "sentAt": fast.isoformat()}
    assert httpx.post(collector.url + "/v1/batch", json=body, auth=(KEYS["globex"], "")).status_code == 200
    collector.stop()
    drain_lib(project)
    row = read_events(project.parent / "lake").row(0, named=True)
    assert row["ts_skew_corrected"] is True
    lag = (row["received_at"] - row["timestamp"]).total_seconds()
    assert 290 <= lag <= 310  # 5 minutes before receipt, as on the client's own clock


def test_metrics_healthz_openapi(collector: Collector) -> None:
    httpx.post(collector.url + "/api/v1/events", json=native(), headers=ACME)
    httpx.post(collector.url + "/api/v1/events", json={"events": [native(properties={"b": "z" * 40_000})]},
               headers=ACME)
    httpx.post(collector.url + "/api/v1/events", json=native())
    text = httpx.get(collector.url + "/metrics").text
    assert 'erp_collect_requests_total{endpoint="/api/v1/events",status="202"} 2' in text
    assert 'erp_collect_requests_total{endpoint="/api/v1/events",status="401"} 1' in text
    assert 'erp_collect_events_accepted_total{endpoint="/api/v1/events"} 1' in text
    assert 'erp_collect_events_rejected_total{reason="size_violation"} 1' in text
    assert 'erp_collect_request_duration_seconds_count{endpoint="/api/v1/events"} 3' in text
    assert "# TYPE erp_spool_bytes gauge" in text and "erp_spool_oldest_unsealed_segment_age_seconds" in text
    spool_bytes = float(next(line.split()[1] for line in text.splitlines() if line.startswith("erp_spool_bytes ")))
    assert spool_bytes > 0
    assert httpx.get(collector.url + "/healthz").json()["status"] == "ok"
    spec = httpx.get(collector.url + "/openapi.json").json()
    for path in ("/api/v1/events", "/v1/batch", "/v1/track", "/v1/page", "/v1/identify", "/v1/screen",
                 "/batch/", "/capture/", "/e/"):
        assert "post" in spec["paths"][path], path
    assert "NativeEvent" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["NativeEvent"]["required"] == ["event_type"]


def test_full_spool_disk_answers_503_with_retry_after(tmp_path: Path) -> None:
    fs = Tmpfs(tmp_path / "tiny", "512k")
    try:
        project = write_project(tmp_path / "proj", spool=fs.path / "spool")
        c = ThreadCollector(project, retry_after_seconds=7).start()
        try:
            statuses = []
            for _ in range(60):
                r = httpx.post(c.url + "/api/v1/events", headers=ACME,
                               json={"events": [native(properties={"pad": "p" * 3000}) for _ in range(5)]})
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert r.headers["retry-after"] == "7"
                    assert r.json()["error"] == "spool_unavailable" and "no space" in r.json()["message"]
                    break
            assert statuses[0] == 202 and statuses[-1] == 503
            assert httpx.get(c.url + "/healthz").status_code == 200  # still up, just refusing
        finally:
            c.stop()
        result = drain_lib(project)
        assert result["accepted"] == 5 * (len(statuses) - 1)
    finally:
        fs.close()


def test_unwritable_spool_folder_answers_503(tmp_path: Path) -> None:
    fs = Tmpfs(tmp_path / "ro", "1m")
    try:
        project = write_project(tmp_path / "proj", spool=fs.path / "spool")
        c = ThreadCollector(project, segment_age_seconds=0.05).start()
        try:
            assert httpx.post(c.url + "/api/v1/events", json=native(), headers=ACME).status_code == 202
            time.sleep(0.3)
            fs.remount("ro")
            r = httpx.post(c.url + "/api/v1/events", json=native(), headers=ACME)
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            fs.remount("rw")
            assert httpx.post(c.url + "/api/v1/events", json=native(), headers=ACME).status_code == 202
        finally:
            c.stop()
    finally:
        fs.close()


def test_kill_9_under_load_keeps_every_acknowledged_event(project: Path) -> None:
    c = Collector(project, ["--segment-age", "3600"]).start()
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                batch = [native() for _ in range(3)]
                sent.extend(e["event_id"] for e in batch)
                try:
                    r = client.post(c.url + "/api/v1/events", json={"events": batch}, headers=ACME)
                except httpx.TransportError:
                    return
                if r.status_code == 202:
                    acked.extend(e["event_id"] for e in batch)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    c.kill()  # SIGKILL while the load generator is still sending
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300
    # restart (the new collector seals what the dead one left open), send one more
    # event, stop it with SIGTERM (graceful: exit 0, its open segment sealed), drain
    c2 = Collector(project, ["--segment-age", "3600"]).start()
    r = httpx.post(c2.url + "/api/v1/events", json=native(event_id="after-restart"), headers=ACME)
    assert r.status_code == 202
    acked.append("after-restart")
    sent.append("after-restart")
    code, out, err = c2.stop()
    assert code == 0 and "stopped" in out, err
    assert not list((project.parent / "spool").rglob("*.open"))
    result = drain_lib(project)
    df = read_events(project.parent / "lake")
    stored = df["event_id"].to_list()
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} acknowledged events were lost"
    assert set(stored) <= set(sent)
    assert result["accepted"] == len(stored)


def cli(*args: str):
    from typer.testing import CliRunner

    from erp.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_ingest_without_inputs_drains_and_explains_when_there_is_no_spool(project: Path, clean_env: Path) -> None:
    res = cli("ingest", "--config", str(project))
    assert res.exit_code == 1 and "no inputs given" in res.output and "erp collect" in res.output
    res = cli("ingest", "--spool", "x.ndjson", "--config", str(project))
    assert res.exit_code == 1 and "not both" in res.output
    c = ThreadCollector(project).start()
    httpx.post(c.url + "/api/v1/events", json=native(event_id="plain-1"), headers=ACME)
    c.stop()
    res = cli("ingest", "--config", str(project))
    assert res.exit_code == 0, res.output
    assert "1 accepted" in res.output and "drained and deleted" in res.output
    assert read_events(project.parent / "lake")["event_id"].to_list() == ["plain-1"]


def test_collect_cli_help_and_bad_port(project: Path, clean_env: Path) -> None:
    res = cli("collect", "--help")
    assert res.exit_code == 0 and "Example:" in res.output
    c = ThreadCollector(project).start()
    try:
        res = cli("collect", "--port", str(c.port), "--config", str(project), "--json")
        assert res.exit_code == 1
        assert '"error": "ConfigError"' in res.output and "cannot listen" in res.output
        res = cli("collect", "--sync", "sometimes", "--config", str(project))
        assert res.exit_code == 1 and "valid: group, request" in res.output
    finally:
        c.stop()


def test_fastapi_routes_serve_the_same_endpoints(project: Path) -> None:
    """The FastAPI app alone (without the ASGI front) answers the event endpoints the same way."""
    c = ThreadCollector(project, fastapi_only=True).start()
    try:
        one = native()
        r = httpx.post(c.url + "/api/v1/events", json=one, headers=ACME)
        assert r.status_code == 202 and r.json()["event_id"] == one["event_id"]
        r = httpx.post(c.url + "/v1/track", json={"event": "x", "messageId": "fa-1"}, auth=(KEYS["globex"], ""))
        assert r.status_code == 200
        r = httpx.post(c.url + "/api/v1/events", json=one)
        assert r.status_code == 401 and r.json()["hint"]
    finally:
        c.stop()
    drain_lib(project)
    assert set(read_events(project.parent / "lake")["event_id"]) == {one["event_id"], "fa-1"}

