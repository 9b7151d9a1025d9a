"""The cohort × period matrix shared by ``retention`` and ``cohort``.

Inputs are small frames of integers: ``members`` (``user_key``, ``c``: cohort
period), ``returns`` (``user_key``, ``q``: a period with a qualifying event,
distinct) and optionally ``values`` (``user_key``, ``q``, ``v``: value per event).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from erp.reports.api import EventSource, Window, filter_expr

from ._common import Selector, pct, period_bounds_utc, period_expr, period_start, rounded, utc_ts


def scan(source: EventSource, window: Window, start: datetime | None, end: datetime,
         selector: Selector, filters: tuple, period: str) -> pl.LazyFrame:
    """``user_key``, ``timestamp`` and ``q`` (local period) of the selected events."""
    lf = utc_ts(source.events(start, end))
    f = filter_expr(filters)
    cond = selector.expr() if f is None else f & selector.expr()
    return (lf.filter(cond & pl.col("user_key").is_not_null())
            .select("user_key", "timestamp", q=period_expr(period, window.timezone)))


def members_and_returns(source: EventSource, window: Window, start: Selector, ret: Selector,
                        filters: tuple, period: str, periods: list[int], n: int, *,
                        first_time: bool) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """``members`` (``user_key``, ``c``) and distinct ``returns`` (``user_key``, ``q``) from
    one pass over the events."""
    range_start = period_bounds_utc(window, period, periods[0])[0]
    range_end = period_bounds_utc(window, period, periods[-1])[1]
    horizon = period_bounds_utc(window, period, periods[-1] + n)[1]
    lf = utc_ts(source.events(None if first_time else range_start, horizon))
    f = filter_expr(filters)
    if f is not None:
        lf = lf.filter(f)
    ts = pl.col("timestamp")
    # one group-by on (user, period): the cheapest shape found for both inputs
    pairs = (lf.filter(pl.col("user_key").is_not_null())
             .with_columns(_s=start.expr() & (ts < range_end), _r=ret.expr() & (ts >= range_start))
             .filter(pl.col("_s") | pl.col("_r"))
             .group_by("user_key", period_expr(period, window.timezone).alias("q"))
             .agg(pl.when(pl.col("_s")).then(ts).min().alias("first"), pl.col("_r").any().alias("ret"))
             .collect())
    if first_time:
        first = pairs.group_by("user_key").agg(pl.col("first").min()).filter(pl.col("first").is_not_null())
        members = first.select("user_key", c=period_expr(period, window.timezone, "first"))
    else:
        members = pairs.filter(pl.col("first").is_not_null()).select("user_key", c=pl.col("q"))
    members = members.filter(pl.col("c").is_between(periods[0], periods[-1]))
    returns = pairs.filter(pl.col("ret")).select("user_key", "q")
    return members.lazy(), returns.lazy()


def matrix(window: Window, period: str, periods: list[int], n: int, members: pl.LazyFrame,
           returns: pl.LazyFrame, *, on_or_after: bool = False,
           values: pl.LazyFrame | None = None, per_member: bool = True) -> dict[str, Any]:
    # one pass over the lake for both (common subplans are scanned once)
    members, returns = (df.lazy() for df in pl.collect_all([members.unique(), returns.unique()]))
    sizes = dict(members.group_by("c").len().collect().iter_rows())
    hits = members.join(returns, on="user_key").with_columns(k=pl.col("q") - pl.col("c")) \
        .filter(pl.col("k").is_between(1, n))
    if on_or_after:
        best = hits.group_by("user_key", "c").agg(pl.col("k").max())
        counts: dict[tuple[int, int], int] = {}
        for c, kmax, cnt in best.group_by("c", "k").len().collect().iter_rows():
            for k in range(1, kmax + 1):
                counts[(c, k)] = counts.get((c, k), 0) + cnt
    else:
        counts = {(c, k): cnt for c, k, cnt in hits.group_by("c", "k").len().collect().iter_rows()}
    sums: dict[tuple[int, int], float] = {}
    if values is not None:
        vs = members.join(values, on="user_key").with_columns(k=pl.col("q") - pl.col("c")) \
            .filter(pl.col("k").is_between(0, n)).group_by("c", "k").agg(pl.col("v").sum()).collect()
        sums = {(c, k): float(v) for c, k, v in vs.iter_rows()}

    cohorts = []
    avg = [{"count": 0, "size": 0, "cohorts": 0, "sum": 0.0} for _ in range(n + 1)]
    for c in periods:
        size = int(sizes.get(c, 0))
        cells = []
        for k in range(n + 1):
            start, end = period_bounds_utc(window, period, c + k)
            started, complete = start <= window.now, end <= window.now
            count = size if k == 0 else counts.get((c, k), 0)
            cell: dict[str, Any] = {"period": k, "count": count if started else None,
                                    "pct": pct(count, size) if started else None,
                                    "incomplete": not complete}
            if values is not None:
                s = sums.get((c, k), 0.0)
                cell["value"] = (rounded(s / size if per_member else s) if size or not per_member else None) \
                    if started else None
            # keep key order stable: period, count, pct, value, incomplete
            if values is not None:
                cell = {"period": k, "count": cell["count"], "pct": cell["pct"], "value": cell["value"],
                        "incomplete": cell["incomplete"]}
            cells.append(cell)
            if complete and size:
                a = avg[k]
                a["count"] += count
                a["size"] += size
                a["cohorts"] += 1
                a["sum"] += sums.get((c, k), 0.0)
        cohorts.append({"cohort": period_start(period, c).isoformat(), "size": size, "cells": cells})
    average = []
    for k, a in enumerate(avg):
        row: dict[str, Any] = {"period": k, "count": a["count"], "cohort_size": a["size"],
                               "pct": pct(a["count"], a["size"]), "cohorts": a["cohorts"]}
        if values is not None:
            den = a["size"] if per_member else a["cohorts"]
            row["value"] = rounded(a["sum"] / den) if den else None
        average.append(row)
    return {"cohorts": cohorts, "average": average}
