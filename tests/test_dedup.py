"""The dedup index's key set against a plain Python set, and the dedup keys
and first-in-batch marks of the C code (core/_keys.c) against the Python ones."""

import os

import numpy as np
import polars as pl
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp.core import dedup
from erp.core.dedup import KeySet, event_keys, first_occurrence

NOT_BUILT = ("core/_keys.c is not built (a C compiler is needed at install: "
             "apt-get install gcc python3-dev, then pip install -e .)")
if dedup._native is None and os.environ.get("CI"):
    pytest.fail(NOT_BUILT, pytrace=False)

# small ranges, so halves collide often (the full-key check, the hash table's
# probing) and the all-zero key (an empty slot in the C hash table) comes up
_halves = st.integers(min_value=0, max_value=12)
_batch = st.lists(st.tuples(_halves, _halves), max_size=40)


@pytest.fixture(params=["c", "python"])
def path(request, monkeypatch):
    if request.param == "c" and dedup._native is None:
        pytest.skip(NOT_BUILT)
    if request.param == "python":
        monkeypatch.setattr(dedup, "_native", None)
    return request.param


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p[0] for p in pairs], dtype=np.uint64),
            np.array([p[1] for p in pairs], dtype=np.uint64))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(_batch, max_size=6), queries=_batch)
def test_keyset_matches_a_set(path, batches, queries):
    ks, ref = KeySet(), set()
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
        assert np.all(ks.hi[:-1] <= ks.hi[1:]), "first halves must stay sorted"
        assert sorted(zip(ks.hi.tolist(), ks.lo.tolist())) == sorted(ref)
        got = ks.contains(*_arrays(queries))
        assert got.tolist() == [q in ref for q in queries]


def test_keyset_large_random_batches(path):
    rng = np.random.default_rng(7)
    ks, ref = KeySet(), set()
    for _ in range(5):
        hi = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        lo = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        probe_hi = np.concatenate([hi[:100], ks.hi[:100]])
        probe_lo = np.concatenate([lo[:100], ks.lo[:100]])
        expected = [(h, l) in ref for h, l in zip(probe_hi.tolist(), probe_lo.tolist())]
        assert ks.contains(probe_hi, probe_lo).tolist() == expected
        assert ks.new_in(probe_hi, probe_lo).tolist() == [not e for e in expected]  # no repeats in the probe
        ks.add(hi, lo)
        ref.update(zip(hi.tolist(), lo.tolist()))
    assert ks.contains(hi, lo).all()
    assert len(ks) == len(ref)


def test_first_occurrence_of_keys_that_share_their_slot_bits(path):
    """Keys equal but for their high bits, each twice: without the seed they
    would fill one run of slots in the C table; the marks stay exact."""
    hi = np.repeat(np.arange(1, 20001, dtype=np.uint64) << np.uint64(40), 2)
    lo = np.zeros(len(hi), dtype=np.uint64)
    assert first_occurrence(hi, lo).tolist() == [True, False] * 20000


def test_event_keys_are_the_xxh3_128_digests(path):
    ids = pl.Series("event_id", ["", "a", "ünïcødé", "x" * 5000, "8826d916-cdfb-41c6-81ff-91a761565a70",
                                 "line\nbreak", "\x00nul"] * 3)
    for sliced in (ids, ids.slice(3, 11)):  # an offset into the column's buffers
        assert event_keys(sliced).to_list() == [xxhash.xxh3_128_digest(e.encode()) for e in sliced.to_list()]
    assert event_keys(ids.clear()).len() == 0
    with pytest.raises(ValueError):
        event_keys(pl.Series(["a", None]))
