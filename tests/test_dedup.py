"""The dedup index's key sets (the C hash table and the sorted-array fallback)
against a plain Python set, and the dedup keys against the xxhash package."""

import os

import numpy as np
import polars as pl
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.core import dedup
from erp.core.dedup import HashKeySet, SortedKeySet, event_keys

if dedup._native is None:
    message = ("core/_keys.c is not built (a C compiler is needed at install: "
               "apt-get install gcc python3-dev, then pip install -e .)")
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    KEY_SETS = [SortedKeySet]
    print(message, "- only the sorted-array key set is tested")
else:
    KEY_SETS = [SortedKeySet, HashKeySet]

# small ranges, so halves collide often (the full-key check, the hash table's
# probing) and the all-zero key (an empty slot in the hash table) comes up
_halves = st.integers(min_value=0, max_value=12)
_batch = st.lists(st.tuples(_halves, _halves), max_size=40)


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p[0] for p in pairs], dtype=np.uint64),
            np.array([p[1] for p in pairs], dtype=np.uint64))


@pytest.mark.parametrize("kind", KEY_SETS)
@settings(max_examples=300, deadline=None)
@given(batches=st.lists(_batch, max_size=6), queries=_batch)
def test_keyset_matches_a_set(kind, batches, queries):
    ks, ref = kind(), set()
    for batch in batches:
        expected_new, seen = [], set()
        for p in batch:
            expected_new.append(p not in ref and p not in seen)
            seen.add(p)
        assert ks.new_in(*_arrays(batch)).tolist() == expected_new
        new = list(dict.fromkeys(p for p in batch if p not in ref))  # the index only adds new keys
        ks.add(*_arrays(new))
        ref.update(new)
        assert len(ks) == len(ref)
        if kind is SortedKeySet:
            assert np.all(ks.hi[:-1] <= ks.hi[1:]), "first halves must stay sorted"
            assert sorted(zip(ks.hi.tolist(), ks.lo.tolist())) == sorted(ref)
        got = ks.contains(*_arrays(queries))
        assert got.tolist() == [q in ref for q in queries]


@pytest.mark.parametrize("kind", KEY_SETS)
def test_keyset_large_random_batches(kind):
    rng = np.random.default_rng(7)
    ks, ref, stored = kind(), set(), []
    for _ in range(5):  # the hash table starts at 1024 slots: this grows it several times
        hi = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        lo = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        probe_hi = np.concatenate([hi[:100]] + [s[0][:100] for s in stored])
        probe_lo = np.concatenate([lo[:100]] + [s[1][:100] for s in stored])
        expected = [(h, l) in ref for h, l in zip(probe_hi.tolist(), probe_lo.tolist())]
        assert ks.contains(probe_hi, probe_lo).tolist() == expected
        assert ks.new_in(probe_hi, probe_lo).tolist() == [not e for e in expected]  # no repeats in the probe
        ks.add(hi, lo)
        ref.update(zip(hi.tolist(), lo.tolist()))
        stored.append((hi, lo))
    assert all(ks.contains(hi, lo).all() for hi, lo in stored)
    assert len(ks) == len(ref)


@pytest.mark.skipif(dedup._native is None, reason="core/_keys.c is not built")
def test_hash_table_stays_fast_with_keys_that_share_their_slot_bits():
    """Keys equal but for their high bits would share a slot without the seed;
    with it they spread, so a 64k-key batch probes a few slots per key, not 64k."""
    ks = HashKeySet()
    hi = (np.arange(1, 65537, dtype=np.uint64) << np.uint64(40))
    lo = np.zeros(len(hi), dtype=np.uint64)
    ks.add(hi, lo)
    assert len(ks) == len(hi) and ks.contains(hi, lo).all()
    assert not ks.contains(hi + np.uint64(1), lo).any()
    assert len(ks.table) <= 4 * len(hi), "the table grows by doubling from 3/4 full"


def test_event_keys_are_the_xxh3_128_digests():
    ids = pl.Series("event_id", ["", "a", "ünïcødé", "x" * 5000, "8826d916-cdfb-41c6-81ff-91a761565a70",
                                 "line\nbreak", "\x00nul"] * 3)
    for sliced in (ids, ids.slice(3, 11)):  # an offset into the column's buffers
        assert event_keys(sliced).to_list() == [xxhash.xxh3_128_digest(e.encode()) for e in sliced.to_list()]
    assert event_keys(ids.clear()).len() == 0
    with pytest.raises(ValueError):
        event_keys(pl.Series(["a", None]))
