"""Crash safety of ``erp ingest`` with real processes and real file systems:
kill -9 at random and at chosen moments, a full disk (a small tmpfs) and a
read-only lake (a read-only bind mount). Readers never see a half-written
file; the next run finishes with exact counts and no duplicates."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from conftest import make_config, read_events, read_rejected
from erp.core.generate import generate_events
from erp.core.ingest import ingest

ERP = [sys.executable, "-m", "erp.cli.main"]
EVENTS = 20_000


def _need_system_part(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    """``mount <args> <target>`` for the duration; skip (fail under CI=true) when
    this user may not mount."""
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        _need_system_part("needs mount(8): apt-get install mount, and run the tests as root")
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        _need_system_part(f"cannot mount ({proc.stderr.strip()}); run the tests as root "
                          "(sudo python -m pytest tests/test_crash_safety.py)")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """A generated input with some bad and duplicate lines, and what a clean,
    uninterrupted ingest of it stores (the reference)."""
    base = tmp_path_factory.mktemp("crash")
    src = base / "events.ndjson"
    generate_events(src, events=EVENTS, tenants=3, days=5, dirty=0.02, seed=7)
    ref = ingest(make_config(base, lake=base / "ref-lake"), [str(src)], workers=1)
    assert ref.rejected > 0 and ref.duplicates > 0 and ref.accepted > 0.9 * EVENTS
    events = read_events(base / "ref-lake")
    rejected = read_rejected(base / "ref-lake")
    return {
        "src": src,
        "ids": Counter(zip(events["tenant_id"], events["event_id"])),
        "rejected": Counter((r["line"], r["raw"] if "raw" in r else r["raw_base64"]) for r in rejected),
        "accepted": ref.accepted,
        "lake_bytes": sum(f.stat().st_size for f in (base / "ref-lake").rglob("*") if f.is_file()),
    }


def project(base: Path, **ingest_settings) -> Path:
    """A project folder whose erp.yaml makes ingest commit often (many crash points)."""
    base.mkdir(parents=True, exist_ok=True)
    settings = {"commit_events": 2000, "chunk_bytes": "64KiB", "workers": 1, **ingest_settings}
    (base / "erp.yaml").write_text("ingest:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items()))
    return base


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}


def start(cwd: Path, src: Path, lake: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*ERP, "ingest", str(src), "--lake", str(lake), "--json", *extra], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(cwd: Path, src: Path, lake: Path, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run([*ERP, "ingest", str(src), "--lake", str(lake), "--json", *extra], cwd=cwd, env=env(),
                          capture_output=True, timeout=300)
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, out, proc.stderr.decode()


def visible_files(lake: Path) -> list[Path]:
    """What a reader globbing the lake sees (events and rejected lines)."""
    return sorted(list((lake / "events").rglob("*.parquet")) + list((lake / "_rejected").rglob("*.ndjson")))


def check_readable(path: Path) -> None:
    """Raise if a visible file is not complete."""
    if path.suffix == ".parquet":
        pq.read_table(path)
    else:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} is cut off"
        for line in data.splitlines():
            orjson.loads(line)


class Reader(threading.Thread):
    """Reads every newly visible file while a writer runs, as a report job would."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.lake, self.seen, self.errors = lake, set(), []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan()
            time.sleep(0.005)
        self.scan()

    def scan(self) -> None:
        for f in visible_files(self.lake):
            if f not in self.seen:
                self.seen.add(f)
                try:
                    check_readable(f)
                except FileNotFoundError:
                    self.errors.append(f"{f} vanished after it was listed")
                except Exception as exc:  # a half-written file
                    self.errors.append(f"{f}: {type(exc).__name__}: {exc}")


def assert_final_state(lake: Path, workload: dict) -> None:
    events = read_events(lake)
    ids = Counter(zip(events["tenant_id"], events["event_id"]))
    assert max(ids.values()) == 1, "an event is stored twice"
    assert ids == workload["ids"]
    rejected = Counter((r["line"], r["raw"] if "raw" in r else r["raw_base64"]) for r in read_rejected(lake))
    assert rejected == workload["rejected"]
    for f in visible_files(lake):
        check_readable(f)
    assert not list((lake / "_state" / "commits").glob("*.json")) if (lake / "_state" / "commits").exists() else True
    assert not any(p.is_file() for p in (lake / "_staging").rglob("*")) if (lake / "_staging").exists() else True


