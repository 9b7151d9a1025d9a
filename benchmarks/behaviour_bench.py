#!/usr/bin/env python3
"""Behavioural widgets on the shared 10M-event lake, against hand-written DuckDB SQL.

For the largest tenant over every day of the lake (up to 90):

- **funnel**: page_view → signup → add_to_cart → purchase, 7-day window,
  sequential, distinct users, computed by the ``funnel`` widget through the
  engine's ``LakeSource``; timed against one DuckDB SQL statement that does the
  same greedy, re-entrant matching with ``ASOF JOIN``s over the same Parquet
  files. The per-step counts of both must be equal or the script fails.
- **retention**: a 12-week first-time retention matrix (any event → any event).

Both engines run in this process, alternating, ``--repeat`` times; medians are
printed with the ratio and the targets (each < 2 s; funnel ≤ 1.5× the SQL). The
last line is JSON.

Example::

    python benchmarks/behaviour_bench.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb  # noqa: E402

from lake import ensure_lake, largest_tenant  # noqa: E402

STEPS = ("page_view", "signup", "add_to_cart", "purchase")
WINDOW_DAYS = 7


def lake_days(lake: Path, tenant: str) -> tuple[date, date]:
    days = sorted(p.name.split("=", 1)[1] for p in (lake / "events" / f"tenant_id={tenant}").glob("date=*"))
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    return max(first, last - timedelta(days=89)), last


def source_for(lake: Path, tenant: str):
    try:
        from erp.core.lake import Lake
        from erp.reports.source import LakeSource

        return LakeSource(Lake(str(lake)), tenant), "LakeSource"
    except ImportError:  # the engine's source is not there yet: a minimal tenant-scoped scan
        import polars as pl

        from erp.core.tenants import tenant_partition
        from erp.reports.api import with_user_key

        class _Scan:
            tenant_id = tenant

            def events(self, start_utc, end_utc, columns=None):
                lf = pl.scan_parquet(str(Path(lake) / "events" / tenant_partition(tenant) / "*" / "*.parquet"),
                                     hive_partitioning=False)
                if start_utc is not None:
                    lf = lf.filter(pl.col("timestamp") >= start_utc)
                if end_utc is not None:
                    lf = lf.filter(pl.col("timestamp") < end_utc)
                return with_user_key(lf)

        return _Scan(), "polars scan"


def funnel_sql(files: str, start: datetime, end: datetime, steps: tuple[str, ...] = STEPS) -> str:
    """The same funnel by hand: stream order, every page_view in range starts an attempt,
    each step takes the first matching event after the previous one within 7 days, a
    user counts at the furthest step of any attempt."""
    step = "CASE event_type " + " ".join(f"WHEN '{t}' THEN {i}" for i, t in enumerate(steps, 1)) + " END"
    types = ", ".join(f"'{t}'" for t in steps)
    w = f"INTERVAL {WINDOW_DAYS} DAY"
    s, e = f"TIMESTAMPTZ '{start.isoformat()}'", f"TIMESTAMPTZ '{end.isoformat()}'"
    parts = [f"""
WITH ev AS (
  SELECT coalesce(user_id, anonymous_id) AS k, "timestamp" AS ts, event_type, event_id, {step} AS step
  FROM read_parquet({files})
  WHERE event_type IN ({types}) AND "timestamp" >= {s} AND "timestamp" <= {e} + {w}
    AND coalesce(user_id, anonymous_id) IS NOT NULL),
seq AS (SELECT k, ts, step, row_number() OVER (ORDER BY k, ts, step, event_type, event_id) AS pos FROM ev),
a1 AS (SELECT k, pos AS p1, ts AS t1 FROM seq WHERE step = 1 AND ts < {e})"""]
    for i in range(2, len(steps) + 1):
        parts.append(f""",
