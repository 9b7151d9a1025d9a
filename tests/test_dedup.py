"""The dedup index's key set against a plain Python set."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.core.dedup import KeySet

# small ranges, so first halves collide often and the full-key check is exercised
_halves = st.integers(min_value=0, max_value=12)
_batch = st.lists(st.tuples(_halves, _halves), max_size=40)


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p[0] for p in pairs], dtype=np.uint64),
            np.array([p[1] for p in pairs], dtype=np.uint64))


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(_batch, max_size=6), queries=_batch)
def test_keyset_matches_a_set(batches, queries):
    ks, ref = KeySet(), set()
    for batch in batches:
        new = list(dict.fromkeys(p for p in batch if p not in ref))  # the index only adds new keys
        ks.add(*_arrays(new))
        ref.update(new)
        assert len(ks) == len(ref)
        assert np.all(ks.hi[:-1] <= ks.hi[1:]), "first halves must stay sorted"
        assert sorted(zip(ks.hi.tolist(), ks.lo.tolist())) == sorted(ref)
        got = ks.contains(*_arrays(queries))
        assert got.tolist() == [q in ref for q in queries]


def test_keyset_large_random_batches():
    rng = np.random.default_rng(7)
    ks, ref = KeySet(), set()
    for _ in range(5):
        hi = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        lo = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
        probe_hi = np.concatenate([hi[:100], ks.hi[:100]])
        probe_lo = np.concatenate([lo[:100], ks.lo[:100]])
        expected = [(h, l) in ref for h, l in zip(probe_hi.tolist(), probe_lo.tolist())]
        assert ks.contains(probe_hi, probe_lo).tolist() == expected
        ks.add(hi, lo)
        ref.update(zip(hi.tolist(), lo.tolist()))
    assert ks.contains(hi, lo).all()
    assert len(ks) == len(ref)
