"""The dedup index: which event ids each tenant already has.

Keys are the 128-bit xxh3 hash of ``event_id`` (16 bytes per event), kept per
tenant under ``_state/dedup/tenant_id=<t>/<commit>.parquet`` and written in the
same atomic commit as the events they describe. Memory grows with the number
of events already stored for the tenants a run touches (16 bytes each), not
with the input. ``erp compact`` merges the per-commit files.
"""

from __future__ import annotations

import os
import posixpath

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

from erp.core import pqwrite
from erp.core.errors import LakeError
from erp.core.lake import Commit, Lake
from erp.core.tenants import tenant_partition

DEDUP_DIR = "dedup"
#: Hashes do not compress and never repeat within a file: plain pages are smaller
#: than dictionary + zstd ones and a quarter of the CPU to write.
KEY_FILE_OPTIONS = dict(compression="none", use_dictionary=False, write_statistics=False)

try:  # built from core/_keys.c at install when a C compiler is there
    from erp.core import _keys as _native
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _native = None


#: Seeds the batch hash table in core/_keys.c (random per process: see there).
_SEED = int.from_bytes(os.urandom(8), "little")


def first_occurrence(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """True at each key's first appearance in the batch."""
    if not len(hi):
        return np.zeros(0, dtype=bool)
    if _native is None:
        return pl.DataFrame({"h": hi, "l": lo}).select(pl.struct("h", "l").is_first_distinct()).to_series().to_numpy()
    hi, lo = np.ascontiguousarray(hi, dtype=np.uint64), np.ascontiguousarray(lo, dtype=np.uint64)
    first = np.frombuffer(_native.first_seen(_SEED, hi, lo), dtype=bool).copy()
    zero = np.flatnonzero((hi | lo) == 0)  # the all-zero key is left to us
    if len(zero):
        first[zero[0]] = True
    return first


class KeySet:
    """A set of 16-byte keys as two sorted uint64 arrays (the key's halves).

    Membership is a binary search, so checking a batch against the keys of a
    large tenant does not rebuild a hash table of everything stored each commit,
    and adding a batch is one merge. Keys with an equal first half (rare) are
    checked in full."""

    def __init__(self) -> None:
        self.hi = np.zeros(0, dtype=np.uint64)
        self.lo = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.hi)

    def contains(self, qhi: np.ndarray, qlo: np.ndarray) -> np.ndarray:
        if not len(self.hi) or not len(qhi):
            return np.zeros(len(qhi), dtype=bool)
        # sorted queries: each search starts near the previous one (cache-friendly)
        order = np.argsort(qhi)
        shi, slo = qhi[order], qlo[order]
        idx = np.searchsorted(self.hi, shi, "left")
        at = np.minimum(idx, len(self.hi) - 1)
        same_hi = self.hi[at] == shi
        hit = same_hi & (self.lo[at] == slo)
        for i in np.flatnonzero(same_hi & ~hit):  # other keys sharing the first half
            end = np.searchsorted(self.hi, shi[i], "right")
            hit[i] = bool((self.lo[idx[i]:end] == slo[i]).any())
        found = np.empty(len(qhi), dtype=bool)
        found[order] = hit
        return found

    def new_in(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """True where a key is not stored and does not appear earlier in the batch."""
        return first_occurrence(hi, lo) & ~self.contains(hi, lo)

    def add(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """Merge the keys in: sorted, the i-th new key lands at its insertion
        point plus i, and the stored keys fill the rest in their order."""
        if not len(hi):
            return
        order = np.argsort(hi, kind="stable")
        hi, lo = hi[order], lo[order]
        at = np.searchsorted(self.hi, hi, "left") + np.arange(len(hi))
        size = len(self.hi) + len(hi)
        old = np.ones(size, dtype=bool)
        old[at] = False
        merged_hi, merged_lo = np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.uint64)
        merged_hi[at], merged_lo[at] = hi, lo
        merged_hi[old], merged_lo[old] = self.hi, self.lo
        self.hi, self.lo = merged_hi, merged_lo


def string_buffers(values: pl.Series) -> tuple[np.ndarray, pa.Buffer | bytes]:
    """A String column's int64 offsets (one per value, plus the end) and its
    data buffer, as C code reads them (an Arrow large_string's layout)."""
    arr = values.to_arrow(compat_level=pl.CompatLevel.oldest())
    arr = (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr).cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=arr.offset + len(arr) + 1)[arr.offset:]
    data = arr.buffers()[2]
    return offsets, b"" if data is None else data