c{i} AS (SELECT k, pos, ts FROM seq WHERE step = {i}),
a{i} AS (SELECT a.*, CASE WHEN c.ts <= a.t1 + {w} THEN c.pos END AS p{i}
        FROM a{i - 1} a ASOF LEFT JOIN c{i} c ON a.k = c.k AND c.pos > a.p{i - 1})""")
    n = len(steps)
    reached = " + ".join(f"(p{i} IS NOT NULL)::INT" for i in range(2, n + 1))
    parts.append(f""",
u AS (SELECT k, max(1 + {reached}) AS f FROM a{n} GROUP BY k)
SELECT {", ".join(f"count(*) FILTER (WHERE f >= {i})" for i in range(1, n + 1))} FROM u""")
    return "".join(parts)


CPU: dict[str, list[float]] = {"funnel": [], "sql": [], "retention": []}


def timed(fn, name):
    """Wall seconds (and, in ``CPU``, process CPU seconds: every thread of this process,
    DuckDB's included) of one call."""
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    CPU[name].append(time.process_time() - c)
    return time.perf_counter() - t, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/erp-bench-10m"))
    p.add_argument("--steps", default=",".join(STEPS), help="funnel steps, comma-separated")
    args = p.parse_args()
    steps = tuple(args.steps.split(","))

    from erp.reports.api import Window, widget_types

    lake = ensure_lake(args.workdir)
    tenant = largest_tenant(lake)
    since, until = lake_days(lake, tenant)
    now = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    window = Window(tenant, "UTC", since, until, now)
    source, how = source_for(lake, tenant)
    widgets = widget_types()
    funnel = widgets["funnel"].validate({"steps": list(steps), "window": f"{WINDOW_DAYS}d"}, "bench")
    retention = widgets["retention"].validate({"period": "week", "periods": 12}, "bench")
    files = f"'{lake}/events/tenant_id={tenant}/*/*.parquet'"
    sql = funnel_sql(files, window.start_utc, window.end_utc, steps)
    con = duckdb.connect()
    print(f"tenant {tenant}, {since} .. {until} ({(until - since).days + 1} days), erp reads via {how}",
          file=sys.stderr)

    t_f, t_s, t_r = [], [], []
    erp_counts = sql_counts = None
    for i in range(args.repeat):
        order = [0, 1] if i % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                dt, data = timed(lambda: widgets["funnel"].compute(funnel, source, window), "funnel")
                t_f.append(dt)
                erp_counts = [s["count"] for s in data["steps"]]
            else:
                dt, row = timed(lambda: con.sql(sql).fetchall()[0], "sql")
                t_s.append(dt)
                sql_counts = list(row)
        dt, _ = timed(lambda: widgets["retention"].compute(retention, source, window), "retention")
        t_r.append(dt)
        if erp_counts != sql_counts:
            print(f"MISMATCH: erp {erp_counts} != sql {sql_counts}", file=sys.stderr)
            return 1

    med = {k: statistics.median(v) for k, v in (("funnel", t_f), ("sql", t_s), ("retention", t_r))}
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    ratio = med["funnel"] / med["sql"]
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"{'measure':<34}{'wall s':>9}{'cpu s':>9}   (median of {args.repeat}; load average {load})")
    for key, label in (("funnel", f"funnel (erp, {len(steps)} steps, 7d)"), ("sql", "funnel (DuckDB SQL, ASOF)"),
                       ("retention", "retention (erp, 12 weeks)")):
        print(f"{label:<34}{med[key]:>9.3f}{cpu[key]:>9.3f}")
    print(f"funnel / SQL = {ratio:.2f}x (target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"each < 2 s: {'met' if max(med['funnel'], med['retention']) < 2 else 'NOT met'}; "
          f"step counts equal: {erp_counts}")
    print(json.dumps({"tenant": tenant, "since": since.isoformat(), "until": until.isoformat(),
                      "repeat": args.repeat, "steps": list(steps), "funnel_s": round(med["funnel"], 3), "sql_s": round(med["sql"], 3),
                      "retention_s": round(med["retention"], 3), "ratio": round(ratio, 2),
                      "cpu_s": {k: round(v, 3) for k, v in cpu.items()}, "load": float(load),
                      "counts": erp_counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
