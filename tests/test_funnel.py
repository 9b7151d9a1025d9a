"""The funnel widget: one hand-computed case per rule of docs/behaviour.md, and the
engine against the naive reference on random event logs."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp.core.errors import ConfigError
from erp.reports.api import widget_types
from reference_behaviour import ev, ref_funnel, run

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MARCH = {"since": date(2026, 3, 1), "until": date(2026, 3, 31)}
LATER = datetime(2026, 6, 1, tzinfo=UTC)  # every window has closed


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def funnel(events, steps=("a", "b", "c"), now=LATER, **spec):
    return run("funnel", {"steps": list(steps), **spec}, events, now=now, **MARCH)


def counts(data):
    return [s["count"] for s in data["steps"]]


# --- window -------------------------------------------------------------------------------

def test_window_edge_exactly_equal_counts():
    events = [ev("u1", "a", T0), ev("u1", "b", T0 + timedelta(days=7)),
              ev("u2", "a", T0), ev("u2", "b", T0 + timedelta(days=7, microseconds=1))]
    data = funnel(events, steps=("a", "b"), window="7d")
    assert counts(data) == [2, 1]
    assert data["window_seconds"] == 604800
    assert data["steps"][1]["median_seconds_from_first"] == 604800.0


def test_window_is_measured_from_step_1_not_from_previous_step():
    # b within 2h of a, c 1.5h after b but 3h after a: outside a 2h window
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(1.5)), ev("u1", "c", h(3))]
    assert counts(funnel(events, window="2h")) == [1, 1, 0]
    assert counts(funnel(events, window="3h")) == [1, 1, 1]


def test_later_steps_may_fall_after_the_range_end_but_step_1_may_not():
    end = datetime(2026, 4, 1, tzinfo=UTC)
    events = [ev("u1", "a", end - timedelta(hours=1)), ev("u1", "b", end + timedelta(hours=1)),
              ev("u2", "a", end), ev("u2", "b", end + timedelta(hours=1))]
    assert counts(funnel(events, steps=("a", "b"), window="1d")) == [1, 1]


def test_window_none_ends_with_the_range():
    end = datetime(2026, 4, 1, tzinfo=UTC)
    events = [ev("u1", "a", h(0)), ev("u1", "b", end - timedelta(microseconds=1)),
              ev("u2", "a", h(0)), ev("u2", "b", end)]
    data = funnel(events, steps=("a", "b"), window="none")
    assert counts(data) == [2, 1]
    assert data["window_seconds"] is None


def test_default_window_is_14_days():
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(0) + timedelta(days=14)),
              ev("u2", "a", h(0)), ev("u2", "b", h(0) + timedelta(days=14, seconds=1))]
    assert counts(funnel(events, steps=("a", "b"))) == [2, 1]


# --- order --------------------------------------------------------------------------------

def test_sequential_ignores_other_events_between_steps():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(1)), ev("u1", "b", h(2)), ev("u1", "c", h(3))]
    assert counts(funnel(events)) == [1, 1, 1]


def test_sequential_needs_steps_in_order():
    events = [ev("u1", "a", h(0)), ev("u1", "c", h(1)), ev("u1", "b", h(2))]
    assert counts(funnel(events)) == [1, 1, 0]


def test_strict_order_broken_by_an_intermediate_event():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(1)), ev("u1", "b", h(2)),
              ev("u2", "a", h(0)), ev("u2", "b", h(2))]
    assert counts(funnel(events, steps=("a", "b"), order="strict")) == [2, 1]


def test_strict_order_broken_by_a_repeated_step():
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(1)), ev("u1", "b", h(2)), ev("u1", "c", h(3))]
    assert counts(funnel(events, order="strict")) == [1, 1, 0]


def test_strict_order_sees_only_events_left_by_filters():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(1)), ev("u1", "b", h(2))]
    data = funnel(events, steps=("a", "b"), order="strict", filters=[{"event_type": ["a", "b"]}])
    assert counts(data) == [1, 1]


def test_any_order_counts_steps_done_in_any_order():
    events = [ev("u1", "a", h(0)), ev("u1", "c", h(1)), ev("u1", "b", h(2)),
              ev("u2", "a", h(0)), ev("u2", "c", h(1))]
    data = funnel(events, order="any")
    assert counts(data) == [2, 2, 1]
    # row 2 = the 2nd step done (c at 1h for both), row 3 = the 3rd (b at 2h for u1)
    assert data["steps"][1]["mean_seconds_from_first"] == 3600.0
    assert data["steps"][2]["median_seconds_from_first"] == 7200.0
    assert counts(funnel(events)) == [2, 1, 0]


def test_any_order_still_starts_at_step_1():
    events = [ev("u1", "b", h(0)), ev("u1", "c", h(1)), ev("u1", "a", h(2))]
    assert counts(funnel(events, order="any")) == [1, 0, 0]


# --- steps, ties, re-entry ------------------------------------------------------------------

def test_any_of_step_types():
    events = [ev("u1", "a", h(0)), ev("u1", "register", h(1)),
              ev("u2", "a", h(0)), ev("u2", "signup", h(1)),
              ev("u3", "a", h(0)), ev("u3", "other", h(1))]
    data = funnel(events, steps=("a", {"event": ["signup", "register"], "name": "Sign up"}))
    assert counts(data) == [3, 2]
    assert data["steps"][1]["name"] == "Sign up"
    assert data["steps"][1]["event_types"] == ["signup", "register"]


def test_step_filters_apply_to_that_step_only():
    events = [ev("u1", "a", h(0), props={"plan": "pro"}), ev("u1", "b", h(1), props={"plan": "free"}),
              ev("u2", "a", h(0), props={"plan": "free"}), ev("u2", "b", h(1), props={"plan": "pro"})]
    data = funnel(events, steps=("a", {"event": "b", "filters": [{"property": "plan", "value": "pro"}]}))
    assert counts(data) == [2, 1]


def test_ties_same_timestamp_are_taken_in_step_order():
    # b is listed first and has the smaller event id; still a fills step 1 and b step 2
    events = [ev("u1", "b", h(0), event_id="0"), ev("u1", "a", h(0), event_id="1")]
    data = funnel(events, steps=("a", "b"), order="strict")
    assert counts(data) == [1, 1]
    assert data["steps"][1]["median_seconds_from_previous"] == 0.0


def test_one_event_never_fills_two_steps():
    assert counts(funnel([ev("u1", "a", h(0))], steps=("a", "a"))) == [1, 0]
    assert counts(funnel([ev("u1", "a", h(0)), ev("u1", "a", h(1))], steps=("a", "a"))) == [1, 1]


def test_reentry_counts_a_user_once_at_the_furthest_step():
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(1)),            # attempt 1: a, b, then too late
              ev("u1", "a", h(10)), ev("u1", "b", h(10.5)), ev("u1", "c", h(11))]  # attempt 2 completes
    data = funnel(events, window="2h")
    assert counts(data) == [1, 1, 1]
    # step 2 times from the first attempt that reached step 2, step 3 from the first that completed
    assert data["steps"][1]["median_seconds_from_previous"] == 3600.0
    assert data["steps"][2]["median_seconds_from_previous"] == 1800.0
    assert data["steps"][2]["median_seconds_from_first"] == 3600.0


def test_reentry_with_unit_events_counts_every_attempt():
    events = [ev("u1", "a", h(0)), ev("u1", "a", h(1)), ev("u1", "b", h(2)), ev("u2", "a", h(0))]
    data = funnel(events, steps=("a", "b"), unit="events")
    assert counts(data) == [3, 2]


def test_unit_sessions_evaluates_each_session():
    events = [ev("u1", "a", h(0), session="s1"), ev("u1", "b", h(1), session="s2"),
              ev("u1", "a", h(2), session="s3"), ev("u1", "b", h(3), session="s3"),
              ev("u2", "a", h(0), session=None)]
    data = funnel(events, steps=("a", "b"), unit="sessions")
    assert counts(data) == [2, 1]


def test_anonymous_id_stands_in_for_missing_user_id():
    events = [ev(None, "a", h(0), anon="anon1"), ev(None, "b", h(1), anon="anon1"),
              ev(None, "a", h(0))]  # no identity at all: ignored
    assert counts(funnel(events, steps=("a", "b"))) == [1, 1]


# --- exclusions -----------------------------------------------------------------------------

def test_exclusions_void_the_attempt():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(1)), ev("u1", "b", h(2)),
              ev("u2", "a", h(0)), ev("u2", "b", h(2))]
    data = funnel(events, steps=("a", "b"), exclusions=[{"event": "x"}])
    assert counts(data) == [1, 1]  # u1 is not counted at all, not even at step 1


def test_exclusion_tied_with_a_step_event_does_not_void():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(0)), ev("u1", "b", h(2)), ev("u1", "x", h(2))]
    assert counts(funnel(events, steps=("a", "b"), exclusions=[{"event": "x"}])) == [1, 1]


def test_exclusion_outside_its_steps_does_not_void():
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(1)), ev("u1", "x", h(2)), ev("u1", "c", h(3))]
    assert counts(funnel(events, exclusions=[{"event": "x", "between": [1, 2]}])) == [1, 1, 1]
    assert counts(funnel(events, exclusions=[{"event": "x", "between": [2, 3]}])) == [0, 0, 0]


def test_exclusion_before_an_unreached_step_voids_up_to_the_deadline():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(2)),
              ev("u2", "a", h(0)), ev("u2", "x", h(2) + timedelta(microseconds=1))]
    data = funnel(events, steps=("a", "b"), window="2h", exclusions=[{"event": "x"}])
    assert counts(data) == [1, 0]


def test_exclusion_voids_only_that_attempt():
    events = [ev("u1", "a", h(0)), ev("u1", "x", h(1)), ev("u1", "a", h(2)), ev("u1", "b", h(3))]
    data = funnel(events, steps=("a", "b"), window="2h", exclusions=[{"event": "x"}])
    assert counts(data) == [1, 1]
    assert data["steps"][1]["median_seconds_from_first"] == 3600.0


# --- pending, drop-off, percentages -----------------------------------------------------------

def test_pending_users_inside_their_window_are_not_dropped():
    events = [ev("u1", "a", h(0)), ev("u1", "b", h(1)),
              ev("u2", "a", h(0)),                       # window open at now
              ev("u3", "a", h(-30)),                     # window closed at now
              ev("u4", "a", h(-30)), ev("u4", "b", h(-29))]
    now = h(24)
    data = funnel(events, steps=("a", "b", "c"), window="2d", now=now)
    rows = data["steps"]
    assert counts(data) == [4, 2, 0]
    assert (rows[1]["dropped"], rows[1]["pending"]) == (1, 1)      # u3 dropped, u2 pending
    assert (rows[2]["dropped"], rows[2]["pending"]) == (1, 1)      # u4 dropped, u1 pending
    assert data["pending"] == 2 and data["completed"] == 0


def test_pending_window_end_is_inclusive():
    events = [ev("u1", "a", h(0))]
    assert funnel(events, steps=("a", "b"), window="1h", now=h(1))["pending"] == 1
    assert funnel(events, steps=("a", "b"), window="1h", now=h(1) + timedelta(microseconds=1))["pending"] == 0


def test_percentages_and_times():
    events = [ev(f"u{i}", "a", h(0)) for i in range(4)] + [
        ev("u0", "b", h(1)), ev("u1", "b", h(2)), ev("u2", "b", h(4)), ev("u0", "c", h(2))]
    data = funnel(events)
    r = data["steps"]
    assert counts(data) == [4, 3, 1]
    assert (r[1]["pct_of_first"], r[1]["pct_of_previous"], r[2]["pct_of_first"], r[2]["pct_of_previous"]) == \
        (75.0, 75.0, 25.0, 33.33)
    assert (r[1]["median_seconds_from_previous"], r[1]["mean_seconds_from_previous"]) == (7200.0, 8400.0)
    assert data["conversion_pct"] == 25.0 and data["entered"] == 4


def test_empty_funnel_has_null_percentages():
    data = funnel([])
    assert counts(data) == [0, 0, 0] and data["conversion_pct"] is None
    assert data["steps"][0]["pct_of_first"] is None


# --- breakdown and trend ------------------------------------------------------------------------

def test_breakdown_takes_the_value_at_step_1_with_top_n_and_other():
    events = []
    for i, country in enumerate(["DE", "DE", "DE", "FR", "FR", "IT", None]):
        events.append(ev(f"u{i}", "a", h(0), props={"market": country} if country else {}))
        events.append(ev(f"u{i}", "b", h(1), props={"market": "XX"}))
    data = funnel(events, steps=("a", "b"), breakdown={"property": "market", "limit": 2})
    groups = data["breakdown"]["groups"]
    assert [(g["value"], g["entered"]) for g in groups] == [("DE", 3), ("FR", 2), ("(other)", 2)]


def test_trend_counts_entries_per_local_day_across_dst():
    tz = "Europe/Berlin"  # DST starts 2026-03-29 02:00 local
    before = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)   # 2026-03-29 00:30 CET
    after = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)    # 2026-03-30 00:30 CEST
    events = [ev("u1", "a", before), ev("u1", "b", before + timedelta(minutes=5)),
              ev("u2", "a", after)]
    data = run("funnel", {"steps": ["a", "b"], "trend": "day"}, events, since=date(2026, 3, 28),
               until=date(2026, 3, 30), now=LATER, tz=tz)
    pts = {p["period"]: (p["entered"], p["completed"]) for p in data["trend"]["points"]}
    assert pts == {"2026-03-28": (0, 0), "2026-03-29": (1, 1), "2026-03-30": (1, 0)}


def test_worked_example_of_the_docs():
    mon = datetime(2026, 3, 2, tzinfo=UTC)
    at = lambda day, hh, mm=0: mon + timedelta(days=day, hours=hh, minutes=mm)  # noqa: E731
    events = [ev("u", "page_view", at(0, 10)), ev("u", "signup", at(0, 11)), ev("u", "page_view", at(0, 12)),
              ev("u", "purchase", at(1, 11)), ev("u", "signup", at(1, 11, 30)), ev("u", "purchase", at(1, 11, 45))]
    data = funnel(events, steps=("page_view", "signup", "purchase"), window="1d")
    r = data["steps"]
    assert counts(data) == [1, 1, 1]
    assert (r[1]["median_seconds_from_previous"], r[1]["median_seconds_from_first"]) == (3600.0, 3600.0)
    assert (r[2]["median_seconds_from_previous"], r[2]["median_seconds_from_first"]) == (900.0, 85500.0)


# --- definitions -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, words", [
    ({"steps": ["a"]}, "2 to 20 steps"),
    ({"steps": ["a", "b"], "window": "7 days"}, "duration"),
    ({"steps": ["a", "b"], "order": "random"}, "sequential, strict, any"),
    ({"steps": ["a", "b"], "unit": "sessionz"}, "users, sessions, events"),
    ({"steps": ["a", ["a", "b"]], "order": "any"}, "may not share"),
    ({"steps": ["a", "b"], "exclusions": [{"event": "x", "between": [2, 1]}]}, "1 <= i < j <= 2"),
    ({"steps": ["a", "b"], "colour": "red"}, "unknown key 'colour'"),
    ({"steps": ["a", "any"]}, "event type"),
])
def test_definition_errors_name_the_key_and_the_choices(spec, words):
    with pytest.raises(ConfigError) as exc:
        widget_types()["funnel"].validate(spec, "r.yaml: widgets[1]")
    assert str(exc.value).startswith("r.yaml: widgets[1]") and words in str(exc.value)


# --- the engine equals the reference -------------------------------------------------------------

TYPES = ["a", "b", "c", "x"]
BASE = datetime(2026, 3, 27, 20, 0, tzinfo=UTC)  # to 2026-03-30 07:00Z: the range and the Berlin DST change


@st.composite
def logs(draw):
    n = draw(st.integers(0, 40))
    events = []
    for i in range(n):
        user = draw(st.sampled_from(["u1", "u2", "u3", None]))
        events.append(ev(user, draw(st.sampled_from(TYPES)),
                         BASE + timedelta(minutes=30 * draw(st.integers(0, 110))),
                         anon=None if user else draw(st.sampled_from(["an1", None])),
                         session=draw(st.sampled_from(["s1", "s2", None])),
                         props={"p": draw(st.sampled_from(["x", "y", 1]))}, event_id=f"{i:03d}"))
    return events


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=logs(), order=st.sampled_from(["sequential", "strict", "any"]),
       unit=st.sampled_from(["users", "sessions", "events"]),
       window_h=st.sampled_from([1, 3, 8, None]), excl=st.booleans(), n_steps=st.integers(2, 3),
       step_filter=st.booleans(), now_h=st.integers(0, 60), trend=st.sampled_from([None, "day"]),
       breakdown=st.booleans())
def test_engine_equals_reference(events, order, unit, window_h, excl, n_steps, step_filter, now_h, trend,
                                 breakdown):
    # steps may share a type (b or c, then c) except in any order, where they may not
    steps_ref = [(["a"], None), (["b", "c"] if order != "any" else ["b"], ("p", "x") if step_filter else None),
                 (["c"], None)][:n_steps]
    steps_yaml = [{"event": t, **({"filters": [{"property": "p", "value": pf[1]}]} if pf else {})}
                  for t, pf in steps_ref]
    spec = {"steps": steps_yaml, "order": order, "unit": unit,
            "window": f"{window_h}h" if window_h else "none"}
    exclusions = [(["x"], 1, n_steps)] if excl else []
    if excl:
        spec["exclusions"] = [{"event": "x"}]
    if trend:
        spec["trend"] = trend
    if breakdown:
        spec["breakdown"] = {"property": "p", "limit": 1}
    since, until, tz = date(2026, 3, 28), date(2026, 3, 29), "Europe/Berlin"
    now = BASE + timedelta(hours=now_h)
    got = run("funnel", spec, events, since=since, until=until, now=now, tz=tz)
    want = ref_funnel(events, steps=steps_ref, window=timedelta(hours=window_h) if window_h else None,
                      order=order, unit=unit, exclusions=exclusions, since=since, until=until, tz=tz,
                      now=now, trend=trend, breakdown="p" if breakdown else None, limit=1,
                      names=[" or ".join(t) for t, _ in steps_ref])
    assert got == want


# --- through the CLI on a real lake ------------------------------------------------------------

BEHAVIOUR_REPORT = """\
id: behaviour
title: Behaviour
tenants: all
range: {since: 2026-03-02, until: 2026-03-15}
widgets:
  - id: checkout
    type: funnel
    steps: [page_view, signup, purchase]
    window: 1d
    breakdown: {property: plan}
  - {id: weekly, type: retention, start_event: signup, return_event: any, period: week, periods: 2}
  - {id: cohorts, type: cohort, period: week, periods: 1, value: {property: revenue}}
  - {id: life, type: lifecycle, period: week}
  - {id: sticky, type: stickiness, period: week}