def event_keys(ids: pl.Series) -> pl.Series:
    """The dedup key of each event id: its XXH3-128 digest (16 bytes, as
    ``xxhash.xxh3_128_digest`` gives it), in one C call when ``core/_keys.c``
    is built. ``ids`` may not hold nulls."""
    if ids.null_count():
        raise ValueError("event ids may not be null")
    if _native is None:
        h = xxhash.xxh3_128_digest
        return pl.Series("_key", [h(e.encode("utf-8")) for e in ids.to_list()], dtype=pl.Binary)
    offsets, data = string_buffers(ids)
    digests = _native.digests(offsets, data)
    keys = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(ids), [None, pa.py_buffer(digests)])
    return pl.Series("_key", keys.cast(pa.binary()))


def split_keys(keys: pl.Series | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """16-byte keys -> (first halves, second halves) as uint64 arrays."""
    arr = keys.to_arrow() if isinstance(keys, pl.Series) else keys
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
    if arr.null_count:
        raise ValueError("dedup keys may not be null")
    fixed = arr.cast(pa.binary(16))
    buf = fixed.buffers()[1]
    words = np.frombuffer(buf, dtype=np.uint64, count=2 * (fixed.offset + len(fixed)))[2 * fixed.offset:]
    pairs = words.reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _fixed(keys: pl.Series) -> pa.FixedSizeBinaryArray:
    arr = keys.to_arrow().cast(pa.binary(16))
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


class DedupIndex:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._keys: dict[str, KeySet] = {}

    def _dir(self, tenant: str) -> str:
        return self.lake.state(DEDUP_DIR, tenant_partition(tenant))

    def keys(self, tenant: str) -> KeySet:
        if tenant not in self._keys:
            ks = KeySet()
            files = self.lake.list_files(self._dir(tenant), ".parquet")
            if files:
                import pyarrow.parquet as pq

                tables = [self._read(f, pq) for f in files]
                ks.add(*split_keys(pa.concat_tables(tables).column("_key")))
            self._keys[tenant] = ks
        return self._keys[tenant]

    def _read(self, path: str, pq) -> pa.Table:
        try:
            return pq.read_table(path, filesystem=self.lake.fs, columns=["_key"])
        except (pa.ArrowException, OSError) as exc:
            raise LakeError(f"the dedup index file {path} is unreadable: {exc}", path=path,
                            hint="restore it from a backup. Without it, the events of that commit could be "
                                 "stored again; erp ingest stops here until it is fixed") from exc

    def filter_new(self, df: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
        """Drop rows whose (tenant, key) is already stored or appeared earlier
        in ``df`` (first occurrence wins). Returns the kept rows and the count
        of duplicates per tenant."""
        dups: dict[str, int] = {}
        kept = []
        for (tenant,), part in df.partition_by("tenant_id", as_dict=True, maintain_order=True).items():
            new = part.filter(pl.Series(self.keys(tenant).new_in(*split_keys(part.get_column("_key")))))
            if new.height != part.height:
                dups[tenant] = part.height - new.height
            kept.append(new)
        out = pl.concat(kept) if kept else df.clear()
        return out, dups

    def stage(self, commit: Commit, keys: dict[str, pl.Series]) -> None:
        """Stage each tenant's new keys in ``commit``: one file per tenant, all
        encoded in one call by ``erp.core.pqwrite`` (by pyarrow on the lake's
        writer threads when the encoder is not built)."""
        arrays = [_fixed(k) for k in keys.values()]
        if pqwrite.AVAILABLE:  # every file in one C call (pyarrow costs ~0.5 ms per file)
            files: list = pqwrite.encode_keys(arrays)
        else:
            files = [pa.table({"_key": a}) for a in arrays]
        commit.write_partitions(posixpath.join("_state", DEDUP_DIR),
                                [(tenant_partition(t), f) for t, f in zip(keys, files)], KEY_FILE_OPTIONS)

    def add(self, tenant: str, keys: pl.Series) -> None:
        self.keys(tenant).add(*split_keys(keys))
