"""The durable spool: group commit, sealing, crash recovery, full/read-only disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import wait
from pathlib import Path

import pytest

from collect_support import Tmpfs
from erp.core.errors import TenantError
from erp.core.spool import Spool, SpoolSettings, SpoolUnavailable, recover, sealed_segments


def lines_of(root: Path, tenant: str, kind: str = "events", *, include_open: bool = False) -> list[dict]:
    folder = root / f"tenant_id={tenant}"
    out = []
    for p in sorted(folder.glob(f"{kind}-*")):
        if p.suffix == ".ndjson" or include_open:
            out += [json.loads(x) for x in p.read_bytes().splitlines()]
    return out


def rec(i: int, tenant: str = "acme", pad: int = 0) -> bytes:
    return json.dumps({"event_id": f"e{i}", "tenant_id": tenant, "event_type": "x", "pad": "p" * pad}).encode() + b"\n"


def test_group_commit_shares_syncs_under_concurrency(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool", SpoolSettings(sync="group"))
    sp.start()
    try:
        futs = [sp.submit("acme", rec(i)) for i in range(500)]
        wait(futs, timeout=30)
        assert all(f.exception() is None for f in futs)
        # every request became durable, with far fewer syncs than requests
        assert sp.stats.appends == 500
        assert sp.stats.syncs < 100, sp.stats
    finally:
        sp.close()
    got = lines_of(tmp_path / "spool", "acme")
    assert [r["event_id"] for r in got] == [f"e{i}" for i in range(500)]


def test_threads_appending_concurrently_lose_nothing(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool", SpoolSettings(sync="group"))
    sp.start()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(50):
                sp.append("acme" if t % 2 else "globex", rec(t * 1000 + i, "acme" if t % 2 else "globex"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    syncs = sp.stats.syncs
    sp.close()
    assert not errors
    ids = {r["event_id"] for r in lines_of(tmp_path / "spool", "acme") + lines_of(tmp_path / "spool", "globex")}
    assert ids == {f"e{t * 1000 + i}" for t in range(16) for i in range(50)}
    assert syncs < 16 * 50  # 16 concurrent writers share syncs


def test_sync_per_request_mode_syncs_every_request(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool", SpoolSettings(sync="request"))
    sp.start()
    futs = [sp.submit("acme", rec(i)) for i in range(40)]
    wait(futs, timeout=30)
    assert sp.stats.syncs == 40
    sp.close()
    assert len(lines_of(tmp_path / "spool", "acme")) == 40


def test_sealing_by_size_and_by_age(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    sp = Spool(root, SpoolSettings(segment_bytes=1000, segment_age_seconds=0.3))
    sp.start()
    try:
        for i in range(10):
            sp.append("acme", rec(i, pad=200))  # ~260 bytes: a segment seals every 4 appends
        assert len(sealed_segments(root, "acme", "events")) == 2
        assert len(list((root / "tenant_id=acme").glob("*.open"))) == 1
        assert sp.oldest_open_age() >= 0
        deadline = time.monotonic() + 5
        while list((root / "tenant_id=acme").glob("*.open")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list((root / "tenant_id=acme").glob("*.open")), "the age limit did not seal the segment"
        assert sp.oldest_open_age() == 0.0
        assert len(sealed_segments(root, "acme", "events")) == 3
    finally:
        sp.close()
    assert [r["event_id"] for r in lines_of(root, "acme")] == [f"e{i}" for i in range(10)]


def test_close_seals_open_segments_and_rejected_rows_go_to_their_own_segment(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    sp = Spool(root)
    sp.start()
    sp.append("acme", rec(1), b'{"source":"s","line":1,"reasons":[]}\n')
    sp.close()
    assert [p.suffix for p in (root / "tenant_id=acme").iterdir()] == [".ndjson", ".ndjson"]
    assert len(lines_of(root, "acme", "rejected")) == 1
    with pytest.raises(SpoolUnavailable):
        sp.append("acme", rec(2))  # closed: refuses instead of queueing in memory


def test_hostile_tenant_ids_never_become_paths(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    sp.start()
    try:
        for bad in ("../x", "a/b", "", "UP", "x\x00"):
            with pytest.raises(TenantError):
                sp.submit(bad, rec(1))
    finally:
        sp.close()
    assert not list((tmp_path).rglob("*.open")) and not (tmp_path / "x").exists()


WRITER = textwrap.dedent("""
    import sys
    from erp.core.spool import Spool, SpoolSettings
    sp = Spool(sys.argv[1], SpoolSettings(segment_age_seconds=3600))
    sp.start()
    i = 0
    while True:
        sp.append("acme", b'{"event_id": "e%d", "tenant_id": "acme"}\\n' % i)
        print(i, flush=True)  # printed only after the append is durable: an acknowledgement
        i += 1
