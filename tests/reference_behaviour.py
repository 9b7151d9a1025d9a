"""Naive pure-Python references for the behavioural widgets, written from the rules in
docs/behaviour.md (not from the engines): plain loops over event dicts, calendar
arithmetic with ``datetime``/``zoneinfo``, no Polars.

An event is a dict with ``event_id``, ``user_id``, ``anonymous_id``, ``session_id``,
``event_type``, ``timestamp`` (aware UTC datetime) and ``properties`` (JSON text).
Selectors here are ``None`` (any event) or a set of event types; the step filters the
property tests use are ``(key, value)`` pairs meaning "properties[key] == value".
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import polars as pl

from erp.core.events import EVENT_SCHEMA

UTC = timezone.utc


# --- frames for FrameSource ------------------------------------------------------------

def frame(events: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Events as a frame with every lake column (absent ones null)."""
    schema = pl.Schema(pl.from_arrow(EVENT_SCHEMA.empty_table()).schema)
    rows = list(events)
    cols = {name: [e.get(name) for e in rows] for name in schema.names()}
    return pl.DataFrame(cols, schema=schema)


def ev(user: str | None, event_type: str, ts: datetime, *, anon: str | None = None,
       session: str | None = None, props: dict[str, Any] | None = None,
       event_id: str | None = None) -> dict[str, Any]:
    return {"user_id": user, "anonymous_id": anon, "session_id": session, "event_type": event_type,
            "timestamp": ts.astimezone(UTC), "properties": json.dumps(props or {}),
            "event_id": event_id}


def run(widget: str, spec: dict[str, Any], events: list[dict[str, Any]], *, since: date, until: date,
        now: datetime, tz: str = "UTC", tenant: str = "acme") -> dict[str, Any]:
    """Validate ``spec`` and compute the widget over ``events`` with a FrameSource."""
    from erp.reports.api import FrameSource, Window, widget_types

    w = widget_types()[widget]
    parsed = w.validate(spec, "test.yaml: widgets[0]")
    return w.compute(parsed, FrameSource(tenant, frame(events)), Window(tenant, tz, since, until, now))


# --- shared helpers --------------------------------------------------------------------

def user_key(e: dict[str, Any]) -> str | None:
    return e["user_id"] if e["user_id"] is not None else e["anonymous_id"]


def prop(e: dict[str, Any], key: str) -> Any:
    return json.loads(e["properties"] or "{}").get(key)


def matches(e: dict[str, Any], types: set[str] | None, pfilter: tuple[str, Any] | None = None) -> bool:
    if types is not None and e["event_type"] not in types:
        return False
    if pfilter is not None and prop(e, pfilter[0]) != pfilter[1]:
        return False
    return True


def pct(a: float, b: float) -> float | None:
    return None if not b else round(100.0 * a / b, 2)


