"""The ``lifecycle`` widget: per period, new / returning / resurrecting / dormant users.
Rules: docs/behaviour.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from erp.reports.api import EventSource, Filter, Window, parse_filters, register

from ._common import PERIODS, Selector, check_keys, choice, parse_selector, parse_unit, period_bounds_utc, \
    period_start, range_periods
from ._matrix import scan

KEYS = ("period", "event", "unit", "filters")


@dataclass(frozen=True)
class LifecycleSpec:
    active: Selector
    period: str = "week"
    filters: tuple[Filter, ...] = ()


class Lifecycle:
    name = "lifecycle"

    def validate(self, spec: dict[str, Any], where: str) -> LifecycleSpec:
        check_keys(spec, KEYS, where)
        parse_unit(spec, ("users",), where)
        active, _ = parse_selector(spec.get("event", "any"), f"{where}.event")
        return LifecycleSpec(active, choice(spec, "period", PERIODS, "week", where),
                             parse_filters(spec.get("filters"), where))

    def compute(self, spec: LifecycleSpec, source: EventSource, window: Window) -> dict[str, Any]:
        periods = range_periods(window, spec.period)
        first_p, last_p = periods[0], periods[-1]
        end = period_bounds_utc(window, spec.period, last_p)[1]
        # one pass: every (user, period) with activity over all history before the end
        pairs = scan(source, window, None, end, spec.active, spec.filters, spec.period) \
            .select("user_key", "q").unique().collect()
        first = pairs.group_by("user_key").agg(f=pl.col("q").min())
        act = pairs.filter(pl.col("q") >= first_p - 1)
        prev = act.select("user_key", q=pl.col("q") + 1, was=pl.lit(True))
        cur = act.filter(pl.col("q") >= first_p).join(prev, on=["user_key", "q"], how="left") \
            .join(first, on="user_key", how="left") \
            .with_columns(was=pl.col("was").fill_null(False))
        stats = cur.group_by("q").agg(
            active=pl.len(),
            new=(pl.col("f") == pl.col("q")).sum(),
            returning=((pl.col("f") < pl.col("q")) & pl.col("was")).sum(),
            resurrecting=((pl.col("f") < pl.col("q")) & ~pl.col("was")).sum(),
            kept=pl.col("was").sum())
        got = {r["q"]: r for r in stats.iter_rows(named=True)}
        sizes = dict(act.group_by("q").len().iter_rows())
        points = []
        for p in periods:
            r = got.get(p, {})
            dormant = int(sizes.get(p - 1, 0)) - int(r.get("kept") or 0)
            start, stop = period_bounds_utc(window, spec.period, p)
            if start > window.now:  # not started: nothing to say yet
                points.append({"period": period_start(spec.period, p).isoformat(), "active": None,
                               "new": None, "returning": None, "resurrecting": None, "dormant": None,
                               "incomplete": True})
                continue
            points.append({"period": period_start(spec.period, p).isoformat(),
                           "active": int(r.get("active") or 0), "new": int(r.get("new") or 0),
                           "returning": int(r.get("returning") or 0),
                           "resurrecting": int(r.get("resurrecting") or 0), "dormant": dormant,
                           "incomplete": stop > window.now})
        return {"period": spec.period, "points": points}


lifecycle = register(Lifecycle())
