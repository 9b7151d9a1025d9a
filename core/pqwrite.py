"""The event files of an ingest commit, and its dedup key files, encoded by
``core/_pqw.c`` when it is built.

A commit writes one small file per (tenant, date) it touches. pyarrow's
writer costs ~0.5 ms of CPU per file whatever its rows (~1.4 ms beside the
parsers; a writer and 25 column writers set up per file, a zstd context
created per compressed page); the C encoder writes all of a commit's files in
one call without the GIL, with one zstd context, in ~0.13 ms per 650-row file. Its files hold the same columns, types, encodings
per column (``INGEST_PARQUET_OPTIONS``), compression and statistics as
pyarrow's; only the ``ARROW:schema`` metadata is left out (the Parquet types
say the same: strings, doubles, booleans and UTC microsecond timestamps).

Without a C compiler at install, or without the system's libzstd
(``libzstd.so.1``), ``AVAILABLE`` is false and the ingest writes with pyarrow.
Key files from either writer are read alike (``erp.core.dedup``).
"""

from __future__ import annotations

import secrets
from typing import Sequence

import numpy as np
import pyarrow as pa

from erp.core import __version__
from erp.core.events import EVENT_PLAIN_COLUMNS, EVENT_SCHEMA, EVENT_ZSTD_COLUMNS, INGEST_PARQUET_OPTIONS

try:
    from erp.core import _pqw as _native
    AVAILABLE = True
    UNAVAILABLE_REASON: str | None = None
except ImportError as exc:  # no compiler at install, or no libzstd
    _native = None  # type: ignore[assignment]
    AVAILABLE = False
    UNAVAILABLE_REASON = str(exc)

#: zstd level of the compressed columns (pyarrow's default for zstd, which
#: ``INGEST_PARQUET_OPTIONS`` leaves as it is).
ZSTD_LEVEL = 1
_KINDS = {pa.string(): 0, pa.timestamp("us", tz="UTC"): 1, pa.float64(): 2, pa.bool_(): 3}
_DICT, _ZSTD, _STATS = 1, 2, 4
_SEED = int.from_bytes(secrets.token_bytes(8), "little")
_CREATED_BY = f"erp version {__version__}"


def _spec() -> list[tuple[bytes, int, int]]:
    stats = set(INGEST_PARQUET_OPTIONS["write_statistics"])
    out = []
    for f in EVENT_SCHEMA:
        flags = ((_DICT if f.name not in EVENT_PLAIN_COLUMNS else 0)
                 | (_ZSTD if f.name in EVENT_ZSTD_COLUMNS else 0)
                 | (_STATS if f.name in stats else 0))
        out.append((f.name.encode(), _KINDS[f.type], flags))
    return out


SPEC = _spec()


def _columns(batch: pa.RecordBatch) -> list[tuple]:
    """The Arrow buffers of each column of ``batch`` (in ``EVENT_SCHEMA`` order)."""
    cols = []
    for arr in batch.columns:
        bufs = arr.buffers()
        if len(bufs) == 3:  # strings: validity, offsets, data
            cols.append((bufs[0], bufs[1], bufs[2], arr.offset, len(arr)))
        else:
            cols.append((bufs[0], None, bufs[1], arr.offset, len(arr)))
    return cols


def _batches(table: pa.Table) -> list[pa.RecordBatch]:
    """``table``'s record batches with ``EVENT_SCHEMA`` (its columns picked and cast if need be)."""
    if table.schema != EVENT_SCHEMA:
        table = table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
    return table.to_batches()


