"""The lake: every path, and every write.

Layout (plain Hive-partitioned Parquet that DuckDB, Polars, Spark or Athena
read without erp)::

    <root>/events/tenant_id=<t>/date=<YYYY-MM-DD>/part-<commit>-<n>.parquet
    <root>/_rejected/tenant_id=<t>/date=<ingest date>/<commit>.ndjson
    <root>/rollups/<table>/tenant_id=<t>/date=<YYYY-MM-DD>/...
    <root>/_state/...                  ledgers, dedup index, commit intents
    <root>/_staging/<commit>/...       files being written (never read)

Writes are atomic from a reader's view. A commit stages every file under
``_staging/<commit>/``, then writes its intent (``_state/commits/<commit>.json``,
itself atomically), then moves each file into place and deletes the intent.
A crash before the intent leaves only staging garbage (removed by the next
run, whose ledger has not advanced, so it redoes the work); a crash after it is
rolled forward by the next run. Either way nothing is half-visible, lost or
doubled.
"""

from __future__ import annotations

import errno
import io
import json
import os
import posixpath
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from erp.core.errors import LakeError
from erp.core.tenants import is_valid_tenant_id, tenant_partition

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

#: The staging tree shared by ordinary commits on local lakes (see ``Commit.staging``).
SHARED_STAGING = "_staging/live"

PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=True,
                       write_statistics=True)


