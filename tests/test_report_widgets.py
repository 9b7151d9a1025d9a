"""metric, time_series and table against hand-computed expectations on a small
fixed log (America/New_York across the 2026 fall-back change), and the spring
change's 23-hour day."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from erp.core.errors import ConfigError
from erp.reports.api import FrameSource, Window, widget_types
from tests.report_data import FIXED, frame

NY = "America/New_York"
NOW = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def source() -> FrameSource:
    return FrameSource("acme", frame(FIXED))


def compute(type_name: str, spec: dict, source, since=date(2026, 11, 1), until=date(2026, 11, 2),
            tz=NY, now=NOW) -> dict:
    wt = widget_types()[type_name]
    parsed = wt.validate(spec, "t.yaml: widgets[0]")
    return wt.compute(parsed, source, Window("acme", tz, since, until, now))


# --- metric ------------------------------------------------------------------------

@pytest.mark.parametrize("spec, value, previous, change, rel", [
    ({}, 6, 2, 4, 2.0),
    ({"measure": "users"}, 3, 2, 1, 0.5),             # u1, a1, u2 / u3, u1
    ({"measure": "sessions"}, 3, 1, 2, 2.0),          # s1, s2, s3 / s0
    ({"measure": "sum", "property": "revenue"}, 15.0, 0.0, 15.0, None),
    ({"measure": "avg", "property": "revenue"}, 7.5, None, None, None),
    ({"measure": "sum", "property": "items"}, 3.0, 0.0, 3.0, None),   # a properties key
    ({"filters": [{"event_type": "page_view"}]}, 3, 1, 2, 2.0),
    ({"filters": [{"property": "plan", "op": "eq", "value": "pro"}]}, 1, 0, 1, None),
    ({"filters": [{"property": "plan", "op": "neq", "value": "pro"}]}, 5, 2, 3, 1.5),
    ({"filters": [{"property": "revenue", "op": "gte", "value": 5}]}, 1, 0, 1, None),
    ({"filters": [{"property": "page_path", "op": "contains", "value": "pric"}]}, 2, 0, 2, None),
    ({"filters": [{"property": "device_type", "op": "in", "value": ["mobile", "desktop"]}]}, 3, 0, 3, None),
    ({"filters": [{"property": "user_id", "op": "is_not_set"}]}, 2, 0, 2, None),
])
def test_metric_hand_computed(source, spec, value, previous, change, rel):
    d = compute("metric", spec, source)
    assert (d["value"], d["previous"], d["change"], d["change_relative"]) == (value, previous, change, rel)
    assert d["incomplete"] is False
    assert d["previous_range"] == {"since": "2026-10-30", "until": "2026-10-31",
                                   "start_utc": "2026-10-30T04:00:00Z", "end_utc": "2026-11-01T04:00:00Z"}


def test_metric_incomplete_when_range_reaches_now(source):
    d = compute("metric", {}, source, now=datetime(2026, 11, 2, 6, tzinfo=timezone.utc))
    assert d["incomplete"] is True
    assert d["value"] == 6  # the engine counts what exists; the flag says it is partial


# --- time_series ----------------------------------------------------------------------

def test_daily_buckets_across_fall_back(source):
    d = compute("time_series", {"interval": "day", "series": [{"label": "Events"}, {"label": "Users",
                                                                                    "measure": "users"}]}, source)
    assert [b["label"] for b in d["buckets"]] == ["2026-11-01", "2026-11-02"]
    assert d["buckets"][0]["start"] == "2026-11-01T00:00:00-04:00"
    assert d["buckets"][0]["end"] == "2026-11-02T00:00:00-05:00"
    events, users = d["series"]
    assert events["values"] == [4, 2] and events["total"] == 6
    assert users["values"] == [3, 1] and users["total"] == 3  # distinct over the range, not 3 + 1
    assert [s["key"] for s in d["series"]] == ["events", "users"]


def test_hourly_buckets_fall_back_day_has_25_hours(source):
    d = compute("time_series", {"interval": "hour"}, source, until=date(2026, 11, 1))
    labels = [b["label"] for b in d["buckets"]]
    assert len(labels) == 25
    assert labels[:3] == ["2026-11-01 00:00", "2026-11-01 01:00 -04:00", "2026-11-01 01:00 -05:00"]
    assert labels[-1] == "2026-11-01 23:00"
    values = d["series"][0]["values"]
    assert values[0] == 1 and values[1] == 1 and values[2] == 1 and values[24] == 1
    assert sum(values) == 4


def test_hourly_buckets_spring_forward_day_has_23_hours():
    src = FrameSource("acme", frame([dict(event_type="x", timestamp="2026-03-08T07:30:00Z", user_id="u")]))
    d = compute("time_series", {"interval": "hour"}, src, since=date(2026, 3, 8), until=date(2026, 3, 8))
    labels = [b["label"] for b in d["buckets"]]
    assert len(labels) == 23 and "2026-03-08 02:00" not in labels
    # 07:30Z is 03:30 EDT (02:00 local does not exist)
    assert d["series"][0]["values"][labels.index("2026-03-08 03:00")] == 1


def test_weekly_and_monthly_buckets_are_clipped_and_marked(source):
    d = compute("time_series", {"interval": "week"}, source, since=date(2026, 10, 28), until=date(2026, 11, 3))
    assert [(b["label"], b["partial"]) for b in d["buckets"]] == [("2026-W44", True), ("2026-W45", True)]
    assert d["series"][0]["values"] == [6, 2]  # Oct 28 .. Nov 1 | Nov 2 .. 3
    m = compute("time_series", {"interval": "month"}, source, since=date(2026, 10, 1), until=date(2026, 11, 30))
    assert [(b["label"], b["partial"]) for b in m["buckets"]] == [("2026-10", False), ("2026-11", False)]
    assert m["series"][0]["values"] == [2, 6]


def test_incomplete_bucket_marks_now(source):
    now = datetime(2026, 11, 2, 15, tzinfo=timezone.utc)
    d = compute("time_series", {"interval": "day"}, source, until=date(2026, 11, 3), now=now)
    assert [b["incomplete"] for b in d["buckets"]] == [False, True, True]
    assert d["series"][0]["values"] == [4, 2, 0]  # zero-filled


def test_breakdown_top_n_and_other(source):
    d = compute("time_series", {"interval": "day", "breakdown": {"property": "event_type", "limit": 1}}, source)
    assert [(s["key"], s["other"], s["values"], s["total"]) for s in d["series"]] == [
        ("page_view", False, [2, 1], 3), ("(other)", True, [2, 1], 3)]
    d = compute("time_series", {"interval": "day", "breakdown": {"property": "device_type", "limit": 5}}, source)
    # desktop 2, (none) 3, mobile 1: sorted by total, (none) is a value like the others
    assert [(s["key"], s["total"]) for s in d["series"]] == [("(none)", 3), ("desktop", 2), ("mobile", 1)]
    assert not any(s["other"] for s in d["series"])


def test_breakdown_ties_are_broken_by_value(source):
    d = compute("time_series", {"breakdown": {"property": "event_type", "limit": 3},
                                "series": [{"label": "u", "measure": "users"}]}, source)
    # users: page_view 2 (u1, a1), purchase 2 (u2, u1), click 1
    assert [(s["key"], s["total"]) for s in d["series"]] == [("page_view", 2), ("purchase", 2), ("click", 1)]


# --- table ----------------------------------------------------------------------------

def test_table_sorted_with_shares_and_other(source):
    d = compute("table", {"by": "event_type", "limit": 2}, source)
    assert [(r["keys"], r["events"], r["users"], r["share"]) for r in d["rows"]] == [
        (["page_view"], 3, 2, 0.5), (["purchase"], 2, 2, 0.333333)]
    assert d["other"] == {"events": 1, "users": 1, "share": 0.166667}
    assert d["total"] == {"events": 6, "users": 3}


def test_table_nulls_are_none_and_sort_last_on_ties(source):
    d = compute("table", {"by": ["plan"]}, source)
    assert [(r["keys"], r["labels"], r["events"], r["users"]) for r in d["rows"]] == [
        ([None], ["(none)"], 5, 3), (["pro"], ["pro"], 1, 0)]
    d = compute("table", {"by": ["device_type", "page_path"], "sort": "users"}, source)
    # users desc, events desc, then keys ascending with missing values last
    assert [(r["labels"], r["events"], r["users"]) for r in d["rows"]] == [
        (["(none)", "(none)"], 2, 2), (["desktop", "/pricing"], 1, 1), (["desktop", "(none)"], 1, 1),
        (["mobile", "/"], 1, 1), (["(none)", "/pricing"], 1, 0)]
    assert d["other"] is None


@pytest.mark.parametrize("type_name, spec, message", [
    ("metric", {"measure": "median"}, "widgets[0].measure: 'median' is not one of events, users"),
    ("metric", {"measure": "sum"}, "widgets[0].property: measure sum needs"),
    ("metric", {"colour": "red"}, "unknown key 'colour'; allowed: measure"),
    ("time_series", {"interval": "weekly"}, "interval: 'weekly' is not one of hour, day, week, month"),
    ("time_series", {"series": [{}, {}], "breakdown": {"property": "country"}}, "exactly one series"),
    ("table", {"by": ["a", "b", "c"]}, "by: expected one or two properties"),
    ("table", {"by": "x", "limit": 0}, "limit: expected a whole number from 1 to 1000"),
    ("table", {"by": "x", "sort": "revenue"}, "sort: 'revenue' is not one of events, users"),
    ("metric", {"filters": [{"property": "x", "op": "like"}]}, "op: 'like' is not one of"),
])
def test_invalid_specs_name_the_key_and_allowed_values(type_name, spec, message):
    with pytest.raises(ConfigError) as e:
        widget_types()[type_name].validate(spec, "t.yaml: widgets[0]")
    assert message in str(e.value)
    assert str(e.value).startswith("t.yaml: widgets[0]")