def local_midnight(d: date, tz: str) -> datetime:
    return datetime.combine(d, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def local_date(ts: datetime, tz: str) -> date:
    return ts.astimezone(ZoneInfo(tz)).date()


def bucket(d: date, period: str) -> date:
    """The first day of the period holding local date ``d`` (weeks start Monday)."""
    if period == "day":
        return d
    if period == "week":
        return d - timedelta(days=d.weekday())
    return d.replace(day=1)


def shift(p: date, period: str, k: int) -> date:
    """The period ``k`` periods after the one starting on ``p``."""
    if period == "day":
        return p + timedelta(days=k)
    if period == "week":
        return p + timedelta(weeks=k)
    m = p.year * 12 + p.month - 1 + k
    return date(m // 12, m % 12 + 1, 1)


def periods_of_range(since: date, until: date, period: str) -> list[date]:
    out, p = [], bucket(since, period)
    while p <= bucket(until, period):
        out.append(p)
        p = shift(p, period, 1)
    return out


# --- funnel ----------------------------------------------------------------------------

def ref_funnel(events: list[dict[str, Any]], *, steps: list[tuple[list[str], tuple[str, Any] | None]],
               window: timedelta | None, order: str = "sequential", unit: str = "users",
               exclusions: list[tuple[set[str], int, int]] = (), since: date, until: date, tz: str,
               now: datetime, breakdown: str | None = None, limit: int = 10,
               trend: str | None = None, names: list[str] | None = None) -> dict[str, Any]:
    n = len(steps)
    start, end = local_midnight(since, tz), local_midnight(until + timedelta(days=1), tz)

    def step_of(e: dict[str, Any]) -> int:
        for k, (types, pf) in enumerate(steps, 1):
            if matches(e, types, pf):
                return k
        return n + 1

    def matches_step(e: dict[str, Any], k: int) -> bool:
        return matches(e, *steps[k - 1])

    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        k = e["session_id"] if unit == "sessions" else user_key(e)
        if k is not None:
            streams[k].append(e)

    attempts = []  # dicts: key, order id, times, open, bd, t1
    for key in sorted(streams):
        s = sorted(streams[key], key=lambda e: (e["timestamp"], step_of(e), e["event_type"],
                                                e["event_id"] or ""))
        for i, e in enumerate(s):
            t1 = e["timestamp"]
            if not (matches_step(e, 1) and start <= t1 < end):
                continue
            deadline = t1 + window if window is not None else end - timedelta(microseconds=1)
            times = [t1]
            if order == "any":
                for st in range(2, n + 1):
                    for j in range(i + 1, len(s)):
                        if matches_step(s[j], st):
                            if s[j]["timestamp"] <= deadline:
                                times.append(s[j]["timestamp"])
                            break
                times.sort()
            else:
                cur = i
                for st in range(2, n + 1):
                    nxt = None
                    if order == "strict":
                        if cur + 1 < len(s) and matches_step(s[cur + 1], st):
                            nxt = cur + 1
                    else:
                        for j in range(cur + 1, len(s)):
                            if matches_step(s[j], st):
                                nxt = j
                                break
                    if nxt is None or s[nxt]["timestamp"] > deadline:
                        break
                    times.append(s[nxt]["timestamp"])
                    cur = nxt
            voided = False
            for types, a, b in exclusions:
                if len(times) < a:
                    continue
                ta = times[a - 1]
                tb = times[b - 1] if len(times) >= b else None
                for x in s:
                    if x["event_type"] in types and x["timestamp"] > ta and (
                            x["timestamp"] < tb if tb is not None else x["timestamp"] <= deadline):
                        voided = True
            if voided:
                continue
            bd = None
            if breakdown is not None:
                v = prop(e, breakdown)
                bd = None if v is None else (json.dumps(v) if not isinstance(v, str) else v)
            attempts.append({"key": key, "i": i, "times": times, "open": now <= deadline, "bd": bd,
                             "t1": t1})

    # counted units
    units: list[dict[str, Any]] = []
    if unit == "events":
        for a in attempts:
            units.append({"f": len(a["times"]), "pending": len(a["times"]) < n and a["open"],
                          "first": {k: a for k in range(1, len(a["times"]) + 1)}, "bd": a["bd"]})
    else:
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in attempts:
            by_key[a["key"]].append(a)
        for key, atts in by_key.items():
            f = max(len(a["times"]) for a in atts)
            first = {}
            for k in range(1, f + 1):
                first[k] = min((a for a in atts if len(a["times"]) >= k), key=lambda a: a["i"])
            defining = min((a for a in atts if len(a["times"]) == f), key=lambda a: a["i"])
            units.append({"f": f, "pending": f < n and any(a["open"] for a in atts), "first": first,
                          "bd": defining["bd"]})

    def summary(us: list[dict[str, Any]]) -> dict[str, Any]:
        rows = []
        prev = None
        first_count = sum(1 for u in us if u["f"] >= 1)
        for k in range(1, n + 1):
            c = sum(1 for u in us if u["f"] >= k)
            pend = sum(1 for u in us if u["f"] == k - 1 and u["pending"]) if k > 1 else 0
            dp = [(u["first"][k]["times"][k - 1] - u["first"][k]["times"][k - 2]).total_seconds()
                  for u in us if u["f"] >= k] if k > 1 else []
            df = [(u["first"][k]["times"][k - 1] - u["first"][k]["times"][0]).total_seconds()
                  for u in us if u["f"] >= k] if k > 1 else []
            med = lambda v: round(statistics.median(v), 3) if v else None  # noqa: E731
            mean = lambda v: round(statistics.fmean(v), 3) if v else None  # noqa: E731
            rows.append({"step": k, "name": names[k - 1] if names else " or ".join(steps[k - 1][0]),
                         "event_types": list(steps[k - 1][0]), "count": c,
                         "pct_of_first": pct(c, first_count),
                         "pct_of_previous": pct(c, first_count if prev is None else prev),
                         "dropped": 0 if prev is None else prev - c - pend, "pending": pend,
                         "median_seconds_from_previous": med(dp), "mean_seconds_from_previous": mean(dp),
                         "median_seconds_from_first": med(df), "mean_seconds_from_first": mean(df)})
            prev = c
        return {"steps": rows, "entered": rows[0]["count"], "completed": rows[-1]["count"],
                "conversion_pct": pct(rows[-1]["count"], rows[0]["count"]),
                "pending": sum(r["pending"] for r in rows)}

    out: dict[str, Any] = {"unit": unit, "order": order,
                           "window_seconds": None if window is None else int(window.total_seconds())}
    out.update(summary(units))
    out["breakdown"] = None
    if breakdown is not None:
        groups: dict[str, list] = defaultdict(list)
        for u in units:
            groups["(none)" if u["bd"] is None else u["bd"]].append(u)
        ranked = sorted(groups, key=lambda v: (-len(groups[v]), v))
        out_groups = [{"value": v, **summary(groups[v])} for v in ranked[:limit]]
        rest = [u for v in ranked[limit:] for u in groups[v]]
        if rest:
            out_groups.append({"value": "(other)", **summary(rest)})
        out["breakdown"] = {"property": breakdown, "limit": limit, "groups": out_groups}
    out["trend"] = None
    if trend is not None:
        points = []
        for p in periods_of_range(since, until, trend):
            p_end = local_midnight(shift(p, trend, 1), tz)
            inside = [a for a in attempts if bucket(local_date(a["t1"], tz), trend) == p]
            if unit == "events":
                groups_t = [[a] for a in inside]
            else:
                g: dict[str, list] = defaultdict(list)
                for a in inside:
                    g[a["key"]].append(a)
                groups_t = list(g.values())
            entered = len(groups_t)
            completed = sum(1 for g_ in groups_t if any(len(a["times"]) == n for a in g_))
            pending = sum(1 for g_ in groups_t if not any(len(a["times"]) == n for a in g_)
                          and any(len(a["times"]) < n and a["open"] for a in g_))
            points.append({"period": p.isoformat(), "entered": entered, "completed": completed,
                           "conversion_pct": pct(completed, entered), "pending": pending,
                           "incomplete": p_end > now})
        out["trend"] = {"period": trend, "points": points}
    return out


# --- retention and cohorts ---------------------------------------------------------------

def ref_matrix(events: list[dict[str, Any]], *, start: set[str] | None, ret: set[str] | None,
               period: str, periods: int, mode: str = "first_time", count: str = "on",
               since: date, until: date, tz: str, now: datetime,
               value: tuple[str, set[str] | None, bool] | None = None) -> dict[str, Any]:
    """Retention (and, with ``value``, the cohort widget: ``(property, selector,
    per_member)``)."""
    cohorts_p = periods_of_range(since, until, period)
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if user_key(e) is not None:
            by_user[user_key(e)].append(e)
    members: dict[date, set[str]] = {c: set() for c in cohorts_p}
    for u, es in by_user.items():
        starts = [e for e in es if matches(e, start)]
        if not starts:
            continue
        if mode == "first_time":
            c = bucket(local_date(min(e["timestamp"] for e in starts), tz), period)
            if c in members:
                members[c].add(u)
        else:
            for e in starts:
                c = bucket(local_date(e["timestamp"], tz), period)
                if c in members:
                    members[c].add(u)

    def returned(u: str, p: date) -> bool:
        return any(matches(e, ret) and bucket(local_date(e["timestamp"], tz), period) == p
                   for e in by_user[u])

    def value_sum(u: str, p: date) -> float:
        prop_name, sel, _ = value
        total = 0.0
        for e in by_user[u]:
            if matches(e, sel) and bucket(local_date(e["timestamp"], tz), period) == p:
                v = prop(e, prop_name)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total += v
        return total

    out_cohorts = []
    acc = [{"count": 0, "size": 0, "cohorts": 0, "sum": 0.0} for _ in range(periods + 1)]
    for c in cohorts_p:
        size = len(members[c])
        cells = []
        for k in range(periods + 1):
            p = shift(c, period, k)
            p_start, p_end = local_midnight(p, tz), local_midnight(shift(p, period, 1), tz)
            if k == 0:
                cnt = size
            elif count == "on":
                cnt = sum(1 for u in members[c] if returned(u, p))
            else:
                cnt = sum(1 for u in members[c]
                          if any(returned(u, shift(c, period, j)) for j in range(k, periods + 1)))
            started, complete = p_start <= now, p_end <= now
            cell: dict[str, Any] = {"period": k, "count": cnt if started else None,
                                    "pct": pct(cnt, size) if started else None}
            s = 0.0
            if value is not None:
                s = sum(value_sum(u, p) for u in members[c])
                per_member = value[2]
                v = (s / size if size else None) if per_member else s
                cell["value"] = (None if v is None else round(v, 4) + 0.0) if started else None
            cell["incomplete"] = not complete
            cells.append(cell)
            if complete and size:
                acc[k]["count"] += cnt
                acc[k]["size"] += size
                acc[k]["cohorts"] += 1
                acc[k]["sum"] += s
        out_cohorts.append({"cohort": c.isoformat(), "size": size, "cells": cells})
    average = []
    for k, a in enumerate(acc):
        row: dict[str, Any] = {"period": k, "count": a["count"], "cohort_size": a["size"],
                               "pct": pct(a["count"], a["size"]), "cohorts": a["cohorts"]}
        if value is not None:
            den = a["size"] if value[2] else a["cohorts"]
            row["value"] = round(a["sum"] / den, 4) + 0.0 if den else None
        average.append(row)
    return {"cohorts": out_cohorts, "average": average}


# --- lifecycle and stickiness ------------------------------------------------------------

def ref_lifecycle(events: list[dict[str, Any]], *, active: set[str] | None, period: str, since: date,
                  until: date, tz: str, now: datetime) -> list[dict[str, Any]]:
    act: dict[str, set[date]] = defaultdict(set)
    for e in events:
        if user_key(e) is not None and matches(e, active):
            act[user_key(e)].add(bucket(local_date(e["timestamp"], tz), period))
    points = []
    for p in periods_of_range(since, until, period):
        prev = shift(p, period, -1)
        p_start, p_end = local_midnight(p, tz), local_midnight(shift(p, period, 1), tz)
        if p_start > now:
            points.append({"period": p.isoformat(), "active": None, "new": None, "returning": None,
                           "resurrecting": None, "dormant": None, "incomplete": True})
            continue
        new = ret = res = dorm = total = 0
        for u, ps in act.items():
            first = min(ps)
            if p in ps:
                total += 1
                if first == p:
                    new += 1
                elif prev in ps:
                    ret += 1
                else:
                    res += 1
            elif prev in ps:
                dorm += 1
        points.append({"period": p.isoformat(), "active": total, "new": new, "returning": ret,
                       "resurrecting": res, "dormant": dorm, "incomplete": p_end > now})
    return points


def ref_stickiness(events: list[dict[str, Any]], *, active: set[str] | None, period: str, since: date,
                   until: date, tz: str, now: datetime) -> dict[str, Any]:
    ps = periods_of_range(since, until, period)
    start, end = local_midnight(ps[0], tz), local_midnight(shift(ps[-1], period, 1), tz)
    seen: dict[str, set[date]] = defaultdict(set)
    for e in events:
        if user_key(e) is not None and matches(e, active) and start <= e["timestamp"] < end:
            seen[user_key(e)].add(bucket(local_date(e["timestamp"], tz), period))
    users = len(seen)
    buckets = []
    for k in range(1, len(ps) + 1):
        c = sum(1 for s in seen.values() if len(s) == k)
        buckets.append({"periods": k, "count": c, "pct": pct(c, users)})
    return {"period": period, "total_periods": len(ps), "users": users, "incomplete": end > now,
            "buckets": buckets}
