#!/usr/bin/env python3
"""`erp build-reports` against the report engine alone, on the shared generated lake.

Both sides compute every shipped report (traffic, conversion, engagement) for every
tenant of the lake (50 x 3 on the default lake) with the same fixed ``now``:

- **engine**: ``compute_report`` + ``json.dumps`` per tenant x report (JSON only);
- **build**: what ``build_reports`` does, into an empty folder: per bundle compute +
  render + write (``Builder.bundle``), then the manifest and index (``Builder.finish``).

They are interleaved bundle by bundle (engine then build for one tenant x report,
the order flipping each time) in this one process, ``--repeat`` times; medians are printed with the rendering overhead
``(build - engine) / engine`` (target < 20%) and bundle sizes (target: a typical
bundle < 150 KB). The per-phase split that ``build_reports`` measures itself
(compute / render / write) is printed too.

Example::

    python benchmarks/build_bench.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lake import DEFAULT_WORKDIR, ensure_lake  # noqa: E402

from erp.core.config import load_config  # noqa: E402
from erp.core.lake import Lake  # noqa: E402
from erp.reports.definitions import load_reports, reports_folder  # noqa: E402
from erp.reports.engine import compute_report  # noqa: E402
from erp.reports.render.build import Builder  # noqa: E402
from erp.reports.render.bundle import Options  # noqa: E402


def engine_only(cfg, lake: Lake, pairs, now: datetime) -> int:
    total = 0
    for tenant, report in pairs:
        total += len(json.dumps(compute_report(cfg, lake, report, tenant, None, None, now)))
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tenants", type=int, default=0, help="only the first N tenants (0 = all)")
    p.add_argument("--now", default="2026-09-30T12:00:00+00:00")
    args = p.parse_args()

    lake_path = ensure_lake(args.workdir)
    cfg = load_config(args.workdir / "erp.yaml", env={}, cwd=args.workdir)
    lake = Lake(str(lake_path))
    now = datetime.fromisoformat(args.now).astimezone(timezone.utc)
    defs = load_reports(reports_folder(cfg))
    tenants = lake.tenants()
    if args.tenants:
        tenants = tenants[: args.tenants]
    pairs = [(t, defs[r]) for t in tenants for r in sorted(defs) if defs[r].applies_to(t)]
    print(f"lake {lake_path}: {len(tenants)} tenants x {len(defs)} reports = {len(pairs)} bundles, now={args.now}",
          flush=True)

    # Interleaved per bundle (engine then build for one bundle, the order flipping each
    # time), so that load from other processes on the machine hits both sides alike.
    engine_times, build_times, splits, last, sizes = [], [], [], None, []
    for i in range(args.repeat):
        out = Path(tempfile.mkdtemp(prefix="erp-build-bench-"))
        te = tb = 0.0
        t = time.perf_counter()
        builder = Builder(cfg, out / "dist", since=None, until=None, now=now, options=Options(), lake=lake)
        tb += time.perf_counter() - t
        for k, (tenant, report) in enumerate(pairs):
            for side in (("engine", "build") if (i + k) % 2 == 0 else ("build", "engine")):
                t = time.perf_counter()
                if side == "engine":
                    len(json.dumps(compute_report(cfg, lake, report, tenant, None, None, now)))
                    te += time.perf_counter() - t
                else:
                    builder.bundle(tenant, report)
                    tb += time.perf_counter() - t
        t = time.perf_counter()
        res = builder.finish()  # manifest.json and index.html
        tb += time.perf_counter() - t
        sizes = res.bundles
        engine_times.append(te)
        build_times.append(tb)
        comp, rend, wr = res.compute_seconds, res.render_seconds, res.write_seconds
        splits.append((comp, rend, wr))
        print(f"  run {i + 1}: engine {te:.2f} s, build {tb:.2f} s (compute {comp:.2f}, render {rend:.2f}, "
              f"write {wr:.2f})", flush=True)
        if last is not None:
            shutil.rmtree(last, ignore_errors=True)
        last = out

    e, b = statistics.median(engine_times), statistics.median(build_times)
    comp = statistics.median(s[0] for s in splits)
    rend = statistics.median(s[1] for s in splits)
    wr = statistics.median(s[2] for s in splits)
    print()
    print(f"engine alone (JSON)        median {e:8.2f} s")
    print(f"erp build-reports          median {b:8.2f} s")
    print(f"overhead (build-engine)/engine   {100 * (b - e) / e:6.1f} %   (target < 20%)")
    print(f"inside build: render / compute   {100 * rend / comp:6.1f} %   (render {rend:.2f} s, write {wr:.2f} s)")
    by_report: dict[str, list[tuple[int, int]]] = {}
    for s in sizes:
        by_report.setdefault(s.report_id, []).append((s.bytes, s.index_bytes))
    print()
    print(f"{'report':<12} {'median bundle':>14} {'max bundle':>11} {'median index.html':>18}")
    for r, v in sorted(by_report.items()):
        print(f"{r:<12} {statistics.median(x for x, _ in v) / 1024:11.1f} KB {max(x for x, _ in v) / 1024:8.1f} KB "
              f"{statistics.median(y for _, y in v) / 1024:15.1f} KB")
    all_b = [s.bytes for s in sizes]
    print(f"{'all':<12} {statistics.median(all_b) / 1024:11.1f} KB {max(all_b) / 1024:8.1f} KB "
          f"{statistics.median(s.index_bytes for s in sizes) / 1024:15.1f} KB   (target: typical < 150 KB)")
    print(json.dumps({"bundles": len(pairs), "engine_median_s": round(e, 3), "build_median_s": round(b, 3),
                      "overhead_pct": round(100 * (b - e) / e, 1), "render_over_compute_pct": round(100 * rend / comp, 1),
                      "median_bundle_kb": round(statistics.median(all_b) / 1024, 1),
                      "median_index_kb": round(statistics.median(s.index_bytes for s in sizes) / 1024, 1),
                      "repeat": args.repeat}))
    if last is not None:
        shutil.rmtree(last, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
