#!/usr/bin/env python3
"""Build (once) the generated lake the report benchmarks share.

``ensure_lake()`` generates ``--events`` synthetic events over ``--days`` days
and ``--tenants`` tenants with ``erp generate`` and ingests them with
``erp ingest`` into ``<workdir>/lake``; a marker file records the arguments,
so a second call with the same arguments returns at once. The lake also gets a
shipped-style ``erp.yaml`` whose ``tenants.yaml`` is empty (every tenant is
accepted) and a retention long enough for the generated dates.

Example::

    python benchmarks/lake.py --events 10000000 --workdir /tmp/erp-bench-10m

The largest tenant is ``largest_tenant(lake)``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_WORKDIR = Path("/tmp/erp-bench-10m")


def ensure_lake(workdir: Path = DEFAULT_WORKDIR, *, events: int = 10_000_000, tenants: int = 50,
                days: int = 60, seed: int = 7, start: str = "2026-08-01", quiet: bool = False) -> Path:
    """Return ``<workdir>/lake``, building it first if it is missing or was built with
    other arguments."""
    workdir.mkdir(parents=True, exist_ok=True)
    lake = workdir / "lake"
    want = {"events": events, "tenants": tenants, "days": days, "seed": seed, "start": start}
    marker = workdir / "lake.json"
    if marker.exists() and json.loads(marker.read_text()) == want and lake.exists():
        return lake
    if lake.exists():
        subprocess.run(["rm", "-rf", str(lake)], check=True)
    marker.unlink(missing_ok=True)
    src = workdir / f"events-{events}.ndjson"
    say = (lambda *_: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not src.exists():
        say(f"generating {events:,} events -> {src}")
        t = time.perf_counter()
        subprocess.run(["erp", "generate", str(src), "--events", str(events), "--tenants", str(tenants),
                        "--days", str(days), "--seed", str(seed), "--start", start, "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        say(f"  {time.perf_counter() - t:.0f} s")
    cfg = workdir / "erp.yaml"
    cfg.write_text(f"lake: {lake}\ntenants_file: {workdir / 'tenants.yaml'}\n")
    (workdir / "tenants.yaml").write_text("tenants: []\n")
    say(f"ingesting -> {lake}")
    t = time.perf_counter()
    subprocess.run(["erp", "ingest", str(src), "--config", str(cfg), "--json"], check=True,
                   stdout=subprocess.DEVNULL)
    say(f"  {time.perf_counter() - t:.0f} s")
    marker.write_text(json.dumps(want))
    return lake


def largest_tenant(lake: Path) -> str:
    """The tenant with the most event bytes in the lake."""
    sizes: dict[str, int] = {}
    for part in (lake / "events").glob("tenant_id=*/date=*/*.parquet"):
        tenant = part.parent.parent.name.split("=", 1)[1]
        sizes[tenant] = sizes.get(tenant, 0) + part.stat().st_size
    if not sizes:
        raise SystemExit(f"no events in {lake}")
    return max(sorted(sizes), key=lambda t: sizes[t])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--tenants", type=int, default=50)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    a = p.parse_args()
    lake = ensure_lake(a.workdir, events=a.events, tenants=a.tenants, days=a.days)
    print(json.dumps({"lake": str(lake), "largest_tenant": largest_tenant(lake)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
