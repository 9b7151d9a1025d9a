#!/usr/bin/env python3
"""Benchmark ``erp collect``: adaptive group commit against a sync per request.

The collector runs as the real command (``erp collect``'s Typer function) in
its own process, once with ``--sync group`` (adaptive group commit: one
fdatasync covers every request that queued while the previous one ran) and
once with ``--sync request`` (one write + fdatasync per request, the baseline),
each time on a fresh spool folder on a real disk (not tmpfs: fdatasync must
cost what it costs). A separate load process (raw HTTP/1.1 keep-alive over
loopback, ``--connections`` connections) drives three workloads:

- ``rate``: single-event requests offered at ``--rate`` req/s (open loop; a
  request's latency counts from when it was *due*, so a stalled server cannot
  hide its queueing delay);
- ``single``: single-event requests as fast as the connections allow;
- ``batch``: 100-event batches as fast as the connections allow.

Every answer is a 202 only after its events were fdatasync-ed. Each workload
runs ``--repeat`` times per mode, the modes taking turns; medians are printed
with the group/request ratios, then one JSON line with every figure.

Targets (issue 3, 2 cores): p99 < 100 ms at 3,000 single-event req/s, and at
least 100,000 events/s with 100-event batches.

Example::

    python benchmarks/collect_bench.py --seconds 5 --repeat 3 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "erp_bench_key"


def _event(i: int) -> dict:
    return {"event_type": "page_view", "timestamp": "2026-11-20T10:00:00Z", "user_id": f"u{i % 5000}",
            "session_id": f"s{i % 900}", "properties": {"page_url": f"https://shop.example/p/{i % 300}?ref=x",
                                                        "referrer": "https://search.example/"},
            "metadata": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"}}


# --- the load process ----------------------------------------------------------------------

def _request(body: bytes, port: int) -> bytes:
    return (f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _load(port: int, workload: str, seconds: float, conns: int, rate: float, batch: int) -> dict:
    if workload == "batch":
        reqs = [_request(json.dumps({"events": [_event(j * batch + i) for i in range(batch)]}).encode(), port)
                for j in range(50)]
    else:
        reqs = [_request(json.dumps(_event(j)).encode(), port) for j in range(500)]
    lat: list[float] = []
    bad = 0
    start = time.perf_counter()
    end = start + seconds
    counter = iter(range(10**12))

    async def conn_loop(k: int) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        while True:
            if rate:
                i = next(counter)
                due = start + i / rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                due = time.perf_counter()
                if due >= end:
                    break
            status = await _one(reader, writer, reqs[(k + n) % len(reqs)])
            n += 1
            lat.append(time.perf_counter() - due)
            if status != 202:  # every answer must be an acknowledgement
                bad += 1
        writer.close()

    await asyncio.gather(*(conn_loop(k) for k in range(conns)))
    elapsed = time.perf_counter() - start
    return {"errors": bad, "seconds": elapsed, "lat_ms": [round(x * 1000, 3) for x in lat]}


def _summarise(parts: list[dict], workload: str, batch: int) -> dict:
    """Merge the load processes' results: counts add up, percentiles over all latencies."""
    lat = sorted(x for p in parts for x in p["lat_ms"])
    n = len(lat)
    seconds = max(p["seconds"] for p in parts)
    events = n * (batch if workload == "batch" else 1)
    return {"requests": n, "errors": sum(p["errors"] for p in parts), "seconds": seconds,
            "req_per_s": n / seconds, "events_per_s": events / seconds,
            "p50_ms": lat[n // 2] if n else float("nan"), "p99_ms": lat[min(n - 1, int(n * 0.99))] if n else float("nan")}


def load_main(argv: list[str]) -> None:
    port, workload, seconds, conns, rate, batch, out = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(_load(int(port), workload, float(seconds), int(conns), float(rate), int(batch)))
    Path(out).write_text(json.dumps(res))  # a file: the event loop may leave stdout non-blocking


# --- the driver -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project(base: Path) -> Path:
    from erp.core.tenants import hash_api_key

    base.mkdir(parents=True, exist_ok=True)
    (base / "tenants.yaml").write_text(json.dumps(
        {"tenants": [{"tenant_id": "bench", "api_keys": [{"id": "b", "hash": hash_api_key(KEY)}]}]}))
    (base / "erp.yaml").write_text(f"lake: {base / 'lake'}\nspool: {base / 'spool'}\n"
                                   f"tenants_file: {base / 'tenants.yaml'}\n")
    return base / "erp.yaml"


def _start(config: Path, sync: str) -> tuple[subprocess.Popen, int]:
    import urllib.request

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    # the `erp collect` command itself, run without the rest of the CLI
    launcher = "import typer; from erp.cli import collect; typer.run(collect.run)"
    proc = subprocess.Popen([sys.executable, "-c", launcher, "--port", str(port), "--config",
                             str(config), "--sync", sync], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("collector did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_one(workdir: Path, sync: str, workload: str, args: argparse.Namespace) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"collect-{sync}-", dir=workdir))
    config = _project(base)
    proc, port = _start(config, sync)
    try:
        rate = args.rate if workload == "rate" else 0
        cpu0 = _cpu_seconds(proc.pid)
        outs = [base / f"load-{k}.json" for k in range(args.load_procs)]
        procs = [subprocess.Popen([sys.executable, __file__, "--load", str(port), workload, str(args.seconds),
                                   str(args.connections // args.load_procs), str(rate / args.load_procs),
                                   str(args.batch), str(out)])
                 for out in outs]
        parts = []
        for lp, out in zip(procs, outs):
            if lp.wait() != 0:
                raise SystemExit(f"load process failed ({lp.returncode})")
            parts.append(json.loads(out.read_text()))
        res = _summarise(parts, workload, args.batch)
        cpu = _cpu_seconds(proc.pid) - cpu0
        res["server_cpu_us_per_request"] = cpu / max(1, res["requests"]) * 1e6
        res["server_cpu_share"] = cpu / res["seconds"]  # 1.0 = one core busy all the time
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each measured run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64, help="in total, over all load processes")
    ap.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--rate", type=float, default=3000.0, help="offered single-event req/s of the `rate` workload")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--workloads", default="rate,single,batch")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/erp-collect-bench"),
                    help="spool folders go here; must be a real disk, not tmpfs")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    workloads = args.workloads.split(",")
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeat):
        modes = ("group", "request") if rep % 2 == 0 else ("request", "group")
        for workload in workloads:
            for sync in modes:
                res = _run_one(args.workdir, sync, workload, args)
                runs.setdefault((sync, workload), []).append(res)
                print(f"  run {rep + 1} {workload:6} {sync:7} {res['req_per_s']:9,.0f} req/s "
                      f"{res['events_per_s']:10,.0f} ev/s  p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms"
                      f"  server CPU {res['server_cpu_us_per_request']:6.0f} us/req ({res['server_cpu_share']:.2f} cores)"
                      f"  errors {res['errors']}", flush=True)

    def med(sync: str, workload: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[(sync, workload)])

    print(f"\nmedians of {args.repeat} runs, {args.seconds:g} s each, {args.connections} connections from "
          f"{args.load_procs} load processes, {os.cpu_count()} cores")
    print(f"{'workload':8} {'mode':8} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10}")
    summary: dict = {"connections": args.connections, "seconds": args.seconds, "repeat": args.repeat,
                     "rate": args.rate, "batch": args.batch, "results": {}}
    for workload in workloads:
        for sync in ("group", "request"):
            row = {k: med(sync, workload, k) for k in ("req_per_s", "events_per_s", "p50_ms", "p99_ms", "errors",
                                                      "server_cpu_us_per_request", "server_cpu_share")}
            summary["results"][f"{workload}/{sync}"] = row
            print(f"{workload:8} {sync:8} {row['req_per_s']:9,.0f} {row['events_per_s']:10,.0f} "
                  f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['server_cpu_us_per_request']:10.0f}")
        g, r = summary["results"][f"{workload}/group"], summary["results"][f"{workload}/request"]
        ratio = {"throughput": g["events_per_s"] / r["events_per_s"], "p99": r["p99_ms"] / g["p99_ms"]}
        summary["results"][f"{workload}/ratio_group_over_request"] = ratio
        print(f"{workload:8} ratio    throughput x{ratio['throughput']:.2f}, p99 {ratio['p99']:.2f}x lower")
    res = summary["results"]
    if "rate" in workloads:
        p99 = res["rate/group"]["p99_ms"]
        got = res["rate/group"]["req_per_s"]
        print(f"target p99 < 100 ms at {args.rate:,.0f} req/s: p99 {p99:.1f} ms at {got:,.0f} req/s -> "
              f"{'met' if p99 < 100 and got >= 0.97 * args.rate else 'NOT met'}")
    if "batch" in workloads:
        ev = res["batch/group"]["events_per_s"]
        print(f"target >= 100,000 events/s in {args.batch}-event batches: {ev:,.0f} -> "
              f"{'met' if ev >= 100_000 else 'NOT met'}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
