"""The C Parquet encoder of the ingest's event files (core/_pqw.c through
erp.core.pqwrite), against real readers and pyarrow's own writer.

Checks: round trips of hypothesis-generated tables (nulls anywhere, runs of
repeated values around the RLE/bit-packing boundaries, multi-byte UTF-8, NUL
bytes, int64 timestamp extremes, NaN / -0.0 / inf bit patterns, 0 and 1 rows,
several record batches, sliced arrays) and of ``encode_spans`` /
``encode_batches`` against the concatenated slices; the same bytes from
concurrent calls; DuckDB and Polars read the same values as pyarrow; the
footer's statistics, compression, dictionary pages and writer name, and
row-group pruning on them; agreement with ``pq.write_table`` under
``INGEST_PARQUET_OPTIONS``; bad input refused with an exception (never a
crash); and ``erp ingest`` writing the same rows with and without the encoder.
The dedup index's key files (``encode_keys``): round trips, the footer pyarrow
writes for them, DuckDB reading them, and an index written by either writer
deduplicating runs of the other.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import event, write_ndjson
from erp.cli.main import app
from erp.core import pqwrite
from erp.core.dedup import KEY_FILE_OPTIONS
from erp.core.events import EVENT_SCHEMA, INGEST_PARQUET_OPTIONS, TS

NOT_BUILT = (f"core/_pqw.c is not built ({pqwrite.UNAVAILABLE_REASON}): it needs a C compiler and libzstd "
             "at install (apt-get install gcc python3-dev libzstd1), then pip install -e '.[test]'")
if not pqwrite.AVAILABLE:
    if os.environ.get("CI"):
        pytest.fail(NOT_BUILT, pytrace=False)
    pytest.skip(NOT_BUILT, allow_module_level=True)

from erp.core import _pqw  # noqa: E402  (only once we know it is built)

UTC = timezone.utc
NAMES = EVENT_SCHEMA.names
STRING_COLS = [f.name for f in EVENT_SCHEMA if f.type == pa.string()]
# what the files must look like, taken from the pyarrow options the ingest used before
ZSTD = {c for c, codec in INGEST_PARQUET_OPTIONS["compression"].items() if codec == "zstd"}
DICT = {c for c in INGEST_PARQUET_OPTIONS["use_dictionary"] if EVENT_SCHEMA.field(c).type != pa.bool_()}
STATS = set(INGEST_PARQUET_OPTIONS["write_statistics"])
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# --- building and comparing tables -------------------------------------------------------

def make_table(cols: dict[str, list], rows: int | None = None) -> pa.Table:
    """An EVENT_SCHEMA table; columns not given are all null (timestamps as int64 microseconds)."""
    n = rows if rows is not None else len(next(iter(cols.values())))
    return pa.table([pa.array(cols.get(f.name, [None] * n), f.type) for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def read_image(image) -> pa.Table:
    return pq.read_table(pa.BufferReader(bytes(image)))


def values(col: pa.ChunkedArray) -> list:
    """Comparable Python values: timestamps as int64, doubles as their bit patterns."""
    arr = col.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        return arr.cast(pa.int64()).to_pylist()
    if pa.types.is_floating(arr.type):
        valid = arr.is_valid().to_pylist()
        bits = arr.view(pa.int64()).to_pylist() if len(arr) else []
        return [b if ok else None for b, ok in zip(bits, valid)]
    return arr.to_pylist()


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.remove_metadata() == EVENT_SCHEMA
    assert got.num_rows == want.num_rows
    for name in NAMES:
        assert values(got.column(name)) == values(want.column(name)), name


def check_footer(image, table: pa.Table) -> None:
    """created_by, compression, dictionary pages and statistics as INGEST_PARQUET_OPTIONS asks."""
    md = pq.ParquetFile(pa.BufferReader(bytes(image))).metadata
    assert md.created_by.startswith("erp version ")
    assert (md.num_rows, md.num_row_groups) == (table.num_rows, 1)
    rg = md.row_group(0)
    for i, name in enumerate(NAMES):
        col, data = rg.column(i), table.column(name)
        assert col.path_in_schema == name
        assert col.compression == ("ZSTD" if name in ZSTD else "UNCOMPRESSED"), name
        assert col.has_dictionary_page == (name in DICT and data.null_count < len(data)), name
        if name not in STATS:
            assert not col.is_stats_set, name
            continue
        stats = col.statistics
        assert stats is not None and stats.null_count == data.null_count, name
        present = [v for v in values(data) if v is not None]
        if name == "event_type":
            present = [v.encode() for v in present]  # unsigned byte order
        assert stats.has_min_max == bool(present), name
        if present:
            lo, hi = stats.min_raw, stats.max_raw
            if isinstance(lo, str):
                lo, hi = lo.encode(), hi.encode()
            assert (lo, hi) == (min(present), max(present)), name


# --- hypothesis strategies -----------------------------------------------------------------

_STRINGS = st.one_of(
    st.sampled_from(["", "a", "page_view", "z", "é", "日本語", "\U0001F600", "\x00", "a\x00b", '"', "'\"\\",
                     "ÿ", "\u0100", "\x7f"]),
    st.text(max_size=6))
_TIMESTAMPS = st.one_of(
    st.sampled_from([-2**63, 2**63 - 1, -2**63 + 1, -1, 0, 1, -2_208_988_800_000_000, 1_789_000_000_000_000]),
    st.integers(-2**63, 2**63 - 1))
_FLOATS = st.one_of(st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324, 1.5]),
                    st.floats())
_VALUES = {pa.string(): _STRINGS, TS: _TIMESTAMPS, pa.float64(): _FLOATS, pa.bool_(): st.booleans()}
# run lengths around the RLE threshold (8) and the 63-group bit-packed run limit (504)
_LENGTHS = st.sampled_from([1, 3, 7, 8, 9, 16, 63, 64, 503, 504, 505, 512, 700])
_REPEATS = st.sampled_from([1, 1, 1, 2, 7, 8, 9, 63, 504])


@st.composite
def column_values(draw, typ: pa.DataType, rows: int) -> list:
    """Segments of a few values taken in turn, each repeated a few times in a row:
    literal runs (neighbours differ), RLE runs (>= 8 equal) and their mixes."""
    mode = draw(st.sampled_from(["mixed", "mixed", "mixed", "no_nulls", "all_null"]))
    if mode == "all_null":
        return [None] * rows
    value = _VALUES[typ] if mode == "no_nulls" else st.one_of(st.none(), _VALUES[typ])
    out: list = []
    for segment in range(12):  # at most 12 segments (the last one fills the column): quick to draw
        if len(out) >= rows:
            break
        pool = draw(st.lists(value, min_size=1, max_size=5))
        repeat, length = draw(_REPEATS), draw(_LENGTHS) if segment < 11 else rows - len(out)
        out.extend(pool[(i // repeat) % len(pool)] for i in range(length))
    return out[:rows]


@st.composite
def tables(draw, max_rows: int = 800) -> pa.Table:
    rows = draw(st.one_of(st.sampled_from([0, 1, 2, 8, 9, 504, 505]), st.integers(0, max_rows)))
    return make_table({f.name: draw(column_values(f.type, rows)) for f in EVENT_SCHEMA}, rows)


@st.composite
def relaid(draw, table: pa.Table) -> pa.Table:
    """The same rows as record batches cut at random places (non-zero array offsets)."""
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=4)))
    bounds = [0] + cuts + [table.num_rows]
    batches = [b for lo, hi in zip(bounds, bounds[1:]) for b in table.slice(lo, hi - lo).to_batches()]
    return pa.Table.from_batches(batches, schema=EVENT_SCHEMA)


# --- round trips ------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_round_trip_of_generated_tables(data):
    table = data.draw(tables())
    pad = data.draw(st.integers(0, 9))  # rows sliced off the front: the arrays start at an offset
    padded = pa.concat_tables([make_table({}, pad), table]) if pad else table
    laid = data.draw(relaid(padded)).slice(pad)
    [image] = pqwrite.encode_tables([laid])
    assert_same(read_image(image), table)
    check_footer(image, table)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_spans_equal_the_concatenated_slices(data):
    tabs = [data.draw(relaid(data.draw(tables(max_rows=300)))) for _ in range(data.draw(st.integers(1, 3)))]
    span = st.integers(0, len(tabs) - 1).flatmap(lambda t: st.integers(0, tabs[t].num_rows).flatmap(
        lambda r: st.tuples(st.just(t), st.just(r), st.integers(0, tabs[t].num_rows - r))))
    files = data.draw(st.lists(st.lists(span, max_size=5), min_size=1, max_size=4))
    images = pqwrite.encode_spans(tabs, files)
    assert len(images) == len(files)
    for image, spans in zip(images, files):
        want = pa.concat_tables([make_table({}, 0)] + [tabs[t].slice(r, n) for t, r, n in spans])
        assert_same(read_image(image), want)
        check_footer(image, want)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_batch_spans_equal_the_concatenated_slices(data):
    batches = data.draw(relaid(data.draw(tables(max_rows=300)))).to_batches()
    assume(batches)
    span = st.integers(0, len(batches) - 1).flatmap(lambda b: st.integers(0, batches[b].num_rows).flatmap(
        lambda r: st.tuples(st.just(b), st.just(r), st.integers(0, batches[b].num_rows - r))))
    files = data.draw(st.lists(st.lists(span, max_size=5), min_size=1, max_size=4))
    spans = np.array([s for f in files for s in f], np.int64).reshape(-1, 3)
    bounds = np.cumsum([0] + [len(f) for f in files])
    for image, file in zip(pqwrite.encode_batches(batches, spans, bounds), files, strict=True):
        want = pa.Table.from_batches([batches[b].slice(r, n) for b, r, n in file], schema=EVENT_SCHEMA)
        assert_same(read_image(image), want)


def test_batches_of_other_types_are_cast_even_when_empty():
    loose = pa.schema([f.with_type(pa.large_string()) if f.type == pa.string() else f for f in EVENT_SCHEMA])
    full = make_table({"event_id": ["a", "b"]}).cast(loose).to_batches()[0]
    empty = pa.RecordBatch.from_pylist([], schema=loose)
    images = pqwrite.encode_batches([full, empty], np.array([[0, 1, 1], [1, 0, 0]]), np.array([0, 1, 2]))
    assert read_image(images[0]).column("event_id").to_pylist() == ["b"]
    assert read_image(images[1]).num_rows == 0


def test_spans_cross_record_batch_boundaries():
    n = 30
    base = make_table({"event_id": [f"e{i}" for i in range(n)], "event_type": ["t"] * 12 + ["u", None] * 9,
                       "timestamp": list(range(-15, 15)), "revenue": [float(i) if i % 3 else None for i in range(n)],
                       "ts_clamped": [i % 2 == 0 for i in range(n)]})
    batched = pa.Table.from_batches([base.slice(0, 7).to_batches()[0], base.slice(7, 1).to_batches()[0],
                                     base.slice(8, 14).to_batches()[0], base.slice(22, 8).to_batches()[0]])
    other = base.slice(10, 20)  # a slice: non-zero offset in every column
    files = [[(0, 5, 20)], [(1, 3, 9), (0, 0, 30), (1, 0, 1)], [(0, 29, 1), (0, 6, 2)], [], [(0, 4, 0)]]
    images = pqwrite.encode_spans([batched, other], files)
    tabs = [base, other]
    for image, spans in zip(images, files):
        assert_same(read_image(image), pa.concat_tables([make_table({}, 0)] + [tabs[t].slice(r, k) for t, r, k in spans]))


def test_long_strings_and_many_rows():
    rng = np.random.default_rng(3)
    n = 5000
    long = ["x" * 100_000, "é" * 50_000 + "\x00", "日" * 40_000]
    ts = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64, endpoint=True).tolist()
    ts[:4] = [-2**63, 2**63 - 1, -1, 0]
    cols = {
        "event_id": [f"id-{i}" for i in range(n)],
        "event_type": [("page_view", "click", "ünïcode", None)[(i // 9) % 4] for i in range(n)],
        "timestamp": ts,
        "received_at": [None if i % 1000 == 0 else 1_700_000_000_000_000 + i for i in range(n)],
        "user_id": [f"u{i % 600}" for i in range(n)],  # 600 distinct: 10-bit dictionary indices
        "session_id": ["same"] * n,  # one RLE run of 5000
        "revenue": [(math.nan, -0.0, None, 1.25, math.inf)[i % 5] for i in range(n)],
        "properties": [long[i % 3] if i % 997 == 0 else '{"k":"v"}' for i in range(n)],
        "metadata": [long[0]] * 3 + [None] * (n - 3),
        "ts_skew_corrected": [None if i % 7 == 0 else i % 3 == 0 for i in range(n)],
        "ts_clamped": [True] * n,
    }
    table = make_table(cols)
    [image] = pqwrite.encode_tables([table])
    assert_same(read_image(image), table)
    check_footer(image, table)


def test_wide_dictionary_indices():
    n = 70_000  # > 65536 distinct values: 17-bit indices
    table = make_table({"user_id": [f"user-{i}" for i in range(n)], "event_type": [str(i % 300) for i in range(n)],
                        "received_at": list(range(n)), "ts_clamped": [False] * n}, n)
    [image] = pqwrite.encode_tables([table])
    assert_same(read_image(image), table)
    check_footer(image, table)


@pytest.mark.parametrize("rows", [0, 1])
def test_empty_and_one_row_tables(rows, tmp_path):
    table = make_table({"event_type": ["é"] * rows, "timestamp": [-1] * rows, "revenue": [-0.0] * rows}, rows)
    [image] = pqwrite.encode_tables([table])
    assert_same(read_image(image), table)
    check_footer(image, table)
    path = tmp_path / "f.parquet"
    path.write_bytes(bytes(image))
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == [(rows,)]
    assert pl.read_parquet(path).height == rows


# --- other readers ----------------------------------------------------------------------------

def read_duckdb(path) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(table=tables(max_rows=600))
def test_duckdb_and_polars_read_what_pyarrow_reads(table, tmp_path):
    [image] = pqwrite.encode_tables([table])
    path = tmp_path / "events.parquet"
    path.write_bytes(bytes(image))
    assert_same(read_image(image), table)
    from_duckdb = read_duckdb(path)
    assert from_duckdb.schema.field("timestamp").type == TS
    assert_same(from_duckdb.cast(EVENT_SCHEMA), table)
    from_polars = pl.read_parquet(path)
    assert from_polars.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert_same(from_polars.to_arrow().cast(EVENT_SCHEMA), table)


# --- footer metadata and pruning --------------------------------------------------------------

def test_string_statistics_use_unsigned_byte_order():
    # signed chars would put "é" (0xC3...) and "\U0001F600" (0xF0...) before "z"
    table = make_table({"event_type": ["z", "é", None, "a", "\U0001F600", "Z"], "timestamp": [5, -7, None, 3, 0, 1]})
    [image] = pqwrite.encode_tables([table])
    stats = pq.ParquetFile(pa.BufferReader(bytes(image))).metadata.row_group(0).column(1).statistics
    assert (stats.min, stats.max, stats.null_count) == ("Z", "\U0001F600", 1)
    check_footer(image, table)


def test_statistics_leave_out_values_over_4_kib():
    """Like pyarrow, min/max values over 4096 bytes are left out (the null count stays)."""
    for longest in (4096, 4097):
        table = make_table({"event_type": ["a", "b" * longest, None], "timestamp": [1, 2, 3]})
        [image] = pqwrite.encode_tables([table])
        stats = pq.ParquetFile(pa.BufferReader(bytes(image))).metadata.row_group(0).column(1).statistics
        assert stats.null_count == 1
        assert stats.has_min_max == (longest <= 4096)
        if stats.has_min_max:
            assert (stats.min, stats.max) == ("a", "b" * longest)
        assert_same(read_image(image), table)


def test_all_null_statistic_columns():
    table = make_table({"event_id": ["a", "b"]}, 2)
    [image] = pqwrite.encode_tables([table])
    rg = pq.ParquetFile(pa.BufferReader(bytes(image))).metadata.row_group(0)
    for i in (1, 2):  # event_type, timestamp
        assert rg.column(i).statistics.null_count == 2 and not rg.column(i).statistics.has_min_max
    check_footer(image, table)


def test_dataset_filters_prune_row_groups_by_statistics(tmp_path):
    day = 86_400_000_000
    parts = [make_table({"event_id": [f"{d}-{i}" for i in range(10)],
                         "event_type": [("view", "buy", "ü")[d]] * 9 + [None],
                         # no nulls here: with nulls pyarrow prunes on neither its own nor our files
                         "timestamp": [d * day + i * 1000 for i in range(10)]}) for d in range(3)]
    for d, image in enumerate(pqwrite.encode_tables(parts)):
        (tmp_path / f"part-{d}.parquet").write_bytes(bytes(image))
    dataset = ds.dataset(str(tmp_path), format="parquet", schema=EVENT_SCHEMA)

    def check(expr, want_ids: list[str], files_left: int) -> None:
        got = dataset.to_table(filter=expr)
        assert sorted(got.column("event_id").to_pylist()) == sorted(want_ids)
        kept = [rg for f in dataset.get_fragments() for rg in f.split_by_row_group(filter=expr)]
        assert len(kept) == files_left  # the statistics let the reader skip the other files

    ts = ds.field("timestamp")
    check(ts >= pa.scalar(day + 5000, TS), [f"1-{i}" for i in range(5, 10)] + [f"2-{i}" for i in range(10)], 2)
    check(ts < pa.scalar(0, TS), [], 0)
    check(ts > pa.scalar(2 * day + 9000, TS), [], 0)
    check(ds.field("event_type") == "ü", [f"2-{i}" for i in range(9)], 1)
    check(ds.field("event_type") > "zzz", [f"2-{i}" for i in range(9)], 1)  # "ü" sorts after "zzz" in UTF-8


def realistic_table(n: int = 3000, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    pick = lambda pool, p=None: [pool[i] for i in rng.choice(len(pool), n, p=p)]  # noqa: E731
    users = [f"user-{i:05d}" for i in range(300)]
    urls = [f"https://shop.example.com/{p}" for p in ("", "cart", "checkout", "p/ünï", "search?q=a")]
    uas = [f"Mozilla/5.0 (X11; Linux x86_64) Chrome/{v}.0" for v in range(120, 128)]
    types = ["page_view", "click", "purchase", "signup", "scroll"]
    ts = np.sort(rng.integers(1_788_000_000_000_000, 1_788_086_400_000_000, n))
    revenue = [round(float(x), 2) if rng.random() < 0.05 else None for x in rng.uniform(1, 500, n)]
    return make_table({
        "event_id": [f"{rng.integers(2**63):016x}-{i}" for i in range(n)],
        "event_type": pick(types, [0.6, 0.2, 0.05, 0.05, 0.1]), "timestamp": ts.tolist(),
        "received_at": (ts + 1_500_000).tolist(), "sent_at": [None] * (n - 1) + [int(ts[0])],
        "user_id": pick(users), "anonymous_id": [f"anon-{i // 3}" for i in range(n)],
        "session_id": [f"s-{i // 20}" for i in range(n)], "page_url": pick(urls),
        "page_path": [u.split(".com")[1] or "/" for u in pick(urls)], "referrer": pick([None, "https://google.com/"]),
        "referrer_domain": pick([None, "google.com"]), "revenue": revenue,
        "currency": ["EUR" if r is not None else None for r in revenue], "browser": pick(["Chrome", "Firefox"]),
        "os": pick(["Linux", "Windows", "macOS"]), "device_type": pick(["desktop", "mobile"]),
        "user_agent": pick(uas), "country": pick(["DE", "FR", "US", None]), "ip": pick(["10.0.0.0", "192.168.1.0"]),
        "properties": [json.dumps({"plan": "pro", "n": int(i % 7)}) for i in range(n)], "metadata": pick(["{}", None]),
        "ts_skew_corrected": pick([False, False, True]), "ts_clamped": [False] * n, "ingest_batch": ["b-1"] * n,
    })


def test_files_agree_with_pyarrows_writer():
    table = realistic_table()
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **INGEST_PARQUET_OPTIONS)
    theirs = buf.getvalue()
    [ours] = pqwrite.encode_tables([table])
    assert_same(read_image(ours), read_image(theirs))
    assert_same(read_image(ours), table)
    check_footer(ours, table)
    mine = pq.ParquetFile(pa.BufferReader(bytes(ours))).metadata.row_group(0)
    ref = pq.ParquetFile(pa.BufferReader(theirs)).metadata.row_group(0)
    for i, name in enumerate(NAMES):
        a, b = mine.column(i), ref.column(i)
        assert (a.compression, a.has_dictionary_page, a.num_values, a.is_stats_set) == \
               (b.compression, b.has_dictionary_page, b.num_values, b.is_stats_set), name
        assert set(a.encodings) == set(b.encodings), name
        if b.is_stats_set:
            sa, sb = a.statistics, b.statistics
            assert (sa.min_raw, sa.max_raw, sa.null_count) == (sb.min_raw, sb.max_raw, sb.null_count), name
    assert len(ours) <= 1.25 * theirs.size, (len(ours), theirs.size)


def test_concurrent_calls_give_the_same_bytes():
    # the encoder runs without the GIL: calls from several threads must not share state
    tabs = [realistic_table(500, seed) for seed in range(8)]
    alone = [bytes(pqwrite.encode_tables([t])[0]) for t in tabs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(lambda t: bytes(pqwrite.encode_tables([t])[0]), tabs)) == alone
    assert_same(read_image(alone[3]), tabs[3])


# --- bad input --------------------------------------------------------------------------------

def test_spans_outside_a_table_are_refused():
    t = make_table({"event_id": ["a", "b", "c"]})
    for span in [(0, 0, 4), (0, 3, 1), (0, -1, 2), (0, 2, 2)]:
        with pytest.raises(ValueError, match="outside table 0"):
            pqwrite.encode_spans([t], [[span]])


@pytest.mark.parametrize("table_index", [1, -1, -2])
def test_a_span_naming_no_table_is_refused(table_index):
    # there is one table: index -1 must not quietly mean "the last table"
    with pytest.raises((ValueError, IndexError)):
        pqwrite.encode_spans([make_table({"event_id": ["a"]})], [[(table_index, 0, 1)]])


def test_column_types_are_cast_to_the_event_schema():
    want = make_table({"event_id": ["a", "é", None], "event_type": ["x", None, "y"], "timestamp": [1000, None, -1000],
                       "revenue": [1.5, None, -0.0]})
    loose = pa.table({
        **{n: want.column(n).cast(pa.large_string()) for n in reversed(STRING_COLS)},  # other order, large strings
        "timestamp": pa.array([1, None, -1], pa.timestamp("ms")),  # other unit, no time zone
        "received_at": pa.nulls(3), "sent_at": pa.nulls(3, pa.timestamp("us", tz="UTC")),
        "revenue": pa.array([1.5, None, -0.0], pa.float32()), "ts_skew_corrected": pa.nulls(3, pa.bool_()),
        "ts_clamped": pa.nulls(3), "tenant_id": ["acme"] * 3,  # an extra column is left out
    })
    loose = loose.set_column(loose.schema.get_field_index("event_type"), "event_type",
                             want.column("event_type").dictionary_encode())  # dictionary-typed
    [image] = pqwrite.encode_tables([loose])
    assert_same(read_image(image), want)
    with pytest.raises(KeyError):  # a missing column
        pqwrite.encode_tables([want.drop_columns(["revenue"])])
    with pytest.raises(pa.ArrowInvalid):  # not castable (ArrowInvalid is a ValueError)
        pqwrite.encode_tables([want.set_column(12, "revenue", pa.array(["lots", None, None]))])


def _chunk(table: pa.Table) -> list[tuple]:
    return [(c.buffers()[0], c.buffers()[1] if len(c.buffers()) == 3 else None, c.buffers()[-1], c.offset, len(c))
            for c in table.combine_chunks().to_batches()[0].columns]


def _encode(chunks, spans=((0, 0, 2),), bounds=(0, 1), spec=None):
    return _pqw.encode(spec or pqwrite.SPEC, chunks, np.asarray(spans, np.int64).reshape(-1, 3).tobytes(),
                       np.asarray(bounds, np.int64).tobytes(), 1, "erp version test", 1)


def _with(chunk: list[tuple], col: int, part: int, value) -> list[tuple]:
    out = list(chunk)
    entry = list(out[col])
    entry[part] = value
    out[col] = tuple(entry)
    return out


def test_direct_calls_with_bad_buffers_spans_or_bounds_raise():
    good = _chunk(make_table({"event_id": ["ab", None], "timestamp": [1, 2], "ts_clamped": [True, None],
                              "revenue": [1.0, 2.0]}))
    data, sizes = _encode([good])
    assert read_image(data[:sizes[0]]).column("event_id").to_pylist() == ["ab", None]
    bad = [
        ([_with(good, 0, 0, b"")], {}),                      # validity buffer too short
        ([_with(good, 0, 1, b"\0" * 8)], {}),                # string offsets too short
        ([_with(good, 0, 1, None)], {}),                     # string without offsets
        ([_with(good, 2, 2, b"\0" * 8)], {}),                # timestamps too short
        ([_with(good, 12, 2, None)], {}),                    # doubles without data
        ([_with(good, 23, 2, b"")], {}),                     # booleans too short
        ([_with(good, 2, 3, -1)], {}),                       # negative offset
        ([_with(good, 0, 1, np.array([0, 99, 99], np.int32).tobytes())], {}),  # offsets past the data
        ([_with(good, 3, 4, 1)], {}),                        # columns of different lengths
        ([good[:-1]], {}),                                   # a column missing
        ([good], {"spans": [(1, 0, 1)]}),                    # no chunk 1
        ([good], {"spans": [(0, 1, 2)]}),                    # past the chunk's end
        ([good], {"spans": [(0, 0, -1)]}),                   # negative length
        ([good], {"spans": [(0, -1, 1)]}),                   # negative first row
        ([good], {"spans": [(0, 0, 1), (0, 1, 1)], "bounds": (0, 2, 1)}),  # bounds going backwards
        ([good], {"bounds": (0, 2)}),                        # bounds past the spans
        ([good], {"bounds": ()}),                            # no bounds at all
        ([good], {"spec": [(b"x", 9, 0)] * 25}),             # unknown kind
    ]
    for chunks, kw in bad:
        with pytest.raises((ValueError, TypeError)):
            _encode(chunks, **kw)
    with pytest.raises(ValueError):  # spans not made of int64 triples
        _pqw.encode(pqwrite.SPEC, [good], b"\0" * 20, np.zeros(1, np.int64).tobytes(), 1, "x", 1)
    with pytest.raises(TypeError):
        _encode(["not a list of columns"])
    with pytest.raises(TypeError):
        _encode([good], spec=5)


@pytest.mark.parametrize("call", [
    # public API: first row + rows wraps to a negative int64, which passes "first + rows <= length"
    "pqwrite.encode_batches(t.to_batches(), np.array([[0, 2**62, 2**62]]), np.array([0, 1]))",
    # an array offset + length that wraps, past the buffer-size checks
    "_pqw.encode(pqwrite.SPEC, [[(v, o, d, 2**62, 2**62) for v, o, d, _, _ in pqwrite._columns(t.to_batches()[0])]],"
    " np.array([0, 0, 1], np.int64), np.array([0, 1], np.int64), 1, 'x', 1)",
], ids=["span rows overflow", "array offset overflows"])
def test_overflowing_spans_and_offsets_raise_instead_of_crashing(call):
    # in a child process: a bounds check that overflows reads past the buffers and kills the interpreter
    code = textwrap.dedent(f"""
        import numpy as np, pyarrow as pa
        from erp.core import _pqw, pqwrite
        from erp.core.events import EVENT_SCHEMA
        t = pa.table([pa.nulls(4, f.type) for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)
        try:
            {call}
        except (ValueError, TypeError) as exc:
            print("refused:", exc)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"the interpreter died (exit {run.returncode}): {run.stderr[-500:]}"
    assert run.stdout.startswith("refused:"), run.stdout + run.stderr


# --- end to end -------------------------------------------------------------------------------

def sample_events() -> list[dict]:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    recs = []
    for i in range(60):
        props = {"page_url": f"https://x.example/p/{i % 4}", "revenue": [None, 9.99, -0.0, 1e6][i % 4]}
        props = {k: v for k, v in props.items() if v is not None}
        if "revenue" in props:
            props["currency"] = "EUR"
        ts = base - timedelta(days=i % 3, seconds=i * 37, microseconds=i * 11)
        recs.append(event(event_id=f"e2e-{i:03d}", tenant_id=("acme", "globex")[i % 2],
                          event_type=("page_view", "click", "Ünïcödé \"ev\"")[i % 3],
                          timestamp=ts.isoformat().replace("+00:00", "Z"), user_id=f"user-{i % 7}-日本",
                          properties=props, metadata={"country": "DE"} if i % 5 else None))
    return recs


def ingest_sample(tmp_path, lake, recs: list[dict]) -> list[tuple]:
    src = write_ndjson(tmp_path / "sample.ndjson", recs)
    res = CliRunner().invoke(app, ["ingest", str(src), "--lake", str(lake), "--workers", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accepted"] == len(recs)
    return duckdb.sql(
        f"SELECT * EXCLUDE (received_at, ingest_batch), epoch_us(timestamp) AS us FROM read_parquet("
        f"'{lake}/events/**/*.parquet', hive_partitioning=true) ORDER BY event_id").fetchall()


def writers(lake) -> set[str]:
    return {pq.ParquetFile(f).metadata.created_by.split(" (")[0].rsplit(" ", 1)[0]
            for f in sorted((lake / "events").rglob("*.parquet"))}


def test_ingest_writes_the_same_rows_with_and_without_the_encoder(clean_env, monkeypatch):
    tmp = clean_env
    recs = sample_events()
    with_c = ingest_sample(tmp, tmp / "lake-c", recs)
    assert writers(tmp / "lake-c") == {"erp version"}
    cols = duckdb.sql(f"SELECT * EXCLUDE (received_at, ingest_batch) FROM read_parquet("
                      f"'{tmp}/lake-c/events/**/*.parquet', hive_partitioning=true) LIMIT 0").columns + ["us"]
    got = [dict(zip(cols, row)) for row in with_c]
    assert [g["event_id"] for g in got] == [r["event_id"] for r in recs]
    for g, r in zip(got, recs):
        ts = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        assert g["us"] == int(ts.timestamp()) * 1_000_000 + ts.microsecond
        assert (g["tenant_id"], str(g["date"]), g["event_type"], g["user_id"]) == \
               (r["tenant_id"], ts.date().isoformat(), r["event_type"], r["user_id"])
        assert (g["page_url"], g["revenue"], g["currency"]) == \
               (r["properties"]["page_url"], r["properties"].get("revenue"), r["properties"].get("currency"))
        if "revenue" in r["properties"]:
            assert math.copysign(1, g["revenue"]) == math.copysign(1, r["properties"]["revenue"])
        assert g["country"] == ("DE" if "metadata" in r else None)

    monkeypatch.setattr(pqwrite, "AVAILABLE", False)  # the pyarrow writer
    with_pyarrow = ingest_sample(tmp, tmp / "lake-py", recs)
    assert writers(tmp / "lake-py") == {"parquet-cpp-arrow version"}
    assert with_pyarrow == with_c


# --- the dedup index's key files ------------------------------------------------------

@SETTINGS
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=300), st.integers(0, 5), st.integers(0, 5))
def test_key_files_round_trip_like_pyarrows(keys, cut_front, cut_back):
    arr = pa.array(keys, pa.binary(16))
    arr = arr.slice(min(cut_front, len(arr)), max(0, len(arr) - cut_front - cut_back))
    image = bytes(pqwrite.encode_keys([arr])[0])
    back = pq.read_table(pa.BufferReader(image))
    assert back.schema.field("_key").type == pa.binary(16)
    assert back.column("_key").combine_chunks().to_pylist() == arr.to_pylist()
    theirs = pa.BufferOutputStream()
    pq.write_table(pa.table({"_key": arr}), theirs, **KEY_FILE_OPTIONS)
    ours_md = pq.ParquetFile(pa.BufferReader(image)).metadata
    theirs_md = pq.ParquetFile(theirs.getvalue()).metadata
    assert ours_md.schema.column(0).physical_type == theirs_md.schema.column(0).physical_type == "FIXED_LEN_BYTE_ARRAY"
    assert ours_md.schema.column(0).length == 16
    assert ours_md.row_group(0).column(0).compression == "UNCOMPRESSED"
    assert not ours_md.row_group(0).column(0).is_stats_set
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        f.write(image)
        f.flush()
        got = duckdb.sql(f"SELECT _key FROM read_parquet('{f.name}')").fetchall()
    assert [k for (k,) in got] == arr.to_pylist()


def test_key_files_of_several_tenants_in_one_call():
    arrays = [pa.array([bytes([i]) * 16] * i, pa.binary(16)) for i in range(5)]
    images = pqwrite.encode_keys(arrays)
    assert [pq.read_table(pa.BufferReader(bytes(img))).column("_key").to_pylist() for img in images] == \
           [a.to_pylist() for a in arrays]


def test_key_files_refuse_other_types():
    with pytest.raises(TypeError, match="fixed_size_binary"):
        pqwrite.encode_keys([pa.array([b"x" * 16])])  # variable-length binary
    with pytest.raises(TypeError, match="fixed_size_binary"):
        pqwrite.encode_keys([pa.array([b"x" * 8], pa.binary(8))])


def test_dedup_index_written_by_either_writer_is_read_by_the_other(clean_env, monkeypatch):
    """Key files from the encoder and from pyarrow are interchangeable: a lake
    whose index one wrote is deduplicated against by the other."""
    tmp = clean_env
    recs = sample_events()
    first = write_ndjson(tmp / "first.ndjson", recs[:40])
    both = write_ndjson(tmp / "both.ndjson", recs)
    for first_c in (True, False):
        lake = tmp / f"lake-{first_c}"
        for src, use_c in ((first, first_c), (both, not first_c)):
            monkeypatch.setattr(pqwrite, "AVAILABLE", use_c)
            res = CliRunner().invoke(app, ["ingest", str(src), "--lake", str(lake), "--workers", "1", "--json"])
            assert res.exit_code == 0, res.output
        # the second run found the first run's events stored already, and stored the rest
        out = json.loads(res.stdout)
        assert (out["accepted"], out["duplicates"]) == (20, 40)
        made_by = {pq.ParquetFile(f).metadata.created_by.split(" version")[0]
                   for f in (lake / "_state" / "dedup").rglob("*.parquet")}
        assert made_by == {"erp", "parquet-cpp-arrow"}
        ids = duckdb.sql(f"SELECT event_id FROM read_parquet('{lake}/events/**/*.parquet')").fetchall()
        assert sorted(i for (i,) in ids) == sorted(r["event_id"] for r in recs)