def kill_when(proc: subprocess.Popen, condition, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` as soon as ``condition()`` holds (polled); False if it ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


def _staged_events(lake: Path) -> bool:
    staging = lake / "_staging"  # the shared flat tree (events~...) or a commit's own folder
    return staging.exists() and any("events" in str(p.relative_to(staging)) for p in staging.rglob("*.parquet"))


def _intent(lake: Path) -> bool:
    d = lake / "_state" / "commits"
    return d.exists() and any(d.glob("*.json"))


def _ledger_files(lake: Path) -> int:
    d = lake / "_state" / "ledger"
    return len(list(d.glob("*.ndjson"))) if d.exists() else 0


def test_kill_9_at_random_and_chosen_moments_then_finish(tmp_path, workload):
    cwd = project(tmp_path / "p")
    lake = tmp_path / "lake"
    src = workload["src"]
    reader = Reader(lake)
    reader.start()
    kills = 0
    try:
        # chosen moments: while a commit is staged, right after an intent is written,
        # after the first and the third commit
        moments = [lambda: _staged_events(lake), lambda: _intent(lake), lambda: _ledger_files(lake) >= 3]
        for cond in moments:
            kills += kill_when(start(cwd, src, lake), cond)
        # random moments (a run that is done by then is simply not interrupted)
        rng = random.Random(20261124)
        for _ in range(2):
            proc = start(cwd, src, lake)
            time.sleep(rng.uniform(0.5, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            for f in visible_files(lake):
                check_readable(f)
        code, out, err = run(cwd, src, lake)
        assert code == 0, err
    finally:
        reader.stop.set()
        reader.join()
    assert reader.errors == []
    assert kills == 3, "the ingest finished before a chosen moment came; enlarge the input"
    assert len(reader.seen) > 0
    assert_final_state(lake, workload)

    # the input is finished: a cron re-run skips it and adds nothing
    code, out, err = run(cwd, src, lake)
    assert code == 0, err
    assert [s["status"] for s in out["sources"]] == ["skipped"] and out["accepted"] == 0


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ..., start time)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below ``pid``."""
    stats = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := _stat(int(e))) is not None}
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, st in stats.items() if st[1] == str(parent)]
        found.update((p, stats[p][19]) for p in kids)
        todo += kids
    return found


def _running(proc: tuple[int, str]) -> bool:
    """Alive and not a zombie, and the same process (not a reused pid)."""
    st = _stat(proc[0])
    return st is not None and st[0] != "Z" and st[19] == proc[1]


def test_kill_9_with_parallel_parsers(tmp_path, workload):
    """kill -9 of a run with parser processes: they (and their fork server)
    end with it instead of waiting forever for work, and the next run resumes."""
    cwd = project(tmp_path / "p", workers=2, chunk_bytes="256KiB", commit_events=5000)
    lake = tmp_path / "lake"
    src = workload["src"]
    proc = start(cwd, src, lake)
    helpers: set[tuple[int, str]] = set()

    def first_commit() -> bool:
        helpers.update(_descendants(proc.pid))
        return _ledger_files(lake) >= 1

    assert kill_when(proc, first_commit)
    assert len(helpers) >= 3, helpers  # the fork server and two parsers
    deadline = time.monotonic() + 15
    while any(_running(p) for p in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in helpers if _running(p)]
    for p, _ in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "parser processes outlived the killed ingest"
    code, out, err = run(cwd, src, lake)
    assert code == 0, err
    assert out["lines"] < EVENTS  # it resumed instead of reading everything again
    assert_final_state(lake, workload)


def test_full_disk_stops_with_a_clear_message_and_a_rerun_finishes(tmp_path, workload):
    cwd = project(tmp_path / "p")
    lake = tmp_path / "lake"
    size_kib = max(256, workload["lake_bytes"] // 2048)  # room for about half of the lake
    with mounted(lake, "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs"):
        code, out, err = run(cwd, workload["src"], lake)
        assert code == 1, err
        assert out["ok"] is False and out["error"] == "LakeError"
        assert "no space left" in out["message"] and str(lake) in out["message"]
        assert "free some disk space" in out["hint"]
        assert "Traceback" not in err
        for f in visible_files(lake):  # what is visible is complete
            check_readable(f)
        committed = read_events(lake).height
        assert committed < workload["accepted"]

        subprocess.run(["mount", "-o", "remount,size=256m", str(lake)], check=True)
        code, out, err = run(cwd, workload["src"], lake)
        assert code == 0, err
        assert_final_state(lake, workload)


def test_read_only_lake_exits_1_and_a_rerun_after_fixing_finishes(tmp_path, workload):
    cwd = project(tmp_path / "p")
    lake = tmp_path / "lake"
    src = workload["src"]
    # a first, interrupted run leaves committed work behind
    assert kill_when(start(cwd, src, lake), lambda: _ledger_files(lake) >= 2)
    before = sorted(visible_files(lake))
    with mounted(lake, "--bind", str(lake)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(lake)], check=True)
        code, out, err = run(cwd, src, lake)
        assert code == 1, err
        assert out["error"] == "LakeError" and str(lake) in out["message"]
        assert "permission" in out["message"] or "read-only" in out["message"]
        assert out.get("hint")
        assert "Traceback" not in err
        assert sorted(visible_files(lake)) == before  # nothing lost
    code, out, err = run(cwd, src, lake)
    assert code == 0, err
    assert_final_state(lake, workload)


def test_read_only_events_folder_mid_commit_is_rolled_forward_later(tmp_path, workload):
    """Staging works but moving files into place fails: the commit's intent
    stays, the run exits 1, and the next run rolls that commit forward."""
    cwd = project(tmp_path / "p")
    lake = tmp_path / "lake"
    src = workload["src"]
    assert kill_when(start(cwd, src, lake), lambda: _ledger_files(lake) >= 1)
    events = lake / "events"
    with mounted(events, "--bind", str(events)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(events)], check=True)
        code, out, err = run(cwd, src, lake)
        assert code == 1, err
        assert out["error"] == "LakeError" and "events" in out["message"]
        assert "Traceback" not in err
        assert _intent(lake), "the interrupted commit keeps its intent for the next run"
        for f in visible_files(lake):
            check_readable(f)
    code, out, err = run(cwd, src, lake)
    assert code == 0, err
    assert out["recovered_commits"], "the next run rolled the interrupted commit forward"
    assert_final_state(lake, workload)


def test_shared_staging_is_reused_and_cleared_only_after_an_abandoned_commit(tmp_path) -> None:
    """Local commits stage in one flat, shared folder that is kept between commits;
    files of a commit that never wrote its intent are removed by the next recovery."""
    import pyarrow as pa
    import polars as pl

    from erp.core.lake import SHARED_STAGING, Lake

    lake = Lake(str(tmp_path / "lake"))
    shared = tmp_path / "lake" / SHARED_STAGING

    done = lake.begin("c-0001")
    frame = pl.DataFrame({"tenant_id": ["acme", "acme", "beta"], "date": [date_(1), date_(2), date_(1)],
                          "x": [1, 2, 3]})
    rels = done.write_partitioned(frame, "events", ["tenant_id", "date"])
    assert sorted(p.name for p in shared.iterdir()) == sorted(r.replace("/", "~") for r in rels)
    lake.commit(done)
    assert shared.is_dir() and not any(shared.iterdir()), "committed files were moved out"
    assert sorted(str(p.relative_to(tmp_path / "lake")) for p in (tmp_path / "lake" / "events").rglob("*.parquet")) \
        == sorted(rels)
    assert lake.recover() == [] and shared.is_dir(), "an ordinary run keeps the shared folder"

    abandoned = lake.begin("c-0002")
    abandoned.write_bytes("_rejected/tenant_id=acme/date=2026-09-01/c-0002.ndjson", b"{}\n")
    abandoned.write_parquet("_state/dedup/tenant_id=acme/c-0002.parquet", pa.table({"k": [1]}))
    assert len(list(shared.iterdir())) == 2
    assert lake.recover() == []
    assert not shared.exists() or not any(shared.iterdir()), "the abandoned commit's files are gone"
    assert not list((tmp_path / "lake" / "_state" / "commits").glob("*.staging"))
    assert not (tmp_path / "lake" / "_rejected").exists(), "nothing of it became visible"


def date_(day: int):
    from datetime import date

    return date(2026, 9, day)
