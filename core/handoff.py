"""Moving chunks and results between the ingest process and its parser processes
on the same machine without pushing every byte through a pipe.

- **In**: a chunk of a plain local file is sent as a reference (path, offset,
  length, the file's inode and an xxh3 digest of the chunk's last bytes — up
  to 4 KiB ending in the newline the reader cut at). The reader only reads
  around each chunk's end to find that newline; the parser reads the chunk
  itself and refuses it if the file was replaced, is shorter now, or its end
  differs (rewritten in place meanwhile), so chunks still meet at line ends
  and the input ledger's hash of the bytes before its offset still holds.
- **Out**: a parser writes its Arrow table as an IPC file into a folder in
  shared memory (``/dev/shm``); the ingest process memory-maps it and unlinks
  it, so the table is not pickled, piped and copied again. Where shared memory
  is missing or full, the table goes back through the pipe as before.

The results folder is named after the ingest process; folders of processes
that no longer run (killed runs) are removed by the next run.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import threading
import time
from dataclasses import replace

import pyarrow as pa
import xxhash

from erp.core.events import Chunk, ChunkRef, ChunkResult

SHM_ROOT = "/dev/shm"
_PREFIX = "erp-ingest-"


class ChunkChanged(Exception):
    """The bytes at a chunk's place in its file are not the ones the reader saw."""


#: How many bytes at a chunk's end its reference checks.
CHECKED_BYTES = 4096


def reference(path: str, start: int, length: int, inode: int, last_bytes: bytes) -> ChunkRef:
    """A reference to ``length`` bytes of ``path`` at ``start`` whose end the reader
    saw as ``last_bytes`` (at least the chunk's last ``CHECKED_BYTES``, or all of it)."""
    checked = last_bytes[-min(length, CHECKED_BYTES):]
    return ChunkRef(path, start, length, inode, xxhash.xxh3_64_intdigest(checked))


def detach(chunk: Chunk, path: str) -> Chunk:
    """``chunk`` without its bytes, to be read again from ``path`` by the parser."""
    data = chunk.data
    start = chunk.end_offset - len(data)
    return replace(chunk, data=b"", ref=reference(path, start, len(data), os.stat(path).st_ino, data))


def attach(chunk: Chunk) -> Chunk:
    """The chunk with its bytes read back from the file it refers to."""
    ref = chunk.ref
    if ref is None:
        return chunk
    fd = os.open(ref.path, os.O_RDONLY)
    try:
        inode = os.fstat(fd).st_ino
        data = os.pread(fd, ref.length, ref.start)
    finally:
        os.close(fd)
    checked = data[-min(ref.length, CHECKED_BYTES):]
    if inode != ref.inode or len(data) != ref.length or xxhash.xxh3_64_intdigest(checked) != ref.end_digest:
        end = ref.start + ref.length
        raise ChunkChanged(f"{chunk.source} changed while it was being read (bytes {ref.start}-{end} "
                           "differ); run erp ingest again once it is no longer rewritten")
    return replace(chunk, data=data, ref=None)


def exit_with(pid: int) -> None:
    """End this process as soon as process ``pid`` ends.

    A parser process waits on a queue whose pipe it holds both ends of, so it
    never sees the ingest process die; after ``kill -9`` of ``erp ingest`` the
    parsers (and the fork server, which waits for them) would stay forever.
    A daemon thread waits on a pidfd of the ingest process (polls once a second
    where pidfds are missing) and exits the process."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while _alive(pid):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="erp-exit-with-ingest", daemon=True).start()


def results_dir() -> str | None:
    """A fresh folder in shared memory for this process's parser results (None if
    there is no usable shared memory); stale folders of dead runs are removed."""
    if not os.path.isdir(SHM_ROOT) or not os.access(SHM_ROOT, os.W_OK):
        return None
    _sweep()
    path = os.path.join(SHM_ROOT, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.mkdir(path, 0o700)
    except OSError:
        return None
    return path


def _sweep() -> None:
    try:
        names = os.listdir(SHM_ROOT)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(SHM_ROOT, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_results_dir(path: str | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def put_table(result: ChunkResult, folder: str | None) -> ChunkResult:
    """Move ``result.table`` into an IPC file in ``folder`` (kept in the result if
    that fails, e.g. shared memory is full)."""
    table = result.table
    if folder is None or table is None:
        return result
    path = os.path.join(folder, f"{os.getpid()}-{secrets.token_hex(8)}.arrow")
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except (OSError, pa.ArrowException):
        try:
            os.unlink(path)
        except OSError:
            pass
        return result
    return replace(result, table=None, table_file=path)


def take_table(result: ChunkResult) -> ChunkResult:
    """The result with its table mapped back from its IPC file (then unlinked: the
    mapping keeps the memory until the table is dropped)."""
    if result.table_file is None:
        return result
    path = result.table_file
    try:
        with pa.memory_map(path) as source:
            table = pa.ipc.open_file(source).read_all()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return replace(result, table=table, table_file=None)
