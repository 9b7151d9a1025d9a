"""The parser's native fast path (core/_scan.c) against the general path
(msgspec, then ``diagnose`` line by line): on any chunk, good or bad, both must
give the same table and the same rejected lines, and clean chunks must really
take the fast path."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import NOW, make_config
from erp.core import parse
from erp.core.events import Chunk
from erp.core.generate import generate_events
from erp.core.ingest import build_context

if parse._native is None:
    message = ("core/_scan.c is not built (a C compiler is needed at install: "
               "apt-get install gcc python3-dev, then pip install -e .)")
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

_scan = parse._native


@pytest.fixture(scope="module")
def ctx():
    with tempfile.TemporaryDirectory() as d:
        cfg = make_config(Path(d))
    return build_context(cfg, batch_id="b-test", now_us=int(NOW.timestamp() * 1_000_000), tenant=None)


def both(ctx, data: bytes) -> tuple:
    """(native result, general result) of one chunk, as comparable values."""
    out = []
    chunk = Chunk(source="in.ndjson", data=data, end_offset=len(data))
    for r in (parse.parse_chunk(ctx, chunk), parse._parse(ctx, chunk, native=False)):
        table = None if r.table is None else r.table.to_pylist()
        rejected = [(x.tenant_bucket, x.line, x.raw, [(y.code, y.field, y.message) for y in x.reasons])
                    for x in r.rejected]
        out.append((table, rejected, r.lines, r.blank))
    return out[0], out[1]


def test_generated_events_take_the_fast_path_and_match(ctx, tmp_path):
    path = tmp_path / "gen.ndjson"
    generate_events(path, events=3000, tenants=5, days=3, seed=7, start=date(2026, 9, 12))
    data = path.read_bytes()
    assert _scan.scan(data) is not None, "clean generated events must take the native path"
    native, general = both(ctx, data)
    assert native == general
    assert native[0] and len(native[0]) == 3000 and not native[1]


def test_generated_dirty_events_match(ctx, tmp_path):
    path = tmp_path / "dirty.ndjson"
    generate_events(path, events=3000, tenants=5, days=3, seed=8, start=date(2026, 9, 12), dirty=0.05)
    native, general = both(ctx, path.read_bytes())
    assert native == general
    assert native[1], "the dirty lines are rejected"


# --- what the scanner leaves to the general path -------------------------------------

GOOD = {"event_type": "page_view", "timestamp": "2026-09-14T10:00:00Z", "tenant_id": "acme", "event_id": "e1"}


def line(**fields) -> bytes:
    rec = {**GOOD, **fields}
    return json.dumps({k: v for k, v in rec.items() if v is not None}).encode() + b"\n"


@pytest.mark.parametrize("data", [
    line(),
    line(user_id=12, session_id=None, sent_at=1757844000000, received_at=1757844000000.5),
    line(properties={"a": [1, -2.5e3, True, False, None, {"b": 'é " \\ \n \u00e9'}]}, metadata=None),
    b'  {"event_type" : "x" , "timestamp" : 1 }  \r\n',
    b'{"event_type":"x","timestamp":"t","properties":{}}\n{"event_type":"y","timestamp":2,"metadata":[]}',
], ids=["plain", "numbers", "nested", "whitespace", "two-lines"])
def test_plain_lines_are_scanned(data):
    assert _scan.scan(data) is not None


@pytest.mark.parametrize("data", [
    line(color="red"),                                   # unknown field
    b'{"event_type":"a","event_type":"b","timestamp":1}\n',  # repeated field
    line(event_type="caf\u00e9"),                         # an escape in a scalar string
    line(tenant_id='a"b'),
    b'{"event_type":"a","timestamp":1,"properties":{"x":"\\ud83d\\ude00"}}\n',  # a surrogate escape
    b'{"event_type":"a","timestamp":1,"user_id":-0}\n',
    b'{"event_type":"a","timestamp":-0}\n',
    b'{"event_type":"a","timestamp":1.7e12}\n',           # an exponent in a scalar field
    line(user_id=12345678901234567890),                  # more than 18 digits
    line(user_id=1.5),                                   # wrong types
    line(event_type=1), line(timestamp=True), line(tenant_id=5), line(event_id=["x"]),
    line(event_type=None), line(timestamp=None),         # required fields
    b'{"timestamp":"t"}\n',
    line(properties=json.loads("[" * 70 + "]" * 70)),   # deep nesting
    b'{"event_type":"a","timestamp":1}{"event_type":"b","timestamp":2}\n',
    b'{"event_type":"a","timestamp":1,}\n', b'{"event_type":"a","timestamp":01}\n', b'[1]\n', b'\n',
    b'{"event_type":"a","timestamp":"t\x01"}\n', b'{"event_type":"a","timestamp":1,"properties":{"x":"\\q"}}\n',
    b'{"event_type":"a","timestamp":1,"properties":{"x":tru}}\n', b'{"event_type":"a","timestamp":1',
], ids=lambda d: d[:50].decode("utf-8", "replace"))
def test_anything_unusual_is_left_to_the_general_path(data):
    assert _scan.scan(data) is None


def test_gather_refuses_spans_outside_the_data():
    data = line()
    kinds, spans = _scan.scan(data)
    with pytest.raises(ValueError):
        _scan.gather(data[:10], spans, kinds, 0, b"")
    with pytest.raises(ValueError):
        _scan.gather(data, spans[:-8], kinds, 0, b"")


# --- the property: same result whatever the chunk --------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), _text,
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["2026-09-14T10:00:00Z", "2026-09-14T10:00:00.5+02:00", "1757844000000",
                                     "acme", "globex", "../x", "", "2026-13-01"]),
                    st.sampled_from([1757844000000, 1757844000.5, 0, -1]))
_free = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=6)
_fields = st.fixed_dictionaries({}, optional={
    "event_type": _scalar, "timestamp": _scalar, "event_id": _scalar, "tenant_id": _scalar, "user_id": _scalar,
    "anonymous_id": _scalar, "session_id": _scalar, "sent_at": _scalar, "received_at": _scalar,
    "properties": _free, "metadata": st.one_of(_free, st.fixed_dictionaries({}, optional={
        "ip": st.sampled_from(["203.0.113.9", "2001:db8::1", "junk"]), "user_agent": _text, "x": _free})),
    "extra": _scalar})


# what the scanner takes as it is: every field of a type _Check allows, plain numbers,
# scalar strings without escapes (free-form values may have any)
_plain_text = st.text(st.characters(codec="utf-8", exclude_characters='"\\', min_codepoint=0x20), max_size=12)
_plain_number = st.integers(-10**17, 10**17) | st.decimals(-10**6, 10**6, places=3).map(float)
_clean = st.fixed_dictionaries({
    "event_type": _plain_text | st.sampled_from(["page_view", "signup"]),
    # mostly lines that pass every check, so that a wrong value the scanner let through would show
    "timestamp": st.sampled_from(["2026-09-14T10:00:00Z", "2026-09-14T10:00:00.123456Z", "2026-09-14 10:00:00",
                                  1757844000000, 1757844000000.5]) | _plain_text | _plain_number,
    "tenant_id": st.sampled_from(["acme", "acme", "globex", "Bad", ""]) | st.none(),
}, optional={
    "event_id": st.none() | _plain_text,
    "user_id": st.none() | _plain_text | st.integers(-10**17, 10**17),
    "anonymous_id": st.none() | _plain_text | st.integers(0, 99),
    "session_id": st.none() | _plain_text,
    "sent_at": st.none() | st.sampled_from(["2026-09-14T10:00:05Z", 1757844005000]) | _plain_number,
    "received_at": st.none() | st.sampled_from(["2026-09-14T10:00:09Z", 1757844009000]) | _plain_text,
    "properties": _free, "metadata": _free | st.fixed_dictionaries({}, optional={
        "ip": st.sampled_from(["203.0.113.9", "2001:db8::1", "junk"]), "user_agent": _plain_text, "x": _free}),
})


@st.composite
def records(draw, clean: bool):
    rec = draw(_clean if clean else _fields)
    if not clean and draw(st.booleans()):  # mostly plausible events
        rec.setdefault("event_type", draw(st.sampled_from(["page_view", "signup"])))
        rec.setdefault("timestamp", "2026-09-14T10:00:00Z")
        rec.pop("extra", None)
    text = json.dumps(rec, ensure_ascii=not clean and draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")])))
    raw = text.encode()
    mutation = draw(st.sampled_from(["crlf", "none"] if clean else ["none"] * 6 + ["cut", "byte", "crlf", "dup"]))
    if mutation == "cut":
        raw = raw[:draw(st.integers(1, max(1, len(raw) - 1)))]
    elif mutation == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\x01", b"\\", b'"', b"}"])) + raw[at + 1:]
    elif mutation == "crlf":
        raw += b"\r"
    elif mutation == "dup" and rec:
        key = next(iter(rec))
        raw = raw[:-1] + b", " + json.dumps({key: rec[key]})[1:-1].encode() + b"}"
    return raw


@st.composite
def chunks(draw):
    """Chunks of clean lines (the scanner's case; the checks after it still
    reject some) or of anything at all."""
    clean = draw(st.booleans())
    lines = draw(st.lists(records(clean), min_size=1, max_size=8))
    return b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")


# every field with every kind of value, in a line that is otherwise good, next to a
# good line: the chunk's result must not depend on which path read it
_VALUES = [b'1.5', b'2', b'-0', b'-0.0', b'1e3', b'1E+300', b'12345678901234567890', b'true', b'null', b'"x"',
           b'"caf\\u00e9"', b'"a\\"b"', b'""', b'[]', b'{}', b'{"a":[1,{"b":null}]}', b'"2026-09-14T10:00:00Z"',
           b'1757844000000', b'1757844000000.25']


@pytest.mark.parametrize("field", list(parse.SCAN_FIELDS) + ["color"])
def test_each_field_with_each_kind_of_value(ctx, field):
    good = b'{"event_type":"page_view","tenant_id":"acme","timestamp":"2026-09-14T10:00:00Z","event_id":"g"}'
    for value in _VALUES:
        rec = {"event_type": b'"signup"', "tenant_id": b'"acme"', "timestamp": b'"2026-09-14T10:05:00Z"', field: value}
        line = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in rec.items()) + b"}"
        native, general = both(ctx, good + b"\n" + line + b"\n")
        assert native == general, line


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks())
def test_native_and_general_paths_agree(ctx, data):
    native, general = both(ctx, data)
    assert native == general


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.none(), st.just("null"), st.sampled_from(['{}', '{"a":1}', '{"a": 1}', '{"b":"x"}']),
                          st.dictionaries(_text, _text, max_size=2).map(lambda d: json.dumps(d, ensure_ascii=False))),
                min_size=1, max_size=60))
def test_distinct_codes_each_text_in_order_of_first_appearance(texts):
    lines = [b'{"event_type":"a","timestamp":1' + (b"" if t is None else b',"properties":' + t.encode()) + b"}"
             for t in texts]
    data = b"\n".join(lines)
    kinds, spans = _scan.scan(data)
    codes, firsts = _scan.distinct(data, spans, kinds, parse.SCAN_FIELDS.index("properties"), b"null")
    seen: dict[str, int] = {}
    want = [seen.setdefault("null" if t is None else t, len(seen)) for t in texts]
    assert list(memoryview(codes).cast("I")) == want
    assert list(memoryview(firsts).cast("q")) == [want.index(k) for k in range(len(seen))]


def test_the_scanner_reports_the_fields_the_parser_names():
    assert _scan.FIELDS == parse.SCAN_FIELDS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"a", b"\r", b"{}", b"\x00", b"\xff"]), min_size=1, max_size=60).map(b"".join))
def test_newlines_are_found_where_numpy_finds_them(data):
    import numpy as np

    expected = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    assert np.frombuffer(_scan.newlines(data), dtype=np.int64).tolist() == expected.tolist()
    # every line, the last one with or without its newline, and nothing else
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    starts, ends = parse._line_bounds(data)
    assert [data[a:b] for a, b in zip(starts, ends)] == lines


# --- strip_members: the metadata's promoted keys removed, as the pattern does -------------

import polars as pl  # noqa: E402

from erp.core.enrich import _strip_native, strip_keys, strip_keys_expr  # noqa: E402
from erp.core.events import PROMOTED_METADATA  # noqa: E402

_plain = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\{'), max_size=8)
_keys = st.sampled_from(list(PROMOTED_METADATA) + ["sdk", "ipx", "x_ip", "", "ip "]) | _plain
_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | _plain
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_seps = st.sampled_from([(",", ":"), (", ", ": "), (" ,  ", " :\t"), (",\n", ":"), ("\r\n,", "\n:\n")])


def _plain_object(pairs, seps, pad) -> str:
    """JSON object text with possibly repeated keys and any JSON whitespace."""
    item, key = seps
    body = item.join(f"{json.dumps(k, ensure_ascii=False)}{key}{json.dumps(v, ensure_ascii=False)}"
                     for k, v in pairs)
    return f"{pad}{{{pad}{body}{pad}}}{pad}"


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.lists(st.tuples(_keys, _value), max_size=6), min_size=1, max_size=6), _seps,
       st.sampled_from(["", "", " ", "\n  "]))
def test_strip_members_removes_what_the_pattern_removes_byte_for_byte(objects, seps, pad):
    texts = [_plain_object(pairs, seps, pad) for pairs in objects]
    series = pl.Series("m", texts, dtype=pl.String)
    got, hard = _strip_native(series, PROMOTED_METADATA)
    expected = pl.select(strip_keys_expr(pl.lit(series), PROMOTED_METADATA)).to_series()
    # whitespace before the brace makes a text "hard" (strip_keys then parses it)
    assert hard.to_list() == [not t.startswith("{") for t in texts]
    for text, out, want, h in zip(texts, got.to_list(), expected.to_list(), hard.to_list()):
        assert out == (text if h else want)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='{}[]",:\\ ipcountry0né', max_size=30), min_size=1, max_size=8))
def test_strip_members_copies_hard_or_malformed_texts_and_flags_the_hard_ones(texts):
    """Texts with a backslash or a brace after their first character are left to
    the JSON parser (flagged, copied unchanged); malformed ones are never cut."""
    series = pl.Series("m", texts, dtype=pl.String)
    got, hard = _strip_native(series, PROMOTED_METADATA)
    for text, out, h in zip(texts, got.to_list(), hard.to_list()):
        assert h == ("\\" in text or "{" in text[1:])  # as strip_keys judges
        if h:
            assert out == text
        try:
            json.loads(text)
        except ValueError:
            assert out == text  # not JSON: nothing removed


def test_strip_keys_with_nulls_and_hard_texts_takes_both_paths():
    texts = ['{"ip":"1.2.3.4","a":1}', None, '{"ip":"\\u0031","b":2}', '{"d":{"ip":"x"},"country":"FR"}']
    got = strip_keys(pl.Series("metadata", texts, dtype=pl.String), PROMOTED_METADATA).to_list()
    assert got[1] is None
    assert [json.loads(t) for t in got[:1] + got[2:]] == [{"a": 1}, {"b": 2}, {"d": {"ip": "x"}}]
    assert strip_keys(pl.Series("metadata", [t for t in texts if t], dtype=pl.String),
                      PROMOTED_METADATA).to_list() == [t for t in got if t]
