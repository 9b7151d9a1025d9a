#!/usr/bin/env python3
"""Benchmark ``erp ingest`` against a bare DuckDB NDJSON -> Parquet baseline.

Both engines turn the same generated NDJSON file into Hive-partitioned, zstd
Parquet (``tenant_id=<t>/date=<YYYY-MM-DD>``), each in its own child process
and into a fresh empty folder, alternating erp / DuckDB ``--repeat`` times.
The outputs are kept until every run is done, so no run pays for deleting the
previous one's files (see the note in ``main``).
For every run it measures wall time, CPU time and peak memory:

- ``peak RSS`` is the largest sum of resident memory over the child and all
  its descendants (``erp ingest`` may start parser processes), sampled from
  /proc every ``--sample-ms``; ``tree mem`` sums only anonymous memory and
  adds the largest file-backed RSS once, so shared libraries loaded by several
  workers are not counted several times;
- ``max proc RSS`` is the largest single process, from ``os.wait4``'s
  ``ru_maxrss`` (KiB on Linux), exact but blind to the sum.

It prints a table of medians, the erp/DuckDB ratios (of the medians, and the
throughput ratio within each back-to-back pair of runs, which a machine whose
speed drifts during the benchmark disturbs least) and, last, one JSON line
with every figure. It exits 1 if ``erp ingest`` fails or its counts do not add
up (``accepted + rejected + duplicates`` must equal the input's lines).

Example::

    python benchmarks/ingest_bench.py --events 2000000 --tenants 50 --days 60 \\
        --workdir /tmp/erp-bench

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The DuckDB baseline, run as ``python -c DUCKDB_CHILD <input> <outdir> <threads> <ignore_errors>``.
# properties / metadata stay JSON text, as in the erp lake; the date partition is
# the UTC date of the timestamp.
DUCKDB_SQL = """
COPY (
    SELECT *, strftime(CAST(timestamp AS TIMESTAMP), '%Y-%m-%d') AS date
    FROM read_json({src}, format='newline_delimited', ignore_errors={ignore_errors},
                   columns={{'event_id': 'VARCHAR', 'tenant_id': 'VARCHAR',
                             'event_type': 'VARCHAR', 'timestamp': 'TIMESTAMPTZ',
                             'user_id': 'VARCHAR', 'anonymous_id': 'VARCHAR',
                             'session_id': 'VARCHAR', 'properties': 'JSON',
                             'metadata': 'JSON'}})
) TO {dst} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tenant_id, date))
"""

DUCKDB_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import duckdb
src, dst, threads, ignore_errors, sql = sys.argv[1:6]
def lit(s):
    return "'" + s.replace("'", "''") + "'"
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
if int(threads) > 0:
    con.execute(f"SET threads = {int(threads)}")
t1 = time.perf_counter()
rows = con.execute(sql.format(src=lit(src), dst=lit(dst), ignore_errors=ignore_errors)).fetchone()[0]
t2 = time.perf_counter()
print(json.dumps({"rows": rows, "seconds": round(t2 - t1, 3), "startup_seconds": round(t1 - t0, 3),
                  "threads": int(con.execute("SELECT current_setting('threads')").fetchone()[0]),
                  "duckdb": duckdb.__version__}))
"""

PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------
# Measuring a child process
# ---------------------------------------------------------------------------


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants until stopped."""

    def __init__(self, root: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self.peak_mem = 0
        self.cpu_ticks: dict[int, int] = {}  # last CPU time seen per process in the tree
        self.max_procs = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # Fields after "(comm)": state ppid ... utime(14) stime(15), 1-based.
            fields = stat[stat.rindex(b")") + 2:].split()
            pid = int(name)
            children.setdefault(int(fields[1]), []).append(pid)
            ticks[pid] = int(fields[11]) + int(fields[12])
        rss = anon = shared = procs = 0
        todo = [self.root]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, ()))
            if pid in ticks:
                self.cpu_ticks[pid] = ticks[pid]
            got = _memory(pid)
            if got is not None:
                rss += got[0]
                anon += got[1]
                shared = max(shared, got[2])
                procs += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_mem = max(self.peak_mem, anon + shared)
        self.max_procs = max(self.max_procs, procs)


def _memory(pid: int) -> tuple[int, int, int] | None:
    """(RSS, anonymous RSS, file-backed + shmem RSS) of a process in bytes, from
    /proc/<pid>/status (cheap: smaps_rollup would walk page tables, ~10 ms per
    GB, and slow the run it measures). None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        if line.startswith((b"VmRSS:", b"RssAnon:", b"RssFile:", b"RssShmem:")):
            key, value = line.split(b":", 1)
            got[key] = int(value.split()[0]) * 1024
    if b"VmRSS" not in got:
        return None  # a zombie or kernel thread
    return (got[b"VmRSS"], got.get(b"RssAnon", got[b"VmRSS"]),
            got.get(b"RssFile", 0) + got.get(b"RssShmem", 0))


