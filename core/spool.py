"""The collector's durable spool: append-only segment files per tenant.

Layout (every tenant folder name comes from ``tenant_partition``)::

    <spool>/tenant_id=<t>/events-<stamp>-<pid>-<n>.open       # being appended to
    <spool>/tenant_id=<t>/events-<stamp>-<pid>-<n>.ndjson     # sealed: ready for ingest
    <spool>/tenant_id=<t>/rejected-<stamp>-<pid>-<n>.ndjson   # rows refused at the door

An ``events`` segment holds one event per line in the NDJSON format ``erp
ingest`` reads; a ``rejected`` segment holds rows in the lake's ``_rejected``
format. A request is acknowledged only when ``append`` has returned: its bytes
were written and ``fdatasync``-ed (the segment's folder entry is fsynced when
the segment is created and when it is sealed).

**Adaptive group commit.** One writer thread takes everything that queued while
its previous sync ran, writes it, and syncs each touched segment once; then all
of those requests are answered together. Under light load a request waits for
one sync; under heavy load one sync covers hundreds of requests. ``sync=
"request"`` (one write + sync per request, in arrival order) is the baseline the
benchmark compares against.

**Failures.** A write or sync error (disk full, permissions, I/O error) fails
only the requests of that segment with ``SpoolUnavailable``; the segment is cut
back to its last acknowledged byte, so nothing half-written remains. The
collector answers 503 with ``Retry-After``; nothing is held in memory.

**Sealing.** A segment is sealed (renamed ``.open`` -> ``.ndjson``) when it
reaches ``segment_bytes``, when it is older than ``segment_age_seconds``, and on
shutdown. A writer holds an exclusive ``flock`` on each open segment; a segment
whose lock is free belongs to a process that died (``kill -9``): ``recover``
cuts it back to its last complete line and seals it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import itertools
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from erp.core.errors import LakeError
from erp.core.tenants import tenant_partition, validate_tenant_id

KINDS = ("events", "rejected")
OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".ndjson"
TENANT_DIR_PREFIX = "tenant_id="


class SpoolUnavailable(LakeError):
    """The spool cannot be written (disk full, permissions, I/O error)."""


@dataclass(frozen=True)
class SpoolSettings:
    segment_bytes: int = 64 * 1024 * 1024
    """An open segment is sealed once it holds this many bytes."""
    segment_age_seconds: float = 60.0
    """An open segment is sealed once it is this old (so ``erp ingest`` sees recent events)."""
    sync: str = "group"
    """``group`` (adaptive group commit) or ``request`` (one sync per request: the slow baseline)."""
    max_queued_bytes: int = 256 * 1024 * 1024
    """Bytes waiting for the disk beyond which new appends are refused (503) instead of buffered."""

    def __post_init__(self) -> None:
        if self.sync not in ("group", "request"):
            raise ValueError(f"sync must be 'group' or 'request', not {self.sync!r}")
        if self.segment_bytes < 1 or self.segment_age_seconds <= 0:
            raise ValueError("segment_bytes and segment_age_seconds must be positive")


@dataclass
class SpoolStats:
    """Counters for /metrics."""

    syncs: int = 0
    appends: int = 0
    bytes_written: int = 0
    segments_sealed: int = 0
    write_errors: int = 0
    sync_seconds: float = 0.0


@dataclass
class _Segment:
    tenant: str
    kind: str
    path: Path
    fd: int
    created: float  # monotonic
    created_wall: float
    size: int = 0  # bytes written and synced (the acknowledged length)


@dataclass
class _Append:
    tenant: str
    parts: dict[str, bytes]  # kind -> bytes (complete lines)
    future: Future | None = None  # for threads (``submit``)
    afuture: asyncio.Future | None = None  # for coroutines (``append_async``)
    loop: asyncio.AbstractEventLoop | None = None


def _settle(done: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for fut, exc in done:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


def tenant_dir(root: Path, tenant: str) -> Path:
    """The spool folder of a tenant (the id is validated by ``tenant_partition``)."""
    return root / tenant_partition(tenant)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(exc: OSError, path: Path) -> SpoolUnavailable:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return SpoolUnavailable(f"no space left on the spool device writing {path}", path=path,
                                hint="free disk space or run `erp ingest --spool` to drain sealed segments")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SpoolUnavailable(f"permission denied writing {path}", path=path,
                                hint="make the spool folder writable by the collector's user")
    return SpoolUnavailable(f"cannot write {path}: {exc.strerror or exc}", path=path,
                            hint="check the spool disk; the collector answers 503 until it can write")


class Spool:
    """Durable append-only spool; thread-safe; one writer thread."""

    def __init__(self, root: str | Path, settings: SpoolSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or SpoolSettings()
        self.stats = SpoolStats()
        self._queue: list[_Append] = []
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._open: dict[tuple[str, str], _Segment] = {}
        self._seq = itertools.count()
        self._closing = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> list[Path]:
        """Create the spool folder, seal segments left by a dead writer, start the
        writer thread. Returns the segments recovered."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _describe(exc, self.root) from exc
        recovered = recover(self.root)
        self._thread = threading.Thread(target=self._run, name="erp-spool-writer", daemon=True)
        self._thread.start()
        return recovered

    def close(self) -> None:
        """Finish queued appends, seal every open segment, stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # --- appending ---------------------------------------------------------------

    def submit(self, tenant: str, events: bytes = b"", rejected: bytes = b"") -> Future:
        """Queue complete NDJSON lines for ``tenant``; the future resolves (None)
        once they are durable, or fails with ``SpoolUnavailable``."""
        item = _Append(tenant, self._parts(tenant, events, rejected), future=Future())
        assert item.future is not None
        if not item.parts:
            item.future.set_result(None)
            return item.future
        try:
            if not self._enqueue(item):
                item.future.set_exception(self._not_running())
        except SpoolUnavailable as exc:
            item.future.set_exception(exc)
        return item.future

    def _parts(self, tenant: str, events: bytes, rejected: bytes) -> dict[str, bytes]:
        validate_tenant_id(tenant)
        return {k: v for k, v in (("events", events), ("rejected", rejected)) if v}

    def _enqueue(self, item: _Append) -> bool:
        size = sum(len(v) for v in item.parts.values())
        with self._cond:
            if self._closing or self._thread is None:
                return False
            if self._queued_bytes and self._queued_bytes + size > self.settings.max_queued_bytes:
                raise SpoolUnavailable(
                    f"the spool disk is behind: {self._queued_bytes:,} bytes are waiting to be written",
                    path=self.root, hint="retry after a moment; if it persists the disk is too slow or failing")
            self._queued_bytes += size
            self._queue.append(item)
            self._cond.notify()
        return True

    def _not_running(self) -> SpoolUnavailable:
        return SpoolUnavailable("the spool is not running", path=self.root,
                                hint="the collector is shutting down; retry")

    def append(self, tenant: str, events: bytes = b"", rejected: bytes = b"") -> None:
        """Blocking ``submit``."""
        self.submit(tenant, events, rejected).result()

    async def append_async(self, tenant: str, events: bytes = b"", rejected: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        item = _Append(tenant, self._parts(tenant, events, rejected), afuture=loop.create_future(), loop=loop)
        if not item.parts:
            return
        if not self._enqueue(item):
            raise self._not_running()
        assert item.afuture is not None
        await item.afuture

    # --- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        tick = min(1.0, self.settings.segment_age_seconds / 4)
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    if not self._cond.wait(timeout=tick):
                        break
                batch, self._queue = self._queue, []
                self._queued_bytes = 0
                closing = self._closing
            if batch:
                try:
                    if self.settings.sync == "group":
                        self._write_group(batch)
                    else:
                        for item in batch:
                            self._write_group([item])
                except BaseException as exc:  # never leave a request waiting forever
                    self._answer([(item, exc) for item in batch])
            self._seal_due(force=closing and not batch)
            if closing and not batch:
                with self._cond:
                    if not self._queue:
                        return

    def _write_group(self, batch: list[_Append]) -> None:
        # group the bytes per segment, remembering which requests touch which segment
        by_seg: dict[tuple[str, str], list[bytes]] = {}
        users: dict[tuple[str, str], list[_Append]] = {}
        for item in batch:
            for kind, data in item.parts.items():
                key = (item.tenant, kind)
                by_seg.setdefault(key, []).append(data)
                users.setdefault(key, []).append(item)
        failed: dict[int, BaseException] = {}
        started = time.perf_counter()
        for key, chunks in by_seg.items():
            try:
                self._write_segment(key, b"".join(chunks))
            except SpoolUnavailable as exc:
                self.stats.write_errors += 1
                for item in users[key]:
                    failed[id(item)] = exc
        self.stats.sync_seconds += time.perf_counter() - started
        self.stats.appends += len(batch)
        self._answer([(item, failed.get(id(item))) for item in batch])

    @staticmethod
    def _answer(results: list[tuple[_Append, BaseException | None]]) -> None:
        """Resolve the requests: one wake-up per event loop for the whole group."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, BaseException | None]]] = {}
        for item, exc in results:
            if item.future is not None:
                if not item.future.done():
                    if exc is None:
                        item.future.set_result(None)
                    else:
                        item.future.set_exception(exc)
            elif item.afuture is not None and item.loop is not None:
                by_loop.setdefault(item.loop, []).append((item.afuture, exc))
        for loop, done in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _write_segment(self, key: tuple[str, str], data: bytes) -> None:
        seg = self._open.get(key)
        if seg is None:
            seg = self._new_segment(*key)
        try:
            view = memoryview(data)
            while view:
                n = os.write(seg.fd, view)
                view = view[n:]
            os.fdatasync(seg.fd)
        except OSError as exc:
            # cut back to the last acknowledged byte; if even that fails, retire the segment
            try:
                os.ftruncate(seg.fd, seg.size)
                os.fdatasync(seg.fd)
            except OSError:
                self._retire(seg)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                self._retire(seg)  # after an I/O error the page cache may not be trusted
            raise _describe(exc, seg.path) from exc
        seg.size += len(data)
        self.stats.syncs += 1
        self.stats.bytes_written += len(data)
        if seg.size >= self.settings.segment_bytes:
            self._seal(seg)

    def _new_segment(self, tenant: str, kind: str) -> _Segment:
        folder = tenant_dir(self.root, tenant)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"{kind}-{stamp}-{os.getpid()}-{next(self._seq):06d}{OPEN_SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _describe(exc, path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_dir(folder)
            _fsync_dir(self.root)
        except OSError as exc:
            os.close(fd)
            try:
                path.unlink()
            except OSError:
                pass
            raise _describe(exc, path) from exc
        seg = _Segment(tenant, kind, path, fd, time.monotonic(), time.time())
        self._open[(tenant, kind)] = seg
        return seg

    def _seal(self, seg: _Segment) -> None:
        """Close and rename to ``.ndjson``; an empty segment is removed."""
        self._open.pop((seg.tenant, seg.kind), None)
        try:
            os.close(seg.fd)
            if seg.size == 0:
                seg.path.unlink()
            else:
                seg.path.rename(seg.path.with_suffix(SEALED_SUFFIX))
                self.stats.segments_sealed += 1
            _fsync_dir(seg.path.parent)
        except OSError:
            pass  # left as .open: recover() seals it once no process holds its lock

    def _retire(self, seg: _Segment) -> None:
        if self._open.get((seg.tenant, seg.kind)) is seg:
            self._seal(seg)

    def _seal_due(self, *, force: bool = False) -> None:
        now = time.monotonic()
        for seg in list(self._open.values()):
            if force or now - seg.created >= self.settings.segment_age_seconds:
                self._seal(seg)

    # --- observation ---------------------------------------------------------------

    def oldest_open_age(self) -> float:
        """Seconds since the oldest unsealed segment was created (0 when none)."""
        segs = list(self._open.values())
        if not segs:
            return 0.0
        return max(0.0, time.time() - min(s.created_wall for s in segs))

    def disk_bytes(self) -> int:
        """Bytes of every segment on disk (open and sealed)."""
        return sum(size for _, size in iter_segments(self.root, sealed_only=False))