"""


def test_behaviour_widgets_through_erp_report_on_a_real_lake_stay_inside_their_tenant(clean_env):
    import json as _json

    from typer.testing import CliRunner

    from erp.cli.main import app
    from tests.conftest import write_ndjson

    (clean_env / "erp.yaml").write_text("lake: lake\nreports_dir: reports\ningest:\n  workers: 1\n"
                                        "defaults:\n  retention_days: null\n")
    (clean_env / "tenants.yaml").write_text("tenants:\n  - {tenant_id: acme, name: Acme, timezone: UTC}\n"
                                            "  - {tenant_id: globex, name: Globex, timezone: UTC}\n")
    (clean_env / "reports").mkdir()
    (clean_env / "reports" / "behaviour.yaml").write_text(BEHAVIOUR_REPORT)
    recs = []

    def add(tenant, user, etype, ts, **props):
        recs.append({"event_id": f"e{len(recs)}", "tenant_id": tenant, "event_type": etype, "user_id": user,
                     "timestamp": ts, **({"properties": props} if props else {})})

    add("acme", "u1", "page_view", "2026-03-02T10:00:00Z", plan="pro")
    add("acme", "u1", "signup", "2026-03-02T11:00:00Z")
    add("acme", "u1", "purchase", "2026-03-10T11:00:00Z", revenue=30.0, currency="EUR")
    add("acme", "u2", "page_view", "2026-03-03T10:00:00Z", plan="free")
    # the same user ids in another tenant must not leak into acme's numbers
    add("globex", "u2", "signup", "2026-03-03T11:00:00Z")
    add("globex", "u2", "purchase", "2026-03-03T12:00:00Z", revenue=99.0, currency="EUR")
    src = write_ndjson(clean_env / "events.ndjson", recs)
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(src), "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", "behaviour", "--tenant", "acme", "--json", "--now", "2026-04-01T00:00:00Z"])
    assert res.exit_code == 0, res.output
    w = {x["widget_id"]: x["data"] for x in _json.loads(res.stdout)["widgets"]}
    assert [s["count"] for s in w["checkout"]["steps"]] == [2, 1, 0]   # purchase 8 days later: outside 1d
    assert [(g["value"], g["entered"]) for g in w["checkout"]["breakdown"]["groups"]] == [("free", 1), ("pro", 1)]
    assert [[c["count"] for c in co["cells"]] for co in w["weekly"]["cohorts"]] == [[1, 1, 0], [0, 0, 0]]
    cohorts = w["cohorts"]["cohorts"]
    assert [(c["size"], [x["value"] for x in c["cells"]]) for c in cohorts] == [(2, [0.0, 15.0]), (0, [None, None])]
    assert [(p["new"], p["returning"], p["dormant"]) for p in w["life"]["points"]] == [(2, 0, 0), (0, 1, 1)]
    assert [b["count"] for b in w["sticky"]["buckets"]] == [1, 1]

    bad = BEHAVIOUR_REPORT.replace("window: 1d", "window: 1 day")
    (clean_env / "reports" / "behaviour.yaml").write_text(bad)
    res = runner.invoke(app, ["reports", "validate"])
    assert res.exit_code == 1
    assert "widgets[0].window" in res.output and "7d" in res.output