@dataclass
class Run:
    engine: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float  # summed over the process tree, sampled
    peak_mem_mb: float  # sum of anonymous RSS + the largest file-backed RSS, sampled
    max_proc_rss_mb: float  # largest single process (ru_maxrss)
    processes: int
    returncode: int
    out_mb: float = 0.0
    out_files: int = 0
    report: dict = field(default_factory=dict)
    stderr_tail: str = ""


def measure(engine: str, cmd: list[str], cwd: Path, env: dict[str, str], interval: float) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        sampler = TreeRssSampler(proc.pid, interval)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    report = parse_report(stdout)
    # wait4 counts only descendants that were waited for; the sampled per-process
    # CPU times also see workers reaped by someone else (but miss the last few ms).
    sampled_cpu = sum(sampler.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")
    return Run(engine=engine, wall_s=wall, cpu_s=max(usage.ru_utime + usage.ru_stime, sampled_cpu),
               peak_rss_mb=sampler.peak_rss / 2**20, peak_mem_mb=sampler.peak_mem / 2**20,
               max_proc_rss_mb=usage.ru_maxrss / 1024,
               processes=sampler.max_procs, returncode=proc.returncode, report=report,
               stderr_tail=stderr[-4000:])


def parse_report(stdout: str) -> dict:
    """The child's JSON result: all of stdout (pretty-printed, as erp does) or,
    failing that, its last line (with chatter before it). Top-level figures only;
    per-tenant detail would swamp the final JSON line."""
    text = stdout.strip()
    for candidate in (text, text.rsplit("\n", 1)[-1]):
        try:
            report = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict):
            return {k: v for k, v in report.items() if not isinstance(v, (dict, list))}
    return {"unparsed_stdout": stdout[-2000:]}


def folder_size(path: Path) -> tuple[int, int]:
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def fail(message: str, run: Run | None = None) -> None:
    print(f"\nBENCHMARK FAILED: {message}", file=sys.stderr)
    if run is not None:
        print(f"  command exit code {run.returncode}", file=sys.stderr)
        if run.report:
            print("  stdout: " + json.dumps(run.report)[:2000], file=sys.stderr)
        if run.stderr_tail:
            print("  stderr (tail):\n" + run.stderr_tail, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------


def input_file(args: argparse.Namespace) -> tuple[Path, int, int]:
    """The generated input (made once, reused when the same arguments ask for it)."""
    try:
        from erp.core.generate import generate_events
    except ImportError as exc:
        fail(f"cannot import erp ({exc}); install it first: pip install -e <repo>")
    dirty = f"-dirty{args.dirty:g}" if args.dirty else ""
    suffix = ".ndjson.gz" if args.gzip else ".ndjson"
    path = args.workdir / (f"events-{args.events}-t{args.tenants}-d{args.days}-s{args.seed}"
                           f"{dirty}{suffix}")
    if path.exists():
        print(f"input: reusing {path}")
    else:
        print(f"input: generating {args.events:,} events into {path} ...", flush=True)
        t0 = time.perf_counter()
        result = generate_events(path, events=args.events, tenants=args.tenants, days=args.days,
                                 seed=args.seed, dirty=args.dirty)
        secs = time.perf_counter() - t0
        print(f"input: {result.events:,} events, {result.bytes / 1e6:,.0f} MB in {secs:.1f} s "
              f"({result.events / secs:,.0f} events/s)")
    if args.gzip:
        import gzip
        with gzip.open(path, "rb") as fh:
            raw_bytes, lines = 0, 0
            while block := fh.read(1 << 24):
                raw_bytes += len(block)
                lines += block.count(b"\n")
    else:
        raw_bytes, lines = path.stat().st_size, 0
        with open(path, "rb") as fh:  # also warms the page cache for both engines
            while block := fh.read(1 << 24):
                lines += block.count(b"\n")
    if lines != args.events:
        fail(f"{path} has {lines:,} lines, expected {args.events:,}; delete it and re-run")
    return path, lines, raw_bytes


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def run_erp(args, src: Path, lines: int, rep: int, env: dict[str, str]) -> Run:
    lake = args.outdir / f"erp-lake-{rep}"
    cwd = args.workdir / "cwd"  # empty: no erp.yaml is picked up from here
    cwd.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "erp.cli.main", "ingest", str(src), "--lake", str(lake), "--json"]
    if args.erp_workers:
        cmd += ["--workers", str(args.erp_workers)]
    run = measure("erp", cmd, cwd, env, args.sample_ms / 1000)
    if run.returncode != 0:
        fail("erp ingest exited non-zero", run)
    counted = {k: run.report.get(k) for k in ("accepted", "rejected", "duplicates")}
    if not all(isinstance(v, int) for v in counted.values()):
        fail(f"erp ingest --json lacks integer accepted/rejected/duplicates: {counted}", run)
    if sum(counted.values()) != lines:
        fail(f"erp ingest counts do not add up: {counted} sums to {sum(counted.values()):,}, "
             f"input has {lines:,} lines", run)
    size, files = folder_size(lake)
    run.out_mb, run.out_files = size / 1e6, files
    return run


