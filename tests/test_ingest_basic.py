"""The happy path of ``erp ingest``: counts, columns, partitions, enrichment,
time handling and every way of naming inputs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import (
    CHROME_UA, LAKE_COLUMNS, NOW, event, lake_files, ndjson_bytes, read_events, read_rejected, reason_codes,
    write_ndjson,
)
from erp.cli.main import app
from erp.core.events import EVENT_SCHEMA
from erp.core.ingest import ingest

UTC = timezone.utc


def by_id(df):
    return {r["event_id"]: r for r in df.iter_rows(named=True)}


# --- counts, columns, partitions ------------------------------------------------------

def test_counts_and_stored_columns(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [event(), event(event_type="click"),
                                                  event(tenant_id="globex", event_type="signup")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)

    assert (r.lines, r.accepted, r.rejected, r.duplicates, r.blank) == (3, 3, 0, 0, 0)
    assert r.tenants["acme"].accepted == 2 and r.tenants["globex"].accepted == 1
    assert [(s.source, s.status, s.lines) for s in r.sources] == [(str(src), "ingested", 3)]
    df = read_events(lake_dir)
    assert df.columns == LAKE_COLUMNS
    assert sorted(df["event_type"]) == ["click", "page_view", "signup"]
    assert set(df["received_at"]) == {NOW}
    assert df["ingest_batch"].unique().to_list() == [r.batch_id]
    # partition columns live in the path only; files hold exactly the stored schema
    for f in lake_files(lake_dir, "events"):
        assert pq.read_schema(f).names == EVENT_SCHEMA.names
    assert read_rejected(lake_dir) == []


def test_partitions_by_utc_date_of_timestamp(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="late-evening-west", timestamp="2026-09-13T22:30:00-05:00"),  # 2026-09-14 03:30 UTC
        event(event_id="early-morning-east", timestamp="2026-09-14T01:30:00+03:00"),  # 2026-09-13 22:30 UTC
        event(event_id="utc", timestamp="2026-09-14T23:59:59.999Z"),
    ])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert r.tenants["acme"].partitions == {"2026-09-13", "2026-09-14"}

    dirs = sorted(p.relative_to(lake_dir).as_posix() for p in (lake_dir / "events").glob("*/*"))
    assert dirs == ["events/tenant_id=acme/date=2026-09-13", "events/tenant_id=acme/date=2026-09-14"]
    rows = by_id(read_events(lake_dir))
    assert rows["late-evening-west"]["timestamp"] == datetime(2026, 9, 14, 3, 30, tzinfo=UTC)
    assert str(rows["late-evening-west"]["date"]) == "2026-09-14"
    assert str(rows["early-morning-east"]["date"]) == "2026-09-13"
    assert str(rows["utc"]["date"]) == "2026-09-14"
    # any engine reads the same thing through hive partitioning
    got = duckdb.sql(f"SELECT event_id, tenant_id, CAST(date AS VARCHAR) FROM read_parquet("
                     f"'{lake_dir}/events/**/*.parquet', hive_partitioning=true) ORDER BY event_id").fetchall()
    assert got == [("early-morning-east", "acme", "2026-09-13"), ("late-evening-west", "acme", "2026-09-14"),
                   ("utc", "acme", "2026-09-14")]


def test_tenant_from_flag(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [event(tenant_id=None), event(tenant_id=None),
                                                  event(tenant_id="initech")])  # explicit and equal: fine
    r = ingest(cfg, [str(src)], tenant="initech", now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (3, 0)
    df = read_events(lake_dir)
    assert df["tenant_id"].to_list() == ["initech"] * 3
    assert {p.name for p in (lake_dir / "events").iterdir()} == {"tenant_id=initech"}


def test_without_tenant_anywhere_the_line_is_rejected(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [event(tenant_id=None)])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (0, 1)
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["missing_tenant"] and rec["bucket"] == "_invalid"


# --- enrichment: hot columns --------------------------------------------------------------

def test_hot_columns_and_ip_anonymisation(cfg, tmp_path, lake_dir):
    ip = "203.0.113.77"
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="pv",
              properties={"page_url": "https://www.example.com/pricing/plans?utm=x#top",
                          "referrer": "https://WWW.Google.com:443/search?q=erp", "title": "Plans"},
              metadata={"ip": ip, "user_agent": CHROME_UA, "country": "DE", "sdk_version": "1.2.3"}),
        event(event_id="buy", event_type="purchase",
              properties={"revenue": 49.9, "currency": "EUR", "order_id": "o-1"},
              metadata={"sdk_version": "1.2.3", "ip": "198.51.100.200"}),
        # a key spelled with a JSON escape is still the "ip" key
        event(event_id="escaped", metadata={"\u0069p": "198.51.100.9", "note": "a \"quoted\" value"}),
        # only top-level keys are promoted: a nested "ip" is the sender's own data
        event(event_id="nested", metadata={"ip": "198.51.100.10", "proxy": {"ip": "edge-7", "country": None}}),
    ])
    # json.dumps writes "\u0069p" as plain "ip"; write the escape itself
    raw = src.read_bytes().replace(b'{"ip": "198.51.100.9"', b'{"\\u0069p": "198.51.100.9"')
    src.write_bytes(raw)
    assert b"\\u0069p" in raw

    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (4, 0)
    rows = by_id(read_events(lake_dir))
    pv, buy, esc = rows["pv"], rows["buy"], rows["escaped"]

    assert pv["page_url"] == "https://www.example.com/pricing/plans?utm=x#top"
    assert pv["page_path"] == "/pricing/plans"
    assert pv["referrer_domain"] == "google.com"
    assert (pv["browser"], pv["os"], pv["device_type"]) == ("Chrome", "Windows", "desktop")
    assert pv["user_agent"] == CHROME_UA
    assert pv["country"] == "DE"
    assert pv["ip"] == "203.0.113.0"
    assert json.loads(pv["metadata"]) == {"sdk_version": "1.2.3"}
    assert json.loads(pv["properties"])["title"] == "Plans"

    assert (buy["revenue"], buy["currency"]) == (49.9, "EUR")
    assert buy["ip"] == "198.51.100.0"
    assert json.loads(buy["metadata"]) == {"sdk_version": "1.2.3"}
    assert (buy["page_path"], buy["browser"], buy["device_type"]) == (None, None, None)

    assert esc["ip"] == "198.51.100.0"
    assert json.loads(esc["metadata"]) == {"note": 'a "quoted" value'}

    assert rows["nested"]["ip"] == "198.51.100.0"
    assert json.loads(rows["nested"]["metadata"]) == {"proxy": {"ip": "edge-7", "country": None}}

    # the full addresses are stored nowhere: not in any column of any stored file
    stored = [row for f in lake_files(lake_dir, "events") for row in pq.read_table(f).to_pylist()]
    assert len(stored) == 4
    for full in (ip, "198.51.100.200", "198.51.100.9", "198.51.100.10"):
        for row in stored:
            assert not any(isinstance(v, str) and full in v for v in row.values()), (full, row)


@pytest.mark.parametrize("ua, expected", [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1", ("Mobile Safari", "iOS", "mobile")),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/16.6 Mobile/15E148 Safari/604.1", ("Mobile Safari", "iOS", "tablet")),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ("Googlebot", None, "bot")),
])
def test_user_agent_classes(cfg, tmp_path, lake_dir, ua, expected):
    src = write_ndjson(tmp_path / "in.ndjson", [event(metadata={"user_agent": ua})])
    ingest(cfg, [str(src)], now=NOW, workers=1)
    [row] = read_events(lake_dir).iter_rows(named=True)
    assert (row["browser"], row["os"], row["device_type"]) == expected


def test_ip_kept_for_tenant_that_opted_out_of_anonymisation(tmp_path, cfg_factory, lake_dir):
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n  - tenant_id: acme\n  - tenant_id: initech\n    anonymize_ip: false\n")
    cfg = cfg_factory()
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="a", metadata={"ip": "203.0.113.77"}),
        event(event_id="i", tenant_id="initech", metadata={"ip": "203.0.113.77"}),
        event(event_id="v6", metadata={"ip": "2001:db8:1234:5678::1"}),
        event(event_id="junk", metadata={"ip": "not-an-ip"}),
    ])
    ingest(cfg, [str(src)], now=NOW, workers=1)
    rows = by_id(read_events(lake_dir))
    assert rows["a"]["ip"] == "203.0.113.0"
    assert rows["i"]["ip"] == "203.0.113.77"
    assert rows["v6"]["ip"] == "2001:db8:1234::"
    assert rows["junk"]["ip"] is None  # cannot be anonymised, so not kept


# --- time ---------------------------------------------------------------------------------

def test_epoch_ms_iso_and_naive_timestamps_agree(cfg, tmp_path, lake_dir):
    t = datetime(2026, 9, 14, 10, 11, 12, 345000, tzinfo=UTC)
    ms = int(t.timestamp() * 1000)
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="iso-z", timestamp="2026-09-14T10:11:12.345Z"),
        event(event_id="iso-offset", timestamp="2026-09-14T12:11:12.345+02:00"),
        event(event_id="epoch-ms", timestamp=ms),
        event(event_id="epoch-float", timestamp=float(ms)),
        event(event_id="naive", timestamp="2026-09-14T10:11:12.345"),
    ])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert r.accepted == 5
    rows = by_id(read_events(lake_dir))
    assert {k: v["timestamp"] for k, v in rows.items()} == {k: t for k in rows}
    assert not any(v["ts_skew_corrected"] or v["ts_clamped"] for v in rows.values())


def test_clock_skew_is_corrected(cfg, tmp_path, lake_dir):
    # the client's clock runs one hour fast: it says it sent at 11:00, the server got it at 10:00
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="skewed", timestamp="2026-09-14T10:59:30Z", sent_at="2026-09-14T11:00:00Z",
              received_at="2026-09-14T10:00:00Z"),
        event(event_id="in-sync", timestamp="2026-09-14T09:59:00Z", sent_at="2026-09-14T10:00:30Z",
              received_at="2026-09-14T10:00:00Z"),  # 30 s apart: under the 60 s threshold
    ])
    ingest(cfg, [str(src)], now=NOW, workers=1)
    rows = by_id(read_events(lake_dir))
    s = rows["skewed"]
    assert s["timestamp"] == datetime(2026, 9, 14, 9, 59, 30, tzinfo=UTC)
    assert s["ts_skew_corrected"] is True
    assert s["sent_at"] == datetime(2026, 9, 14, 11, 0, tzinfo=UTC)
    assert s["received_at"] == datetime(2026, 9, 14, 10, 0, tzinfo=UTC)
    ok = rows["in-sync"]
    assert ok["timestamp"] == datetime(2026, 9, 14, 9, 59, tzinfo=UTC)
    assert ok["ts_skew_corrected"] is False


def test_small_future_is_clamped_far_future_rejected(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="soon", timestamp=(NOW + timedelta(hours=2)).isoformat()),
        event(event_id="far", timestamp=(NOW + timedelta(days=3)).isoformat()),
        event(event_id="now", timestamp=NOW.isoformat()),
    ])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (2, 1)
    rows = by_id(read_events(lake_dir))
    assert rows["soon"]["timestamp"] == NOW and rows["soon"]["ts_clamped"] is True
    assert rows["now"]["timestamp"] == NOW and rows["now"]["ts_clamped"] is False
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["timestamp_future"] and json.loads(rec["raw"])["event_id"] == "far"
    assert r.tenants["acme"].rejected_by_reason == {"timestamp_future": 1}


# --- inputs -------------------------------------------------------------------------------

def test_gzip_input(cfg, tmp_path, lake_dir):
    plain = ndjson_bytes([event(event_id=f"gz-{i}") for i in range(50)])
    (tmp_path / "in.ndjson.gz").write_bytes(gzip.compress(plain))
    r = ingest(cfg, [str(tmp_path / "in.ndjson.gz")], now=NOW, workers=1)
    assert (r.lines, r.accepted, r.bytes) == (50, 50, len(plain))
    assert sorted(read_events(lake_dir)["event_id"]) == sorted(f"gz-{i}" for i in range(50))


def test_directory_recursion_and_globs(cfg_factory, tmp_path):
    d = tmp_path / "logs"
    write_ndjson(d / "a.ndjson", [event(event_id="a")])
    write_ndjson(d / "2026" / "09" / "b.jsonl", [event(event_id="b")])
    (d / "2026" / "c.ndjson.gz").write_bytes(gzip.compress(ndjson_bytes([event(event_id="c")])))
    write_ndjson(d / "2026" / "d.log", [event(event_id="d")])
    write_ndjson(d / ".hidden.ndjson", [event(event_id="hidden")])
    write_ndjson(d / ".git" / "x.ndjson", [event(event_id="in-hidden-dir")])
    (d / "notes.txt").write_text("not an input\n")

    cfg = cfg_factory(lake=str(tmp_path / "lake1"))
    r = ingest(cfg, [str(d)], now=NOW, workers=1)
    assert sorted(read_events(tmp_path / "lake1")["event_id"]) == ["a", "b", "c", "d"]
    assert r.lines == 4 and len(r.sources) == 4

    cfg = cfg_factory(lake=str(tmp_path / "lake2"))
    r = ingest(cfg, [f"{d}/**/*.ndjson*", str(d / "a.ndjson")], now=NOW, workers=1)  # a.ndjson twice: read once
    assert sorted(read_events(tmp_path / "lake2")["event_id"]) == ["a", "c"]
    assert r.lines == 2


def test_stdin_through_cli_runner(clean_env, tmp_path):
    lake = tmp_path / "lake"
    data = ndjson_bytes([event(event_id="s1", timestamp="2025-06-01T10:00:00Z"),
                         event(event_id="s2", timestamp="2025-06-01T11:00:00Z"), "", "{bad"])
    res = CliRunner().invoke(app, ["ingest", "-", "--lake", str(lake), "--json", "--workers", "1"], input=data)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is True
    assert (out["lines"], out["accepted"], out["rejected"], out["blank"]) == (4, 2, 1, 1)
    assert out["sources"] == [{"source": "<stdin>", "status": "ingested", "lines": 4, "detail": ""}]
    assert sorted(read_events(lake)["event_id"]) == ["s1", "s2"]
    [rej] = read_rejected(lake)
    assert (rej["source"], rej["line"], reason_codes(rej)) == ("<stdin>", 4, ["malformed_json"])
    # stdin is not in the ledger; piping the same events again stores nothing twice
    res = CliRunner().invoke(app, ["ingest", "-", "--lake", str(lake), "--json", "--workers", "1"], input=data)
    out = json.loads(res.stdout)
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (0, 2, 1)
    assert read_events(lake).height == 2


def test_stdin_through_subprocess(tmp_path):
    lake = tmp_path / "lake"
    data = ndjson_bytes([event(event_id=f"p{i}", timestamp="2025-06-01T10:00:00Z") for i in range(3)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    proc = subprocess.run([sys.executable, "-m", "erp.cli.main", "ingest", "-", "--lake", str(lake), "--json"],
                          input=data, capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert (out["lines"], out["accepted"]) == (3, 3)
    assert sorted(read_events(lake)["event_id"]) == ["p0", "p1", "p2"]


def test_empty_file(cfg, tmp_path, lake_dir):
    (tmp_path / "empty.ndjson").write_bytes(b"")
    r = ingest(cfg, [str(tmp_path / "empty.ndjson")], now=NOW, workers=1)
    assert (r.lines, r.accepted, r.rejected, r.blank) == (0, 0, 0, 0)
    assert [(s.status, s.lines) for s in r.sources] == [("ingested", 0)]
    assert read_events(lake_dir).height == 0 and read_rejected(lake_dir) == []
    r = ingest(cfg, [str(tmp_path / "empty.ndjson")], now=NOW, workers=1)
    assert [s.status for s in r.sources] == ["skipped"]


def test_blank_lines_are_counted_as_blank(cfg, tmp_path, lake_dir):
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n" + ndjson_bytes([event(event_id="x")]) + b"   \n\r\n\t\n" + ndjson_bytes([event(event_id="y")])
                    + b"\n")
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.lines, r.accepted, r.rejected, r.blank) == (7, 2, 0, 5)
    assert r.accepted + r.rejected + r.duplicates + r.blank == r.lines
    assert sorted(read_events(lake_dir)["event_id"]) == ["x", "y"]


def test_last_line_without_newline_and_crlf(cfg, tmp_path, lake_dir):
    src = tmp_path / "in.ndjson"
    src.write_bytes(json.dumps(event(event_id="crlf")).encode() + b"\r\n" + json.dumps(event(event_id="last")).encode())
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.lines, r.accepted) == (2, 2)
    assert sorted(read_events(lake_dir)["event_id"]) == ["crlf", "last"]


def test_generated_event_id_is_deterministic(cfg, tmp_path, lake_dir):
    line = event(event_id=None, event_type="no_id")
    src = write_ndjson(tmp_path / "a.ndjson", [line, line, event(event_id=None, event_type="other")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.duplicates) == (2, 1)
    write_ndjson(tmp_path / "b.ndjson", [line])
    r = ingest(cfg, [str(tmp_path / "b.ndjson")], now=NOW, workers=1)
    assert (r.accepted, r.duplicates) == (0, 1)
    ids = read_events(lake_dir)["event_id"].to_list()
    assert len(ids) == len(set(ids)) == 2
    assert all(len(i) == 36 for i in ids)


def test_commits_grow_while_the_writer_is_busy_but_stay_bounded(tmp_path, monkeypatch):
    """A commit's buffer that fills while the previous commit is still being
    written keeps taking chunks instead of stopping the parsers, up to twice
    ``commit_events``; the lake ends up with every event once."""
    import time

    from conftest import make_config
    from erp.core import ingest as ingest_mod
    from erp.core.generate import generate_events

    src = tmp_path / "in.ndjson"
    generate_events(src, events=3000, tenants=3, days=2, seed=5)
    longest = max(len(line) for line in src.read_bytes().splitlines())
    chunk_bytes, commit = 8192, 200
    most_per_chunk = chunk_bytes // (min(len(line) for line in src.read_bytes().splitlines()) + 1) + 1
    cfg = make_config(tmp_path, **{"ingest.commit_events": commit, "ingest.chunk_bytes": chunk_bytes,
                                   "ingest.workers": 1})
    sizes: list[int] = []
    write = ingest_mod._Job._write_commit

    def slow_write(self, p):
        sizes.append(p.events)
        time.sleep(0.3)  # a slow disk: parsing the next chunks takes less time than this
        return write(self, p)

    monkeypatch.setattr(ingest_mod._Job, "_write_commit", slow_write)
    res = ingest(cfg, [str(src)], workers=1)
    assert res.accepted == 3000 and res.duplicates == 0
    assert all(n >= commit for n in sizes[:-1])
    # grew past commit_events plus the chunk that reached it, but never past twice that plus a chunk
    assert max(sizes) > commit + most_per_chunk
    assert max(sizes) < 2 * commit + most_per_chunk
    assert longest < chunk_bytes
    rows = duckdb.sql(f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet("
                      f"'{cfg.lake}/events/**/*.parquet')").fetchall()
    assert rows == [(3000, 3000)]
