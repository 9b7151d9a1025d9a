#!/usr/bin/env python3
"""`erp report` (a 3-widget report, largest tenant, 30 days) against hand-written DuckDB SQL.

Uses a private copy of the shared generated lake (``lake.ensure_lake()``; event
files hard-linked, never changed) with rollups built once (not timed).

The report (tenant timezone UTC, 2026-08-31 .. 2026-09-29):

- ``metric``: distinct users, with the previous 30 days (raw events);
- ``time_series``: page views per day (answered from the hourly rollup) and
  distinct users per day (raw events);
- ``table``: top 10 pages of page views with distinct users, share and "other".

Measured in the same run, alternating, ``--repeat`` times each:

- **warm**: a child process runs the work once (warm-up: imports, OS cache) and
  then times it once more. erp = load config + definitions + ``compute_report``;
  DuckDB = a new connection running the equivalent hand-written SQL (four
  queries: metric, per-day series, per-range distinct users, top pages with
  totals) over ``read_parquet('events/tenant_id=<t>/*/*.parquet', hive_partitioning=true)``
  with the same date/time bounds. (Each in its own process: DuckDB run inside a
  process that has Polars loaded was several times slower here, an unfair baseline.)
- **cold process**: ``erp report … --json`` against ``python -c`` running the same SQL.

Targets: erp warm < 1 s and within 1.5x of DuckDB.

Example: ``python benchmarks/report_bench.py --repeat 7``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lake import ensure_lake, largest_tenant  # noqa: E402

SINCE, UNTIL = "2026-08-31", "2026-09-29"
REPORT = """\
id: bench
title: Bench
range: {since: 2026-08-31, until: 2026-09-29}
widgets:
  - {id: users, type: metric, title: Users, measure: users}
  - id: daily
    type: time_series
    title: Daily
    interval: day
    series:
      - {label: Page views, filters: [{event_type: page_view}]}
      - {label: Users, measure: users}
  - {id: pages, type: table, title: Top pages, by: page_path, limit: 10, filters: [{event_type: page_view}]}
"""

SQL = r"""
import duckdb, sys
lake, tenant = sys.argv[1], sys.argv[2]
src = f"read_parquet('{lake}/events/tenant_id={tenant}/*/*.parquet', hive_partitioning=true)"
prev_lo, lo, hi = "TIMESTAMPTZ '2026-08-01 00:00:00+00'", "TIMESTAMPTZ '2026-08-31 00:00:00+00'", "TIMESTAMPTZ '2026-09-30 00:00:00+00'"
cur = f"timestamp >= {lo} AND timestamp < {hi} AND date BETWEEN DATE '2026-08-30' AND DATE '2026-09-30'"
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
out = {}
out["metric"] = con.execute(f'''SELECT count(DISTINCT coalesce(user_id, anonymous_id)) FILTER (WHERE timestamp >= {lo}),
    count(DISTINCT coalesce(user_id, anonymous_id)) FILTER (WHERE timestamp < {lo})
  FROM {src} WHERE timestamp >= {prev_lo} AND timestamp < {hi}
   AND date BETWEEN DATE '2026-07-31' AND DATE '2026-09-30' ''').fetchall()
out["series"] = con.execute(f'''SELECT CAST(timestamp AT TIME ZONE 'UTC' AS DATE) AS d,
    count(*) FILTER (WHERE event_type = 'page_view'), count(DISTINCT coalesce(user_id, anonymous_id))
  FROM {src} WHERE {cur} GROUP BY 1 ORDER BY 1''').fetchall()
out["series_total"] = con.execute(f'''SELECT count(*) FILTER (WHERE event_type = 'page_view'),
    count(DISTINCT coalesce(user_id, anonymous_id)) FROM {src} WHERE {cur}''').fetchall()
out["table"] = con.execute(f'''WITH e AS (SELECT page_path, coalesce(user_id, anonymous_id) AS u FROM {src}
    WHERE {cur} AND event_type = 'page_view'),
  g AS (SELECT page_path, count(*) AS events, count(DISTINCT u) AS users FROM e GROUP BY 1),
  top AS (SELECT * FROM g ORDER BY events DESC, users DESC, page_path NULLS LAST LIMIT 10)
  SELECT 'row', page_path, events, users FROM top
  UNION ALL SELECT 'other', NULL, count(*), count(DISTINCT u) FROM e WHERE page_path NOT IN (SELECT page_path FROM top WHERE page_path IS NOT NULL)
  UNION ALL SELECT 'total', NULL, count(*), count(DISTINCT u) FROM e''').fetchall()
if len(sys.argv) > 3:
    print(out)
