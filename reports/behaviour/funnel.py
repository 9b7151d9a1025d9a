"""The ``funnel`` widget: ordered steps, a conversion window from step 1, re-entry,
exclusions, pending users, breakdown and trend. Rules: docs/behaviour.md.

Every step-1 event in the range starts an *attempt*. Attempts are matched with
as-of joins on the stream position (``pos``) of each user's (or session's)
events, so the greedy rule "each step takes the first qualifying event after the
previous step" is one vectorised join per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl

from erp.core.errors import ConfigError
from erp.reports.api import EventSource, Filter, Window, filter_expr, parse_filters, property_name, register

from ._common import (Selector, check_keys, choice, parse_duration, parse_int, parse_selector, parse_unit,
                      pct, period_bounds_utc, period_expr, range_periods, period_start, seconds, text_expr, utc_ts)

ORDERS = ("sequential", "strict", "any")
UNITS = ("users", "sessions", "events")
TRENDS = ("day", "week")
KEYS = ("steps", "window", "order", "unit", "exclusions", "breakdown", "trend", "filters")
DEFAULT_WINDOW = timedelta(days=14)
MAX_STEPS = 20
NONE_LABEL, OTHER_LABEL = "(none)", "(other)"
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Step:
    selector: Selector
    name: str


@dataclass(frozen=True)
class Exclusion:
    selector: Selector
    first: int  # 1-based step numbers, first < last
    last: int


@dataclass(frozen=True)
class FunnelSpec:
    steps: tuple[Step, ...]
    window: timedelta | None
    order: str = "sequential"
    unit: str = "users"
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: str | None = None
    limit: int = 10
    trend: str | None = None
    filters: tuple[Filter, ...] = ()


class Funnel:
    name = "funnel"

    def validate(self, spec: dict[str, Any], where: str) -> FunnelSpec:
        check_keys(spec, KEYS, where)
        raw_steps = spec.get("steps")
        if not isinstance(raw_steps, list) or not 2 <= len(raw_steps) <= MAX_STEPS:
            raise ConfigError(f"{where}.steps: expected a list of 2 to {MAX_STEPS} steps "
                              f"(an event type, a list of them, or {{event, filters, name}}), got {raw_steps!r}")
        steps = []
        for i, raw in enumerate(raw_steps):
            sel, name = parse_selector(raw, f"{where}.steps[{i}]", allow_any=False, name_key=True)
            steps.append(Step(sel, name or sel.label()))
        window = parse_duration(spec["window"], f"{where}.window") if "window" in spec else DEFAULT_WINDOW
        order = choice(spec, "order", ORDERS, "sequential", where)
        unit = parse_unit(spec, UNITS, where)
        if order == "any":
            seen: dict[str, int] = {}
            for i, st in enumerate(steps):
                for t in st.selector.types or ():
                    if t in seen:
                        raise ConfigError(f"{where}.steps[{i}]: with order: any, steps may not share an event "
                                          f"type ({t!r} is also in steps[{seen[t]}]); use sequential or "
                                          f"give each step its own types")
                    seen[t] = i
        exclusions = []
        raw_ex = spec.get("exclusions") or []
        if not isinstance(raw_ex, list):
            raise ConfigError(f"{where}.exclusions: expected a list of {{event, between, filters}}")
        n = len(steps)
        for i, raw in enumerate(raw_ex):
            at = f"{where}.exclusions[{i}]"
            check_keys(raw, ("event", "filters", "between"), at)
            between = raw.get("between", [1, n])
            ok = (isinstance(between, list) and len(between) == 2
                  and all(isinstance(b, int) and not isinstance(b, bool) for b in between)
                  and 1 <= between[0] < between[1] <= n)
            if not ok:
                raise ConfigError(f"{at}.between: expected [i, j] with 1 <= i < j <= {n}, got {between!r}")
            if order == "any" and between != [1, n]:
                raise ConfigError(f"{at}.between: with order: any, exclusions apply between step 1 and "
                                  f"the last step only ([1, {n}]), got {between!r}")
            sel, _ = parse_selector({k: v for k, v in raw.items() if k != "between"}, at, allow_any=False)
            exclusions.append(Exclusion(sel, between[0], between[1]))
        breakdown, limit = None, 10
        if spec.get("breakdown") is not None:
            bd = check_keys(spec["breakdown"], ("property", "limit"), f"{where}.breakdown")
            breakdown = property_name(bd.get("property"), f"{where}.breakdown.property")
            limit = parse_int(bd, "limit", 10, 1, 1000, f"{where}.breakdown")
        trend = None
        if spec.get("trend") is not None:
            trend = choice(spec, "trend", TRENDS, "day", where)
        return FunnelSpec(tuple(steps), window, order, unit, tuple(exclusions), breakdown, limit, trend,
                          parse_filters(spec.get("filters"), where))

    def compute(self, spec: FunnelSpec, source: EventSource, window: Window) -> dict[str, Any]:
        attempts = match_attempts(spec, source, window)
        keys = per_key(spec, attempts)
        n = len(spec.steps)
        out: dict[str, Any] = {
            "unit": spec.unit, "order": spec.order,
            "window_seconds": None if spec.window is None else int(spec.window.total_seconds()),
        }
        out.update(summary(spec, keys))
        out["breakdown"] = None
        if spec.breakdown is not None:
            out["breakdown"] = {"property": spec.breakdown, "limit": spec.limit,
                                "groups": breakdown_groups(spec, keys)}
        out["trend"] = None
        if spec.trend is not None:
            out["trend"] = {"period": spec.trend, "points": trend_points(spec, attempts, window)}
        assert len(out["steps"]) == n
        return out


# --- matching --------------------------------------------------------------------------

def _key_col(spec: FunnelSpec) -> str:
    return "session_id" if spec.unit == "sessions" else "user_key"


def match_attempts(spec: FunnelSpec, source: EventSource, window: Window) -> pl.DataFrame:
    """One row per non-voided attempt: ``aid`` (stream position of its step-1 event),
    ``key``, ``t1..tn`` (null past the step reached), ``r`` (steps reached), ``open``,
    ``bd`` (breakdown value at step 1)."""
    n = len(spec.steps)
    end_bound = window.end_utc - _US if spec.window is None else None
    read_end = window.end_utc if spec.window is None else window.end_utc + spec.window + _US
    lf = utc_ts(source.events(window.start_utc, read_end))
    f = filter_expr(spec.filters)
    if f is not None:
        lf = lf.filter(f)
    key = _key_col(spec)
    lf = lf.filter(pl.col(key).is_not_null())
    names = lf.collect_schema().names()
    marks = {f"m{k}": st.selector.expr() for k, st in enumerate(spec.steps, 1)}
    marks.update({f"x{i}": ex.selector.expr() for i, ex in enumerate(spec.exclusions)})
    minstep = pl.min_horizontal([pl.when(pl.col(f"m{k}")).then(pl.lit(k, pl.Int32)) for k in range(1, n + 1)])
    # Stream order: timestamp, smallest step matched, event type, event id. Types are
    # ranked among the step types (an event with minstep <= n has one of them);
    # event ids can only matter when events of one type can be told apart (property
    # filters, breakdown), so they are read only then.
    step_types = sorted({t for st in spec.steps for t in (st.selector.types or ())})
    type_rank = pl.col("event_type").replace_strict(step_types, list(range(len(step_types))),
                                                    default=len(step_types), return_dtype=pl.Int32)
    # keys as integer codes (a 1:1 mapping): cheaper to hash in the joins and group-bys
    cols = [pl.col(key).cast(pl.Categorical).to_physical().alias("key"),
            pl.col("timestamp").cast(pl.Datetime("us", "UTC"))]
    sort_by = ["timestamp", "minstep", "type_rank"]
    distinguish = spec.breakdown is not None or any(st.selector.filters for st in spec.steps) \
        or any(ex.selector.filters for ex in spec.exclusions)
    if distinguish and "event_id" in names:
        cols.append(pl.col("event_id"))
        sort_by.append("event_id")
    if spec.breakdown is not None:
        cols.append(text_expr(spec.breakdown).alias("bd"))
    ev = lf.select(*cols, type_rank=type_rank, **marks).with_columns(minstep=minstep.fill_null(n + 1))
    if spec.order != "strict":
        # only step and exclusion events matter; strict order needs every event
        ev = ev.filter(pl.any_horizontal([pl.col(c) for c in marks]))
    # ``pos`` increases along every key's stream (a global order is enough for the
    # per-key as-of joins); strict order also needs ``seq``, the place in the key's stream
    ev = ev.sort(sort_by, nulls_last=True, maintain_order=True).with_row_index("pos") \
        .with_columns(pl.col("pos").cast(pl.Int64))
    if spec.order == "strict":
        ev = ev.with_columns(seq=pl.int_range(pl.len(), dtype=pl.Int64).over("key"))
    ev = ev.collect()
    step_pos = "seq" if spec.order == "strict" else "pos"

    first = ev.filter(pl.col("m1") & (pl.col("timestamp") >= window.start_utc)
                      & (pl.col("timestamp") < window.end_utc))
    deadline = pl.lit(end_bound) if spec.window is None else pl.col("timestamp") + spec.window
    att = first.select(aid=pl.col("pos"), key=pl.col("key"), t1=pl.col("timestamp"), p1=pl.col(step_pos),
                       deadline=deadline.cast(pl.Datetime("us", "UTC")),
                       **({"bd": pl.col("bd")} if spec.breakdown is not None else {}))

    if spec.order == "any":
        att = _match_any(att, ev, n)
    else:
        att = _match_chain(att, ev, n, strict=spec.order == "strict", step_pos=step_pos)
    tcols = [f"t{k}" for k in range(1, n + 1)]
    att = att.with_columns(r=pl.sum_horizontal([pl.col(t).is_not_null().cast(pl.Int32) for t in tcols]))

    voided = pl.lit(False)
    for i, ex in enumerate(spec.exclusions):
        hit = _first_excluded_after(att, ev, i, ex)
        att = att.join(hit, on="aid", how="left")
        tj = pl.col(f"t{ex.last}")
        v = pl.col(f"xt{i}").is_not_null() & pl.when(tj.is_not_null()).then(pl.col(f"xt{i}") < tj) \
            .otherwise(pl.col(f"xt{i}") <= pl.col("deadline"))
        voided = voided | v.fill_null(False)
    att = att.filter(~voided)
    return att.with_columns(open=pl.col("deadline") >= window.now)


def _match_chain(att: pl.DataFrame, ev: pl.DataFrame, n: int, *, strict: bool, step_pos: str) -> pl.DataFrame:
    """Steps 2..n for ``sequential``/``strict``. The greedy chain from a step's event does
    not depend on the deadline (each step takes the first step event after the
    previous one; strict: the very next event), so it is built once per distinct
    step-2 event and shared by every attempt that reached it; each attempt then
    keeps the steps up to its own deadline (chain times never decrease)."""
    # a position identifies its key (``pos`` is global; ``seq`` needs the key beside it)
    on = ["key", "p2"] if strict else ["p2"]
    att = _next(att, ev, 2, "p1", strict=strict, step_pos=step_pos)
    chain = att.filter(pl.col("p2").is_not_null()).select("key", "p2").unique(subset=on)
    for k in range(3, n + 1):
        prev = f"p{k - 1}"
        at = ["key", prev] if strict else [prev]
        alive = chain.filter(pl.col(prev).is_not_null()).select("key", prev).unique(subset=at)
        step = _next(alive, ev, k, prev, strict=strict, step_pos=step_pos)
        chain = chain.join(step.drop("key") if not strict else step, on=at, how="left")
    if n > 2:
        att = att.join(chain.drop([f"p{k}" for k in range(3, n + 1)] + ([] if strict else ["key"])),
                       on=on, how="left")
    within = [(pl.col(f"t{k}") <= pl.col("deadline")).fill_null(False) for k in range(2, n + 1)]
    return att.with_columns([pl.when(ok).then(pl.col(f"t{k}")).alias(f"t{k}") for k, ok in enumerate(within, 2)])


def _next(left: pl.DataFrame, ev: pl.DataFrame, k: int, prev: str, *, strict: bool, step_pos: str) -> pl.DataFrame:
    """``p{k}``/``t{k}``: the first step-k event after position ``prev`` of the same key
    (strict: the very next event, if it is a step-k event); null when there is none."""
    cand = ev.filter(pl.col(f"m{k}")).select("key", pl.col(step_pos).alias(f"p{k}"),
                                              pl.col("timestamp").alias(f"t{k}"))
    if strict:
        return left.with_columns((pl.col(prev) + 1).alias(f"p{k}")).join(
            cand, on=["key", f"p{k}"], how="left", maintain_order="left") \
            .with_columns(pl.when(pl.col(f"t{k}").is_not_null()).then(pl.col(f"p{k}")).alias(f"p{k}"))
    return left.sort(prev).join_asof(cand.sort(f"p{k}"), left_on=prev, right_on=f"p{k}", by="key",
                                     strategy="forward", allow_exact_matches=False, check_sortedness=False)


def _match_any(att: pl.DataFrame, ev: pl.DataFrame, n: int) -> pl.DataFrame:
    """Steps 2..n in any order after the step-1 event: each takes its first event
    after it within the window; ``t_k`` becomes the time the k-th step was done."""
    base = att.sort("p1")
    found = []
    for s in range(2, n + 1):
        cand = ev.filter(pl.col(f"m{s}")).select("key", pos_s=pl.col("pos"), ts_s=pl.col("timestamp"))
        hit = base.select("aid", "key", "p1", "deadline").join_asof(
            cand.sort("pos_s"), left_on="p1", right_on="pos_s", by="key", strategy="forward",
            allow_exact_matches=False, check_sortedness=False)
        # an as-of join keeps the left rows in order: the column lines up with ``base``
        base = base.with_columns(hit.select(pl.when(pl.col("ts_s") <= pl.col("deadline"))
                                            .then(pl.col("ts_s")).alias(f"s{s}")).to_series())
        found.append(f"s{s}")
    times = pl.concat_list([pl.col("t1")] + [pl.col(c) for c in found]).list.drop_nulls().list.sort()
    base = base.with_columns(_times=times)
    base = base.with_columns([pl.col("_times").list.get(k - 1, null_on_oob=True).alias(f"t{k}")
                              for k in range(2, n + 1)])
    return base.drop(["_times", *found])


def _first_excluded_after(att: pl.DataFrame, ev: pl.DataFrame, i: int, ex: Exclusion) -> pl.DataFrame:
    """For each attempt that reached step ``ex.first``: the first excluded event strictly
    after that step's time."""
    ti = f"t{ex.first}"
    left = att.filter(pl.col(ti).is_not_null()).select("aid", "key", ti).sort(ti)
    xs = ev.filter(pl.col(f"x{i}")).select("key", pl.col("timestamp").alias(f"xt{i}")).sort(f"xt{i}")
    hit = left.join_asof(xs, left_on=ti, right_on=f"xt{i}", by="key", strategy="forward",
                         allow_exact_matches=False, check_sortedness=False)
    return hit.select("aid", f"xt{i}")


