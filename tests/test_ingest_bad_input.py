"""Bad input is data, not a crash: every refused line lands in ``_rejected/`` with
its raw text, source, line number and every reason; the good lines around it
land in the lake; counts add up; hostile tenant ids never become paths."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import NOW, event, lake_files, make_config, ndjson_bytes, read_events, read_rejected, reason_codes, \
    write_ndjson
from erp.cli.main import app
from erp.core.errors import TenantError
from erp.core.ingest import ingest


def assert_accounted(r) -> None:
    """Nothing dropped: every non-blank line is accepted, rejected or a duplicate."""
    assert r.accepted + r.rejected + r.duplicates + r.blank == r.lines


def only(recs, line):
    [rec] = [x for x in recs if x["line"] == line]
    return rec


# --- one line, every reason --------------------------------------------------------

@pytest.mark.parametrize("line, codes", [
    ('{"event_id": "x", "tenant_id": "acme", bad json', ["malformed_json"]),
    ("[1, 2]", ["not_an_object"]),
    ("null", ["not_an_object"]),
    ('"a string"', ["not_an_object"]),
    (event(timestamp=False), ["invalid_type"]),
    (event(event_type=5), ["invalid_type"]),
    (event(event_type=None), ["missing_field"]),
    (event(event_type=None, timestamp=None), ["missing_field", "missing_field"]),
    (event(user_id=True), ["invalid_type"]),
    (event(properties=[1, 2]), ["invalid_type"]),
    (event(metadata="ip=1.2.3.4"), ["invalid_type"]),
    (event(properties={"revenue": "12.5"}), ["invalid_type"]),
    (event(metadata={"ip": 5}), ["invalid_type"]),
    (event(colour="red"), ["unknown_field"]),
    (event(timestamp="yesterday"), ["invalid_timestamp"]),
    (event(timestamp=1_700_000_000), ["invalid_timestamp"]),  # epoch seconds, not ms
    (event(timestamp="3026-01-01T00:00:00Z"), ["timestamp_future"]),
    (event(timestamp="1999-12-31T23:59:59Z"), ["timestamp_too_old"]),
    (event(event_type=""), ["invalid_event_type"]),
    (event(event_type="page\nview"), ["invalid_event_type"]),
    (event(event_id="a" * 300), ["invalid_event_id"]),
    # several problems at once: each one is named
    (event(timestamp=False, event_type=7, colour="red", user_id=[1]),
     ["unknown_field", "invalid_type", "invalid_type", "invalid_type"]),
    (event(event_type="purchase", properties={"currency": "euro"}),
     ["schema_violation", "schema_violation"]),  # revenue missing, currency not ^[A-Z]{3}$
])
def test_a_bad_line_keeps_every_reason(cfg, tmp_path, lake_dir, line, codes):
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="before"), line, event(event_id="after")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.lines, r.accepted, r.rejected) == (3, 2, 1)
    assert sorted(read_events(lake_dir)["event_id"]) == ["after", "before"]
    [rec] = read_rejected(lake_dir)
    assert sorted(reason_codes(rec)) == sorted(codes)
    assert (rec["source"], rec["line"]) == (str(src), 2)
    expected_raw = line if isinstance(line, str) else json.dumps(line)
    assert rec["raw"] == expected_raw
    assert rec["batch"] == r.batch_id
    assert all(reason["message"] for reason in rec["reasons"])


# Epoch-ms values far outside any calendar: event data is untrusted, a number is a number.
# (1e306 ms is a finite float whose µs are not: it crashed the diagnosis once)
ABSURD_EPOCHS = [67_768_036_191_676_796_929, 9_223_372_036_854_775_807, 1e300, -1e300, 1e306, -1.7e308,
                 -62_135_596_800_001]


@pytest.mark.parametrize("ts", ABSURD_EPOCHS)
def test_absurd_epoch_timestamps_are_rejected_not_a_crash(cfg, tmp_path, lake_dir, ts):
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="ok"), event(timestamp=ts)])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, 1)
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec)[0] in ("invalid_timestamp", "timestamp_future", "timestamp_too_old")


@pytest.mark.parametrize("ts", ABSURD_EPOCHS)
def test_absurd_epoch_on_a_line_with_other_faults_keeps_every_reason(cfg, tmp_path, lake_dir, ts):
    # the structure check refuses the line first, so only the diagnosis sees the timestamp
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_type=None, timestamp=ts)])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert r.rejected == 1
    [rec] = read_rejected(lake_dir)
    codes = reason_codes(rec)
    assert codes[0] == "missing_field" and len(codes) == 2


def test_multiple_reasons_name_their_fields(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson",
                       [event(timestamp=False, event_type=7, colour="red", properties={"revenue": "1"})])
    ingest(cfg, [str(src)], now=NOW, workers=1)
    [rec] = read_rejected(lake_dir)
    fields = sorted((r["code"], r.get("field")) for r in rec["reasons"])
    assert fields == [("invalid_type", "event_type"), ("invalid_type", "properties.revenue"),
                      ("invalid_type", "timestamp"), ("unknown_field", "colour")]
    unknown = next(r for r in rec["reasons"] if r["code"] == "unknown_field")
    assert "event_type" in unknown["message"] and "timestamp" in unknown["message"]  # lists the valid fields


def test_invalid_utf8_is_kept_as_base64(cfg, tmp_path, lake_dir):
    raw = b'{"event_id": "\xff\xfe", "tenant_id": "acme"}'
    src = write_ndjson(tmp_path / "in.ndjson", [event(), raw])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, 1)
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["invalid_utf8"]
    assert "raw" not in rec and base64.b64decode(rec["raw_base64"]) == raw


@pytest.mark.parametrize("raw", [
    b'{"event_id": "p", "tenant_id": "acme", "event_type": "x", "timestamp": "2026-09-01T00:00:00Z", '
    b'"properties": {"title": "\xff\xfe"}}',
    b'{"event_id": "m", "tenant_id": "acme", "event_type": "x", "timestamp": "2026-09-01T00:00:00Z", '
    b'"metadata": {"\xff": 1}}',
])
def test_invalid_utf8_inside_a_free_form_object_is_rejected_not_a_crash(cfg, tmp_path, lake_dir, raw):
    """The structure check skips free-form objects without looking at their bytes;
    the columns built from them must still refuse invalid UTF-8, for that row only."""
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="before"), raw, event(event_id="after")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (2, 1)
    assert sorted(read_events(lake_dir)["event_id"]) == ["after", "before"]
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["invalid_utf8"] and rec["line"] == 2
    assert base64.b64decode(rec["raw_base64"]) == raw


# --- hostile and unknown tenants ------------------------------------------------------------

HOSTILE = ["../x", "..", "/", "a/../../b", "A", "Acme", "acmé", "a" * 64, "ac\x00me", "ac\nme", "-acme",
           "_invalid", "", " acme", "tenant_id=acme", "💥"]


def test_hostile_tenant_ids_in_records_never_become_paths(cfg, tmp_path, lake_dir):
    lines = [event(event_id=f"h{i}", tenant_id=t) for i, t in enumerate(HOSTILE)]
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="ok")] + lines)
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, len(HOSTILE))
    recs = read_rejected(lake_dir)
    assert [reason_codes(x) for x in recs] == [["invalid_tenant_id"]] * len(HOSTILE)
    assert {x["bucket"] for x in recs} == {"_invalid"}
    assert [json.loads(x["raw"])["tenant_id"] for x in recs] == HOSTILE
    # nothing was written outside the lake, and the lake only has the expected top folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson", "lake"]
    assert sorted(p.name for p in lake_dir.iterdir() if p.name != "_staging") == ["_rejected", "_state", "events"]
    assert lake_files(lake_dir, "_staging") == []
    assert sorted(p.name for p in (lake_dir / "events").iterdir()) == ["tenant_id=acme"]
    assert sorted(p.name for p in (lake_dir / "_rejected").iterdir()) == ["tenant_id=_invalid"]
    for f in lake_files(lake_dir):
        assert f.resolve().is_relative_to(lake_dir.resolve())


@pytest.mark.parametrize("bad", ["../x", "A", "acmé", "a" * 64, "ac\x01me", "_invalid"])
def test_hostile_tenant_flag_is_refused_before_reading(cfg, tmp_path, lake_dir, bad):
    src = write_ndjson(tmp_path / "in.ndjson", [event(tenant_id=None)])
    with pytest.raises(TenantError) as exc:
        ingest(cfg, [str(src)], tenant=bad, now=NOW, workers=1)
    assert "tenant" in str(exc.value) and exc.value.hint
    assert not lake_dir.exists()


def test_hostile_tenant_flag_on_the_cli_exits_1(clean_env, tmp_path):
    src = write_ndjson(tmp_path / "in.ndjson", [event(tenant_id=None)])
    res = CliRunner().invoke(app, ["ingest", str(src), "--tenant", "../etc", "--lake", str(tmp_path / "lake"),
                                   "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and out["error"] == "TenantError"
    assert "^[a-z0-9]" in out["hint"]
    assert not (tmp_path / "lake" / "events").exists()
    assert not (tmp_path / "etc").exists()


def test_record_naming_another_tenant_than_the_flag_is_rejected(cfg, tmp_path, lake_dir):
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="mine", tenant_id=None),
                                                  event(event_id="theirs", tenant_id="globex")])
    r = ingest(cfg, [str(src)], tenant="acme", now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, 1)
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["tenant_mismatch"]
    assert rec["bucket"] == "acme"  # the input belongs to acme; globex never sees it
    assert not (lake_dir / "events" / "tenant_id=globex").exists()
    assert not (lake_dir / "_rejected" / "tenant_id=globex").exists()


def test_unknown_tenants_are_rejected_when_tenants_yaml_lists_tenants(tmp_path, cfg_factory, lake_dir):
    (tmp_path / "tenants.yaml").write_text("tenants:\n  - tenant_id: acme\n  - tenant_id: globex\n")
    cfg = cfg_factory()
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="a"), event(event_id="g", tenant_id="globex"),
                                                  event(event_id="h", tenant_id="hooli")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (2, 1)
    assert sorted(read_events(lake_dir)["event_id"]) == ["a", "g"]
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["unknown_tenant"]
    # a tenant that does not exist gets no folder of its own, not even under _rejected
    assert rec["bucket"] == "_invalid"
    assert sorted(p.name for p in (lake_dir / "_rejected").iterdir()) == ["tenant_id=_invalid"]
    # and the flag is checked up front
    with pytest.raises(TenantError, match="hooli"):
        ingest(cfg, [str(src)], tenant="hooli", now=NOW, workers=1)


# --- retention and schemas ---------------------------------------------------------------------

def test_retention_is_per_tenant(tmp_path, cfg_factory, lake_dir):
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n  - tenant_id: acme\n    retention_days: 30\n  - tenant_id: globex\n")
    cfg = cfg_factory()
    old = (NOW - timedelta(days=31)).isoformat()
    recent = (NOW - timedelta(days=29)).isoformat()
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="acme-old", timestamp=old), event(event_id="acme-recent", timestamp=recent),
        event(event_id="globex-old", tenant_id="globex", timestamp=old),  # no retention: kept
    ])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (2, 1)
    assert sorted(read_events(lake_dir)["event_id"]) == ["acme-recent", "globex-old"]
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["timestamp_too_old"] and "30 days" in rec["reasons"][0]["message"]
    assert json.loads(rec["raw"])["event_id"] == "acme-old"


def _schemas(tmp_path: Path) -> None:
    sd = tmp_path / "schemas"
    (sd / "tenants" / "globex").mkdir(parents=True)
    (sd / "signup.json").write_text(json.dumps(
        {"type": "object", "required": ["plan"], "properties": {"plan": {"enum": ["free", "pro"]}}}))
    (sd / "tenants" / "globex" / "signup.json").write_text(json.dumps(
        {"type": "object", "required": ["plan", "seats"],
         "properties": {"seats": {"type": "integer", "minimum": 1}}}))


def test_event_type_schema_and_per_tenant_override(tmp_path, cfg_factory, lake_dir):
    _schemas(tmp_path)
    cfg = cfg_factory()
    src = write_ndjson(tmp_path / "in.ndjson", [
        event(event_id="acme-ok", event_type="signup", properties={"plan": "pro"}),
        event(event_id="acme-bad", event_type="signup", properties={"plan": "gold"}),
        event(event_id="acme-missing", event_type="signup"),
        # globex has its own schema: any plan, but seats >= 1 required
        event(event_id="globex-ok", tenant_id="globex", event_type="signup", properties={"plan": "gold", "seats": 2}),
        event(event_id="globex-bad", tenant_id="globex", event_type="signup", properties={"plan": "pro", "seats": 0}),
        event(event_id="globex-missing", tenant_id="globex", event_type="signup", properties={"plan": "pro"}),
        event(event_id="other-type", event_type="click", properties={"plan": 12}),  # no schema: anything goes
    ])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (3, 4)
    assert sorted(read_events(lake_dir)["event_id"]) == ["acme-ok", "globex-ok", "other-type"]
    recs = {json.loads(x["raw"])["event_id"]: x for x in read_rejected(lake_dir)}
    assert {k: [(c["code"], c.get("field")) for c in v["reasons"]] for k, v in recs.items()} == {
        "acme-bad": [("schema_violation", "properties.plan")],
        "acme-missing": [("schema_violation", "properties")],
        "globex-bad": [("schema_violation", "properties.seats")],
        "globex-missing": [("schema_violation", "properties")],
    }
    assert "seats" in recs["globex-missing"]["reasons"][0]["message"]
    assert recs["globex-bad"]["bucket"] == "globex"


def test_schemas_of_one_config_do_not_leak_into_the_next(tmp_path):
    """Two projects in one process (a test run, a long-lived server): each is
    validated against its own schemas."""
    strict, loose = tmp_path / "strict", tmp_path / "loose"
    (strict / "schemas").mkdir(parents=True)
    (strict / "schemas" / "signup.json").write_text(json.dumps({"type": "object", "required": ["plan"]}))
    (loose / "schemas").mkdir(parents=True)
    (loose / "schemas" / "signup.json").write_text(json.dumps({"type": "object"}))
    line = [event(event_id="s", event_type="signup", properties={})]
    r1 = ingest(make_config(strict), [str(write_ndjson(strict / "in.ndjson", line))], now=NOW, workers=1)
    r2 = ingest(make_config(loose), [str(write_ndjson(loose / "in.ndjson", line))], now=NOW, workers=1)
    assert (r1.accepted, r1.rejected) == (0, 1)
    assert (r2.accepted, r2.rejected) == (1, 0)


# --- oversized lines, truncated gzip, a big mix ----------------------------------------------

@pytest.mark.parametrize("chunk_bytes", [8 * 1024**2, 64 * 1024])  # line inside a chunk / longer than a chunk
def test_a_5mb_line_is_rejected_and_its_neighbours_land(cfg_factory, tmp_path, lake_dir, chunk_bytes):
    cfg = cfg_factory(**{"ingest.chunk_bytes": chunk_bytes})
    big = json.dumps(event(event_id="big", properties={"pad": "x" * 5_000_000}))
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="b1"), big, event(event_id="b2")])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.lines, r.accepted, r.rejected) == (3, 2, 1)
    assert sorted(read_events(lake_dir)["event_id"]) == ["b1", "b2"]
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["line_too_large"] and rec["line"] == 2
    # the message states the line's real length (without its newline), whichever path read it
    assert f"line is {len(big)} bytes" in rec["reasons"][0]["message"]
    assert big.startswith(rec["raw"]) and len(rec["raw"]) > 1024 * 1024
    if "raw_length" in rec:
        assert rec["raw_length"] == len(big) and rec["raw_truncated"] is True


def test_line_exactly_at_the_limit_is_accepted(cfg_factory, tmp_path, lake_dir):
    cfg = cfg_factory(**{"ingest.max_line_bytes": 2000, "ingest.chunk_bytes": 1024})
    base = json.dumps(event(event_id="edge", properties={"pad": ""}))
    at_limit = json.dumps(event(event_id="edge", properties={"pad": "y" * (2000 - len(base))}))
    over = json.dumps(event(event_id="over", properties={"pad": "y" * (2001 - len(base))}))
    assert (len(at_limit), len(over)) == (2000, 2001)
    src = write_ndjson(tmp_path / "in.ndjson", [at_limit, over])
    r = ingest(cfg, [str(src)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, 1)
    [rec] = read_rejected(lake_dir)
    assert reason_codes(rec) == ["line_too_large"] and rec["line"] == 2


def test_truncated_gzip_keeps_complete_lines_and_exits_1(clean_env, tmp_path):
    plain = ndjson_bytes([event(event_id=f"g{i:03d}") for i in range(300)])
    gz = gzip.compress(plain)
    src = tmp_path / "cut.ndjson.gz"
    src.write_bytes(gz[: len(gz) * 2 // 3])
    lake = tmp_path / "lake"
    res = CliRunner().invoke(app, ["ingest", str(src), "--lake", str(lake), "--json", "--workers", "1"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is False
    [s] = out["sources"]
    assert s["status"] == "failed" and "truncated" in s["detail"]
    ids = read_events(lake)["event_id"].to_list()
    assert out["accepted"] == len(ids) > 0 and out["rejected"] == 1
    assert ids == [f"g{i:03d}" for i in range(len(ids))]  # a prefix, in order, nothing invented
    [rec] = read_rejected(lake)
    assert reason_codes(rec) == ["truncated_input"] and rec["line"] == len(ids) + 1
    assert plain.split(b"\n")[len(ids)].startswith(rec["raw"].encode())


def test_garbage_gzip_is_a_failed_source_not_a_crash(cfg, tmp_path, lake_dir):
    (tmp_path / "junk.ndjson.gz").write_bytes(b"this is not gzip at all\n")
    good = write_ndjson(tmp_path / "good.ndjson", [event(event_id="fine")])
    r = ingest(cfg, [str(tmp_path / "junk.ndjson.gz"), str(good)], now=NOW, workers=1)
    statuses = {Path(s.source).name: s.status for s in r.sources}
    assert statuses == {"junk.ndjson.gz": "failed", "good.ndjson": "ingested"}
    assert read_events(lake_dir)["event_id"].to_list() == ["fine"]


BAD_LINES = [
    '{"event_id": "x", bad json', "[1]", event(timestamp=False), event(event_type=3), event(timestamp=None),
    event(tenant_id="../x"), event(tenant_id="A"), event(timestamp="not a time"),
    event(timestamp="3026-01-01T00:00:00Z"), event(timestamp="1990-01-01T00:00:00Z"), b"\xc3\x28 not utf8",
    event(event_type="purchase", properties={"revenue": -5}), event(extra=1), event(properties={"page_url": 1}),
]


@pytest.mark.parametrize("workers, chunk_bytes", [(1, 8 * 1024**2), (1, 700), (2, 4096)])
def test_a_big_mix_of_good_and_bad_lines(cfg_factory, tmp_path, lake_dir, workers, chunk_bytes):
    """Good lines land, each bad line is rejected once with its line number;
    counts add up whatever the chunking and parallelism."""
    cfg = cfg_factory(**{"ingest.chunk_bytes": chunk_bytes, "ingest.commit_events": 50})
    lines, expected_good, expected_bad = [], [], {}
    for i in range(600):
        if i % 5 == 3:
            bad = BAD_LINES[(i // 5) % len(BAD_LINES)]
            lines.append(bad)
            expected_bad[i + 1] = bad
        elif i % 17 == 0:
            lines.append("")
        else:
            lines.append(event(event_id=f"m{i}", timestamp=f"2026-09-{1 + i % 14:02d}T10:00:00Z"))
            expected_good.append(f"m{i}")
    src = write_ndjson(tmp_path / "mix.ndjson", lines)
    r = ingest(cfg, [str(src)], now=NOW, workers=workers)
    assert_accounted(r)
    assert (r.lines, r.accepted, r.rejected, r.duplicates) == (600, len(expected_good), len(expected_bad), 0)
    assert sorted(read_events(lake_dir)["event_id"]) == sorted(expected_good)
    recs = read_rejected(lake_dir)
    assert [x["line"] for x in recs] == sorted(expected_bad)
    for rec in recs:
        bad = expected_bad[rec["line"]]
        raw = bad if isinstance(bad, bytes) else (bad if isinstance(bad, str) else json.dumps(bad)).encode()
        got = rec["raw"].encode() if "raw" in rec else base64.b64decode(rec["raw_base64"])
        assert got == raw
        assert rec["source"] == str(src)
        # the fast path and the diagnosis agree: never the catch-all reason
        assert rec["reasons"] and "invalid_event" not in reason_codes(rec)
    assert r.commits > 1


# --- exit codes -------------------------------------------------------------------------------

def test_exit_codes_for_rejects(clean_env, tmp_path):
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="ok"), "{not json"])
    lake = str(tmp_path / "lake")
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(src), "--lake", lake, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["ok"], out["accepted"], out["rejected"]) == (True, 1, 1)
    assert out["tenants"]["_invalid"]["rejected_by_reason"] == {"malformed_json": 1}

    src2 = write_ndjson(tmp_path / "in2.ndjson", [event(event_id="ok2"), "{still not json"])
    res = runner.invoke(app, ["ingest", str(src2), "--lake", lake, "--json", "--fail-on-rejects"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and out["accepted"] == 1  # the good line is committed all the same
    assert sorted(read_events(lake)["event_id"]) == ["ok", "ok2"]

    src3 = write_ndjson(tmp_path / "in3.ndjson", [event(event_id="ok3")])
    res = runner.invoke(app, ["ingest", str(src3), "--lake", lake, "--fail-on-rejects"])
    assert res.exit_code == 0, res.output


def test_missing_input_exits_1_naming_it(clean_env, tmp_path):
    res = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.ndjson"), "--lake", str(tmp_path / "lake")])
    assert res.exit_code == 1
    assert "nope.ndjson" in res.stderr and "input not found" in res.stderr


def test_human_summary_names_rejection_reasons(tmp_path):
    src = write_ndjson(tmp_path / "in.ndjson", [event(event_id="ok"), "{not json", event(timestamp=False)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    proc = subprocess.run([sys.executable, "-m", "erp.cli.main", "ingest", str(src), "--lake",
                           str(tmp_path / "lake"), "--workers", "1"],
                          capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "malformed_json" in text and "invalid_type" in text
    assert "2 rejected" in text and "1 accepted" in text
    assert "_rejected" in text