def run_duckdb(args, src: Path, lines: int, rep: int, env: dict[str, str]) -> Run:
    out = args.outdir / f"duckdb-out-{rep}"
    ignore = "true" if args.dirty else "false"
    cmd = [sys.executable, "-c", DUCKDB_CHILD, str(src), str(out), str(args.duckdb_threads),
           ignore, DUCKDB_SQL]
    run = measure("duckdb", cmd, args.workdir, env, args.sample_ms / 1000)
    if run.returncode != 0:
        fail("the DuckDB baseline failed", run)
    rows = run.report.get("rows")
    if not args.dirty and rows != lines:
        fail(f"DuckDB wrote {rows} rows, input has {lines:,} lines", run)
    size, files = folder_size(out)
    run.out_mb, run.out_files = size / 1e6, files
    return run


def summary(runs: list[Run], lines: int, raw_bytes: int) -> dict:
    wall = statistics.median(r.wall_s for r in runs)
    return {
        "wall_s": round(wall, 3),
        "events_per_s": round(lines / wall),
        "mb_per_s": round(raw_bytes / 1e6 / wall, 1),
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 3),
        "peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in runs), 1),
        "peak_mem_mb": round(statistics.median(r.peak_mem_mb for r in runs), 1),
        "max_proc_rss_mb": round(statistics.median(r.max_proc_rss_mb for r in runs), 1),
        "processes": max(r.processes for r in runs),
        "out_mb": round(statistics.median(r.out_mb for r in runs), 1),
        "out_files": runs[-1].out_files,
    }