def _event_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with ``EVENT_SCHEMA``, as one batch even when it has no rows."""
    if batch.schema == EVENT_SCHEMA:
        return batch
    t = pa.Table.from_batches([batch]).select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).combine_chunks()
    return pa.record_batch([t.column(i).combine_chunks() for i in range(t.num_columns)], schema=EVENT_SCHEMA)


def encode_batches(batches: Sequence[pa.RecordBatch], spans: np.ndarray, bounds: np.ndarray) -> list[memoryview]:
    """Parquet images of files made of row spans of ``batches`` (each with
    ``EVENT_SCHEMA``'s columns): ``spans`` holds ``(batch, first row, rows)``
    triples (int64, shape (n, 3)), and file ``i`` is ``spans[bounds[i]:bounds[i + 1]]``
    with its rows in span order."""
    if _native is None:
        raise RuntimeError(f"the C Parquet encoder is not available: {UNAVAILABLE_REASON}")
    chunks = [_columns(_event_batch(b)) for b in batches]
    spans = np.ascontiguousarray(spans, dtype=np.int64).reshape(-1, 3)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    return _files(*_native.encode(SPEC, chunks, spans, bounds, ZSTD_LEVEL, _CREATED_BY, _SEED))


def _files(data: bytes, sizes: list[int]) -> list[memoryview]:
    """The encoder's files, back to back in ``data``, as one view each."""
    view = memoryview(data)
    out, at = [], 0
    for size in sizes:
        out.append(view[at:at + size])
        at += size
    return out


def encode_spans(tables: Sequence[pa.Table], files: Sequence[Sequence[tuple[int, int, int]]]) -> list[memoryview]:
    """Parquet images of ``files``: each a list of ``(table, first row, rows)``
    spans of ``tables`` (each with ``EVENT_SCHEMA``'s columns), rows in span order."""
    batches: list[pa.RecordBatch] = []
    starts: list[tuple[np.ndarray, int]] = []  # per table: row starts of its batches, its first batch
    for t in tables:
        tb = _batches(t)
        starts.append((np.cumsum([0] + [b.num_rows for b in tb]), len(batches)))
        batches.extend(tb)
    spans: list[tuple[int, int, int]] = []
    bounds = [0]
    for file in files:
        for t, row, n in file:
            if not 0 <= t < len(starts):
                raise ValueError(f"span ({t}, {row}, {n}) names no table (there are {len(starts)})")
            cum, first = starts[t]
            if row < 0 or n < 0 or row + n > cum[-1]:
                raise ValueError(f"span ({t}, {row}, {n}) is outside table {t} of {cum[-1]} rows")
            if n == 0:
                continue
            b = int(np.searchsorted(cum, row, side="right")) - 1
            while n > 0:  # a span is cut at batch ends
                take = min(n, int(cum[b + 1]) - row)
                if take > 0:
                    spans.append((first + b, row - int(cum[b]), take))
                row += take
                n -= take
                b += 1
        bounds.append(len(spans))
    return encode_batches(batches, np.asarray(spans, dtype=np.int64).reshape(-1, 3), np.asarray(bounds))


#: The dedup index's key files (``erp.core.dedup``): one column of 16-byte keys,
#: PLAIN, uncompressed, no statistics (``KEY_FILE_OPTIONS``).
KEY_SPEC = [(b"_key", 4, 0)]


def encode_keys(keys: Sequence[pa.FixedSizeBinaryArray]) -> list[memoryview]:
    """One key file's Parquet image per array of ``fixed_size_binary(16)`` keys.
    For 800 keys: ~12 us a file, pyarrow's writer ~0.11 ms alone and ~0.5 ms
    in an ingest run (fresh allocator pages, beside the parsers)."""
    if _native is None:
        raise RuntimeError(f"the C Parquet encoder is not available: {UNAVAILABLE_REASON}")
    chunks = []
    for arr in keys:
        if arr.type != pa.binary(16):
            raise TypeError(f"keys must be fixed_size_binary(16), not {arr.type}")
        bufs = arr.buffers()
        chunks.append([(bufs[0], None, bufs[1], arr.offset, len(arr))])
    spans = np.array([(i, 0, len(a)) for i, a in enumerate(keys)], dtype=np.int64).reshape(-1, 3)
    return _files(*_native.encode(KEY_SPEC, chunks, spans, np.arange(len(keys) + 1, dtype=np.int64),
                                  ZSTD_LEVEL, _CREATED_BY, _SEED))


def encode_tables(tables: Sequence[pa.Table]) -> list[memoryview]:
    """One Parquet image per table (each with ``EVENT_SCHEMA``'s columns)."""
    return encode_spans(tables, [[(i, 0, t.num_rows)] for i, t in enumerate(tables)])
