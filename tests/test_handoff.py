"""Chunks and results between ``erp ingest`` and its parser processes: a chunk
of a local file is read again by the parser and checked against what the
reader saw; results travel as Arrow files in shared memory, or inline when
shared memory is missing or full. Real files, real parser processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import make_config, read_events, read_rejected
from erp.core import handoff, sources as sources_mod
from erp.core.events import Chunk, ChunkResult
from erp.core.generate import generate_events
from erp.core.handoff import ChunkChanged, attach, detach, put_table, take_table
from erp.core.ingest import ingest
from erp.core.ledger import Ledger
from erp.core.sources import _local, read_chunks, scan_chunks
from erp.core.lake import Lake


def _chunk(path: Path, start: int, end: int) -> Chunk:
    data = path.read_bytes()[start:end]
    return Chunk(source=str(path), data=data, end_offset=end)


def test_a_detached_chunk_reads_back_the_same_bytes(tmp_path):
    src = tmp_path / "in.ndjson"
    src.write_bytes(b'{"a":1}\n{"b":2}\n{"c":3}\n')
    chunk = _chunk(src, 8, 24)
    sent = detach(chunk, str(src))
    assert sent.data == b"" and sent.ref is not None
    assert attach(sent) == chunk


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_a_chunk_whose_file_changed_is_refused(tmp_path, change):
    src = tmp_path / "in.ndjson"
    src.write_bytes(b'{"a":1}\n{"b":2}\n{"c":3}\n')
    sent = detach(_chunk(src, 8, 24), str(src))
    src.write_bytes(b'{"a":1}\n{"B":2}\n{"c":3}\n' if change == "rewritten" else b'{"a":1}\n')
    with pytest.raises(ChunkChanged, match="changed while it was being read"):
        attach(sent)


def _result(table: pa.Table | None) -> ChunkResult:
    return ChunkResult(source="s", end_offset=1, lines=1, blank=0, bytes=1, table=table, rejected=[])


def test_results_go_through_shared_memory_and_are_removed_once_taken(tmp_path):
    table = pa.table({"x": ["a", "b", None], "n": [1, 2, 3]})
    folder = tmp_path / "shm"
    folder.mkdir()
    sent = put_table(_result(table), str(folder))
    assert sent.table is None and sent.table_file is not None and os.path.exists(sent.table_file)
    got = take_table(sent)
    assert got.table.equals(table) and got.table_file is None
    assert list(folder.iterdir()) == []  # unlinked; the mapping keeps the data alive
    assert got.table.column("x").to_pylist() == ["a", "b", None]


def test_results_stay_inline_when_shared_memory_cannot_take_them(tmp_path):
    table = pa.table({"x": [1]})
    assert put_table(_result(table), None).table is table  # no shared memory at all
    missing = put_table(_result(table), str(tmp_path / "gone"))  # the folder vanished (or is full)
    assert missing.table is table and missing.table_file is None
    assert list(tmp_path.iterdir()) == []


def test_folders_of_dead_runs_are_swept_and_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(handoff, "SHM_ROOT", str(tmp_path))
    dead = tmp_path / "erp-ingest-999999999-abcd"  # no such process
    live = tmp_path / f"erp-ingest-{os.getppid()}-abcd"
    other = tmp_path / "someone-else"
    for d in (dead, live, other):
        d.mkdir()
        (d / "x.arrow").write_bytes(b"x")
    mine = handoff.results_dir()
    assert mine is not None and Path(mine).is_dir()
    assert not dead.exists() and live.exists() and other.exists()
    handoff.remove_results_dir(mine)
    assert not Path(mine).exists()


def test_a_file_rewritten_during_ingest_fails_that_source_and_a_rerun_completes(tmp_path, monkeypatch):
    """The parser finds that the bytes of the second chunk changed under it (here
    the reader's digest of that chunk's end is made not to match, as if the file
    had been rewritten in place between the scan and the parser's read): the
    source is reported failed, the ledger stays before that chunk, and the next
    run finishes the file with every event once."""
    src = tmp_path / "events.ndjson"
    generate_events(src, events=6000, tenants=3, days=5, seed=7)
    lines = src.read_bytes().count(b"\n")
    cfg = make_config(tmp_path, **{"ingest.chunk_bytes": 256 * 1024, "ingest.commit_events": 1000})
    real_reference, calls = sources_mod.reference, []

    def changed_on_second(*args):
        ref = real_reference(*args)
        calls.append(1)
        return ref._replace(end_digest=ref.end_digest ^ 1) if len(calls) == 2 else ref

    monkeypatch.setattr(sources_mod, "reference", changed_on_second)
    first = ingest(cfg, [str(src)], workers=2)
    [status] = first.sources
    assert status.status == "failed" and "changed while it was being read" in status.detail
    entry = Ledger.load(Lake(str(tmp_path / "lake"))).get(str(src))
    assert entry is None or not entry.done
    assert first.accepted + first.rejected + first.duplicates < lines

    monkeypatch.setattr(sources_mod, "reference", real_reference)
    second = ingest(cfg, [str(src)], workers=2)
    assert [s.status for s in second.sources] in (["ingested"], ["resumed"])
    stored = read_events(tmp_path / "lake")
    assert stored.select("tenant_id", "event_id").n_unique() == stored.height  # nothing twice
    reference = ingest(make_config(tmp_path, lake=tmp_path / "ref"), [str(src)], workers=1)
    expected = read_events(tmp_path / "ref")
    assert reference.accepted == stored.height
    assert sorted(stored.get_column("event_id").to_list()) == sorted(expected.get_column("event_id").to_list())
    assert ingest(cfg, [str(src)], workers=2).sources[0].status == "skipped"


def test_a_named_pipe_among_files_is_read_through_the_pipe_not_again(tmp_path):
    """Only regular files are read again by parser processes; a FIFO found in a
    folder can be read once only, so its chunks travel inline (reading it
    again would wait forever for a writer)."""
    folder = tmp_path / "in"
    folder.mkdir()
    generate_events(folder / "a.ndjson", events=3000, tenants=2, days=3, seed=3)
    fifo = folder / "b.ndjson"
    os.mkfifo(fifo)
    piped = b"".join(b'{"event_id":"p%d","tenant_id":"acme","event_type":"x","timestamp":"2026-09-01T00:00:00Z"}\n' % i
                     for i in range(2000))

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(piped)

    cfg = make_config(tmp_path, **{"ingest.chunk_bytes": 64 * 1024})
    out: list = []
    threading.Thread(target=feed, daemon=True).start()
    run = threading.Thread(target=lambda: out.append(ingest(cfg, [str(folder)], workers=2)), daemon=True)
    run.start()
    run.join(timeout=60)
    if run.is_alive():
        with open(fifo, "wb"):  # let a parser blocked on opening the FIFO go
            pass
        pytest.fail("ingest hung: a parser process tried to read the FIFO again")
    [r] = out
    assert [s.status for s in r.sources] == ["ingested", "ingested"], r.sources
    stored = read_events(tmp_path / "lake")
    assert stored.filter(stored["event_id"].str.starts_with("p")).height == 2000
    assert r.accepted + r.rejected == (folder / "a.ndjson").read_bytes().count(b"\n") + 2000


# --- scanning a file for chunk ends without reading it -----------------------------

lines_st = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x"))
                    | st.integers(90, 400).map(lambda n: b"L" * n),  # lines longer than a chunk
                    max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines_st, st.booleans(), st.integers(8, 120), st.integers(0, 60), st.sampled_from([7, 64 * 1024]))
def test_scanned_chunks_are_the_chunks_read_whole(tmp_path, monkeypatch, lines, newline_at_end, chunk_bytes, start,
                                                  window):
    """The same lines (and oversized lines) as reading the file whole, every
    chunk but the last ending at a newline, and true tails, for any line lengths
    (empty, longer than a chunk or than the line limit, none at all), a last
    line without its newline, and a resumed start. Where a line is longer than
    a chunk the scanner hands over to the reader, so chunk ends may differ."""
    body = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    path = tmp_path / f"in-{len(body)}-{chunk_bytes}.ndjson"
    path.write_bytes(body)
    src = _local(str(path))
    start = min(start, len(body))
    if start and body[start - 1:start] != b"\n":
        start = body.rfind(b"\n", 0, start) + 1  # the ledger resumes at line starts only
    opts = dict(chunk_bytes=chunk_bytes, max_line_bytes=100, start_offset=start)
    monkeypatch.setattr(sources_mod, "SCAN_WINDOW", window)  # small: chunk ends found over several reads
    whole = list(read_chunks(src, **opts))
    scanned = [attach(c) for c in scan_chunks(src, **opts)]
    assert _lines(scanned) == _lines(whole)
    assert [c.end_offset for c in scanned][-1:] == [c.end_offset for c in whole][-1:]
    assert all(a < b for a, b in zip([start] + [c.end_offset for c in scanned], [c.end_offset for c in scanned]))
    for c in scanned[:-1]:
        assert c.oversized or c.data.endswith(b"\n")
    for c in scanned:
        if c.tail is not None and not c.oversized:
            assert c.tail == body[max(0, c.end_offset - 4096):c.end_offset]


def _lines(chunks: list[Chunk], limit: int = 100) -> list:
    """Each line, or ("too large", length) for one the parser rejects as too
    large (whether the reader kept its head only or passed it whole)."""
    out: list = []
    for c in chunks:
        lines = c.data.split(b"\n")[:-1] if c.data.endswith(b"\n") else c.data.split(b"\n") if c.data else []
        out += [line if len(line) <= limit else ("too large", len(line)) for line in lines]
        out += [("too large", length) for _, _, length in c.oversized]
    return out


def test_a_scanned_chunk_of_a_replaced_file_is_refused(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a":1}\n{"b":2}\n')
    [chunk] = scan_chunks(_local(str(path)), chunk_bytes=1024, max_line_bytes=1024)
    assert chunk.data == b"" and chunk.ref is not None
    replacement = tmp_path / "new.ndjson"
    replacement.write_bytes(b'{"a":1}\n{"b":2}\n')  # the same bytes, another file
    os.replace(replacement, path)
    with pytest.raises(ChunkChanged):
        attach(chunk)


def test_rejected_lines_keep_their_line_numbers_across_scanned_chunks_and_a_resume(tmp_path):
    """Parsers number lines within their chunk; the ingest process turns them
    into line numbers of the file, across many chunks, two parser processes,
    and a run that resumes a grown file from the ledger."""
    src = tmp_path / "events.ndjson"
    generate_events(src, events=8000, tenants=3, days=4, seed=5)
    lines = src.read_bytes().split(b"\n")[:-1]
    broken = sorted({(i * 997) % len(lines) for i in range(1, 30)})
    for i in broken:
        lines[i] = b'{"broken at line %d' % (i + 1)
    half = len(lines) // 2
    src.write_bytes(b"\n".join(lines[:half]) + b"\n")
    cfg = make_config(tmp_path, **{"ingest.chunk_bytes": 64 * 1024, "ingest.commit_events": 1500})
    first = ingest(cfg, [str(src)], workers=2)
    src.write_bytes(b"\n".join(lines) + b"\n")  # the file grows; the next run resumes
    second = ingest(cfg, [str(src)], workers=2)
    assert [s.status for s in second.sources] == ["resumed"]
    assert first.lines + second.lines == len(lines)
    rejected = read_rejected(tmp_path / "lake")
    assert [r["line"] for r in rejected] == [i + 1 for i in broken]
    assert all(r["raw"] == '{"broken at line %d' % r["line"] for r in rejected)


def test_parser_processes_run_at_a_lower_priority_than_the_ingest(tmp_path):
    """The ingest process (dedup, encoding, commits: the serial stage) gets the
    CPU before its parsers do."""
    from concurrent.futures import ProcessPoolExecutor

    from erp.core import forkserver
    from erp.core.ingest import build_context
    from erp.core.parse import PARSER_NICE, init_worker

    ctx = build_context(make_config(tmp_path), batch_id="b", now_us=0, tenant=None)
    with ProcessPoolExecutor(max_workers=1, mp_context=forkserver.context(), initializer=init_worker,
                             initargs=(ctx, None, os.getpid())) as pool:
        parser_nice = pool.submit(os.nice, 0).result()
    assert PARSER_NICE > 0
    assert parser_nice == min(19, os.nice(0) + PARSER_NICE)
