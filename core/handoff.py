"""Moving chunks and results between the ingest process and its parser processes
on the same machine without pushing every byte through a pipe.

- **In**: a chunk of a plain local file is sent as a reference (path, offset,
  length and an xxh3 digest of the bytes the reader saw); the parser reads
  those bytes itself and refuses them if they differ (the file was rewritten
  in place meanwhile), so what it parses is exactly what the reader counted.
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
import shutil
from dataclasses import replace

import pyarrow as pa
import xxhash

from erp.core.events import Chunk, ChunkResult

SHM_ROOT = "/dev/shm"
_PREFIX = "erp-ingest-"


class ChunkChanged(Exception):
    """The bytes at a chunk's place in its file are not the ones the reader saw."""


def detach(chunk: Chunk, path: str) -> Chunk:
    """``chunk`` without its bytes, to be read again from ``path`` by the parser."""
    data = chunk.data
    start = chunk.end_offset - len(data)
    return replace(chunk, data=b"", ref=(path, start, len(data), xxhash.xxh3_64_intdigest(data)))


def attach(chunk: Chunk) -> Chunk:
    """The chunk with its bytes read back from the file it refers to."""
    if chunk.ref is None:
        return chunk
    path, start, length, digest = chunk.ref
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, start)
    finally:
        os.close(fd)
    if len(data) != length or xxhash.xxh3_64_intdigest(data) != digest:
        raise ChunkChanged(f"{chunk.source} changed while it was being read (bytes {start}-{start + length} "
                           "differ); run erp ingest again once it is no longer rewritten")
    return replace(chunk, data=data, ref=None)


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
