"""Property tests of ingest's exactly-once effect (hypothesis): whatever the mix
of good, bad and duplicate lines, however they are split over files and read in
chunks and commits, the lake holds each distinct good event once; re-ingesting,
overlapping files and renamed copies add nothing; the ledger skips finished
files and reads only the new tail of a grown one."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import NOW, event, make_config, ndjson_bytes, read_events, read_rejected
from erp.core import parse
from erp.core.ingest import ingest

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BAD = ["{oops", "[]", json.dumps(event(event_id="bad-ts", timestamp="never")),
       json.dumps(event(event_id="bad-tenant", tenant_id="../up")), json.dumps(event(event_id="bad-type", event_type=1)),
       "\t  \t"]  # the last one is blank, not bad


def good(i: int, variant: str = "page_view") -> str:
    tenant = ("acme", "globex", "initech")[i % 3]
    return json.dumps(event(event_id=f"id-{i}", tenant_id=tenant, event_type=variant,
                            timestamp=f"2026-09-{1 + i % 9:02d}T{i % 24:02d}:00:00Z",
                            properties={"page_url": f"https://x.example/{i}"}))


@st.composite
def workloads(draw):
    """Lines (good, bad, exact duplicates, same id with other content), split into files."""
    n = draw(st.integers(1, 40))
    kinds = draw(st.lists(st.sampled_from(["good", "good", "good", "bad", "dup", "same_id"]), min_size=n, max_size=n))
    lines: list[str] = []
    first: dict[str, str] = {}  # event id -> event_type of its first occurrence
    for i, kind in enumerate(kinds):
        seen = sorted(first)
        if kind == "bad":
            lines.append(draw(st.sampled_from(BAD)))
        elif kind in ("dup", "same_id") and seen:
            j = int(draw(st.sampled_from(seen)).split("-")[1])
            lines.append(good(j) if kind == "dup" else good(j, variant="click"))
        else:
            lines.append(good(i))
            first.setdefault(f"id-{i}", "page_view")
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=3)))
    files = [lines[a:b] for a, b in zip([0] + cuts, cuts + [len(lines)])]
    chunk = draw(st.sampled_from([700, 4096, 1 << 20]))
    commit = draw(st.sampled_from([7, 25, 1000]))
    return lines, files, first, chunk, commit


def write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(ndjson_bytes(lines))
    return path


def stored(lake: Path) -> dict[tuple[str, str], str]:
    df = read_events(lake)
    ids = Counter(zip(df["tenant_id"], df["event_id"]))
    assert not ids or max(ids.values()) == 1, "an event is stored twice"
    return {(t, e): et for t, e, et in zip(df["tenant_id"], df["event_id"], df["event_type"])}


def expected(first: dict[str, str]) -> dict[tuple[str, str], str]:
    return {(("acme", "globex", "initech")[int(e.split("-")[1]) % 3], e): et for e, et in first.items()}


@SETTINGS
@given(workloads())
def test_the_lake_holds_each_distinct_good_event_once(w):
    lines, files, first, chunk, commit = w
    n_bad = sum(1 for line in lines if line in BAD and line.strip())
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        cfg = make_config(base, **{"ingest.chunk_bytes": chunk, "ingest.commit_events": commit})
        paths = [write(base / f"in-{k}.ndjson", f) for k, f in enumerate(files)]
        r = ingest(cfg, [str(p) for p in paths], now=NOW, workers=1)

        assert r.accepted + r.rejected + r.duplicates + r.blank == r.lines == len(lines)
        assert r.rejected == n_bad
        assert r.accepted == len(first)
        assert stored(base / "lake") == expected(first)  # first occurrence wins
        rejected = read_rejected(base / "lake")
        assert len(rejected) == n_bad
        where = {(str(p), k + 1) for p, f in zip(paths, files) for k, line in enumerate(f)
                 if line in BAD and line.strip()}
        assert {(x["source"], x["line"]) for x in rejected} == where

        # ingesting again: the ledger skips every finished file, nothing is read
        again = ingest(cfg, [str(p) for p in paths], now=NOW, workers=1)
        assert [s.status for s in again.sources] == ["skipped"] * len(paths)
        assert (again.lines, again.accepted, again.rejected) == (0, 0, 0)

        # the same lines under another name, and overlapping files: no new event
        copy = write(base / "renamed.ndjson", lines)
        overlap = write(base / "overlap.ndjson", lines[len(lines) // 2:] + [good(10_000)])
        r3 = ingest(cfg, [str(copy), str(overlap)], now=NOW, workers=1)
        assert r3.accepted == 1
        assert r3.accepted + r3.rejected + r3.duplicates + r3.blank == r3.lines
        assert stored(base / "lake") == {**expected(first), **expected({"id-10000": "page_view"})}


@SETTINGS
@given(workloads(), st.integers(1, 20), st.booleans())
def test_a_grown_file_only_ingests_its_new_tail(w, n_new, newline_at_end):
    lines, _, first, chunk, commit = w
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        cfg = make_config(base, **{"ingest.chunk_bytes": chunk, "ingest.commit_events": commit})
        path = base / "app.log.ndjson"
        body = ndjson_bytes(lines)
        path.write_bytes(body if newline_at_end else body[:-1])  # a last line may lack its newline
        ingest(cfg, [str(path)], now=NOW, workers=1)
        before = stored(base / "lake")
        rejected_before = len(read_rejected(base / "lake"))

        new = [good(5000 + k) for k in range(n_new)]
        with open(path, "ab") as f:
            f.write(b"" if newline_at_end else b"\n")
            f.write(ndjson_bytes(new))
        r = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert [s.status for s in r.sources] == ["resumed"]
        # only the new lines are read; a last line that had no newline yet is read
        # again now that it is complete (a good one is then a duplicate)
        reread = 0 if newline_at_end else 1
        last_bad = lines[-1] in BAD and bool(lines[-1].strip())
        assert r.lines == n_new + reread and r.accepted == n_new
        assert r.rejected == (reread if last_bad else 0)
        assert r.accepted + r.rejected + r.duplicates + r.blank == r.lines
        after = stored(base / "lake")
        assert after == {**before, **expected({f"id-{5000 + k}": "page_view" for k in range(n_new)})}
        assert len(read_rejected(base / "lake")) == rejected_before + r.rejected  # old bad lines are not re-read

        # the new lines carry their real line numbers: a bad line appended later says where it is
        with open(path, "ab") as f:
            f.write(b"{not json\n")
        ingest(cfg, [str(path)], now=NOW, workers=1)
        last = [x for x in read_rejected(base / "lake") if x["raw"] == "{not json"]
        assert [x["line"] for x in last] == [len(lines) + n_new + 1]


def test_an_unterminated_last_line_is_completed_by_the_writer():
    """A log writer may be in the middle of a line when cron runs: the part
    written so far is rejected, and once the line is complete it lands."""
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        cfg = make_config(base)
        path = base / "live.ndjson"
        full = good(1).encode()
        path.write_bytes(ndjson_bytes([good(0)]) + full[:25])
        r1 = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert (r1.accepted, r1.rejected) == (1, 1)
        with open(path, "ab") as f:
            f.write(full[25:] + b"\n")
        r2 = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert (r2.accepted, r2.rejected) == (1, 0)
        assert sorted(e for _, e in stored(base / "lake")) == ["id-0", "id-1"]


def test_a_grown_file_after_an_oversized_line_resumes_at_its_end():
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        cfg = make_config(base, **{"ingest.chunk_bytes": 4096, "ingest.max_line_bytes": 8192})
        path = base / "big.ndjson"
        write(path, [good(0), json.dumps(event(event_id="huge", properties={"pad": "z" * 50_000})), good(1)])
        r1 = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert (r1.accepted, r1.rejected) == (2, 1)
        with open(path, "ab") as f:
            f.write(ndjson_bytes([good(2)]))
        r2 = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert [s.status for s in r2.sources] == ["resumed"]
        assert (r2.lines, r2.accepted, r2.rejected) == (1, 1, 0)
        # and when the oversized line is the last one before the file grows
        path2 = base / "big2.ndjson"
        write(path2, [good(3), json.dumps(event(event_id="huge2", properties={"pad": "z" * 50_000}))])
        ingest(cfg, [str(path2)], now=NOW, workers=1)
        with open(path2, "ab") as f:
            f.write(ndjson_bytes([good(4)]))
        r3 = ingest(cfg, [str(path2)], now=NOW, workers=1)
        assert (r3.lines, r3.accepted, r3.rejected) == (1, 1, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)

FIELD_VALUES = {
    "event_id": st.text(max_size=10) | json_values,
    "tenant_id": st.sampled_from(["acme", "globex", "../x", "A", "", "acme\x00"]) | json_values,
    "event_type": st.sampled_from(["page_view", "purchase", "conversion", "", "a\tb"]) | json_values,
    "timestamp": st.sampled_from(["2026-09-14T10:00:00Z", "2026-09-14T10:00:00", "2026-09-14 10:00:00+02:00",
                                  1_788_000_000_000, 1_788_000_000, "3026-01-01T00:00:00Z", "1999-01-01",
                                  "2026-02-30T00:00:00Z", "", "now"]) | json_values,
    "sent_at": st.sampled_from(["2026-09-14T11:00:00Z", 1_788_000_000_000]) | json_values,
    "received_at": st.sampled_from(["2026-09-14T10:00:00Z", 1_788_000_000_000]) | json_values,
    "user_id": st.text(max_size=5) | st.integers(-10**20, 10**20) | json_values,
    "properties": st.fixed_dictionaries({}, optional={
        "revenue": st.floats(allow_nan=False, allow_infinity=False) | json_values,
        "currency": st.sampled_from(["EUR", "eur"]) | json_values,
        "page_url": st.sampled_from(["https://a.example/x?y=1", "::"]) | json_values}) | json_values,
    "metadata": st.fixed_dictionaries({}, optional={
        "ip": st.sampled_from(["203.0.113.9", "2001:db8::1", "x"]) | json_values,
        "user_agent": st.text(max_size=20) | json_values}) | json_values,
    "colour": json_values,
}


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.fixed_dictionaries({}, optional=FIELD_VALUES), min_size=1, max_size=25))
def test_any_json_object_is_accepted_or_rejected_with_a_real_reason(records):
    """The fast parser and the diagnosis agree on arbitrary records: every line
    is accounted for, and a rejected one is never given only the catch-all reason."""
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        cfg = make_config(base)
        path = write(base / "fuzz.ndjson", [json.dumps(r) for r in records])
        r = ingest(cfg, [str(path)], now=NOW, workers=1)
        assert r.accepted + r.rejected + r.duplicates + r.blank == r.lines == len(records)
        rejected = read_rejected(base / "lake")
        assert len(rejected) == r.rejected
        for rec in rejected:
            assert [x["code"] for x in rec["reasons"]] != ["invalid_event"], rec
        assert read_events(base / "lake").height == r.accepted


_free_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_free_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | _free_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_free_text, inner, max_size=3),
    max_leaves=8)
_HOT_PROPERTIES = {"page_url", "referrer", "revenue", "currency"}  # typed: checked, not free
_metadata = st.fixed_dictionaries({}, optional={
    "proxy": _free_values, "sdk": _free_values, "note": _free_values,
    "ip": st.sampled_from(["203.0.113.9", "2001:db8::1"]), "user_agent": _free_text})


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.dictionaries(_free_text.filter(lambda k: k not in _HOT_PROPERTIES), _free_values,
                                          max_size=4),
                          _metadata, st.booleans()),
                min_size=1, max_size=30),
       st.booleans(), st.sampled_from([600, 1 << 20]))
def test_free_form_parts_read_back_as_they_went_in(rows, with_bad_line, chunk):
    """``properties`` is stored as the exact text of the line (escaped or raw
    UTF-8 alike), ``metadata`` as the same object without its promoted top-level
    keys, whether a chunk takes the bulk path or, with a bad line in it, goes
    row by row."""
    lines, want = [], {}
    for i, (props, meta, ascii_only) in enumerate(rows):
        rec = event(event_id=f"e{i}", properties=props, metadata=meta)
        lines.append(json.dumps(rec, ensure_ascii=ascii_only))
        want[f"e{i}"] = (json.dumps(props, ensure_ascii=ascii_only),
                         {k: v for k, v in meta.items() if k not in ("ip", "user_agent", "country")})
    if with_bad_line:
        lines.insert(len(lines) // 2, '{"event_type": "x", "timestamp": "2026-09-14T10:00:00Z", "properties": [1]}')
    by_row = []
    real_by_row = parse._free_form_by_row
    with tempfile.TemporaryDirectory() as d, \
            mock.patch.object(parse, "_free_form_by_row", lambda checks: by_row.append(1) or real_by_row(checks)):
        base = Path(d)
        cfg = make_config(base, **{"ingest.chunk_bytes": chunk})
        r = ingest(cfg, [str(write(base / "in.ndjson", lines))], now=NOW, workers=1)
        assert r.accepted == len(rows) and r.rejected == int(with_bad_line)
        if not with_bad_line:
            assert not by_row, "clean chunks must take the bulk path"
        df = read_events(base / "lake")
        got = {e: (p, json.loads(m)) for e, p, m in zip(df["event_id"], df["properties"], df["metadata"])}
        assert got == want


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=60),
       st.sampled_from([300, 2048, 1 << 20]), st.sampled_from([5, 17, 1000]), st.booleans())
def test_each_event_file_holds_its_partition_in_timestamp_order(rows, chunk, commit, with_duplicates):
    """Whatever the input order, chunk and commit sizes: each file holds only its
    tenant and date, rows in timestamp order and in input order among equal
    timestamps (parsed chunks come back sorted and commits write slices of them
    when they are in order, a gather when a partition goes back in time)."""
    tenants = ("acme", "globex", "initech")
    lines = [json.dumps(event(event_id=f"e{i}", tenant_id=tenants[t], timestamp=f"2026-09-0{1 + d}T10:00:0{s}Z"))
             for i, (t, d, s) in enumerate(rows)]
    if with_duplicates:
        lines += lines[::3]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = make_config(base, **{"ingest.chunk_bytes": chunk, "ingest.commit_events": commit})
        r = ingest(cfg, [str(write(base / "in.ndjson", lines))], now=NOW, workers=1)
        assert (r.accepted, r.duplicates) == (len(rows), len(lines) - len(rows))
        seen = []
        for path in sorted((base / "lake" / "events").rglob("*.parquet")):
            tenant, day = path.parent.parent.name.split("=")[1], path.parent.name.split("=")[1]
            ids = pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
            got = [(rows[int(e[1:])][2], int(e[1:])) for e in ids]  # (second, input index)
            assert got == sorted(got), f"{path} is not in timestamp and input order"
            assert all((tenants[rows[int(e[1:])][0]], f"2026-09-0{1 + rows[int(e[1:])][1]}") == (tenant, day)
                       for e in ids)
            seen += ids
        assert sorted(seen) == sorted(f"e{i}" for i in range(len(rows)))