"""


def erp_runner(cfg_path: str, tenant: str):
    from erp.core.config import load_config
    from erp.reports.definitions import get_report, load_reports
    from erp.reports.engine import compute_report

    now = datetime(2026, 10, 15, tzinfo=timezone.utc)

    def run():
        cfg = load_config(cfg_path)
        report = get_report(load_reports(cfg.settings.reports_dir), "bench")
        return compute_report(cfg, None, report, tenant, date.fromisoformat(SINCE), date.fromisoformat(UNTIL), now)

    return run


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/erp-bench-report"))
    a = p.parse_args()
    shared = ensure_lake()
    tenant = largest_tenant(shared)
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    lake = work / "lake"
    cfg_path = work / "erp.yaml"
    (work / "reports").mkdir(exist_ok=True)
    (work / "reports" / "bench.yaml").write_text(REPORT)
    (work / "tenants.yaml").write_text("tenants: []\n")
    cfg_path.write_text(f"lake: {lake}\ntenants_file: {work / 'tenants.yaml'}\nreports_dir: {work / 'reports'}\n")
    if not (lake / "_state/rollup/watermark.json").exists():
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(shared / "events"), str(lake / "events")], check=True)
        subprocess.run([sys.executable, "-m", "erp.cli.main", "rollup", "--config", str(cfg_path), "--json"],
                       check=True, stdout=subprocess.DEVNULL)

    erp_warm = erp_runner(str(cfg_path), tenant)

    ns: dict = {}
    code = compile(SQL, "sql", "exec")

    def duck_warm():
        sys.argv = ["x", str(lake), tenant]
        exec(code, ns)

    # the two agree (a benchmark of different answers is worthless)
    data = erp_warm()
    duck_warm()
    w = {x["widget_id"]: x["data"] for x in data["widgets"]}
    duck = ns["out"]
    assert (w["users"]["value"], w["users"]["previous"]) == duck["metric"][0], (w["users"], duck["metric"])
    assert w["daily"]["series"][0]["values"] == [r[1] for r in duck["series"]]
    assert w["daily"]["series"][1]["values"] == [r[2] for r in duck["series"]]
    assert w["pages"]["total"] == {"events": duck["table"][-1][2], "users": duck["table"][-1][3]}
    assert [r["keys"][0] for r in w["pages"]["rows"]] == [r[1] for r in duck["table"] if r[0] == "row"]

    res: dict[str, list[float]] = {"erp_warm": [], "duckdb_warm": [], "erp_cli": [], "duckdb_process": []}
    erp_child = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                 f"sys.argv = ['report_bench', '--workdir', {str(work)!r}]; import report_bench as b; "
                 f"f = b.erp_runner({str(cfg_path)!r}, {tenant!r}); f(); t = time.perf_counter(); f(); "
                 f"print(time.perf_counter() - t)")
    duck_child = ("import sys, time; sys.argv = ['x', %r, %r]; code = compile(%r, 'sql', 'exec'); "
                  "exec(code, {}); t = time.perf_counter(); exec(code, {}); print(time.perf_counter() - t)"
                  % (str(lake), tenant, SQL))

    def child(src: str) -> float:
        return float(subprocess.run([sys.executable, "-c", src], check=True, capture_output=True,
                                    text=True).stdout.split()[-1])

    cli = [sys.executable, "-m", "erp.cli.main", "report", "bench", "--tenant", tenant, "--config", str(cfg_path),
           "--since", SINCE, "--until", UNTIL, "--json", "--now", "2026-10-15T00:00:00Z"]
    for i in range(a.repeat):
        pair = [("erp_warm", erp_child), ("duckdb_warm", duck_child)]
        for name, src in (pair if i % 2 == 0 else pair[::-1]):
            res[name].append(child(src))
    for i in range(max(3, a.repeat // 2)):
        pair = [("erp_cli", lambda: subprocess.run(cli, check=True, stdout=subprocess.DEVNULL)),
                ("duckdb_process", lambda: subprocess.run([sys.executable, "-c", SQL, str(lake), tenant],
                                                          check=True, stdout=subprocess.DEVNULL))]
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):
            res[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in res.items()}
    events = sum(w["daily"]["series"][0]["values"])
    print(f"tenant {tenant}, {SINCE} .. {UNTIL}; {events:,} page views in range")
    print(f"{'run':<16}{'median s':>10}   runs")
    for k, v in res.items():
        print(f"{k:<16}{med[k]:>10.3f}   {', '.join(f'{x:.3f}' for x in v)}")
    summary = {"tenant": tenant, "erp_warm_s": round(med["erp_warm"], 3), "duckdb_warm_s": round(med["duckdb_warm"], 3),
               "warm_ratio_erp_over_duckdb": round(med["erp_warm"] / med["duckdb_warm"], 2),
               "erp_cli_s": round(med["erp_cli"], 3), "duckdb_process_s": round(med["duckdb_process"], 3),
               "target_under_1s": med["erp_warm"] < 1.0,
               "target_within_1_5x": med["erp_warm"] / med["duckdb_warm"] <= 1.5, "repeat": a.repeat}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
