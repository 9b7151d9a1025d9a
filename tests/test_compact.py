"""``erp compact``: merges small files, keeps every row once, readers always
see one complete generation of a partition, a re-run is a no-op."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from typer.testing import CliRunner

from conftest import NOW, event, lake_files, make_config, read_events, write_ndjson
from erp.cli.main import app
from erp.core.compact import compact
from erp.core.events import EVENT_SCHEMA
from erp.core.ingest import ingest

TENANTS = ("acme", "globex", "initech")


def small_batches(base: Path, cfg, batches: int, days: int, per_day: int = 3) -> int:
    """Ingest ``batches`` separate files: each adds one small file to every partition."""
    n = 0
    for b in range(batches):
        lines = [event(event_id=f"{base.name}-b{b}-{t}-{d}-{k}", tenant_id=t, timestamp=f"2026-09-{1 + d:02d}T10:{k:02d}:30Z",
                       user_id=f"u{k}", properties={"page_url": f"https://ex.example/{b}/{k}"})
                 for t in TENANTS for d in range(days) for k in range(per_day)]
        src = write_ndjson(base / "in" / f"batch-{b}.ndjson", lines)
        r = ingest(cfg, [str(src)], now=NOW, workers=1)
        assert r.accepted == len(lines)
        n += len(lines)
    return n


def files_per_partition(lake: Path) -> Counter:
    return Counter(f.parent.relative_to(lake / "events").as_posix() for f in lake_files(lake, "events"))


def full_frame(lake: Path) -> pl.DataFrame:
    return read_events(lake).sort("tenant_id", "event_id")


def test_compaction_merges_small_files_and_keeps_every_row_once(tmp_path):
    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    n = small_batches(tmp_path, cfg, batches=4, days=3)
    before = full_frame(lake)
    assert set(files_per_partition(lake).values()) == {4}
    dedup_before = len(list((lake / "_state" / "dedup").rglob("*.parquet")))

    r = compact(cfg)
    assert (r.partitions_compacted, r.files_before, r.files_after, r.events) == (9, 36, 9, n)
    assert set(files_per_partition(lake).values()) == {1}
    after = full_frame(lake)
    assert after.height == n and after["event_id"].n_unique() == n
    assert after.equals(before)  # every column of every row, unchanged
    for f in lake_files(lake, "events"):
        assert pq.read_schema(f).names == EVENT_SCHEMA.names
        ts = pq.read_table(f, columns=["timestamp"])["timestamp"].to_pylist()
        assert ts == sorted(ts)  # merged files are sorted by time (good row-group pruning)
    # the dedup index and ledger were merged too, and still work
    assert len(list((lake / "_state" / "dedup").rglob("*.parquet"))) == len(TENANTS) < dedup_before
    assert len(list((lake / "_state" / "ledger").glob("*.ndjson"))) == 1
    again = ingest(cfg, [str(p) for p in sorted((tmp_path / "in").glob("*.ndjson"))], now=NOW, workers=1)
    assert [s.status for s in again.sources] == ["skipped"] * 4
    copy = write_ndjson(tmp_path / "copy.ndjson",
                        [json.loads(x) for x in (tmp_path / "in" / "batch-0.ndjson").read_text().splitlines()])
    r2 = ingest(cfg, [str(copy)], now=NOW, workers=1)
    assert (r2.accepted, r2.duplicates) == (0, n // 4)
    assert no_leftovers(lake)


def no_leftovers(lake: Path) -> bool:
    return not lake_files(lake, "_staging") and not lake_files(lake, "_state/commits")


def test_a_rerun_is_a_no_op(tmp_path):
    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    small_batches(tmp_path, cfg, batches=2, days=2)
    compact(cfg)
    files = {f: f.stat().st_mtime_ns for f in lake_files(lake)}
    r = compact(cfg)
    assert (r.partitions_compacted, r.files_before, r.files_after, r.state_files_merged) == (0, 0, 0, 0)
    assert {f: f.stat().st_mtime_ns for f in lake_files(lake) if not f.name.endswith(".lock")} == \
        {f: m for f, m in files.items() if not f.name.endswith(".lock")}
    res = CliRunner().invoke(app, ["compact", "--lake", str(lake), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["partitions_compacted"] == 0


def test_only_one_tenant(tmp_path):
    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    small_batches(tmp_path, cfg, batches=3, days=2)
    r = compact(cfg, tenant="globex")
    assert r.partitions_compacted == 2
    counts = files_per_partition(lake)
    assert {p: c for p, c in counts.items() if p.startswith("tenant_id=globex")} == \
        {"tenant_id=globex/date=2026-09-01": 1, "tenant_id=globex/date=2026-09-02": 1}
    assert all(c == 3 for p, c in counts.items() if not p.startswith("tenant_id=globex"))


def test_large_files_are_left_alone_and_big_partitions_split(tmp_path):
    lake = tmp_path / "lake"
    n = small_batches(tmp_path, make_config(tmp_path), batches=1, days=1, per_day=50)  # one bigger file each
    big = {f: f.stat().st_size for f in lake_files(lake, "events")}
    target = min(big.values())  # the first files are not "small": left alone
    cfg = make_config(tmp_path, **{"ingest.target_file_bytes": target})
    n += small_batches(tmp_path / "more", cfg, batches=6, days=1, per_day=12)
    small = [f for f in lake_files(lake, "events") if f not in big]
    assert all(f.stat().st_size < target for f in small)
    assert 6 * min(f.stat().st_size for f in small) > 2 * target  # too much for one file of the target size
    before = full_frame(lake)
    r = compact(cfg)
    assert r.files_before == len(small) and r.files_after > r.partitions_compacted == len(TENANTS)
    assert all(f.exists() for f in big)  # the big files stayed, in place
    assert full_frame(lake).equals(before) and full_frame(lake).height == n


class CountingReader(threading.Thread):
    """A report job that keeps counting the events of every partition, the way a
    query engine does: list a partition's files, then read each one."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.lake = lake
        self.counts: list[int] = []
        self.retries = 0
        self.done = threading.Event()

    def count_once(self) -> int | None:
        total = 0
        for tdir in sorted((self.lake / "events").iterdir()):
            for pdir in sorted(tdir.iterdir()):
                try:
                    names = [n for n in sorted(p.name for p in pdir.iterdir()) if n.endswith(".parquet")]
                    total += sum(pq.read_metadata(pdir / n).num_rows for n in names)
                except FileNotFoundError:  # a generation was swapped under us: a reader retries
                    return None
        return total

    def run(self) -> None:
        while not self.done.is_set():
            c = self.count_once()
            if c is None:
                self.retries += 1
            else:
                self.counts.append(c)


