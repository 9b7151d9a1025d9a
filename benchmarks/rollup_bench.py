#!/usr/bin/env python3
"""`erp rollup` (full and incremental) against hand-written DuckDB SQL.

Works on a private copy of the shared generated lake (``lake.ensure_lake()``:
10M events, 50 tenants, 60 days): event files are hard-linked (lake files are
never changed in place), ``_state`` is copied, so the shared lake is untouched.

Measured in the same run, each in a fresh process, alternating, ``--repeat`` times:

- **erp full**: ``erp rollup --full`` (hourly + user_days tables, atomic commits);
- **DuckDB full**: two ``COPY (SELECT … GROUP BY …) TO … (PARTITION_BY (tenant_id, date))``
  over ``read_parquet('events/*/*/*.parquet', hive_partitioning=true)`` computing
  the same two tables;
- **erp incremental**: after ingesting one more day (~1/60 of the events, every
  tenant) with ``erp ingest``: ``erp rollup`` (only that day's partitions are
  dirty; for repeats the day's watermark entries are dropped to make it dirty again);
- **DuckDB one day**: the same two COPYs restricted to that date.

Target: incremental at least 10x faster than full.

Example: ``python benchmarks/rollup_bench.py --repeat 3``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lake import ensure_lake  # noqa: E402

NEW_DAY = "2026-09-30"

DUCK = r"""
import duckdb, os, sys
src, out, where = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute("SET preserve_insertion_order=false")
scan = f"read_parquet('{src}/events/*/*/*.parquet', hive_partitioning=true)"
con.execute(f'''COPY (SELECT tenant_id, date, CAST(hour(timestamp AT TIME ZONE 'UTC') AS TINYINT) AS hour,
    event_type, device_type, country, count(*) AS events,
    count(DISTINCT coalesce(user_id, anonymous_id)) AS users, count(DISTINCT session_id) AS sessions
  FROM {scan} WHERE {where} GROUP BY ALL)
  TO '{out}/hourly' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tenant_id, date), OVERWRITE_OR_IGNORE)''')
con.execute(f'''COPY (SELECT tenant_id, date, coalesce(user_id, anonymous_id) AS user_key, count(*) AS events,
    count(DISTINCT session_id) AS sessions, min(timestamp) AS first_seen, max(timestamp) AS last_seen
  FROM {scan} WHERE {where} AND coalesce(user_id, anonymous_id) IS NOT NULL GROUP BY ALL)
  TO '{out}/user_days' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tenant_id, date), OVERWRITE_OR_IGNORE)''')
"""


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def private_copy(shared: Path, work: Path) -> Path:
    lake = work / "lake"
    if lake.exists():
        shutil.rmtree(lake)
    lake.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(shared / "events"), str(lake / "events")], check=True)
    subprocess.run(["cp", "-a", str(shared / "_state"), str(lake / "_state")], check=True)
    return lake


def dirty_day(lake: Path, day: str) -> None:
    wm_path = lake / "_state/rollup/watermark.json"
    wm = json.loads(wm_path.read_text())
    for entries in wm["tenants"].values():
        entries.pop(day, None)
    wm_path.write_text(json.dumps(wm))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/erp-bench-rollup"))
    a = p.parse_args()
    shared = ensure_lake()
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    lake = private_copy(shared, work)
    erp = [sys.executable, "-m", "erp.cli.main"]
    cfg = work / "erp.yaml"
    cfg.write_text(f"lake: {lake}\ntenants_file: {work / 'tenants.yaml'}\ndefaults:\n  retention_days: null\n")
    (work / "tenants.yaml").write_text("tenants: []\n")
    duck_out = work / "duck"
    res: dict[str, list[float]] = {"erp_full": [], "duckdb_full": [], "erp_incremental": [], "duckdb_day": []}
    for i in range(a.repeat):
        order = ["erp", "duck"] if i % 2 == 0 else ["duck", "erp"]
        for who in order:
            if who == "erp":
                res["erp_full"].append(timed(erp + ["rollup", "--full", "--config", str(cfg), "--json"]))
            else:
                shutil.rmtree(duck_out, ignore_errors=True)
                res["duckdb_full"].append(timed([sys.executable, "-c", DUCK, str(lake), str(duck_out), "true"]))
    # one more day for every tenant, then incremental rollups
    day_file = work / f"day-{NEW_DAY}.ndjson"
    if not day_file.exists():
        subprocess.run(erp + ["generate", str(day_file), "--events", "166667", "--tenants", "50", "--days", "1",
                              "--start", NEW_DAY, "--seed", "8"], check=True, stdout=subprocess.DEVNULL)
    t_ingest = timed(erp + ["ingest", str(day_file), "--config", str(cfg), "--json"],
                     env={**os.environ, "ERP_DEFAULTS__RETENTION_DAYS": "100000"})
    for i in range(a.repeat):
        if i:
            dirty_day(lake, NEW_DAY)
        order = ["erp", "duck"] if i % 2 == 0 else ["duck", "erp"]
        for who in order:
            if who == "erp":
                res["erp_incremental"].append(timed(erp + ["rollup", "--config", str(cfg), "--json"]))
            else:
                shutil.rmtree(duck_out, ignore_errors=True)
                res["duckdb_day"].append(timed([sys.executable, "-c", DUCK, str(lake), str(duck_out),
                                                f"date = DATE '{NEW_DAY}'"]))
    # nothing new: a no-op run
    t_noop = timed(erp + ["rollup", "--config", str(cfg), "--json"])
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"{'step':<20}{'median s':>10}   runs")
    for k, v in res.items():
        print(f"{k:<20}{med[k]:>10.2f}   {', '.join(f'{x:.2f}' for x in v)}")
    print(f"{'erp no-op run':<20}{t_noop:>10.2f}")
    print(f"{'ingest of the day':<20}{t_ingest:>10.2f}")
    summary = {
        "erp_full_s": round(med["erp_full"], 2), "duckdb_full_s": round(med["duckdb_full"], 2),
        "full_ratio_erp_over_duckdb": round(med["erp_full"] / med["duckdb_full"], 2),
        "erp_incremental_s": round(med["erp_incremental"], 2), "duckdb_day_s": round(med["duckdb_day"], 2),
        "incremental_speedup_vs_full": round(med["erp_full"] / med["erp_incremental"], 1),
        "erp_noop_s": round(t_noop, 2), "target_incremental_10x": med["erp_full"] / med["erp_incremental"] >= 10,
        "repeat": a.repeat,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