def new_batch_id() -> str:
    """A unique id that sorts in commit order: ``20261124T200501123456Z-3f9a1c2b``.

    Always the wall clock (never an injected ingest time): ledger files are
    replayed in the order of these ids."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(4)


@dataclass
class StagedFile:
    relpath: str  # final path relative to the lake root
    nbytes: int


@dataclass
class Commit:
    """Files staged for one atomic commit."""

    lake: "Lake"
    commit_id: str
    files: list[StagedFile] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    #: stage under ``_staging/<commit>/`` (whole folders swapped in by compaction,
    #: and object stores) rather than the shared tree ``_staging/live/``
    private: bool = False
    _marked: bool = field(default=False, init=False, repr=False)

    @property
    def staging(self) -> str:
        """The staging root, relative to the lake. On local disks ordinary commits
        share one flat folder that is kept between commits
        (``events/tenant_id=a/date=d/part-x.parquet`` is staged as
        ``_staging/live/events~tenant_id=a~date=d~part-x.parquet``) and files are
        renamed out of it: staging makes and deletes no folders. (Thousands of
        folders made and deleted per commit were slow, and on ext4 without a
        journal every deleted inode slows the next creations.) File names carry
        the commit id, so commits never collide there."""
        if self.private or not self.lake.is_local:
            return posixpath.join("_staging", self.commit_id)
        return SHARED_STAGING

    def _staged(self, relpath: str) -> str:
        if not self._marked and self.staging == SHARED_STAGING:
            # a marker that this commit has staged files: if it never commits, the
            # next run's recovery clears the shared tree
            marker = self.lake.state("commits", f"{self.commit_id}.staging")
            with self.lake.writing(marker):
                os.makedirs(os.path.dirname(marker), exist_ok=True)
                with open(marker, "wb"):
                    pass
            self._marked = True
        return self.lake.staged_path(self.staging, relpath)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        path = self._staged(relpath)
        with self.lake.writing(path):
            self.lake.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            with self.lake.fs.open(path, "wb") as f:
                f.write(data)
        self.files.append(StagedFile(relpath, len(data)))

    def write_parquet(self, relpath: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, **PARQUET_OPTIONS)
        self.write_bytes(relpath, buf.getvalue())

    def write_partitioned(self, df: "pl.DataFrame", rel_root: str, keys: list[str],
                          options: dict[str, Any] | None = None) -> list[str]:
        """Write ``df`` as Hive partitions under ``rel_root`` (key columns go to
        the path, not the files), one file per partition named
        ``part-<commit>-0.parquet``, rows in their order within a partition.
        Returns the relative paths staged. ``options`` are pyarrow
        ``write_table`` options (default ``PARQUET_OPTIONS``)."""
        if df.height == 0:
            return []
        sorted_df = df.sort(keys, maintain_order=True)
        parts = split_runs(sorted_df.select(keys), sorted_df.drop(keys).to_arrow())
        return self.write_partitions(rel_root, [(hive_path(keys, row), part) for row, part in parts], options)

    def write_partitions(self, rel_root: str, parts: list[tuple[str, "pa.Table | memoryview"]],
                         options: dict[str, Any] | None = None) -> list[str]:
        """Write each ``(partition path, table)`` as ``<rel_root>/<path>/part-<commit>-0.parquet``;
        instead of a table, a part may be the file's bytes, already encoded
        (``erp.core.pqwrite``).

        Tables are written by pyarrow on a few threads (its writer releases the
        GIL): a commit often writes hundreds of small files, where the cost per
        file, not per row, dominates."""
        import shutil
        import tempfile

        if not parts:
            return []
        opts = PARQUET_OPTIONS if options is None else options
        local = None if self.lake.is_local else tempfile.mkdtemp()
        name = f"part-{self.commit_id}-0.parquet"
        jobs = [(posixpath.join(rel_root, seg, name), tbl) for seg, tbl in parts]
        targets = [self._staged(rel) if local is None else os.path.join(local, rel) for rel, _ in jobs]
        try:
            with self.lake.writing(self.lake.path(rel_root) if local is None else local):
                for folder in sorted({os.path.dirname(t) for t in targets}):
                    os.makedirs(folder, exist_ok=True)

                def write(job: tuple[str, pa.Table]) -> int:
                    buf = pa.BufferOutputStream()  # one write() per file, not one per page
                    pq.write_table(job[1], buf, **opts)
                    data = buf.getvalue()
                    with open(job[0], "wb") as f:
                        f.write(data)
                    return data.size

                def write_bytes(target: str, data: memoryview) -> int:
                    with open(target, "wb") as f:
                        f.write(data)
                    return len(data)

                if all(isinstance(tbl, pa.Table) for _, tbl in jobs):
                    sizes = list(_writer_pool().map(write, [(t, tbl) for t, (_, tbl) in zip(targets, jobs)]))
                else:
                    sizes = [write((target, data)) if isinstance(data, pa.Table) else write_bytes(target, data)
                             for target, (_, data) in zip(targets, jobs)]
                if local is not None:
                    self.lake.fs.put(os.path.join(local, rel_root), self._staged(rel_root), recursive=True)
        finally:
            if local is not None:
                shutil.rmtree(local, ignore_errors=True)
        for (rel, _), size in zip(jobs, sizes):
            self.files.append(StagedFile(rel, size))
        return [rel for rel, _ in jobs]

    def delete_on_commit(self, relpath: str) -> None:
        self.deletes.append(relpath)


_POOL: "ThreadPoolExecutor | None" = None


def _writer_pool() -> "ThreadPoolExecutor":
    """Threads that write Parquet files (shared; pyarrow releases the GIL)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="erp-parquet")
    return _POOL


def _hive_segment(key: str, value: Any) -> str:
    """``key=value`` for a partition folder; only validated tenant ids and dates
    may become path segments."""
    if key == "tenant_id":
        return tenant_partition(value)
    if isinstance(value, date):
        return f"{key}={value.isoformat()}"
    raise ValueError(f"cannot partition by {key}={value!r}: only tenant_id and dates make folders")


def hive_path(keys: list[str], values: tuple) -> str:
    """``tenant_id=<t>/date=<d>`` for one partition's key values."""
    return "/".join(_hive_segment(k, v) for k, v in zip(keys, values))