# --- counting --------------------------------------------------------------------------

def per_key(spec: FunnelSpec, att: pl.DataFrame) -> pl.DataFrame:
    """One row per counted unit: ``f`` (furthest step), ``pending``, ``dp{k}``/``df{k}``
    (seconds from the previous step / from step 1, from the first attempt reaching k),
    ``bd``."""
    n = len(spec.steps)
    secs = lambda a, b: (pl.col(a) - pl.col(b)).dt.total_microseconds() / 1e6  # noqa: E731
    timed = [secs(f"t{k}", f"t{k - 1}").alias(f"dp{k}") for k in range(2, n + 1)] + \
            [secs(f"t{k}", "t1").alias(f"df{k}") for k in range(2, n + 1)]
    if spec.unit == "events":
        out = att.sort("aid").select("aid", pl.col("r").alias("f"),
                         ((pl.col("r") < n) & pl.col("open")).alias("pending"), *timed,
                         *(["bd"] if spec.breakdown is not None else []))
        return out.rename({"aid": "key"})
    out = att.group_by("key").agg(pl.col("r").max().alias("f"), pl.col("open").any().alias("_open"))
    out = out.with_columns(pending=(pl.col("f") < n) & pl.col("_open")).drop("_open")
    # times come from the (few) attempts past step 1, earliest attempt first
    on = att.filter(pl.col("r") >= 2).sort("aid").with_columns(*timed)
    aggs = []
    for k in range(2, n + 1):
        reached = pl.col("r") >= k
        aggs.append(pl.col(f"dp{k}").filter(reached).first().alias(f"dp{k}"))
        aggs.append(pl.col(f"df{k}").filter(reached).first().alias(f"df{k}"))
    if aggs:
        out = out.join(on.group_by("key", maintain_order=True).agg(aggs), on="key", how="left")
    if spec.breakdown is not None:
        best = att.select("key", "aid", "r", "bd").join(out.select("key", "f"), on="key") \
            .filter(pl.col("r") == pl.col("f")).sort("aid").group_by("key").agg(pl.col("bd").first())
        out = out.join(best, on="key", how="left")
    return out


