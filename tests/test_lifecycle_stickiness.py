"""The lifecycle and stickiness widgets, by hand and against the naive reference."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_behaviour import ev, ref_lifecycle, ref_stickiness, run

UTC = timezone.utc
LATER = datetime(2026, 12, 1, tzinfo=UTC)


def d(day: int, month: int = 3, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def test_lifecycle_new_returning_resurrecting_dormant():
    events = [ev("old", "view", d(1, 1)),                                  # first seen in January
              ev("old", "view", d(2)),                                     # resurrecting week Mar 2
              ev("u1", "view", d(3)), ev("u1", "view", d(10)),             # new, then returning
              ev("u2", "view", d(4)),                                      # new, then dormant
              ev("u3", "view", d(11))]                                     # new in week Mar 9
    data = run("lifecycle", {"period": "week"}, events, since=date(2026, 3, 2), until=date(2026, 3, 15),
               now=LATER, tz="UTC")
    got = [(p["period"], p["active"], p["new"], p["returning"], p["resurrecting"], p["dormant"])
           for p in data["points"]]
    assert got == [("2026-03-02", 3, 2, 0, 1, 0), ("2026-03-09", 2, 1, 1, 0, 2)]


def test_lifecycle_periods_not_started_are_null_and_current_is_incomplete():
    events = [ev("u1", "view", d(3))]
    data = run("lifecycle", {"period": "week"}, events, since=date(2026, 3, 2), until=date(2026, 3, 15),
               now=d(4), tz="UTC")
    assert [(p["active"], p["incomplete"]) for p in data["points"]] == [(1, True), (None, True)]


def test_lifecycle_event_selector():
    events = [ev("u1", "view", d(3)), ev("u1", "buy", d(10))]
    data = run("lifecycle", {"period": "week", "event": "buy"}, events, since=date(2026, 3, 2),
               until=date(2026, 3, 15), now=LATER, tz="UTC")
    assert [p["new"] for p in data["points"]] == [0, 1]


def test_stickiness_counts_distinct_local_days():
    tz = "America/New_York"
    events = [ev("u1", "view", datetime(2026, 3, 3, 3, tzinfo=UTC)),   # 03-02 22:00 local
              ev("u1", "view", datetime(2026, 3, 3, 6, tzinfo=UTC)),   # 03-03 01:00 local
              ev("u2", "view", datetime(2026, 3, 3, 6, tzinfo=UTC)),
              ev("u2", "view", datetime(2026, 3, 3, 9, tzinfo=UTC)),
              ev("u3", "view", datetime(2026, 3, 9, 6, tzinfo=UTC))]   # after the range
    data = run("stickiness", {}, events, since=date(2026, 3, 2), until=date(2026, 3, 4), now=LATER, tz=tz)
    assert data["total_periods"] == 3 and data["users"] == 2
    assert [(b["periods"], b["count"], b["pct"]) for b in data["buckets"]] == \
        [(1, 1, 50.0), (2, 1, 50.0), (3, 0, 0.0)]
    assert data["incomplete"] is False


def test_stickiness_weeks_widen_the_range():
    events = [ev("u1", "view", d(2)), ev("u1", "view", d(15))]   # Monday Mar 2, Sunday Mar 15
    data = run("stickiness", {"period": "week"}, events, since=date(2026, 3, 4), until=date(2026, 3, 10),
               now=d(12), tz="UTC")
    assert data["total_periods"] == 2 and data["incomplete"] is True
    assert [b["count"] for b in data["buckets"]] == [0, 1]


BASE = datetime(2026, 2, 20, tzinfo=UTC)


@st.composite
def logs(draw):
    return [ev(draw(st.sampled_from(["u1", "u2", "u3", "u4", "u5"])), draw(st.sampled_from(["a", "b"])),
               BASE + timedelta(hours=5 * draw(st.integers(0, 400))), event_id=f"{i:03d}")
            for i in range(draw(st.integers(0, 40)))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=logs(), period=st.sampled_from(["day", "week", "month"]), event=st.sampled_from(["a", "any"]),
       now_days=st.integers(0, 90), tz=st.sampled_from(["UTC", "Europe/Berlin"]))
def test_lifecycle_equals_reference(events, period, event, now_days, tz):
    since, until = date(2026, 3, 4), date(2026, 3, 31)
    now = BASE + timedelta(days=now_days)
    got = run("lifecycle", {"period": period, "event": event}, events, since=since, until=until, now=now, tz=tz)
    want = ref_lifecycle(events, active=None if event == "any" else {event}, period=period, since=since,
                         until=until, tz=tz, now=now)
    assert got == {"period": period, "points": want}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=logs(), period=st.sampled_from(["day", "week"]), event=st.sampled_from(["a", "any"]),
       now_days=st.integers(0, 90), tz=st.sampled_from(["UTC", "Europe/Berlin"]))
def test_stickiness_equals_reference(events, period, event, now_days, tz):
    since, until = date(2026, 3, 4), date(2026, 3, 31)
    now = BASE + timedelta(days=now_days)
    got = run("stickiness", {"period": period, "event": event}, events, since=since, until=until, now=now, tz=tz)
    assert got == ref_stickiness(events, active=None if event == "any" else {event}, period=period,
                                 since=since, until=until, tz=tz, now=now)
