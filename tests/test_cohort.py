"""The cohort widget: acquisition cohorts, activity cells and the value metric, by hand
and against the naive reference."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp.core.errors import ConfigError
from erp.reports.api import widget_types
from reference_behaviour import ev, ref_matrix, run

UTC = timezone.utc
LATER = datetime(2026, 12, 1, tzinfo=UTC)


def d(day: int, month: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def cohort(events, since=date(2026, 1, 1), until=date(2026, 2, 28), now=LATER, tz="UTC", **spec):
    return run("cohort", spec, events, since=since, until=until, now=now, tz=tz)


def test_cohort_is_the_period_of_the_first_event():
    events = [ev("u1", "view", d(5, 1)), ev("u1", "view", d(3, 2)),
              ev("u2", "view", d(20, 12) - timedelta(days=365)),  # first seen a year before: no cohort
              ev("u2", "view", d(4, 2)),
              ev("u3", "view", d(10, 2)), ev("u3", "view", d(1, 4))]
    data = cohort(events, periods=2)
    assert {c["cohort"]: [x["count"] for x in c["cells"]] for c in data["cohorts"]} == \
        {"2026-01-01": [1, 1, 0], "2026-02-01": [1, 0, 1]}


def test_cohort_event_and_active_event():
    events = [ev("u1", "view", d(5, 1)), ev("u1", "signup", d(6, 2)), ev("u1", "purchase", d(7, 3)),
              ev("u1", "view", d(8, 4))]
    data = cohort(events, periods=2, cohort_event="signup", active_event="purchase")
    assert [x["count"] for x in data["cohorts"][1]["cells"]] == [1, 1, 0]
    assert data["cohorts"][0]["size"] == 0


def test_value_metric_per_member_sums_the_property_in_each_period():
    events = [ev("u1", "signup", d(5, 1)), ev("u2", "signup", d(9, 1)),
              ev("u1", "purchase", d(6, 1), props={"amount": 10}),
              ev("u2", "purchase", d(20, 1), props={"amount": 5.5}),
              ev("u2", "purchase", d(2, 2), props={"amount": 4}),
              ev("u2", "purchase", d(3, 2), props={"amount": "n/a"}),   # not a number: skipped
              ev("u3", "purchase", d(3, 2), props={"amount": 100})]     # cohort February
    data = cohort(events, periods=1, until=date(2026, 1, 31),
                  value={"property": "amount", "event": "purchase"})
    cells = data["cohorts"][0]["cells"]
    assert [(c["count"], c["value"]) for c in cells] == [(2, 7.75), (1, 2.0)]
    total = cohort(events, periods=1, until=date(2026, 1, 31),
                   value={"property": "amount", "event": "purchase", "per_member": False})
    assert [c["value"] for c in total["cohorts"][0]["cells"]] == [15.5, 4.0]
    assert data["value"] == {"property": "amount", "per_member": True}


def test_revenue_column_value_metric():
    events = [dict(ev("u1", "purchase", d(5, 1)), revenue=12.5), dict(ev("u1", "purchase", d(5, 2)), revenue=2.5)]
    data = cohort(events, periods=1, until=date(2026, 1, 31), value={"property": "revenue"})
    assert [c["value"] for c in data["cohorts"][0]["cells"]] == [12.5, 2.5]


def test_current_period_is_incomplete_and_later_ones_are_null():
    events = [ev("u1", "view", d(5, 1)), ev("u1", "view", d(5, 2))]
    data = cohort(events, periods=2, until=date(2026, 1, 31), now=d(10, 2), value={"property": "amount"})
    cells = data["cohorts"][0]["cells"]
    assert [(c["count"], c["incomplete"]) for c in cells] == [(1, False), (1, True), (None, True)]
    assert cells[2]["value"] is None
    assert data["average"][1]["cohorts"] == 0 and data["average"][1]["value"] is None


def test_weeks_start_monday():
    events = [ev("u1", "view", d(4, 1)),   # Sunday: week of Monday 2025-12-29
              ev("u2", "view", d(5, 1))]   # Monday
    data = cohort(events, period="week", periods=1, since=date(2026, 1, 1), until=date(2026, 1, 5))
    assert [(c["cohort"], c["size"]) for c in data["cohorts"]] == [("2025-12-29", 1), ("2026-01-05", 1)]


@pytest.mark.parametrize("spec, words", [
    ({"period": "day"}, "week, month"),
    ({"value": {"property": "amount", "per_member": "yes"}}, "true or false"),
    ({"value": {"sum": "amount"}}, "unknown key 'sum'"),
])
def test_definition_errors(spec, words):
    with pytest.raises(ConfigError) as exc:
        widget_types()["cohort"].validate(spec, "r.yaml: widgets[0]")
    assert words in str(exc.value)


BASE = datetime(2026, 1, 20, tzinfo=UTC)


@st.composite
def logs(draw):
    events = []
    for i in range(draw(st.integers(0, 40))):
        amount = draw(st.sampled_from([None, 1, 2.5, "x", True]))
        events.append(ev(draw(st.sampled_from(["u1", "u2", "u3", "u4"])), draw(st.sampled_from(["s", "b"])),
                         BASE + timedelta(hours=13 * draw(st.integers(0, 300))),
                         props={} if amount is None else {"amount": amount}, event_id=f"{i:03d}"))
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=logs(), period=st.sampled_from(["week", "month"]), periods=st.integers(1, 3),
       cohort_event=st.sampled_from(["s", "any"]), active=st.sampled_from(["b", "any"]),
       per_member=st.sampled_from([None, True, False]), now_days=st.integers(0, 150),
       tz=st.sampled_from(["UTC", "Europe/Berlin"]))
def test_engine_equals_reference(events, period, periods, cohort_event, active, per_member, now_days, tz):
    since, until = date(2026, 2, 3), date(2026, 3, 30)
    now = BASE + timedelta(days=now_days)
    spec = {"period": period, "periods": periods, "cohort_event": cohort_event, "active_event": active}
    value = None
    if per_member is not None:
        spec["value"] = {"property": "amount", "per_member": per_member}
        value = ("amount", None if active == "any" else {active}, per_member)
    got = run("cohort", spec, events, since=since, until=until, now=now, tz=tz)
    want = ref_matrix(events, start=None if cohort_event == "any" else {cohort_event},
                      ret=None if active == "any" else {active}, period=period, periods=periods,
                      since=since, until=until, tz=tz, now=now, value=value)
    expect = {"period": period, "periods": periods,
              "value": None if value is None else {"property": "amount", "per_member": per_member}, **want}
    assert got == expect