""")


def test_kill_9_keeps_every_acknowledged_append_and_recovery_drops_torn_tails(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # a torn write of a dead writer: append half a line to its open segment
    (open_seg,) = list((root / "tenant_id=acme").glob("*.open"))
    with open(open_seg, "ab") as f:
        f.write(b'{"event_id": "torn')
    # a new writer seals what the dead one left; a live writer's segment is left alone
    live = Spool(root)
    assert live.start() == [open_seg.with_suffix(".ndjson")]
    live.append("acme", rec(10**6))
    assert recover(root) == []
    got = [r["event_id"] for r in lines_of(root, "acme")]
    assert set(f"e{i}" for i in acked) <= set(got)
    assert len(got) == len(set(got))
    assert "torn" not in open_seg.with_suffix(".ndjson").read_text()
    assert len(list((root / "tenant_id=acme").glob("*.open"))) == 1  # the live one
    live.close()


def test_full_disk_fails_the_request_and_leaves_no_partial_bytes(tmp_path: Path) -> None:
    fs = Tmpfs(tmp_path / "tiny", "256k")
    try:
        root = fs.path / "spool"
        sp = Spool(root, SpoolSettings(segment_bytes=10**9))
        sp.start()
        acked, failures = 0, []
        for i in range(200):
            try:
                sp.append("acme", rec(i, pad=3000))
                acked += 1
            except SpoolUnavailable as exc:
                failures.append(exc)
        assert failures, "the tiny disk never filled up"
        assert "no space left" in failures[0].message and failures[0].hint
        assert sp.stats.write_errors == len(failures)
        # the segment holds exactly the acknowledged records, whole
        assert [r["event_id"] for r in lines_of(root, "acme", include_open=True)] == [f"e{i}" for i in range(acked)]
        # space comes back: writes succeed again
        for p in root.rglob("*.open"):
            os.truncate(p, 0)
        sp.append("acme", rec(999))
        sp.close()
        assert lines_of(root, "acme")[-1]["event_id"] == "e999"
    finally:
        fs.close()


def test_read_only_spool_disk_is_refused_not_buffered(tmp_path: Path) -> None:
    fs = Tmpfs(tmp_path / "ro", "1m")
    try:
        root = fs.path / "spool"
        sp = Spool(root, SpoolSettings(segment_age_seconds=0.05))
        sp.start()
        sp.append("acme", rec(1))
        time.sleep(0.3)  # the segment is sealed by age; the next append needs a new one
        fs.remount("ro")
        with pytest.raises(SpoolUnavailable) as info:
            sp.append("acme", rec(2))
        assert "permission denied" in info.value.message or "cannot write" in info.value.message
        fs.remount("rw")
        sp.append("acme", rec(3))
        sp.close()
        assert [r["event_id"] for r in lines_of(root, "acme")] == ["e1", "e3"]
    finally:
        fs.close()


def test_drain_is_idempotent_when_a_crash_left_drained_segments_behind(tmp_path: Path) -> None:
    """A drain that dies after the lake commit but before deleting its segments
    must not double anything on the next run."""
    import shutil

    from collect_support import write_project
    from conftest import read_events, read_rejected
    from erp.core.config import load_config
    from erp.core.drain import drain_spool

    project = write_project(tmp_path / "proj")
    root = tmp_path / "proj" / "spool"
    sp = Spool(root)
    sp.start()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for t in ("acme", "globex"):
        lines = b"".join(json.dumps({"tenant_id": t, "event_id": f"{t}-{i}", "event_type": "x", "timestamp": now,
                                     "received_at": now}).encode() + b"\n" for i in range(20))
        sp.append(t, lines, b'{"source": "collect POST /x", "line": 1, "reasons": [{"code": "size_violation", '
                            b'"message": "m", "field": null}], "raw": "{}", "received_at": "' + now.encode() + b'"}\n')
    sp.close()
    saved = tmp_path / "saved"
    shutil.copytree(root, saved)
    cfg = load_config(project, env={}, cwd=project.parent)
    only_acme = drain_spool(cfg, workers=1, tenant="acme")
    assert (only_acme.accepted, only_acme.rejected_rows, only_acme.deleted) == (20, 1, 2)
    assert len(list((root / "tenant_id=globex").glob("*.ndjson"))) == 2
    rest = drain_spool(cfg, workers=1)
    assert (rest.accepted, rest.rejected_rows, rest.deleted) == (20, 1, 2)
    assert not list(root.rglob("*.ndjson"))
    shutil.rmtree(root)
    shutil.copytree(saved, root)  # as if the deletes never happened (same names, sizes, mtimes)
    again = drain_spool(cfg, workers=1)
    assert again.accepted == 0 and again.deleted == 4 and not again.failed
    lake = tmp_path / "proj" / "lake"
    df = read_events(lake)
    assert df.height == 40 and df["event_id"].n_unique() == 40
    assert sorted(r["bucket"] for r in read_rejected(lake)) == ["acme", "globex"]
    # a spool folder that is not a tenant folder is skipped and reported, never read
    (root / "junk").mkdir()
    (root / "tenant_id=UPPER").mkdir()
    assert drain_spool(cfg, workers=1).skipped_folders == ["junk", "tenant_id=UPPER"]


def test_a_slow_disk_refuses_new_appends_instead_of_buffering_them(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool", SpoolSettings(max_queued_bytes=10_000))
    sp.start()
    try:
        with sp._cond:  # hold the writer back, as a disk that does not answer would
            futs = [sp.submit("acme", rec(i, pad=900)) for i in range(30)]
        refused = [f for f in futs if f.done() and isinstance(f.exception(), SpoolUnavailable)]
        assert 15 <= len(refused) < 30  # ~10 kB of ~1 kB records were queued, the rest refused at once
        assert "behind" in refused[0].exception().message
        wait(futs, timeout=30)
        ok = [f for f in futs if f.exception() is None]
        assert len(ok) == 30 - len(refused)
        sp.append("acme", rec(99))  # the backlog is written: appends are taken again
    finally:
        sp.close()
    assert len(lines_of(tmp_path / "spool", "acme")) == 30 - len(refused) + 1
