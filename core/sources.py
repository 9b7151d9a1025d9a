"""Inputs: files, folders, globs, stdin, gzip and fsspec URLs, read as
line-aligned chunks of bounded size."""

from __future__ import annotations

import glob
import gzip
import os
import stat
import zlib
from dataclasses import dataclass
from typing import IO, Any, Iterator

import fsspec

from erp.core.errors import InputError
from erp.core.events import Chunk
from erp.core.handoff import CHECKED_BYTES, reference

#: Bytes of the stream before a position that the input ledger hashes (see ``Chunk.tail``).
TAIL_BYTES = 4096

#: File names a folder is searched for (recursively); hidden files are skipped.
INPUT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".log", ".log.gz")


@dataclass
class Source:
    """One input stream. ``key`` identifies it in the input ledger."""

    key: str
    display: str
    size: int | None = None
    mtime: float | None = None
    stream: IO[bytes] | None = None  # stdin
    storage_options: dict[str, Any] | None = None
    #: a regular local file (can be read again at any offset, e.g. by a parser process)
    regular_file: bool = False

    @property
    def compressed(self) -> bool:
        return self.key.endswith(".gz")

    @property
    def is_url(self) -> bool:
        return "://" in self.key

    @property
    def trackable(self) -> bool:
        """Whether the ledger can recognise this input next time."""
        return self.stream is None


def expand_inputs(inputs: list[str], *, stdin: IO[bytes] | None = None,
                  storage_options: dict[str, Any] | None = None) -> list[Source]:
    """Resolve command-line inputs into sources, in a stable order.

    Raises InputError for an input that matches nothing.
    """
    out: list[Source] = []
    seen: set[str] = set()

    def add(src: Source) -> None:
        if src.key not in seen:
            seen.add(src.key)
            out.append(src)

    for item in inputs:
        if item == "-":
            if stdin is None:
                raise InputError("'-' given but no standard input is available", path="-")
            add(Source(key="-", display="<stdin>", stream=stdin))
            continue
        if "://" in item:
            for src in _expand_url(item, storage_options or {}):
                add(src)
            continue
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                raise InputError(f"no files match {item!r}", path=item,
                                 hint="check the pattern; quote it so the shell does not expand it")
            for m in files:
                add(_local(m))
            continue
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.endswith(INPUT_SUFFIXES):
                        found.append(os.path.join(root, name))
            for m in found:
                add(_local(m))
            continue
        if os.path.isfile(item):
            add(_local(item))
            continue
        raise InputError(f"input not found: {item}", path=item,
                         hint="give files, folders, globs, '-' for stdin, or URLs such as s3://bucket/key")
    return out


def _local(path: str) -> Source:
    ap = os.path.abspath(path)
    try:
        st = os.stat(ap)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", path=path) from exc
    return Source(key=ap, display=path, size=st.st_size, mtime=st.st_mtime, regular_file=stat.S_ISREG(st.st_mode))


def _expand_url(url: str, storage_options: dict[str, Any]) -> list[Source]:
    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as exc:
        raise InputError(f"cannot open {url}: {exc}", path=url) from exc
    protocol = url.split("://", 1)[0]
    try:
        if any(ch in path for ch in "*?["):
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            paths = sorted(p for p in fs.find(path) if p.endswith(INPUT_SUFFIXES)
                           and not posix_basename(p).startswith("."))
        else:
            paths = [path]
        out = []
        for p in paths:
            info = fs.info(p)
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            key = f"{protocol}://{p}"
            out.append(Source(key=key, display=key, size=info.get("size"),
                              mtime=float(mtime) if mtime else None, storage_options=storage_options))
    except FileNotFoundError as exc:
        raise InputError(f"input not found: {url}", path=url) from exc
    except OSError as exc:
        raise InputError(f"cannot list {url}: {exc}", path=url) from exc
    if not out:
        raise InputError(f"no files match {url}", path=url)
    return out


def posix_basename(p: str) -> str:
    return p.rstrip("/").rsplit("/", 1)[-1]


def _open(src: Source) -> IO[bytes]:
    if src.stream is not None:
        return src.stream
    if src.is_url:
        f = fsspec.open(src.key, "rb", **(src.storage_options or {})).open()
    else:
        f = open(src.key, "rb")
    if src.compressed:
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


class SourceReadError(Exception):
    """Raised (after the readable chunks) when a source fails mid-way."""


