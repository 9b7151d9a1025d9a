"""``erp ingest``: NDJSON inputs -> validated, enriched, deduplicated lake.

Pipeline: sources are read as line-aligned chunks (bounded memory); parser
processes validate and enrich each chunk into an Arrow table; the main process
buffers ``ingest.commit_events`` events (up to twice that while the previous
commit is still being written), drops duplicates against the
dedup index, writes one Parquet file per (tenant, date) touched and the
rejected lines with their reasons, and commits all of it atomically together
with the input ledger and dedup-index additions.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Callable, Iterator

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from erp.core import forkserver, pqwrite
from erp.core.config import Config
from erp.core.dedup import DedupIndex
from erp.core.errors import TenantError
from erp.core.events import EVENT_SCHEMA, INGEST_PARQUET_OPTIONS, Chunk, ChunkResult, ParseContext, Rejected, TenantRules
from erp.core.handoff import ChunkChanged, detach, remove_results_dir, results_dir, take_table
from erp.core.parse import init_worker, parse_chunk, parse_chunk_in_worker
from erp.core.lake import Commit, Lake, hive_path, new_batch_id
from erp.core.ledger import TAIL_BYTES, Ledger, LedgerEntry, tail_hash
from erp.core.sources import Source, SourceReadError, expand_inputs, read_chunks, scan_chunks
from erp.core.tenants import validate_tenant_id

ProgressFn = Callable[[int, int], None]  # (bytes read so far, events parsed so far)

_US = 1_000_000


@dataclass
class TenantStats:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    partitions: set = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "duplicates": self.duplicates,
                "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
                "partitions": len(self.partitions)}


@dataclass
class SourceStatus:
    source: str
    status: str  # ingested | skipped | resumed | failed
    lines: int = 0
    detail: str = ""


@dataclass
class IngestResult:
    batch_id: str
    lake: str
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    blank: int = 0
    bytes: int = 0
    seconds: float = 0.0
    commits: int = 0
    files_written: int = 0
    recovered: list[str] = field(default_factory=list)
    tenants: dict[str, TenantStats] = field(default_factory=dict)
    sources: list[SourceStatus] = field(default_factory=list)

    @property
    def failed_sources(self) -> list[SourceStatus]:
        return [s for s in self.sources if s.status == "failed"]

    def tenant(self, t: str) -> TenantStats:
        if t not in self.tenants:
            self.tenants[t] = TenantStats()
        return self.tenants[t]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "lake": self.lake, "lines": self.lines,
            "accepted": self.accepted, "rejected": self.rejected, "duplicates": self.duplicates,
            "blank": self.blank, "bytes": self.bytes, "seconds": round(self.seconds, 3),
            "events_per_second": round(self.lines / self.seconds) if self.seconds else None,
            "commits": self.commits, "files_written": self.files_written,
            "recovered_commits": self.recovered,
            "tenants": {t: s.to_dict() for t, s in sorted(self.tenants.items())},
            "sources": [vars(s) for s in self.sources],
        }


@dataclass
class _SourceEnd:
    source: Source
    error: str | None


@dataclass
class _Pending:
    """What the next commit holds."""

    tables: list[pa.Table] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    events: int = 0
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)


def over_quota(cfg: Config, lake: Lake) -> frozenset[str]:
    """Tenants whose stored event files already take their ``storage_quota`` (a tenant
    not in tenants.yaml has ``defaults.storage_quota``). The quota is soft: it is
    checked when a run begins, so one run may go past it; later runs reject."""
    default = cfg.settings.defaults.storage_quota
    if default is None and all(t.storage_quota is None for t in cfg.tenants.values()):
        return frozenset()
    full = set()
    for t in lake.tenants():
        limit = cfg.tenants[t].storage_quota if t in cfg.tenants else default
        if limit is not None and lake.fs.du(lake.events_dir(t), total=True) >= limit:
            full.add(t)
    return frozenset(full)


def build_context(cfg: Config, *, batch_id: str, now_us: int, tenant: str | None,
                  full: frozenset[str] = frozenset()) -> ParseContext:
    s = cfg.settings
    rules = {t.tenant_id: TenantRules(t.retention_days, t.anonymize_ip) for t in cfg.tenants.values()}
    return ParseContext(
        batch_id=batch_id, now_us=now_us, default_tenant=tenant,
        known_tenants=frozenset(cfg.tenants) if cfg.restrict_tenants else None,
        tenant_rules=rules,
        default_rules=TenantRules(s.defaults.retention_days, s.defaults.anonymize_ip),
        schemas=dict(cfg.schemas), max_line_bytes=s.ingest.max_line_bytes,
        skew_threshold_us=int(s.ingest.skew_threshold_seconds * _US),
        future_tolerance_us=int(s.ingest.future_tolerance_seconds * _US),
        over_quota=full,
    )


def ingest(cfg: Config, inputs: list[str], *, tenant: str | None = None, lake: Lake | None = None,
           now: datetime | None = None, workers: int | None = None, stdin: IO[bytes] | None = None,
           progress: ProgressFn | None = None, executor: Executor | None = None,
           sources: list[Source] | None = None, rescan: bool = False) -> IngestResult:
    """Ingest ``inputs`` (paths, folders, globs, '-', URLs) into the lake.

    ``now`` fixes the ingest clock (received_at, retention, future checks).
    ``rescan`` reads every input from the start whatever the ledger says (the
    dedup index still keeps each event once).
    ``executor`` may be any ``concurrent.futures.Executor`` (e.g. a Dask
    client's); by default a local process pool is used for large inputs.
    """
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    lake = lake or Lake(cfg.settings.lake, cfg.settings.storage_options)
    if tenant is not None:
        validate_tenant_id(tenant)
        if cfg.restrict_tenants and tenant not in cfg.tenants:
            raise TenantError(f"tenant {tenant!r} is not in {cfg.settings.tenants_file}", tenant=tenant,
                              hint="valid tenants: " + ", ".join(sorted(cfg.tenants)))
    if sources is None:
        sources = expand_inputs(inputs, stdin=stdin, storage_options=cfg.settings.storage_options)
    batch_id = new_batch_id()
    result = IngestResult(batch_id=batch_id, lake=lake.url)
    now_us = int(now.timestamp() * _US)
    ing = cfg.settings.ingest

    with lake.lock():
        result.recovered = lake.recover()
        ctx = build_context(cfg, batch_id=batch_id, now_us=now_us, tenant=tenant, full=over_quota(cfg, lake))
        ledger = Ledger.load(lake)
        plan = [(src, 0, 1) for src in sources] if rescan else _plan(sources, ledger, result)
        dedup = DedupIndex(lake)
        job = _Job(lake, ledger, dedup, ctx, result, now, tenant)
        n_workers = workers if workers is not None else (ing.workers or os.cpu_count() or 1)
        known = sum(s.size or 0 for s, _, _ in plan)
        small = all(s.size is not None for s, _, _ in plan) and known < 2 * ing.chunk_bytes
        own_pool = shared = None
        if executor is None and n_workers > 1 and not small and plan:
            shared = results_dir()
            own_pool = executor = ProcessPoolExecutor(
                max_workers=n_workers, mp_context=_mp_context(), initializer=init_worker,
                initargs=(ctx, shared, os.getpid()))
        job.start_line.update((src.key, line) for src, _, line in plan)
        try:
            job.run(_stream(plan, ing.chunk_bytes, ing.max_line_bytes, by_reference=own_pool is not None), executor,
                    max_inflight=max(2, 4 * n_workers), commit_events=ing.commit_events,
                    progress=progress, remote_ctx=own_pool is None)
        finally:
            if own_pool is not None:
                own_pool.shutdown(wait=True, cancel_futures=True)
            remove_results_dir(shared)
    result.seconds = time.perf_counter() - started
    return result


def _mp_context() -> Any:
    return forkserver.context()


def _plan(sources: list[Source], ledger: Ledger, result: IngestResult) -> list[tuple[Source, int, int]]:
    """Decide, per source, whether to skip it, resume it, or read it whole."""
    plan = []
    for src in sources:
        entry = ledger.get(src.key) if src.trackable else None
        if entry is None:
            plan.append((src, 0, 1))
            continue
        unchanged = entry.size == src.size and entry.mtime == src.mtime
        if entry.done and unchanged:
            result.sources.append(SourceStatus(src.display, "skipped", 0, "already ingested (ledger)"))
            continue
        if unchanged or (not src.compressed and not src.is_url and src.size is not None
                         and src.size >= entry.offset and _tail_matches(src, entry)):
            plan.append((src, entry.offset, entry.line))
            result.sources.append(SourceStatus(src.display, "resumed", 0, f"from byte {entry.offset}"))
            continue
        plan.append((src, 0, 1))  # replaced file: read again; dedup drops what is already stored
    return plan


def _tail_matches(src: Source, entry: LedgerEntry) -> bool:
    before = _bytes_before(src, entry.offset)
    return before is not None and tail_hash(before) == entry.tail


def _bytes_before(src: Source, offset: int) -> bytes | None:
    """The TAIL_BYTES of a local, uncompressed file before ``offset`` (None if unreadable)."""
    start = max(0, offset - TAIL_BYTES)
    try:
        with open(src.key, "rb") as f:
            f.seek(start)
            return f.read(offset - start)
    except OSError:
        return None


@dataclass
class _ChunkMeta:
    """What the main process keeps of a chunk it sent to a parser: where the
    ledger may resume the source after it (byte offset and the hash of the
    bytes before it; the line number follows once the parser counted the lines)."""

    source: Source
    partial: bool  # the chunk ends in a line without its newline (the ledger resumes at its start)
    tail: str
    offset: int


def _stream(plan: list[tuple[Source, int, int]], chunk_bytes: int, max_line_bytes: int, *,
            by_reference: bool) -> Iterator[tuple[Source, Chunk] | _SourceEnd]:
    """The chunks of every source in order. With ``by_reference`` (our own parser
    processes on this machine), a plain local file is only scanned for chunk
    ends and each parser reads its chunk itself."""
    for src, offset, _ in plan:
        error = None
        scan = by_reference and src.regular_file and not src.compressed
        try:
            for chunk in (scan_chunks if scan else read_chunks)(
                    src, chunk_bytes=chunk_bytes, max_line_bytes=max_line_bytes, start_offset=offset):
                yield src, chunk
        except SourceReadError as exc:
            error = str(exc)
        yield _SourceEnd(src, error)


class _Job:
    def __init__(self, lake: Lake, ledger: Ledger, dedup: DedupIndex, ctx: ParseContext,
                 result: IngestResult, now: datetime, tenant: str | None) -> None:
        self.lake, self.ledger, self.dedup, self.ctx = lake, ledger, dedup, ctx
        self.result, self.now, self.tenant = result, now, tenant
        self.pending = _Pending()
        self.seq = 0
        self.source_lines: Counter = Counter()
        self.latest: dict[str, LedgerEntry] = {}  # newest position per source, committed or not
        self.tails: dict[str, bytes] = {}  # last TAIL_BYTES read per source
        self.start_line: dict[str, int] = {}  # per source, the line number this run starts at
        self.changed: dict[str, str] = {}  # sources rewritten while being read -> the error
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erp-commit")
        self._writing: Future | None = None

    def run(self, stream: Iterator[tuple[Source, Chunk] | _SourceEnd], executor: Executor | None, *,
            max_inflight: int, commit_events: int, progress: ProgressFn | None, remote_ctx: bool) -> None:
        inflight: deque[tuple[_ChunkMeta, Future | ChunkResult] | _SourceEnd] = deque()
        for item in stream:
            if isinstance(item, _SourceEnd):
                inflight.append(item)
            else:
                src, chunk = item
                meta = self._meta(src, chunk)
                if executor is None:
                    inflight.append((meta, parse_chunk(self.ctx, chunk)))
                elif remote_ctx:  # a caller's executor (e.g. Dask): send the context along
                    inflight.append((meta, executor.submit(parse_chunk, self.ctx, chunk)))
                else:  # our own parser processes: a plain local file is read (again) there
                    local = chunk.data and src.regular_file and not src.compressed
                    inflight.append((meta, executor.submit(parse_chunk_in_worker,
                                                           detach(chunk, src.key) if local else chunk)))
            while len(inflight) > max_inflight or (inflight and _ready(inflight[0])):
                self._consume(inflight.popleft(), commit_events, progress)
        while inflight:
            self._consume(inflight.popleft(), commit_events, progress)
        if self.pending.events or self.pending.rejected or self.pending.ledger:
            self._commit()
        self._wait_writer()
        self._writer.shutdown()

    def _meta(self, src: Source, chunk: Chunk) -> _ChunkMeta:
        """Track the last TAIL_BYTES of each source's stream, so the ledger's tail
        hash covers the bytes right before its offset however small the chunks.
        A last line without its newline may still be being written: the ledger
        then resumes at its start, so once complete it is read again (a good
        line that was already complete is then dropped as a duplicate)."""
        data = chunk.data
        if chunk.tail is not None:
            before = chunk.tail
        else:
            if src.key not in self.tails:  # the first chunk: seed from the bytes before a resumed offset
                start = chunk.end_offset - len(data)
                local = src.trackable and not src.compressed and not src.is_url
                seed = _bytes_before(src, start) if start and local else b""
                self.tails[src.key] = seed or b""
            before = self.tails[src.key]
        offset = chunk.end_offset
        stream = before if chunk.tail is not None else _roll(before, data, len(data))
        resume = stream
        if data and not data.endswith(b"\n") and not chunk.truncated and chunk.tail is None:
            cut = data.rfind(b"\n") + 1
            resume = _roll(before, data, cut)
            offset -= len(data) - cut
        self.tails[src.key] = stream
        # the ledger's line number is that of the line it resumes at: an unfinished last line's own
        partial = bool(data) and not data.endswith(b"\n")
        return _ChunkMeta(src, partial, tail_hash(resume), offset)

    def _consume(self, item: tuple[_ChunkMeta, Future | ChunkResult] | _SourceEnd, commit_events: int,
                 progress: ProgressFn | None) -> None:
        if isinstance(item, _SourceEnd):
            self._source_end(item)
            return
        meta, fut = item
        src = meta.source
        try:
            res: ChunkResult = take_table(fut.result() if isinstance(fut, Future) else fut)
        except ChunkChanged as exc:
            self.changed.setdefault(src.key, str(exc))
        if src.key in self.changed:
            return  # from the first changed chunk on, the source is read again next run
        # the chunk's lines are numbered from 1 within it; chunks of a source come in order
        first = self.start_line.get(src.key, 1) + self.source_lines[src.key]
        if first != 1:
            for rej in res.rejected:
                rej.line += first - 1
        r = self.result
        r.lines += res.lines
        r.blank += res.blank
        r.bytes += res.bytes
        self.source_lines[src.key] += res.lines
        if res.table is not None:
            self.pending.tables.append(res.table)
            self.pending.events += res.table.num_rows
        self.pending.rejected.extend(res.rejected)
        self._note_position(src, meta.offset, first + res.lines - meta.partial, meta.tail, done=False)
        if progress is not None:
            progress(r.bytes, r.lines)
        if self.pending.events >= commit_events and (
                self._writer_idle() or self.pending.events >= 2 * commit_events):
            self._commit()

    def _note_position(self, src: Source, offset: int, line: int, tail: str, *, done: bool) -> None:
        if src.trackable:
            entry = LedgerEntry(key=src.key, size=src.size, mtime=src.mtime, offset=offset, line=line,
                                tail=tail, done=done)
            self.pending.ledger[src.key] = self.latest[src.key] = entry

    def _source_end(self, end: _SourceEnd) -> None:
        src = end.source
        if src.key in self.changed:
            end = _SourceEnd(src, self.changed[src.key])
        lines = self.source_lines.get(src.key, 0)
        existing = next((s for s in self.result.sources if s.source == src.display), None)
        if existing:
            self.result.sources.remove(existing)
        if end.error:
            status = SourceStatus(src.display, "failed", lines, end.error)
        else:
            status = SourceStatus(src.display, existing.status if existing else "ingested", lines,
                                  existing.detail if existing else "")
        self.result.sources.append(status)
        # A truncated stream counts as done: its readable part is in, its tail rejected.
        # Any other read failure leaves the ledger where the last good chunk ended,
        # so the next run retries the source.
        if end.error and "truncated" not in end.error:
            return
        last = self.latest.get(src.key) or self.ledger.get(src.key)
        if last is not None:
            self._note_position(src, last.offset, last.line, last.tail, done=True)
        else:  # an empty source
            self._note_position(src, 0, 1, "", done=True)

    def _writer_idle(self) -> bool:
        return self._writing is None or self._writing.done()

    def _commit(self) -> None:
        """Hand the pending buffer to the writer thread (one commit in flight at a
        time, so commits stay in order). Polars, Arrow and the encoder release
        the GIL while writing, so parsing goes on meanwhile. A buffer that
        reaches ``commit_events`` while the previous commit is still being
        written keeps taking chunks, up to twice that, rather than waiting: the
        parsers keep working, and a later commit is larger (fewer, larger
        files). Memory stays bounded at about three buffers."""
        p = self.pending
        self.pending = _Pending()
        self._wait_writer()
        self._writing = self._writer.submit(self._write_commit, p)

    def _wait_writer(self) -> None:
        if self._writing is not None:
            fut, self._writing = self._writing, None
            fut.result()

    def _write_commit(self, p: _Pending) -> None:
        commit_id = f"{self.result.batch_id}-{self.seq:04d}"
        self.seq += 1
        c = self.lake.begin(commit_id)
        if p.tables:
            table = pa.concat_tables(p.tables)
            # dedup and order on the narrow key columns; the wide rows are gathered once
            narrow = pl.from_arrow(table.select(["tenant_id", "date", "timestamp", "_key"]))
            assert isinstance(narrow, pl.DataFrame)
            kept, dups = self.dedup.filter_new(narrow.with_row_index("_row"))
            for t, n in dups.items():
                self.result.tenant(t).duplicates += n
                self.result.duplicates += n
            new_keys = self._write_events(c, table, kept)
        else:
            new_keys = {}
        self._write_rejected(c, p.rejected)
        self.dedup.stage(c, new_keys)
        ledger_entries = list(p.ledger.values())
        state = {f"_state/ledger/{commit_id}.ndjson": Ledger.encode(ledger_entries)} if ledger_entries else {}
        self.lake.commit(c, state)
        for t, keys in new_keys.items():
            self.dedup.add(t, keys)
        self.ledger.update(ledger_entries)
        self.result.commits += 1
        self.result.files_written += sum(1 for f in c.files if f.relpath.startswith("events/"))

    def _write_events(self, c: Commit, table: pa.Table, kept: pl.DataFrame) -> dict[str, pl.Series]:
        """Write the ``kept`` rows of ``table`` (``kept._row`` indexes it), one file
        per tenant and date, rows in timestamp order within a file."""
        if kept.height == 0:
            return {}
        events = table.select(EVENT_SCHEMA.names)
        batches = events.to_batches()
        batch_starts = np.cumsum([0] + [b.num_rows for b in batches])
        values, spans, bounds = _partitions(kept, batch_starts)
        paths = [hive_path(["tenant_id", "date"], v) for v in values]
        images = None
        if pqwrite.AVAILABLE:  # every file of the commit in one C call, from the chunks' buffers
            try:
                images = pqwrite.encode_batches(batches, spans, bounds)
            except ValueError:  # past the encoder's limits (a page over 2 GiB): pyarrow splits pages
                images = None
        if images is not None:
            c.write_partitions("events", list(zip(paths, images)))
        else:
            c.write_partitions("events", [(path, _gather(events, batches, batch_starts, spans[a:b]))
                                          for path, a, b in zip(paths, bounds, bounds[1:])], INGEST_PARQUET_OPTIONS)
        part_rows = np.add.reduceat(spans[:, 2], bounds[:-1]) if len(spans) else []
        for (tenant, day), rows in zip(values, part_rows):
            rows = int(rows)
            stats = self.result.tenant(tenant)
            stats.accepted += rows
            stats.partitions.add(str(day))
            self.result.accepted += rows
        return {tenant: part.get_column("_key") for (tenant,), part in
                kept.select("tenant_id", "_key").partition_by("tenant_id", as_dict=True).items()}

    def _write_rejected(self, c: Commit, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        day = self.now.date().isoformat()
        received = self.now.isoformat().replace("+00:00", "Z")
        by_bucket: dict[str, list[bytes]] = {}
        for rej in rejected:
            rec = rej.to_record(self.result.batch_id, received)
            by_bucket.setdefault(rej.tenant_bucket, []).append(orjson.dumps(rec))
            stats = self.result.tenant(rej.tenant_bucket)
            stats.rejected += 1
            for code in dict.fromkeys(r.code for r in rej.reasons):
                stats.rejected_by_reason[code] += 1
            self.result.rejected += 1
        for bucket, lines in by_bucket.items():
            c.write_bytes(Lake.rejected_rel(bucket, day, f"{c.commit_id}.ndjson"), b"\n".join(lines) + b"\n")


def _partitions(kept: pl.DataFrame, batch_starts: np.ndarray) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """Per (tenant, date) of ``kept`` (rows ``_row`` of the commit's events, input
    order within a tenant), in that order: its key values, and its rows in
    timestamp order as spans ``(batch, first row, rows)`` of the events' record
    batches (``batch_starts``: the row number each batch starts at, then the
    total). Returns the values, the spans (an int64 array of triples) and the
    bounds of each partition's spans (int64, partitions + 1).

    Parsers return each chunk sorted by partition and time (``SORT_KEYS``), so a
    partition's rows are one span per chunk, and in order when the input is (or
    roughly is) in time order. The rows of a partition that go back in time
    across chunks are put in timestamp order (input order among equal
    timestamps) as runs of rows that stay consecutive in one chunk: the files
    are encoded from the chunks' buffers, without gathering a copy of the rows."""
    rows = kept.get_column("_row").to_numpy()
    batch = np.searchsorted(batch_starts, rows, side="right") - 1
    o = kept.select("tenant_id", "date", "timestamp", "_row").with_columns(
        _batch=pl.Series(batch, dtype=pl.Int64)).sort(["tenant_id", "date"], maintain_order=True)
    new_part = ((pl.col("tenant_id") != pl.col("tenant_id").shift()) | (pl.col("date") != pl.col("date").shift())
                ).fill_null(True)
    o = o.with_columns(_part=new_part.cum_sum() - 1).with_columns(
        _back=~new_part & (pl.col("timestamp") < pl.col("timestamp").shift()).fill_null(False))
    unsorted = o.filter(pl.col("_back")).get_column("_part").unique()
    if len(unsorted):  # those partitions' rows in timestamp order
        o = o.sort(["_part", pl.when(pl.col("_part").is_in(unsorted.implode())).then(pl.col("timestamp"))],
                   maintain_order=True, nulls_last=True)
    part = o.get_column("_part").to_numpy()
    row = o.get_column("_row").to_numpy()
    batch = o.get_column("_batch").to_numpy()
    n = len(row)
    # a span starts at a new partition, a new batch or a row that does not follow the previous one
    start = np.ones(n, dtype=bool)
    if n > 1:
        start[1:] = (part[1:] != part[:-1]) | (batch[1:] != batch[:-1]) | (row[1:] != row[:-1] + 1)
    first = np.flatnonzero(start)
    counts = np.diff(np.append(first, n))
    spans = np.empty((len(first), 3), dtype=np.int64)
    spans[:, 0] = batch[first]
    spans[:, 1] = row[first] - batch_starts[batch[first]]
    spans[:, 2] = counts
    part_first = np.flatnonzero(np.diff(part[first], prepend=-1) != 0)
    bounds = np.append(part_first, len(first)).astype(np.int64)
    keys = o.select("tenant_id", "date").gather(first[part_first])
    return list(keys.iter_rows()), spans, bounds


def _gather(events: pa.Table, batches: list[pa.RecordBatch], batch_starts: np.ndarray,
            spans: np.ndarray) -> pa.Table:
    """The rows of ``spans`` (of ``batches``, the record batches of ``events``) as
    one table: slices of the batches when there are few spans, else one gather."""
    if len(spans) <= 16:
        return pa.Table.from_batches([batches[b].slice(r, n) for b, r, n in spans.tolist()], events.schema)
    idx = np.concatenate([np.arange(batch_starts[b] + r, batch_starts[b] + r + n) for b, r, n in spans.tolist()])
    return events.take(idx)


def _roll(before: bytes, data: bytes, end: int) -> bytes:
    """The last TAIL_BYTES of ``before + data[:end]``, without copying a whole chunk."""
    if end >= TAIL_BYTES:
        return data[end - TAIL_BYTES:end]
    return (before + data[:end])[-TAIL_BYTES:]


def _ready(item: Any) -> bool:
    if isinstance(item, _SourceEnd):
        return True
    fut = item[1]
    return not isinstance(fut, Future) or fut.done()


__all__ = ["ingest", "IngestResult", "TenantStats", "SourceStatus", "build_context"]