def split_runs(keys: "pl.DataFrame", table: pa.Table) -> list[tuple[tuple, pa.Table]]:
    """For rows sorted by ``keys``: each run of equal keys as (its key values, its
    slice of ``table``, which holds the same rows in the same order)."""
    bounds = keys.with_row_index("_i").unique(subset=keys.columns, keep="first", maintain_order=True)
    starts = bounds.get_column("_i").to_list()
    ends = starts[1:] + [keys.height]
    return [(values, table.slice(a, b - a))
            for values, a, b in zip(bounds.drop("_i").iter_rows(), starts, ends)]


def _exchange(a: str, b: str) -> None:
    """Atomically exchange two paths (Linux renameat2 with RENAME_EXCHANGE)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", a)
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")


def _os_errno(exc: BaseException) -> int | None:
    """The errno inside an error that is not an OSError but wraps one: Polars'
    Rust writer reports e.g. ``ComputeError: ... No space left on device (os error 28)``."""
    m = _OS_ERROR_RE.search(str(exc))
    return int(m.group(1)) if m else None


class Lake:
    """A lake root on any fsspec filesystem (local folder by default)."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = root
        try:
            self.fs, self.root = fsspec.core.url_to_fs(root, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise LakeError(f"cannot open lake {root!r}: {exc}", path=root,
                            hint="use a folder or a URL such as s3://bucket/prefix") from exc
        self.root = self.root.rstrip("/") or "/"
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                   else (self.fs.protocol,))
        if self.is_local:
            self.root = os.path.abspath(self.root)

    # --- paths (tenant segments only through tenant_partition) ---------------------

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def events_dir(self, tenant: str | None = None, day: date | str | None = None) -> str:
        parts = ["events"]
        if tenant is not None:
            parts.append(tenant_partition(tenant))
            if day is not None:
                parts.append(f"date={day}")
        return self.path(*parts)

    @staticmethod
    def events_rel(tenant: str, day: date | str, name: str) -> str:
        return posixpath.join("events", tenant_partition(tenant), f"date={day}", name)

    @staticmethod
    def rejected_rel(tenant_bucket: str, day: date | str, name: str) -> str:
        return posixpath.join("_rejected", tenant_partition(tenant_bucket), f"date={day}", name)

    def state(self, *parts: str) -> str:
        return self.path("_state", *parts)

    # --- writes ----------------------------------------------------------------------

    @contextmanager
    def writing(self, path: str) -> Iterator[None]:
        """Turn storage errors into a LakeError that says what to do."""
        try:
            yield
        except LakeError:
            raise
        except Exception as exc:
            code = exc.errno if isinstance(exc, OSError) else _os_errno(exc)
            if code is None and not isinstance(exc, OSError):
                raise
            if code == errno.ENOSPC:
                raise LakeError(f"no space left on the device while writing {path}", path=path,
                                hint="free some disk space and run the same command again; "
                                     "nothing was committed from the interrupted step") from exc
            if code in (errno.EACCES, errno.EPERM, errno.EROFS):
                what = "the file system is read-only" if code == errno.EROFS else "permission denied"
                raise LakeError(f"{what} writing {path}", path=path,
                                hint="check that the lake folder is writable by this user") from exc
            raise LakeError(f"cannot write {path}: {exc}", path=path) from exc

    def staged_path(self, staging: str, relpath: str) -> str:
        """Where a file of ``relpath`` is staged under ``staging`` (flat in the shared tree)."""
        if staging == SHARED_STAGING:
            if "~" in relpath:
                raise ValueError(f"cannot stage {relpath!r}: '~' is reserved in the shared staging tree")
            return self.path(staging, relpath.replace("/", "~"))
        return self.path(staging, relpath)

    def begin(self, commit_id: str, *, private: bool = False) -> Commit:
        """A new commit. ``private`` stages it in a folder of its own (needed to
        swap whole folders in, see ``swap_folders``)."""
        return Commit(self, commit_id, private=private)

    def commit(self, c: Commit, state_files: dict[str, bytes] | None = None) -> None:
        """Make every staged file visible, atomically per file, all-or-nothing per run.

        ``state_files`` are small files (ledger, index) staged with the commit.
        """
        for rel, data in (state_files or {}).items():
            c.write_bytes(rel, data)
        intent = {"commit": c.commit_id, "files": [f.relpath for f in c.files], "deletes": c.deletes,
                  "staging": c.staging}
        self.durable_barrier()
        self.write_atomic(self.state("commits", f"{c.commit_id}.json"),
                          json.dumps(intent).encode())
        self.durable_barrier()
        self._roll_forward(intent)

    def write_atomic(self, path: str, data: bytes) -> None:
        with self.writing(path):
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            if self.is_local:
                tmp = f"{path}.tmp-{os.getpid()}"
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            else:  # an object PUT is atomic
                with self.fs.open(path, "wb") as f:
                    f.write(data)

    def _roll_forward(self, intent: dict[str, Any]) -> None:
        cid = intent["commit"]
        staging = intent.get("staging") or posixpath.join("_staging", cid)
        if self.is_local:
            self._roll_forward_local(cid, staging, intent["files"])
        for rel in ([] if self.is_local else intent["files"]):
            src, dst = self.staged_path(staging, rel), self.path(rel)
            with self.writing(dst):
                if self.fs.exists(src):
                    self.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
                    if self.is_local:
                        os.replace(src, dst)
                    else:
                        self.fs.mv(src, dst)
                elif not self.fs.exists(dst):
                    raise LakeError(f"commit {cid}: staged file {rel} is missing", path=src,
                                    hint="the staging folder was changed by hand; restore it or "
                                         "delete the commit intent and re-run with the input")
        for rel in intent.get("deletes", []):
            p = self.path(rel)
            if self.fs.exists(p):
                self.fs.rm(p)
        self.durable_barrier()
        self.fs.rm(self.state("commits", f"{cid}.json"))
        if staging == SHARED_STAGING:
            marker = self.state("commits", f"{cid}.staging")
            if os.path.exists(marker):
                os.remove(marker)
        else:
            self._rm_tree(self.path(staging))

    def _roll_forward_local(self, cid: str, staging: str, files: list[str]) -> None:
        """The local-disk move: plain renames (a commit moves thousands of small
        files; fsspec's per-file exists/makedirs calls cost more than the renames)."""
        made: set[str] = set()
        for rel in files:
            src, dst = self.staged_path(staging, rel), self.path(rel)
            with self.writing(dst):
                parent = os.path.dirname(dst)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                try:
                    os.replace(src, dst)
                except FileNotFoundError:
                    if not os.path.exists(dst):
                        raise LakeError(f"commit {cid}: staged file {rel} is missing", path=src,
                                        hint="the staging folder was changed by hand; restore it or "
                                             "delete the commit intent and re-run with the input") from None

    def _rm_tree(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    # --- whole-folder swaps (compaction) -----------------------------------------------

    def can_swap_folders(self) -> bool:
        """Whether folders can be exchanged atomically here (a local file system
        with renameat2's RENAME_EXCHANGE: Linux ext4, xfs, btrfs, tmpfs...)."""
        if not self.is_local:
            return False
        if getattr(self, "_can_swap", None) is None:
            probe = self.path("_staging", f"probe-{secrets.token_hex(4)}")
            a, b = os.path.join(probe, "a"), os.path.join(probe, "b")
            with self.writing(probe):
                os.makedirs(a)
                os.makedirs(b)
            try:
                _exchange(a, b)
                self._can_swap = True
            except OSError:
                self._can_swap = False
            finally:
                self._rm_tree(probe)
        return self._can_swap

    def swap_folders(self, swaps: list[tuple[Commit, str, list[str]]]) -> None:
        """Replace each live folder ``rel_dir`` by the one staged under its commit,
        each in one atomic step for readers: a reader listing a folder sees either
        every old file or every new one, never a mix. ``keep`` names live files
        that stay (hard-linked into the new generation). The old generations end
        up in staging and are removed; a crash at any point leaves one complete
        generation of every folder in place and only staging garbage (removed by
        the next run). Needs ``can_swap_folders()``."""
        for staged, rel_dir, keep in swaps:
            new, live = staged._staged(rel_dir), self.path(rel_dir)
            with self.writing(new):
                os.makedirs(new, exist_ok=True)
                for name in keep:
                    os.link(os.path.join(live, name), os.path.join(new, name))
        self.durable_barrier()  # the new generations are on disk before any is visible
        for staged, rel_dir, _keep in swaps:
            with self.writing(self.path(rel_dir)):
                _exchange(staged._staged(rel_dir), self.path(rel_dir))
        self.durable_barrier()
        for staged, _rel_dir, _keep in swaps:
            self._rm_tree(self.path("_staging", staged.commit_id))

    def durable_barrier(self) -> None:
        """Flush what was written so far to stable storage (local disks only;
        an object store's PUT is durable when it returns)."""
        if self.is_local:
            os.sync()

    def recover(self) -> list[str]:
        """Finish interrupted commits and drop abandoned staging. Returns the
        ids of the commits rolled forward."""
        done: list[str] = []
        cdir = self.state("commits")
        if self.fs.exists(cdir):
            for p in sorted(self.fs.ls(cdir, detail=False)):
                if not p.endswith(".json"):
                    continue
                with self.fs.open(p, "rb") as f:
                    try:
                        intent = json.loads(f.read())
                    except ValueError as exc:  # written atomically, so only damaged from outside
                        raise LakeError(f"the commit intent {p} is damaged: {exc}", path=p,
                                        hint="restore it from a backup; its staged files are in "
                                             "_staging/ under the same commit id") from exc
                self._roll_forward(intent)
                done.append(intent["commit"])
        # staged files of commits that never wrote their intent: drop them. The
        # shared tree is cleared only then (its folders are otherwise kept for reuse).
        shared = self.path(SHARED_STAGING)
        abandoned = [p for p in (self.fs.ls(cdir, detail=False) if self.fs.exists(cdir) else [])
                     if p.endswith(".staging")]
        sdir = self.path("_staging")
        if self.fs.exists(sdir):
            for p in self.fs.ls(sdir, detail=False):
                if p.rstrip("/") != shared or abandoned:
                    self._rm_tree(p)
        for p in abandoned:
            self.fs.rm(p)
        return done

    @contextmanager
    def lock(self, name: str = "ingest") -> Iterator[None]:
        """One writer at a time (an advisory file lock on local lakes; on object
        stores run one writer per lake, e.g. one cron entry)."""
        if not self.is_local:
            yield
            return
        import fcntl

        path = self.state(f"{name}.lock")
        with self.writing(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + 0.5
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LakeError(f"another erp {name} is running on this lake", path=path,
                                        hint="wait for it to finish; cron entries should not overlap "
                                             "(use flock(1) or a longer interval)") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    # --- reads -------------------------------------------------------------------------

    def list_files(self, path: str, suffix: str = "") -> list[str]:
        if not self.fs.exists(path):
            return []
        return sorted(p for p in self.fs.find(path) if p.endswith(suffix))

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as f:
            return f.read()

    def tenants(self) -> list[str]:
        """Tenants with an events folder, sorted (valid ids only: nothing else there is a tenant)."""
        base = self.events_dir()
        if not self.fs.exists(base):
            return []
        names = (posixpath.basename(p.rstrip("/")) for p in self.fs.ls(base, detail=False))
        return sorted(t for n in names if n.startswith("tenant_id=")
                      and is_valid_tenant_id(t := n[len("tenant_id="):]))

    def event_partitions(self, tenant: str | None = None) -> list[tuple[str, str]]:
        """(tenant, date) for every events partition present."""
        out: list[tuple[str, str]] = []
        for t in [tenant] if tenant else self.tenants():
            tdir = self.events_dir(t)
            if not self.fs.exists(tdir):
                continue
            for p in sorted(self.fs.ls(tdir, detail=False)):
                if "date=" in p:
                    out.append((t, p.rsplit("date=", 1)[1]))
        return out