# --- reading the spool (the drain side) ------------------------------------------------

def iter_tenant_dirs(root: Path) -> list[tuple[str | None, Path]]:
    """(tenant id or None when the folder name is not a valid tenant folder, folder)."""
    out: list[tuple[str | None, Path]] = []
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        name = entry.name
        tenant = name[len(TENANT_DIR_PREFIX):] if name.startswith(TENANT_DIR_PREFIX) else None
        try:
            ok = tenant is not None and tenant_partition(tenant) == name
        except LakeError:
            ok = False
        except Exception:
            ok = False
        out.append((tenant if ok else None, entry))
    return out


def iter_segments(root: Path, *, sealed_only: bool = True) -> list[tuple[Path, int]]:
    out = []
    for tenant, folder in iter_tenant_dirs(root):
        if tenant is None:
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(SEALED_SUFFIX) or (not sealed_only and e.name.endswith(OPEN_SUFFIX)):
                try:
                    out.append((Path(e.path), e.stat().st_size))
                except OSError:
                    pass
    return out


def sealed_segments(root: Path, tenant: str, kind: str) -> list[Path]:
    folder = tenant_dir(root, tenant)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(kind + "-") and p.name.endswith(SEALED_SUFFIX))


def recover(root: Path) -> list[Path]:
    """Seal the ``.open`` segments no live process holds (left by a crash):
    drop a torn last line (never acknowledged), then rename. Returns the sealed paths."""
    sealed: list[Path] = []
    for tenant, folder in iter_tenant_dirs(root):
        if tenant is None:
            continue
        for path in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live collector is writing it
                size = os.fstat(fd).st_size
                keep = _complete_length(fd, size)
                if keep != size:
                    os.ftruncate(fd, keep)
                    os.fsync(fd)
                if keep == 0:
                    path.unlink()
                else:
                    target = path.with_suffix(SEALED_SUFFIX)
                    path.rename(target)
                    sealed.append(target)
                _fsync_dir(folder)
            except OSError as exc:
                raise _describe(exc, path) from exc
            finally:
                os.close(fd)
    return sealed


def _complete_length(fd: int, size: int) -> int:
    """Length up to and including the last newline."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl != -1:
            return start + nl + 1
        pos = start
    return 0


__all__ = ["Spool", "SpoolSettings", "SpoolStats", "SpoolUnavailable", "recover", "sealed_segments",
           "iter_tenant_dirs", "iter_segments", "tenant_dir"]