def test_readers_always_see_one_complete_generation(tmp_path):
    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    n = small_batches(tmp_path, cfg, batches=4, days=4, per_day=2)
    seen: list[int] = []
    for round_ in range(2):  # several compactions give the reader many chances
        reader = CountingReader(lake)
        assert reader.count_once() == n
        reader.start()
        try:
            r = compact(cfg)
        finally:
            reader.done.set()
            reader.join()
        assert r.partitions_compacted == len(TENANTS) * 4
        seen += reader.counts
        wrong = sorted(set(c for c in reader.counts if c != n))
        assert wrong == [], f"a reader saw a mix of generations: counts {wrong} instead of {n}"
        n += small_batches(tmp_path / f"round-{round_}", cfg, batches=2, days=4, per_day=2)
    assert seen, "the reader never completed a count"
    assert full_frame(lake).height == n


def test_a_damaged_file_is_exit_1_naming_it_and_nothing_changes(tmp_path):
    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    small_batches(tmp_path, cfg, batches=2, days=1)
    victim = lake_files(lake, "events")[-1]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    files = set(lake_files(lake, "events"))
    res = CliRunner().invoke(app, ["compact", "--lake", str(lake), "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert out["error"] == "LakeError" and victim.name in out["message"] and "backup" in out["hint"]
    assert set(lake_files(lake, "events")) == files  # no partition was swapped


def test_kill_9_during_compaction_leaves_one_complete_generation(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = make_config(tmp_path)
    lake = tmp_path / "lake"
    n = small_batches(tmp_path, cfg, batches=4, days=10, per_day=2)
    before = full_frame(lake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}

    def compact_proc():
        return subprocess.Popen([sys.executable, "-m", "erp.cli.main", "compact", "--lake", str(lake), "--json"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def scan(root: Path, hit) -> bool:
        # compaction creates and removes folders while we look: a folder gone
        # mid-walk only means the moment has not come (or has passed) yet
        try:
            return root.exists() and any(hit(f) for f in root.rglob("*.parquet"))
        except FileNotFoundError:
            return False

    def swapped() -> bool:
        return scan(lake / "events", lambda f: "-compact-" in f.name)

    def staged() -> bool:
        return scan(lake / "_staging", lambda f: True)

    for moment in (staged, swapped):
        proc = compact_proc()
        while proc.poll() is None and not moment():
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "compaction ended before the chosen moment"
        # whatever moment it died at, every partition holds exactly one generation
        assert full_frame(lake).equals(before)
    proc = compact_proc()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert full_frame(lake).equals(before) and full_frame(lake).height == n
    assert set(files_per_partition(lake).values()) == {1}
    assert no_leftovers(lake)
