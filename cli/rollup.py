"""``erp rollup``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from erp.cli._common import ConfigOpt, JsonOpt, LakeOpt, TenantOpt, command, load, out, print_json

HELP = """Compute the rollup tables (hourly counts, per-day user activity) from the lake.

Only (tenant, date) partitions whose events changed since the last run are
recomputed (late events make an old date dirty); a run with nothing new reads
no Parquet. `--full` recomputes everything; the result is the same. Tables land
in `<lake>/rollups/hourly/` and `<lake>/rollups/user_days/` (Hive-partitioned
by tenant_id and UTC date). `--since`/`--until` limit the UTC dates looked at.

Example: `erp rollup --tenant acme --since 2026-09-01`
"""

DateOpt = Optional[str]


def run(tenant: TenantOpt = None,
        since: Annotated[DateOpt, typer.Option("--since", help="First UTC date (YYYY-MM-DD).",
                                               show_default=False)] = None,
        until: Annotated[DateOpt, typer.Option("--until", help="Last UTC date (YYYY-MM-DD).",
                                               show_default=False)] = None,
        full: Annotated[bool, typer.Option("--full", help="Recompute every partition.")] = False,
        lake: LakeOpt = None, config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    _run(tenant=tenant, since=since, until=until, full=full, lake=lake, config=config, json_out=json_out)


@command
def _run(*, tenant: str | None, since: str | None, until: str | None, full: bool, lake: str | None,
         config: Path | None, json_out: bool) -> None:
    from erp.core.rollup import rollup  # polars and pyarrow load only for this command
    from erp.reports.definitions import parse_date

    cfg = load(config, lake=lake)
    d_since = parse_date(since, "--since") if since else None
    d_until = parse_date(until, "--until") if until else None
    r = rollup(cfg, tenant=tenant, since=d_since, until=d_until, full=full)
    if json_out:
        print_json({"ok": True, **r.to_dict()})
        return
    if not r.partitions_rebuilt and not r.partitions_removed:
        out.print(f"rollups up to date ({r.partitions_checked:,} partitions of {r.tenants:,} tenant(s) checked "
                  f"in {r.seconds:.2f} s)")
        return
    out.print(f"rolled up {r.partitions_rebuilt:,} of {r.partitions_checked:,} partitions "
              f"({len(r.rebuilt):,} tenant(s)){' [full]' if r.full else ''}: {r.hourly_rows:,} hourly rows, "
              f"{r.user_day_rows:,} user-day rows; removed {r.partitions_removed:,}; {r.seconds:.2f} s")