def print_table(medians: dict[str, dict], ratio: dict | None) -> None:
    cols = [("wall_s", "wall s", "{:.2f}"), ("events_per_s", "events/s", "{:,.0f}"),
            ("mb_per_s", "MB/s", "{:.1f}"), ("cpu_s", "CPU s", "{:.1f}"),
            ("peak_rss_mb", "peak RSS MB", "{:,.0f}"), ("peak_mem_mb", "tree mem MB", "{:,.0f}"),
            ("max_proc_rss_mb", "max proc MB", "{:,.0f}"),
            ("processes", "procs", "{}"), ("out_mb", "out MB", "{:.1f}"), ("out_files", "files", "{}")]
    rows = [["engine (median)"] + [c[1] for c in cols]]
    for engine, m in medians.items():
        rows.append([engine] + [fmt.format(m[key]) for key, _, fmt in cols])
    if ratio:
        rows.append(["erp / duckdb"] + [f"{ratio[key]:.2f}x" if key in ratio else ""
                                         for key, _, _ in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        print("  ".join(cell.rjust(w) if i else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=2_000_000, help="input lines (default 2000000)")
    p.add_argument("--tenants", type=int, default=50, help="tenants (default 50)")
    p.add_argument("--days", type=int, default=60, help="days covered (default 60)")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p.add_argument("--dirty", type=float, default=0.0,
                   help="fraction of bad lines in the input (default 0; DuckDB then skips "
                        "unparseable lines with ignore_errors)")
    p.add_argument("--gzip", action="store_true", help="use a .ndjson.gz input")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/erp-bench"),
                   help="where the input and the outputs go (default /tmp/erp-bench)")
    p.add_argument("--repeat", type=int, default=3, help="runs per engine (default 3)")
    p.add_argument("--only", choices=("both", "erp", "duckdb"), default="both",
                   help="run one engine only (default both)")
    p.add_argument("--erp-workers", type=int, default=0,
                   help="pass --workers N to erp ingest (default: erp's own setting)")
    p.add_argument("--duckdb-threads", type=int, default=0,
                   help="DuckDB threads (default 0: DuckDB's default, one per core)")
    p.add_argument("--sample-ms", type=float, default=50.0,
                   help="RSS sampling interval in ms (default 50)")
    p.add_argument("--keep", action="store_true",
                   help="keep the output folders (by default they are deleted when all runs are done)")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.events < 1:
        p.error("--repeat and --events must be at least 1")
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)

    src, lines, raw_bytes = input_file(args)
    # The children get a clean erp environment: no ERP_* settings leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    engines = {"erp": run_erp, "duckdb": run_duckdb}
    if args.only != "both":
        engines = {args.only: engines[args.only]}

    # Every run writes into a new folder and the outputs are deleted only at the
    # end: on ext4 without a journal, creating files just after thousands were
    # deleted makes the kernel scan the recently freed inodes on each create
    # (recently_deleted()), which slowed whichever engine ran next by 10-30%.
    args.outdir = args.workdir / f"runs-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    args.outdir.mkdir()
    runs: dict[str, list[Run]] = {name: [] for name in engines}
    try:
        for rep in range(args.repeat):
            order = list(engines.items())
            if rep % 2:
                order.reverse()  # alternate who goes first
            for name, fn in order:
                run = fn(args, src, lines, rep, env)
                runs[name].append(run)
                print(f"run {rep + 1}/{args.repeat} {name:6s} {run.wall_s:7.2f} s  "
                      f"{lines / run.wall_s:>11,.0f} events/s  peak RSS {run.peak_rss_mb:,.0f} MB "
                      f"(tree mem {run.peak_mem_mb:,.0f} MB)  "
                      f"CPU {run.cpu_s:.1f} s", flush=True)
    finally:
        if args.keep:
            print(f"outputs kept in {args.outdir}")
        else:
            shutil.rmtree(args.outdir, ignore_errors=True)

    medians = {name: summary(rs, lines, raw_bytes) for name, rs in runs.items()}
    ratio = None
    if len(medians) == 2:
        e, d = medians["erp"], medians["duckdb"]
        ratio = {key: round(e[key] / d[key], 3) if d[key] else None
                 for key in ("wall_s", "events_per_s", "mb_per_s", "cpu_s", "peak_rss_mb",
                             "peak_mem_mb", "max_proc_rss_mb", "out_mb")}
    print_table(medians, ratio)
    paired = None
    if ratio:
        # each repetition runs the two engines back to back, so the ratio within a
        # pair is the least exposed to a machine whose speed drifts during the run
        pairs = [d.wall_s / e.wall_s for e, d in zip(runs["erp"], runs["duckdb"])]
        paired = {"median": round(statistics.median(pairs), 3), "pairs": [round(p, 3) for p in pairs]}
        print(f"erp runs at {ratio['events_per_s']:.2f}x DuckDB's throughput with "
              f"{ratio['peak_rss_mb']:.2f}x its peak RSS ({ratio['peak_mem_mb']:.2f}x its tree memory).")
        print(f"Throughput ratio within each back-to-back pair: "
              f"{', '.join(f'{p:.2f}x' for p in pairs)} (median {paired['median']:.2f}x).\n")

    duck_version = next((r.report.get("duckdb") for r in runs.get("duckdb", [])), None)
    record = {
        "benchmark": "ingest",
        "input": {"path": str(src), "lines": lines, "bytes": raw_bytes, "events": args.events,
                  "tenants": args.tenants, "days": args.days, "seed": args.seed,
                  "dirty": args.dirty, "gzip": args.gzip},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "duckdb": duck_version},
        "repeat": args.repeat,
        "median": medians,
        "ratio_erp_over_duckdb": ratio,
        "paired_throughput_ratio": paired,
        "runs": {name: [{k: v for k, v in asdict(r).items() if k != "stderr_tail"} for r in rs]
                 for name, rs in runs.items()},
    }
    print(json.dumps(record, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