def step_rows(spec: FunnelSpec, keys: pl.DataFrame) -> list[dict[str, Any]]:
    n = len(spec.steps)
    exprs = []
    for k in range(1, n + 1):
        exprs.append((pl.col("f") >= k).sum().alias(f"c{k}"))
        if k > 1:
            exprs.append(((pl.col("f") == k - 1) & pl.col("pending")).sum().alias(f"pend{k}"))
            for c in (f"dp{k}", f"df{k}"):
                exprs.append(pl.col(c).filter(pl.col("f") >= k).median().alias(f"{c}_med"))
                exprs.append(pl.col(c).filter(pl.col("f") >= k).mean().alias(f"{c}_mean"))
    r = keys.select(exprs).row(0, named=True) if keys.height else {}
    rows = []
    prev = None
    first = int(r.get("c1") or 0)
    for k, st in enumerate(spec.steps, 1):
        c = int(r.get(f"c{k}") or 0)
        pend = int(r.get(f"pend{k}") or 0) if k > 1 else 0
        rows.append({
            "step": k, "name": st.name, "event_types": list(st.selector.types or ()),
            "count": c, "pct_of_first": pct(c, first),
            "pct_of_previous": pct(c, first if prev is None else prev),
            "dropped": 0 if prev is None else prev - c - pend, "pending": pend,
            "median_seconds_from_previous": seconds(r.get(f"dp{k}_med")) if k > 1 else None,
            "mean_seconds_from_previous": seconds(r.get(f"dp{k}_mean")) if k > 1 else None,
            "median_seconds_from_first": seconds(r.get(f"df{k}_med")) if k > 1 else None,
            "mean_seconds_from_first": seconds(r.get(f"df{k}_mean")) if k > 1 else None,
        })
        prev = c
    return rows