def read_chunks(src: Source, *, chunk_bytes: int, max_line_bytes: int, start_offset: int = 0) -> Iterator[Chunk]:
    """Yield line-aligned chunks. Offsets count bytes of the (decompressed) stream.

    A line longer than the chunk size and ``max_line_bytes`` is not held in
    memory whole: its head is kept and it is reported in ``Chunk.oversized``.
    A stream that breaks off (truncated gzip) yields what it had, the last
    partial line flagged ``truncated``, then raises ``SourceReadError``.
    """
    limit = max(chunk_bytes, max_line_bytes) + 1
    keep = min(limit, 16 * 1024 * 1024)
    try:
        f = _open(src)
    except OSError as exc:
        raise SourceReadError(f"cannot open: {exc.strerror or exc}") from exc
    offset = 0
    carry = b""
    try:
        if start_offset:
            _skip(f, start_offset)
            offset = start_offset
        while True:
            block, error = _read_block(f, chunk_bytes)
            if error is not None:
                # the stream broke off: its complete lines are good, the rest is the cut line
                buf = carry + block
                cut = buf.rfind(b"\n") + 1
                if cut:
                    yield Chunk(src.display, buf[:cut], offset + cut)
                    offset += cut
                if cut < len(buf):
                    yield Chunk(src.display, buf[cut:], offset + len(buf) - cut, truncated=True)
                raise SourceReadError(_describe(error)) from error
            if not block:
                if carry:
                    yield Chunk(src.display, carry, offset + len(carry))
                return
            nl = block.rfind(b"\n")
            if nl != -1:  # the common case: one copy (carry + the block up to its last newline)
                if carry:
                    data = b"".join((carry, memoryview(block)[:nl + 1]))
                else:
                    data = block if nl == len(block) - 1 else block[:nl + 1]
                carry = block[nl + 1:]
                offset += len(data)
                yield Chunk(src.display, data, offset)
                continue
            buf = carry + block if carry else block
            cut = buf.rfind(b"\n")
            if cut == -1:
                if len(buf) <= limit:
                    carry = buf
                    continue
                # an oversized line: keep its head, skip to its end
                head = buf[:keep]
                total = len(buf)
                tail = buf[-TAIL_BYTES:]
                while True:
                    nxt, error = _read_block(f, chunk_bytes)
                    if error is not None:
                        offset += total + len(nxt)
                        yield Chunk(src.display, b"", offset, oversized=[(1, head, total + len(nxt))],
                                    tail=(tail + nxt)[-TAIL_BYTES:])
                        raise SourceReadError(_describe(error)) from error
                    if not nxt:
                        rest, newline = b"", 0
                        break
                    nl = nxt.find(b"\n")
                    if nl != -1:
                        total += nl
                        rest, newline = nxt[nl + 1:], 1
                        tail = (tail + nxt[:nl + 1])[-TAIL_BYTES:]
                        break
                    total += len(nxt)
                    tail = (tail + nxt)[-TAIL_BYTES:]
                # the line's length excludes its newline (as for lines read whole); the offset includes it
                offset += total + newline
                yield Chunk(src.display, b"", offset, oversized=[(1, head, total)], tail=tail)
                carry = rest
                continue
            data = buf[:cut + 1]
            carry = buf[cut + 1:]
            offset += len(data)
            yield Chunk(src.display, data, offset)
    finally:
        if src.stream is None:
            f.close()


#: How many bytes the scanner reads at a time, backwards from a chunk's end, to find its last newline.
SCAN_WINDOW = 64 * 1024


def scan_chunks(src: Source, *, chunk_bytes: int, max_line_bytes: int,
                start_offset: int = 0) -> Iterator[Chunk]:
    """The chunks ``read_chunks`` would give for a regular local file, without
    reading them: only the bytes just before each chunk's end are read, to
    cut it at its last newline, and the chunk goes out as a reference that a
    parser process reads itself (``erp.core.handoff``). The file is read up
    to its size when the scan starts. A chunk without any newline (a line
    longer than a chunk) hands the rest of the file to ``read_chunks``."""
    try:
        fd = os.open(src.key, os.O_RDONLY)
    except OSError as exc:
        raise SourceReadError(f"cannot open: {exc.strerror or exc}") from exc
    offset = start_offset
    try:
        st = os.fstat(fd)
        size = st.st_size
        if offset > size:
            raise SourceReadError(f"input is shorter than the {offset} bytes already ingested")
        while offset < size:
            end = min(offset + chunk_bytes, size)
            cut, before = _last_newline(fd, offset, end)
            if cut == -1:
                if end < size:
                    break  # a line longer than a chunk: read_chunks keeps its head only
                yield Chunk(src.display, _pread_exact(fd, size - offset, offset), size)
                return
            need = min(cut, max(TAIL_BYTES, CHECKED_BYTES))  # the ledger's tail and the parser's check
            if len(before) < need:
                before = _pread_exact(fd, need, cut - need)
            yield Chunk(src.display, b"", cut, tail=before[-TAIL_BYTES:],
                        ref=reference(src.key, offset, cut - offset, st.st_ino, before))
            offset = cut
            if end == size and cut < size:  # a last line without its newline
                yield Chunk(src.display, _pread_exact(fd, size - cut, cut), size)
                return
        else:
            return
    finally:
        os.close(fd)
    yield from read_chunks(src, chunk_bytes=chunk_bytes, max_line_bytes=max_line_bytes, start_offset=offset)


def _last_newline(fd: int, start: int, end: int) -> tuple[int, bytes]:
    """The offset just after the last newline in ``[start, end)`` (-1 if none),
    and the bytes read from there back (at least what the last read gave)."""
    hi = end
    while hi > start:
        lo = max(start, hi - SCAN_WINDOW)
        block = _pread_exact(fd, hi - lo, lo)
        nl = block.rfind(b"\n")
        if nl != -1:
            return lo + nl + 1, block[:nl + 1]
        hi = lo
    return -1, b""


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise SourceReadError(f"the file became shorter while it was being read (at byte {offset + len(data)})")
    return data


def _read_block(f: IO[bytes], n: int) -> tuple[bytes, BaseException | None]:
    """Read up to ``n`` bytes; return them and the error that ended the stream, if any.

    A gzip stream is read in pieces (``read1``): ``GzipFile.read(n)`` raises on a
    truncated stream and drops everything it decompressed in that call."""
    if not isinstance(f, gzip.GzipFile):
        try:
            return f.read(n), None
        except (EOFError, zlib.error, OSError) as exc:
            return b"", exc
    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            piece = f.read1(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        return b"".join(parts), exc
    return b"".join(parts), None


def _skip(f: IO[bytes], n: int) -> None:
    if hasattr(f, "seekable") and f.seekable() and not isinstance(f, gzip.GzipFile):
        f.seek(n)
        return
    left = n
    while left:
        got = f.read(min(left, 8 * 1024 * 1024))
        if not got:
            raise SourceReadError(f"input is shorter than the {n} bytes already ingested")
        left -= len(got)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream is truncated (it ended before its end marker)"
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return f"not a valid gzip stream: {exc}"
    return f"read error: {exc}"
