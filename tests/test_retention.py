"""The retention widget: one hand-computed case per rule of docs/behaviour.md, and the
engine against the naive reference on random event logs."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp.core.errors import ConfigError
from erp.reports.api import widget_types
from reference_behaviour import ev, ref_matrix, run

UTC = timezone.utc
LATER = datetime(2026, 9, 1, tzinfo=UTC)


def d(day: int, month: int = 3, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def retention(events, since=date(2026, 3, 2), until=date(2026, 3, 15), now=LATER, tz="UTC", **spec):
    return run("retention", spec, events, since=since, until=until, now=now, tz=tz)


def grid(data):
    """{cohort: [counts]}"""
    return {c["cohort"]: [cell["count"] for cell in c["cells"]] for c in data["cohorts"]}


def test_first_time_cohort_is_the_first_ever_start_event():
    events = [ev("u1", "signup", d(3)), ev("u1", "signup", d(10)),   # cohort week of Mar 2 only
              ev("u2", "signup", d(20, 2)), ev("u2", "signup", d(4)),  # first ever in February: not here
              ev("u1", "visit", d(11)), ev("u2", "visit", d(11))]
    data = retention(events, start_event="signup", return_event="visit", period="week", periods=1)
    assert grid(data) == {"2026-03-02": [1, 1], "2026-03-09": [0, 0]}


def test_recurring_joins_every_period_with_a_start_event():
    events = [ev("u1", "signup", d(3)), ev("u1", "signup", d(10)), ev("u1", "visit", d(11)),
              ev("u2", "signup", d(20, 2)), ev("u2", "signup", d(4))]
    data = retention(events, start_event="signup", return_event="visit", period="week", periods=1,
                     mode="recurring")
    assert grid(data) == {"2026-03-02": [2, 1], "2026-03-09": [1, 0]}


def test_return_in_the_same_period_is_not_period_1():
    events = [ev("u1", "signup", d(2)), ev("u1", "visit", d(8)),      # Monday and Sunday of one week
              ev("u2", "signup", d(8)), ev("u2", "visit", d(9))]      # Sunday, then next Monday
    data = retention(events, start_event="signup", return_event="visit", period="week", periods=1,
                     until=date(2026, 3, 8))
    assert grid(data) == {"2026-03-02": [2, 1]}


def test_weeks_start_monday_and_the_range_is_widened_to_whole_weeks():
    # range starts on Wednesday 2026-03-04; the signup on Monday 03-02 is in the first cohort
    events = [ev("u1", "signup", d(2)), ev("u1", "visit", d(9))]
    data = retention(events, start_event="signup", period="week", periods=1, since=date(2026, 3, 4),
                     until=date(2026, 3, 4))
    assert grid(data) == {"2026-03-02": [1, 1]}


def test_on_counts_exact_period_and_on_or_after_any_later_period():
    events = [ev("u1", "signup", d(2)), ev("u1", "visit", d(16)),   # returns only in week 2
              ev("u2", "signup", d(2)), ev("u2", "visit", d(9))]    # returns only in week 1
    on = retention(events, start_event="signup", return_event="visit", periods=3, until=date(2026, 3, 2))
    after = retention(events, start_event="signup", return_event="visit", periods=3, until=date(2026, 3, 2),
                      count="on_or_after")
    assert grid(on) == {"2026-03-02": [2, 1, 1, 0]}
    assert grid(after) == {"2026-03-02": [2, 2, 1, 0]}
    assert [c["pct"] for c in after["cohorts"][0]["cells"]] == [100.0, 100.0, 50.0, 0.0]


def test_incomplete_periods_are_flagged_and_never_shown_as_zero():
    events = [ev("u1", "signup", d(2)), ev("u1", "visit", d(10))]
    now = d(11)  # Wednesday of the second week
    data = retention(events, start_event="signup", return_event="visit", periods=3, now=now,
                     until=date(2026, 3, 2))
    cells = data["cohorts"][0]["cells"]
    assert [(c["count"], c["incomplete"]) for c in cells] == [(1, False), (1, True), (None, True), (None, True)]
    assert cells[2]["pct"] is None


def test_weighted_average_curve_uses_complete_cells_only():
    events = [ev(f"a{i}", "signup", d(2)) for i in range(4)] + [ev("a0", "visit", d(9))] + \
             [ev(f"b{i}", "signup", d(9)) for i in range(2)] + [ev("b0", "visit", d(16)), ev("b1", "visit", d(16))]
    now = d(23, hour=0)  # week 3 (Mar 23) has not started; week Mar 16 complete
    data = retention(events, start_event="signup", return_event="visit", periods=2, now=now,
                     until=date(2026, 3, 9))
    avg = data["average"]
    assert (avg[0]["count"], avg[0]["cohort_size"], avg[0]["cohorts"]) == (6, 6, 2)
    assert (avg[1]["count"], avg[1]["cohort_size"], avg[1]["pct"]) == (3, 6, 50.0)
    # cell 2 is complete for the Mar 2 cohort only (its period is Mar 16)
    assert (avg[2]["count"], avg[2]["cohort_size"], avg[2]["cohorts"]) == (0, 4, 1)


def test_day_buckets_follow_the_local_calendar_across_dst():
    tz = "Europe/Berlin"   # 2026-03-29 has 23 hours
    start = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)          # 03-29 00:30 local
    events = [ev("u1", "signup", start),
              ev("u1", "visit", datetime(2026, 3, 29, 21, 59, tzinfo=UTC)),   # 03-29 23:59 local: day 0
              ev("u1", "visit", datetime(2026, 3, 29, 22, 0, tzinfo=UTC)),    # 03-30 00:00 local: day 1
              ev("u2", "signup", datetime(2026, 3, 28, 22, 59, tzinfo=UTC)),  # 03-28 23:59 local
              ev("u2", "visit", datetime(2026, 3, 29, 0, 0, tzinfo=UTC))]     # 03-29 01:00 local: day 1
    data = retention(events, start_event="signup", return_event="visit", period="day", periods=1,
                     since=date(2026, 3, 28), until=date(2026, 3, 29), tz=tz)
    assert grid(data) == {"2026-03-28": [1, 1], "2026-03-29": [1, 1]}


def test_month_periods():
    events = [ev("u1", "signup", d(31, 1)), ev("u1", "visit", d(1, 2)), ev("u1", "visit", d(1, 4))]
    data = retention(events, start_event="signup", return_event="visit", period="month", periods=3,
                     since=date(2026, 1, 1), until=date(2026, 1, 31))
    assert grid(data) == {"2026-01-01": [1, 1, 0, 1]}


def test_start_and_return_any_and_lists():
    events = [ev("u1", "signup", d(2)), ev("u1", "click", d(9)),
              ev("u2", "register", d(3)), ev("u2", "signup", d(10))]
    data = retention(events, start_event=["signup", "register"], periods=1, until=date(2026, 3, 2))
    assert grid(data) == {"2026-03-02": [2, 2]}


def test_filters_apply_before_first_time_is_decided():
    events = [ev("u1", "signup", d(20, 2), props={"test": "yes"}), ev("u1", "signup", d(3)),
              ev("u1", "visit", d(10))]
    data = retention(events, start_event="signup", periods=1, until=date(2026, 3, 2),
                     filters=[{"property": "test", "op": "is_not_set"}])
    assert grid(data) == {"2026-03-02": [1, 1]}


@pytest.mark.parametrize("spec, words", [
    ({"period": "year"}, "day, week, month"),
    ({"periods": 0}, "from 1 to 400"),
    ({"mode": "first"}, "first_time, recurring"),
    ({"count": "after"}, "on, on_or_after"),
    ({"unit": "sessions"}, "users"),
    ({"start_event": ["a", "any"]}, "any alone"),
    ({"start": "a"}, "unknown key 'start'"),
])
def test_definition_errors_name_the_key_and_the_choices(spec, words):
    with pytest.raises(ConfigError) as exc:
        widget_types()["retention"].validate(spec, "r.yaml: widgets[0]")
    assert words in str(exc.value)


# --- the engine equals the reference --------------------------------------------------------------

BASE = datetime(2026, 2, 20, tzinfo=UTC)


@st.composite
def logs(draw):
    events = []
    for i in range(draw(st.integers(0, 40))):
        events.append(ev(draw(st.sampled_from(["u1", "u2", "u3", "u4"])), draw(st.sampled_from(["s", "r", "o"])),
                         BASE + timedelta(hours=7 * draw(st.integers(0, 300))), event_id=f"{i:03d}"))
    return events


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=logs(), period=st.sampled_from(["day", "week", "month"]), periods=st.integers(1, 4),
       mode=st.sampled_from(["first_time", "recurring"]), count=st.sampled_from(["on", "on_or_after"]),
       start=st.sampled_from(["s", "any"]), ret=st.sampled_from(["r", "any", "s"]),
       now_days=st.integers(0, 120), tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_engine_equals_reference(events, period, periods, mode, count, start, ret, now_days, tz):
    since, until = date(2026, 3, 4), date(2026, 3, 30)
    now = BASE + timedelta(days=now_days, hours=5)
    got = run("retention", {"start_event": start, "return_event": ret, "period": period, "periods": periods,
                            "mode": mode, "count": count}, events, since=since, until=until, now=now, tz=tz)
    want = ref_matrix(events, start=None if start == "any" else {start}, ret=None if ret == "any" else {ret},
                      period=period, periods=periods, mode=mode, count=count, since=since, until=until,
                      tz=tz, now=now)
    assert got == {"period": period, "periods": periods, "mode": mode, "count": count, **want}