def summary(spec: FunnelSpec, keys: pl.DataFrame) -> dict[str, Any]:
    rows = step_rows(spec, keys)
    entered, completed = rows[0]["count"], rows[-1]["count"]
    return {"steps": rows, "entered": entered, "completed": completed,
            "conversion_pct": pct(completed, entered), "pending": sum(r["pending"] for r in rows)}


def breakdown_groups(spec: FunnelSpec, keys: pl.DataFrame) -> list[dict[str, Any]]:
    keys = keys.with_columns(pl.col("bd").fill_null(NONE_LABEL))
    sizes = keys.group_by("bd").len().sort(["len", "bd"], descending=[True, False])
    values = sizes["bd"].to_list()
    top, rest = values[:spec.limit], values[spec.limit:]
    groups = []
    for v in top:
        groups.append({"value": v, **summary(spec, keys.filter(pl.col("bd") == v))})
    if rest:
        groups.append({"value": OTHER_LABEL, **summary(spec, keys.filter(pl.col("bd").is_in(rest)))})
    return groups


def trend_points(spec: FunnelSpec, att: pl.DataFrame, window: Window) -> list[dict[str, Any]]:
    n = len(spec.steps)
    att = att.with_columns(period=period_expr(spec.trend, window.timezone, "t1"),
                           done=pl.col("r") == n, can=(pl.col("r") < n) & pl.col("open"))
    if spec.unit != "events":
        att = att.group_by("key", "period").agg(pl.col("done").any(), pl.col("can").any())
    per = att.group_by("period").agg(
        entered=pl.len(), completed=pl.col("done").sum(),
        pending=(~pl.col("done") & pl.col("can")).sum())
    got = {r["period"]: r for r in per.iter_rows(named=True)}
    points = []
    for p in range_periods(window, spec.trend):
        r = got.get(p, {})
        e, c = int(r.get("entered") or 0), int(r.get("completed") or 0)
        points.append({"period": period_start(spec.trend, p).isoformat(), "entered": e, "completed": c,
                       "conversion_pct": pct(c, e), "pending": int(r.get("pending") or 0),
                       "incomplete": period_bounds_utc(window, spec.trend, p)[1] > window.now})
    return points


funnel = register(Funnel())
