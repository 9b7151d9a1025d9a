"""Each widget type against a naive pure-Python reference written from the rules in
docs/reports.md, on random small event logs (hypothesis), in UTC, New York (across
the fall-back change) and Kolkata (a half-hour offset)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp.reports.api import FrameSource, Window, widget_types
from tests.report_data import frame

BASE = datetime(2026, 10, 29, tzinfo=timezone.utc)
SPAN = 7 * 86400
TZS = ["UTC", "America/New_York", "Asia/Kolkata"]
TYPES = ["page_view", "click", "purchase"]

event_st = st.fixed_dictionaries({
    "offset": st.integers(0, SPAN - 1),
    "event_type": st.sampled_from(TYPES),
    "user_id": st.sampled_from([None, "u1", "u2", "u3"]),
    "anonymous_id": st.sampled_from([None, "a1", "a2"]),
    "session_id": st.sampled_from([None, "s1", "s2", "s3", "s4"]),
    "device_type": st.sampled_from([None, "mobile", "desktop"]),
    "plan": st.sampled_from([None, "free", "pro"]),
    "n": st.sampled_from([None, 1, 2.5, 4]),
})
filters_st = st.sampled_from([
    [], [{"event_type": "page_view"}], [{"event_type": ["click", "purchase"]}],
    [{"property": "plan", "op": "eq", "value": "pro"}], [{"property": "plan", "op": "is_not_set"}],
    [{"property": "n", "op": "gt", "value": 1}], [{"property": "device_type", "op": "neq", "value": "mobile"}],
])
measure_st = st.sampled_from([{"measure": "events"}, {"measure": "users"}, {"measure": "sessions"},
                              {"measure": "sum", "property": "n"}, {"measure": "avg", "property": "n"}])
window_st = st.tuples(st.sampled_from(TZS), st.integers(0, 5), st.integers(0, 2), st.integers(0, 9 * 24))


def build(evs):
    rows = []
    for e in evs:
        props = {k: e[k] for k in ("plan", "n") if e[k] is not None}
        rows.append(dict(event_type=e["event_type"], timestamp=BASE + timedelta(seconds=e["offset"]),
                         user_id=e["user_id"], anonymous_id=e["anonymous_id"], session_id=e["session_id"],
                         device_type=e["device_type"], properties=json.dumps(props)))
    return rows


def make_window(w):
    tz, start, length, now_h = w
    since = date(2026, 10, 29) + timedelta(days=start)
    return Window("t", tz, since, since + timedelta(days=length), BASE + timedelta(hours=now_h))


# --- the reference -------------------------------------------------------------------

def prop(r, name):
    if name in r and name != "properties":
        return r[name]
    v = json.loads(r["properties"]).get(name)
    return v


def text(v):
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def keep(r, filters):
    for f in filters:
        if "event_type" in f:
            types = [f["event_type"]] if isinstance(f["event_type"], str) else f["event_type"]
            if r["event_type"] not in types:
                return False
            continue
        v = prop(r, f["property"])
        op = f["op"]
        if op == "eq" and text(v) != text(f["value"]):
            return False
        if op == "neq" and text(v) == text(f["value"]):
            return False
        if op == "is_not_set" and v is not None:
            return False
        if op == "gt" and not (isinstance(v, (int, float)) and v > f["value"]):
            return False
    return True


def user(r):
    return r["user_id"] if r["user_id"] is not None else r["anonymous_id"]


def measure(rows, m):
    kind = m["measure"]
    if kind == "events":
        return len(rows)
    if kind == "users":
        return len({user(r) for r in rows} - {None})
    if kind == "sessions":
        return len({r["session_id"] for r in rows} - {None})
    nums = [float(prop(r, "n")) for r in rows if isinstance(prop(r, "n"), (int, float))]
    if kind == "sum":
        return round(sum(nums), 6)
    return round(sum(nums) / len(nums), 6) if nums else None


def midnight(tz, d):
    return datetime.combine(d, time(0), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def in_days(rows, tz, since, until):
    lo, hi = midnight(tz, since), midnight(tz, until + timedelta(days=1))
    return [r for r in rows if lo <= r["timestamp"] < hi]


def local_key(ts, tz, interval):
    loc = ts.astimezone(ZoneInfo(tz))
    if interval == "day":
        return loc.date()
    return (loc.date(), loc.hour, loc.utcoffset())


def ref_buckets(win, interval):
    if interval == "day":
        return [win.since + timedelta(days=i) for i in range((win.until - win.since).days + 1)]
    out, t = [], midnight(win.timezone, win.since)
    while t < midnight(win.timezone, win.until + timedelta(days=1)):
        out.append(local_key(t, win.timezone, "hour"))
        t += timedelta(hours=1)
    return out


# --- the properties ------------------------------------------------------------------

def compute(type_name, spec, rows, win):
    wt = widget_types()[type_name]
    return wt.compute(wt.validate(spec, "w"), FrameSource("t", frame(rows)), win)


COMMON = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(st.lists(event_st, max_size=40), window_st, measure_st, filters_st)
def test_metric_matches_reference(evs, w, m, filters):
    rows, win = build(evs), make_window(w)
    d = compute("metric", {**m, "filters": filters}, rows, win)
    kept = [r for r in frame(rows).to_dicts() if keep(r, filters)]
    prev = win.previous()
    cur = measure(in_days(kept, win.timezone, win.since, win.until), m)
    old = measure(in_days(kept, win.timezone, prev.since, prev.until), m)
    assert d["value"] == pytest.approx(cur) and d["previous"] == pytest.approx(old)
    if cur is None or old is None:
        assert d["change"] is None
    else:
        assert d["change"] == pytest.approx(cur - old, abs=1e-6)
    assert d["change_relative"] == (None if not old or cur is None else pytest.approx((cur - old) / old, abs=1e-6))
    assert d["incomplete"] == (midnight(win.timezone, win.until + timedelta(days=1)) > win.now)


@COMMON
@given(st.lists(event_st, max_size=40), window_st, measure_st, filters_st, st.sampled_from(["day", "hour"]))
def test_time_series_matches_reference(evs, w, m, filters, interval):
    rows, win = build(evs), make_window(w)
    d = compute("time_series", {"interval": interval, "series": [{"label": "s", **m, "filters": filters}]},
                rows, win)
    kept = in_days([r for r in frame(rows).to_dicts() if keep(r, filters)], win.timezone, win.since, win.until)
    keys = ref_buckets(win, interval)
    assert len(d["buckets"]) == len(keys)
    groups = defaultdict(list)
    for r in kept:
        groups[local_key(r["timestamp"], win.timezone, interval)].append(r)
    want = [measure(groups.get(k, []), m) for k in keys]
    assert d["series"][0]["values"] == pytest.approx(want)
    assert d["series"][0]["total"] == pytest.approx(measure(kept, m))


@COMMON
@given(st.lists(event_st, max_size=40), window_st, filters_st,
       st.sampled_from([["device_type"], ["plan"], ["device_type", "plan"], ["event_type", "n"]]),
       st.sampled_from(["events", "users"]), st.integers(1, 4))
def test_table_matches_reference(evs, w, filters, by, sort, limit):
    rows, win = build(evs), make_window(w)
    d = compute("table", {"by": by, "sort": sort, "limit": limit, "filters": filters}, rows, win)
    kept = in_days([r for r in frame(rows).to_dicts() if keep(r, filters)], win.timezone, win.since, win.until)
    groups = defaultdict(list)
    for r in kept:
        groups[tuple(text(prop(r, p)) for p in by)].append(r)
    other = "users" if sort == "events" else "events"
    stats = {k: {"events": len(v), "users": measure(v, {"measure": "users"})} for k, v in groups.items()}
    order = sorted(stats, key=lambda k: (-stats[k][sort], -stats[k][other],
                                         [(x is None, x or "") for x in k]))
    top = order[:limit]
    assert [tuple(r["keys"]) for r in d["rows"]] == top
    assert [(r["events"], r["users"]) for r in d["rows"]] == [(stats[k]["events"], stats[k]["users"]) for k in top]
    assert [r["share"] for r in d["rows"]] == [round(stats[k]["events"] / len(kept), 6) for k in top]
    rest = [r for k in order[limit:] for r in groups[k]]
    assert d["other"] == (None if not order[limit:] else
                          {"events": len(rest), "users": measure(rest, {"measure": "users"}),
                           "share": round(len(rest) / len(kept), 6)})
    assert d["total"] == {"events": len(kept), "users": measure(kept, {"measure": "users"})}


@COMMON
@given(st.lists(event_st, max_size=40), window_st, st.integers(1, 3))
def test_breakdown_matches_reference(evs, w, limit):
    rows, win = build(evs), make_window(w)
    d = compute("time_series", {"interval": "day", "breakdown": {"property": "plan", "limit": limit}}, rows, win)
    kept = in_days(frame(rows).to_dicts(), win.timezone, win.since, win.until)
    totals = defaultdict(int)
    for r in kept:
        totals[text(prop(r, "plan"))] += 1
    order = sorted(totals, key=lambda k: (-totals[k], k is None, k or ""))
    want = [("(none)" if k is None else k, totals[k]) for k in order[:limit]]
    if len(order) > limit:
        want.append(("(other)", sum(totals[k] for k in order[limit:])))
    assert [(s["key"], s["total"]) for s in d["series"]] == want
    for s in d["series"]:
        assert sum(s["values"]) == s["total"]
