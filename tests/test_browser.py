"""Report bundles in a real browser (Debian's chromium, headless, via Playwright).

A small fixed set of events is ingested into a tmp lake with ``erp ingest`` and
rendered with ``erp build-reports``; the bundles are then opened from ``file://``
and must: make no network request, log no console error, cause zero CSP
violations, show every widget with the numbers a plain-Python reference computes
from the same events, resize their iframe embed both ways on a host page (and
ignore forged resize messages), keep XSS payloads from events inert and visible as
text, follow ``prefers-color-scheme`` with theme ``auto``, never print dark, fit
320 px, let the keyboard reach every chart, and show every number with JavaScript
off.

The harness's own checks are shown to fail on pages built to misbehave
(``test_harness_*``). Screenshots go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from browser import (
    MESSAGE_RECORDER, chart_text_px, contrast, embed_snippet, event_handler_attributes, horizontal_overflow,
    luminance, number, open_details, open_page, page_colors, screenshot, shows,
    static_server, tab_stops, watched_context, widgets, write_host_page,
)

# --- the test's own events ----------------------------------------------------------------

SINCE, UNTIL = date(2026, 9, 1), date(2026, 9, 3)
NOW = "2026-09-15T12:00:00Z"  # the build's clock: every period of the range has ended

#: (day, hh:mm, event_type, user, page path, revenue); users starting with "a" are
#: anonymous ids. 2026-08-29..31 is the previous period of the 3-day range.
ROWS = [
    ("2026-08-30", "10:00", "page_view", "u9", "/", None),
    ("2026-08-31", "11:00", "page_view", "u9", "/docs", None),
    ("2026-09-01", "08:00", "page_view", "u1", "/", None),
    ("2026-09-01", "08:05", "page_view", "u1", "/pricing", None),
    ("2026-09-01", "09:00", "page_view", "u2", "/", None),
    ("2026-09-01", "09:10", "signup", "u2", None, None),
    ("2026-09-01", "23:59", "page_view", "a1", "/docs", None),
    ("2026-09-02", "00:00", "page_view", "u2", "/pricing", None),
    ("2026-09-02", "07:30", "purchase", "u2", None, 49.5),
    ("2026-09-02", "12:00", "page_view", "u3", "/", None),
    ("2026-09-02", "12:01", "page_view", "u3", "/pricing", None),
    ("2026-09-03", "06:00", "page_view", "u1", "/", None),
    ("2026-09-03", "06:30", "page_view", "a1", "/", None),
    ("2026-09-03", "14:00", "page_view", "u4", "/docs", None),
    ("2026-09-03", "14:02", "page_view", "u4", "/pricing", None),
    ("2026-09-03", "14:10", "signup", "u4", None, None),
    ("2026-09-03", "14:20", "purchase", "u4", None, 120.0),
    ("2026-09-03", "20:00", "page_view", "u5", "/", None),
    ("2026-09-04", "09:00", "page_view", "u6", "/", None),  # after the range
]


def acme_events() -> list[dict[str, Any]]:
    out = []
    for n, (day, hhmm, etype, user, path, revenue) in enumerate(ROWS, 1):
        rec: dict[str, Any] = {"event_id": f"acme-{n:03d}", "tenant_id": "acme", "event_type": etype,
                               "timestamp": f"{day}T{hhmm}:00Z"}
        rec["anonymous_id" if user.startswith("a") else "user_id"] = user
        props: dict[str, Any] = {}
        if path:
            props["page_url"] = f"https://acme.example.com{path}?utm_source=x"
        if revenue is not None:
            props["revenue"] = revenue
        if props:
            rec["properties"] = props
        out.append(rec)
    return out


#: Hostile text from event data (and the tenant's display name). Each one, if it
#: ever became markup, would set window.__xss.
PAYLOADS = [
    "</script><img src=x onerror=window.__xss=1>",
    '"><svg onload=window.__xss=2>',
    "'><script>window.__xss=3</script>",
    "</style><img src=x onerror=window.__xss=4>",
    "<!--<script>window.__xss=5//-->",
    "{{7*7}} ${7*7} <b>not bold</b>",
]
EVIL_NAME = "</title><img src=x onerror=window.__xss=7> Evil & Co"
EVIL_PATH = "/<img src=x onerror=window.__xss=8>"


def evil_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(etype: str, **props: Any) -> None:
        out.append({"event_id": f"evil-{len(out):03d}", "tenant_id": "evil", "event_type": etype,
                    "timestamp": f"2026-09-02T1{len(out) % 10}:00:00Z", "user_id": f"e{len(out) % 3}",
                    **({"properties": props} if props else {})})

    add(PAYLOADS[0])
    add(PAYLOADS[0])
    for p in PAYLOADS[1:]:
        add("page_view", title=p, page_url=f"https://evil.example.com{EVIL_PATH}")
    return out


# --- a plain-Python reference -----------------------------------------------------------------


@dataclass(frozen=True)
class Ev:
    ts: datetime
    day: date
    event_type: str
    user: str
    path: str | None
    revenue: float | None


def parse(records: list[dict[str, Any]]) -> list[Ev]:
    out = []
    for r in records:
        ts = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).astimezone(timezone.utc)
        props = r.get("properties", {})
        url = props.get("page_url")
        path = "/" + url.split("/", 3)[3].split("?")[0] if url else None
        out.append(Ev(ts, ts.date(), r["event_type"], r.get("user_id") or r.get("anonymous_id"), path,
                      props.get("revenue")))
    return out


def days_of(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def expected_checks(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per widget id: its type and the numbers it must show, as checks on the page:
    ``tiles`` {data-key: number}, ``cells`` {(row, column): number} (a row ending in
    ``*`` matches by prefix) and ``columns`` {column: [numbers of the data rows, in order]}."""
    evs = parse(records)
    rng = [e for e in evs if SINCE <= e.day <= UNTIL]
    n_days = (UNTIL - SINCE).days + 1
    prev = [e for e in evs if SINCE - timedelta(days=n_days) <= e.day < SINCE]
    pv = [e for e in rng if e.event_type == "page_view"]
    revenue = sum(e.revenue for e in rng if e.event_type == "purchase")
    per_day = [sum(1 for e in pv if e.day == d) for d in days_of(SINCE, UNTIL)]
    pages: dict[str, list[Ev]] = defaultdict(list)
    for e in pv:
        pages[e.path].append(e)

    # funnel page_view -> signup -> purchase, sequential, 7-day window from step 1 (users)
    reached: dict[str, int] = {}
    for user in {e.user for e in pv}:
        stream = sorted((e for e in evs if e.user == user), key=lambda e: e.ts)
        for i, first in enumerate(stream):
            if first.event_type != "page_view" or not SINCE <= first.day <= UNTIL:
                continue
            step, deadline = 1, first.ts + timedelta(days=7)
            for e in stream[i + 1:]:
                if step < 3 and e.event_type == ("signup", "purchase")[step - 1] and e.ts <= deadline:
                    step += 1
            reached[user] = max(reached.get(user, 0), step)
    funnel_counts = [sum(1 for s in reached.values() if s >= k) for k in (1, 2, 3)]

    # first-time retention by day, any event, 2 periods; cohort by week with revenue
    first_day: dict[str, date] = {}
    active: dict[str, set[date]] = defaultdict(set)
    for e in evs:
        first_day[e.user] = min(first_day.get(e.user, e.day), e.day)
        active[e.user].add(e.day)
    sizes, day1, day2 = [], [], []
    for d in days_of(SINCE, UNTIL):
        members = [u for u, f in first_day.items() if f == d]
        sizes.append(len(members))
        day1.append(round(100 * sum(d + timedelta(days=1) in active[u] for u in members) / len(members), 2))
        day2.append(round(100 * sum(d + timedelta(days=2) in active[u] for u in members) / len(members), 2))
    week = SINCE - timedelta(days=SINCE.weekday())
    week_members = {u for u, f in first_day.items() if week <= f < week + timedelta(days=7)}
    per_user_days = [len({e.day for e in rng if e.user == u}) for u in {e.user for e in rng}]

    return {
        "page_views": {"type": "metric", "tiles": {"value": len(pv)},
                       "cells": {("Previous period*", "Value"): sum(e.event_type == "page_view" for e in prev)}},
        "visitors": {"type": "metric", "tiles": {"value": len({e.user for e in pv})}},
        "revenue": {"type": "metric", "tiles": {"value": revenue}},
        "daily": {"type": "time_series", "columns": {"Page views": per_day},
                  "cells": {("Total", "Page views"): len(pv)}},
        "top_pages": {"type": "table",
                      "cells": {**{(p, "Events"): len(v) for p, v in pages.items()},
                                **{(p, "Users"): len({e.user for e in v}) for p, v in pages.items()},
                                ("Total", "Events"): len(pv)}},
        "checkout": {"type": "funnel", "tiles": {"entered": funnel_counts[0], "completed": funnel_counts[2]},
                     "columns": {"Count": funnel_counts}},
        "returning": {"type": "retention",
                      "columns": {"Size": sizes, "Day 1": day1, "Day 2": day2}},
        "weekly": {"type": "cohort", "columns": {"Size": [len(week_members)], "Week 1": [0.0]}},
        "sticky": {"type": "stickiness", "tiles": {"users": len(per_user_days)},
                   "columns": {"Users": [per_user_days.count(k) for k in range(1, n_days + 1)]}},
    }


def acme_expected() -> dict[str, dict[str, Any]]:
    return expected_checks(acme_events())


def test_reference_matches_a_count_by_hand() -> None:
    """The reference agrees with counting ROWS by hand (guards the reference itself)."""
    exp = acme_expected()
    assert exp["page_views"]["tiles"] == {"value": 12}
    assert exp["page_views"]["cells"] == {("Previous period*", "Value"): 2}
    assert exp["visitors"]["tiles"] == {"value": 6}          # u1 u2 a1 u3 u4 u5
    assert exp["revenue"]["tiles"] == {"value": 169.5}
    assert exp["daily"]["columns"] == {"Page views": [4, 3, 5]}
    assert exp["top_pages"]["cells"][("/", "Events")] == 6 and exp["top_pages"]["cells"][("/", "Users")] == 5
    assert exp["checkout"]["columns"] == {"Count": [6, 2, 2]}  # u2 and u4 sign up, then buy
    assert exp["returning"]["columns"] == {"Size": [3, 1, 2], "Day 1": [33.33, 0.0, 0.0],
                                          "Day 2": [66.67, 0.0, 0.0]}
    assert exp["weekly"]["columns"] == {"Size": [7], "Week 1": [0.0]}        # first seen in the week of Aug 31, u9 before
    assert exp["sticky"]["columns"] == {"Users": [3, 3, 0]}


# --- building the bundles with erp -------------------------------------------------------------

REPORTS = {
    "overview.yaml": """
id: overview
title: Overview
tenants: [acme]
range: last_30_days
widgets:
  - {id: page_views, type: metric, title: Page views, filters: [{event_type: page_view}]}
  - {id: visitors, type: metric, title: Visitors, measure: users, filters: [{event_type: page_view}]}
  - {id: revenue, type: metric, title: Revenue, measure: sum, property: revenue, unit: USD,
     filters: [{event_type: purchase}]}
  - id: daily
    type: time_series
    title: Page views per day
    interval: day
    series: [{label: Page views, measure: events, filters: [{event_type: page_view}]}]
  - {id: top_pages, type: table, title: Top pages, by: [page_path], filters: [{event_type: page_view}]}
""",
    "journey.yaml": """
id: journey
title: Journey
tenants: [acme]
range: last_30_days
widgets:
  - {id: checkout, type: funnel, title: Checkout, steps: [page_view, signup, purchase], window: 7d}
  - {id: returning, type: retention, title: Returning visitors, period: day, periods: 2}
  - id: weekly
    type: cohort
    title: Weekly cohorts
    period: week
    periods: 1
    value: {property: revenue, event: purchase, per_member: false}
  - {id: sticky, type: stickiness, title: Active days, period: day}
""",
    "xss.yaml": """
id: xss
title: Hostile data
tenants: [evil]
range: last_30_days
widgets:
  - {id: by_type, type: table, title: Event types, by: [event_type]}
  - {id: by_title, type: table, title: Page titles, by: [title], filters: [{event_type: page_view}]}
  - {id: by_path, type: table, title: Paths, by: [page_path], filters: [{event_type: page_view}]}
  - id: trend
    type: time_series
    title: Views by title
    interval: day
    breakdown: {property: title, limit: 5}
    series: [{label: Views, filters: [{event_type: page_view}]}]
""",
}

TENANTS = f"""tenants:
  - tenant_id: acme
    name: Acme Corp
    retention_days: 3650
    timezone: UTC
  - tenant_id: evil
    name: {json.dumps(EVIL_NAME)}
    retention_days: 3650
    timezone: UTC
"""


def erp(project: Path, *commands: str | list[str]) -> Any:
    """Run the real ``erp`` command in ``project``: one command (its ``--json``
    result), or several lists of arguments at once (their results, in order)."""
    runs = [list(c) for c in commands] if isinstance(commands[0], list) else [list(commands)]
    procs = [(args, subprocess.Popen([sys.executable, "-m", "erp.cli.main", *args, "--json"], cwd=project,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args in runs]
    results = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"erp {' '.join(args)} exited {proc.returncode}:\n{out}\n{err}"
        results.append(json.loads(out))
    return results if isinstance(commands[0], list) else results[0]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``erp ingest`` + ``erp build-reports`` on the test's events; the project folder."""
    project = tmp_path_factory.mktemp("erp-project")
    (project / "erp.yaml").write_text("lake: lake\ntenants_file: tenants.yaml\nreports_dir: reports\n")
    (project / "tenants.yaml").write_text(TENANTS, encoding="utf-8")
    (project / "reports").mkdir()
    for name, text in REPORTS.items():
        (project / "reports" / name).write_text(text, encoding="utf-8")
    records = acme_events() + evil_events()
    (project / "events.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    ingested = erp(project, "ingest", "events.ndjson", "--workers", "1")
    assert (ingested["accepted"], ingested["rejected"]) == (len(records), 0), ingested
    window = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--now", NOW]
    result, _ = erp(project, ["build-reports", "--out", "dist", *window],
                    ["build-reports", "--out", "dist-dark", "--theme", "dark", "--tenant", "acme",
                     "--report", "overview", *window])  # two builds side by side: readers only
    assert {(b["tenant_id"], b["report_id"]) for b in result["bundles"]} == {
        ("acme", "overview"), ("acme", "journey"), ("evil", "xss")}
    return project


@dataclass
class Bundle:
    name: str
    folder: Path                     # holds index.html and embed.html
    expected: dict[str, dict[str, Any]]

    @property
    def url(self) -> str:
        return (self.folder / "index.html").as_uri()


@pytest.fixture(params=["overview", "journey"])
def bundle(request: pytest.FixtureRequest, built: Path) -> Bundle:
    exp = acme_expected()
    ids = [w["id"] for w in yaml.safe_load(REPORTS[f"{request.param}.yaml"])["widgets"]]
    assert set(ids) <= set(exp), f"no expectation for {sorted(set(ids) - set(exp))}"
    return Bundle(request.param, built / "dist" / "acme" / request.param, {k: exp[k] for k in ids})


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture
def open_watched(browser: Any) -> Any:
    """``open_watched(url, **context_options)`` -> (page, watch), one new context per
    call; every context is closed after the test."""
    contexts = []

    def opener(url: str | None = None, allowed_origins: tuple[str, ...] = (), **options: Any):
        context, watch = watched_context(browser, allowed_origins, **options)
        contexts.append(context)
        page = open_page(context, url) if url else context.new_page()
        return page, watch

    yield opener
    for c in contexts:
        c.close()


# --- shared checks -----------------------------------------------------------------------------


SUMMARY_ROWS = ("Total", "All cohorts", "Other")


def close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def assert_numbers(found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    """Every expected widget is there, of its type, and draws the expected numbers."""
    for wid, exp in expected.items():
        assert wid in found, f"widget {wid!r} missing; found {sorted(found)}"
        w = found[wid]
        assert w["type"] == exp["type"], (wid, w["type"])
        assert w["visible"], f"widget {wid!r} is not displayed"
        drawn = [v for v in w["values"] if v["rendered"]]
        misstated = [(v["value"], v["text"]) for v in drawn  # (an SVG shape states it by its size)
                     if not (v["in_svg"] and not v["text"]) and not shows(v["text"], number(v["value"]))]
        assert not misstated, f"{wid}: the text does not state its data-value: {misstated}"
        for key, val in exp.get("tiles", {}).items():
            got = [number(v["value"]) for v in drawn if v["key"] == key and v["row"] is None]
            assert got and close(got[0], val), f"{wid}: tile {key!r} shows {got}, expected {val}"
        for (row, col), val in exp.get("cells", {}).items():
            match = (lambda r: r.startswith(row[:-1])) if row.endswith("*") else (lambda r: r == row)
            got = [number(v["value"]) for v in drawn if v["row"] is not None and match(v["row"])
                   and v["column"] == col]
            assert got and close(got[0], val), f"{wid}: cell ({row!r}, {col!r}) shows {got}, expected {val}"
        for col, vals in exp.get("columns", {}).items():
            got = [number(v["value"]) for v in drawn if v["column"] == col and v["row"] not in SUMMARY_ROWS]
            assert len(got) == len(vals) and all(map(close, got, vals)), \
                f"{wid}: column {col!r} shows {got}, expected {vals}"


def is_dark(css: str) -> bool:
    return luminance(css) < 0.2


# --- the harness can fail --------------------------------------------------------------------

MISBEHAVING = """<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src http:; script-src 'unsafe-inline'">
</head><body>
<div style="color: red">an inline style attribute</div>
<img src="http://127.0.0.1:9/pixel.png" alt="">
<script>console.error("boom"); window.__xss = 1; throw new Error("uncaught");</script>
</body></html>
"""


def test_harness_catches_requests_errors_csp_and_xss(open_watched: Callable, tmp_path: Path) -> None:
    page_file = tmp_path / "bad.html"
    page_file.write_text(MISBEHAVING, encoding="utf-8")
    page, watch = open_watched(page_file.as_uri())
    page.wait_for_timeout(100)
    problems = watch.problems()
    assert problems["network requests"] == ["http://127.0.0.1:9/pixel.png"]
    assert "boom" in problems["console errors"]
    assert any("uncaught" in e for e in problems["page errors"])
    assert [v["directive"] for v in problems["CSP violations"]] == ["style-src-attr"]
    assert problems["CSP console messages"]
    assert page.evaluate("window.__xss") == 1
    with pytest.raises(AssertionError):
        watch.assert_clean()


def test_harness_catches_overflow_dark_print_focus_and_handlers(open_watched: Callable, tmp_path: Path) -> None:
    page_file = tmp_path / "wide.html"
    page_file.write_text("""<!doctype html><html><head><meta name="viewport" content="width=device-width">
<style>body{margin:0;background:#000;color:#fff}.wide{width:500px;height:10px}</style></head>
<body><div class="wide"></div><section data-widget-id="w" data-widget-type="time_series">
<svg viewBox="0 0 10 10"><rect data-value="3" width="5" height="5"/></svg>
<details><summary>Data</summary><table><tr><th>Period</th><th>Views</th></tr>
<tr><th>Sep 1</th><td data-value="4" onclick="1">4</td></tr></table></details></section></body></html>""",
                         encoding="utf-8")
    page, _ = open_watched(page_file.as_uri(), viewport={"width": 320, "height": 600})
    over = horizontal_overflow(page)
    assert over["scroll_width"] > over["viewport"] == 320 and over["sticking_out"]
    assert event_handler_attributes(page) == ["TD onclick"]
    expected = {"w": {"type": "time_series", "columns": {"Views": [4]}}}
    with pytest.raises(AssertionError, match="shows \\[\\]"):  # closed <details>: not drawn
        assert_numbers(widgets(page), expected)
    assert open_details(page, click=True) == 1
    assert_numbers(widgets(page), expected)
    with pytest.raises(AssertionError, match="expected \\[5\\]"):
        assert_numbers(widgets(page), {"w": {"type": "time_series", "columns": {"Views": [5]}}})
    page.evaluate("() => { document.querySelector('td[data-value]').textContent = '7'; }")
    with pytest.raises(AssertionError, match="does not state its data-value"):
        assert_numbers(widgets(page), expected)
    assert shows("170", 169.5) and shows("+500.0%", 5.0) and not shows("171", 169.5) and not shows("–", 0)
    assert not any(s["chart"] for s in tab_stops(page, limit=5))  # an unfocusable chart
    page.emulate_media(media="print")
    assert is_dark(page_colors(page)["background"])  # this page prints dark: the check sees it


# --- the bundles -------------------------------------------------------------------------------


def test_bundle_loads_clean_in_light(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, color_scheme="light")
    page.wait_for_timeout(200)  # let scripts settle; late errors are errors too
    watch.assert_clean()
    # zero violations mean something only under a strict policy
    csp = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert "default-src 'none'" in csp and "unsafe-" not in csp, csp
    assert all(u.startswith("file:") for u in watch.requests), watch.requests
    assert event_handler_attributes(page) == []
    assert page.evaluate("document.documentElement.dataset.theme") == "auto"
    colors = page_colors(page)
    assert not is_dark(colors["background"]) and contrast(colors["color"], colors["background"]) >= 4.5, colors
    sizes = chart_text_px(page)  # on a 1024 px screen every chart's text is readable
    assert sizes and min(sizes.values()) >= MIN_CHART_TEXT_PX, sizes
    screenshot(page, f"{bundle.name}-light")
    for wid, exp in bundle.expected.items():
        screenshot(page, f"type-{exp['type']}", element=page.locator(f'[data-widget-id="{wid}"]'))


def test_every_widget_shows_the_expected_numbers(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url)
    open_details(page)
    assert_numbers(widgets(page), bundle.expected)
    watch.assert_clean()


def test_javascript_off_still_shows_every_number(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, java_script_enabled=False)
    assert page.evaluate("document.documentElement.classList.contains('js')") is False  # no script ran
    screenshot(page, f"{bundle.name}-nojs")
    open_details(page, click=True)  # a click on <summary> needs no script
    found = widgets(page)
    assert_numbers(found, bundle.expected)
    for wid in bundle.expected:
        assert all(any(c.isdigit() for c in v["text"]) or v["text"] == "–"
                   for v in found[wid]["values"] if v["rendered"]), found[wid]["values"]
    assert not watch.blocked and not watch.console_errors and not watch.page_errors


def assert_dark_on_screen_light_on_paper(page: Any) -> None:
    colors = page_colors(page)
    assert is_dark(colors["background"]) and contrast(colors["color"], colors["background"]) >= 4.5, colors
    page.emulate_media(media="print")
    colors = page_colors(page)
    assert luminance(colors["background"]) > 0.8 and luminance(colors["color"]) < 0.2, colors


def test_theme_auto_is_dark_for_dark_viewers_but_never_prints_dark(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, color_scheme="dark")
    assert page.evaluate("document.documentElement.dataset.theme") == "auto"
    screenshot(page, f"{bundle.name}-dark")
    assert_dark_on_screen_light_on_paper(page)
    watch.assert_clean()


def test_theme_dark_is_dark_whatever_the_viewer_prefers_but_never_prints_dark(
        built: Path, open_watched: Callable) -> None:
    page, watch = open_watched((built / "dist-dark" / "acme" / "overview" / "index.html").as_uri(),
                               color_scheme="light")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert_dark_on_screen_light_on_paper(page)
    watch.assert_clean()


def test_fits_320px_without_horizontal_overflow(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, viewport={"width": 320, "height": 640})
    open_details(page)  # the data tables too
    over = horizontal_overflow(page)
    assert over["scroll_width"] <= over["viewport"], over
    assert not over["sticking_out"] and not over["clipped"], over
    # over["scrolled"] (charts wider than 320 px inside a box that scrolls sideways) is allowed
    screenshot(page, f"{bundle.name}-320px")
    watch.assert_clean()


def test_a_moved_bundle_works_alone(built: Path, open_watched: Callable, tmp_path: Path) -> None:
    """One bundle folder copied elsewhere, without the rest of dist/, still shows everything."""
    moved = tmp_path / "www" / "some" / "sub path" / "report"
    shutil.copytree(built / "dist" / "acme" / "journey", moved)
    page, watch = open_watched((moved / "index.html").as_uri())
    open_details(page)
    ids = [w["id"] for w in yaml.safe_load(REPORTS["journey.yaml"])["widgets"]]
    assert_numbers(widgets(page), {k: acme_expected()[k] for k in ids})
    assert all(u.startswith((moved.as_uri(), "data:")) for u in watch.requests), watch.requests
    watch.assert_clean()


def test_csv_and_png_downloads_work_offline(built: Path, open_watched: Callable) -> None:
    folder = built / "dist" / "acme" / "overview"
    page, watch = open_watched((folder / "index.html").as_uri())
    with page.expect_download() as dl:
        page.locator('[data-widget-id="top_pages"] [data-csv]').click()
    csv_path = dl.value.path()
    assert dl.value.suggested_filename == "top_pages.csv"
    assert Path(csv_path).read_bytes() == (folder / "top_pages.csv").read_bytes()
    with page.expect_download() as dl:
        page.locator('[data-widget-id="daily"] [data-png]').click()
    assert dl.value.suggested_filename == "daily.png"
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [u for u in watch.requests if not u.startswith(("file:", "data:", "blob:"))]
    watch.assert_clean()


#: The smallest chart text, in CSS px, that stays readable on a phone.
MIN_CHART_TEXT_PX = 9


def test_chart_text_stays_readable_at_320px(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, viewport={"width": 320, "height": 640})
    sizes = chart_text_px(page)
    assert sizes, "no chart text found"
    small = {wid: px for wid, px in sizes.items() if px < MIN_CHART_TEXT_PX}
    assert not small, f"chart text below {MIN_CHART_TEXT_PX} px at 320 px: {small}"
    watch.assert_clean()


def test_keyboard_focus_reaches_every_chart(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url)
    charts = {wid for wid, w in widgets(page).items() if w["charts"]}
    assert charts, "the bundle has no chart"
    stops = tab_stops(page)
    reached = {s["widget"] for s in stops if s["chart"]}
    assert charts <= reached, f"charts never focused: {sorted(charts - reached)}; tab stops {stops}"
    # on a focused chart the arrow keys announce a data point as text
    page.locator('[data-widget-id] svg[tabindex="0"]').first.focus()
    page.keyboard.press("ArrowRight")
    status = page.locator('[role="status"]:visible')
    assert status.count() == 1 and any(c.isdigit() for c in status.inner_text()), "no announced data point"
    watch.assert_clean()


def test_hovering_a_data_point_shows_its_value(built: Path, open_watched: Callable) -> None:
    page, watch = open_watched((built / "dist" / "acme" / "overview" / "index.html").as_uri())
    expected = acme_expected()["daily"]["columns"]["Page views"]
    points = page.locator('[data-widget-id="daily"] svg circle')
    assert points.count() == len(expected)
    tips = []
    for i in range(points.count()):
        box = points.nth(i).bounding_box()  # the mouse to the centre of the dot, as a reader would
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        status = page.locator('[role="status"]:visible')
        tips.append(status.inner_text() if status.count() == 1 else None)
    assert all(tip is not None and tip.rstrip().endswith(f": {value}") for tip, value in zip(tips, expected)), \
        f"tooltips over the points {tips}, expected values {expected}"
    assert len(set(tips)) == len(tips), tips  # each point its own tooltip
    watch.assert_clean()


# --- embedding -------------------------------------------------------------------------------

#: The embed iframe's inner height (without its border), in CSS pixels.
IFRAME_HEIGHT = "() => document.querySelector('iframe:not(#other)').clientHeight"

#: How the bundle's own document fits its frame: its bottom and whether it scrolls.
FIT = """() => {
  let bottom = 0;
  for (const el of document.body.children) {
    const r = el.getBoundingClientRect();
    if (r.height > 0) bottom = Math.max(bottom, r.bottom + window.scrollY);
  }
  const d = document.documentElement;
  return {bottom: Math.ceil(bottom), scroll: d.scrollHeight - d.clientHeight, inner: window.innerHeight};
}"""


def embed_frame(page: Any, bundle_url: str) -> Any:
    """The bundle's frame, once it has loaded (the snippet's iframe may be lazy)."""
    for _ in range(60):
        for frame in page.frames:
            if frame.url == bundle_url:
                frame.wait_for_load_state("load")
                return frame
        page.wait_for_timeout(50)
    raise AssertionError(f"no frame for {bundle_url}; frames {[f.url for f in page.frames]}")


def wait_fitted(page: Any, frame: Any, timeout_ms: int = 3000) -> int:
    """Wait until the iframe shows the whole bundle (no scrolling, at most 48 px of
    empty space below it); the iframe height then."""
    fit: dict[str, int] = {}
    height = -1
    for _ in range(timeout_ms // 50):
        height = page.evaluate(IFRAME_HEIGHT)
        fit = frame.evaluate(FIT)
        if fit["scroll"] <= 1 and fit["bottom"] <= height and height - fit["bottom"] <= 48:
            return height
        page.wait_for_timeout(50)
    raise AssertionError(f"the iframe ({height}px) does not fit its content {fit}")


def assert_height_stays(page: Any, height: int, ms: int = 400) -> None:
    """The iframe keeps ``height`` and at most one more resize message arrives (no loop)."""
    before = page.evaluate("window.__messages.length")
    page.wait_for_timeout(ms)
    assert page.evaluate(IFRAME_HEIGHT) == height
    assert page.evaluate("window.__messages.length") - before <= 1


FORGE = """([msg, height]) => {
  // the bundle's own message shape with another value in place of its number
  if (typeof msg === "number") return height;
  const out = JSON.parse(JSON.stringify(msg));
  for (const k of Object.keys(out)) if (typeof out[k] === "number") out[k] = height;
  return out;
}"""

NOT_NUMBERS = ["5000", "5000px", None, True, [5000], {"height": 5000}, "<img src=x onerror=window.__xss=1>"]


def check_embed(page: Any, bundle_url: str, shot: str | None = None) -> None:
    frame = embed_frame(page, bundle_url)
    first = wait_fitted(page, frame)
    if shot:
        screenshot(page, shot)

    # up: a widget grows by 1500 px
    frame.evaluate("""() => { const d = document.createElement("div"); d.id = "__grow";
        d.style.height = "1500px"; document.querySelector("[data-widget-id]").appendChild(d); }""")
    assert wait_fitted(page, frame) >= first + 1500
    # down: back, then below the original height (all widgets but the first hidden)
    frame.evaluate("() => document.getElementById('__grow').remove()")
    assert abs(wait_fitted(page, frame) - first) <= 1
    frame.evaluate("""() => { const ws = document.querySelectorAll("[data-widget-id]");
        for (let i = 1; i < ws.length; i++) ws[i].style.display = "none"; }""")
    small = wait_fitted(page, frame)
    assert small < first - 100
    assert_height_stays(page, small)

    # forged messages: the right shape from another frame and from the host itself,
    # and non-numbers (or non-finite numbers) from the bundle's own frame
    messages = page.evaluate("window.__messages")
    assert messages, "the bundle never posted a resize message to the host"
    shape = messages[-1]
    forged = page.evaluate(FORGE, [shape, 4321])
    page.query_selector("#other").content_frame().evaluate("(m) => window.parent.postMessage(m, '*')", forged)
    page.evaluate("(m) => window.postMessage(m, '*')", forged)
    for junk in NOT_NUMBERS:
        frame.evaluate("(m) => window.parent.postMessage(m, '*')", page.evaluate(FORGE, [shape, junk]))
    frame.evaluate("""(shape) => { for (const x of [NaN, Infinity, -Infinity])
        window.parent.postMessage(typeof shape === "number" ? x : Object.fromEntries(
          Object.entries(shape).map(([k, v]) => [k, typeof v === "number" ? x : v])), "*"); }""", shape)
    page.wait_for_timeout(300)
    assert page.evaluate(IFRAME_HEIGHT) == small, "a forged resize message was obeyed"
    assert page.evaluate("window.__xss") is None
    # the same channel with a finite number from the bundle's frame is obeyed: the
    # rejections above are not an artefact of the test
    frame.evaluate("(m) => window.parent.postMessage(m, '*')", page.evaluate(FORGE, [shape, 777]))
    page.wait_for_function(f"() => ({IFRAME_HEIGHT})() === 777", timeout=3000)


def test_embed_resizes_on_a_file_host_page(bundle: Bundle, open_watched: Callable, tmp_path: Path) -> None:
    """Host page in another folder, bundle from file://."""
    snippet = embed_snippet((bundle.folder / "embed.html").read_text(encoding="utf-8"), bundle.url)
    host = write_host_page(tmp_path / "elsewhere" / "site", snippet)
    page, watch = open_watched()
    page.add_init_script(MESSAGE_RECORDER)
    page.goto(host.as_uri(), wait_until="load")
    check_embed(page, bundle.url)
    watch.assert_clean()


def test_embed_resizes_cross_origin_over_http(built: Path, open_watched: Callable, tmp_path: Path) -> None:
    """Host and bundle on two 127.0.0.1 servers (two origins), as on a real site."""
    bundle = Bundle("overview", built / "dist" / "acme" / "overview", {})
    with static_server(bundle.folder) as bundle_origin:
        bundle_url = f"{bundle_origin}/index.html"
        snippet = embed_snippet((bundle.folder / "embed.html").read_text(encoding="utf-8"), bundle_url)
        site = tmp_path / "site"
        write_host_page(site, snippet)
        with static_server(site) as host_origin:
            page, watch = open_watched(allowed_origins=(bundle_origin, host_origin))
            page.add_init_script(MESSAGE_RECORDER)
            page.goto(f"{host_origin}/host.html", wait_until="load")
            assert page.evaluate("location.origin") == host_origin != bundle_origin
            check_embed(page, bundle_url, shot=f"{bundle.name}-embedded")
            watch.assert_clean()


def test_embed_page_preview_is_clean(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched((bundle.folder / "embed.html").as_uri())
    frame = embed_frame(page, bundle.url)
    wait_fitted(page, frame)
    watch.assert_clean()


# --- hostile data ------------------------------------------------------------------------------


def assert_inert(page: Any, watch: Any) -> None:
    for frame in page.frames:
        assert frame.evaluate("() => window.__xss") is None, f"a payload ran in {frame.url}"
        assert frame.evaluate("() => document.querySelectorAll('img').length") == 0, frame.url
        assert event_handler_attributes(frame) == [], frame.url
    watch.assert_clean()  # injected markup would also show up as a CSP violation


def test_xss_payloads_are_inert_and_shown_as_text(built: Path, open_watched: Callable) -> None:
    folder = built / "dist" / "evil" / "xss"
    page, watch = open_watched((folder / "index.html").as_uri())
    page.wait_for_timeout(200)
    assert_inert(page, watch)
    open_details(page)
    text = page.evaluate("document.body.innerText")
    for payload in PAYLOADS + [EVIL_NAME, EVIL_PATH]:
        assert payload in text, f"not shown as text: {payload!r}"
    assert EVIL_NAME in page.title()
    screenshot(page, "xss")
    for p in page.locator("svg").all():  # hover every chart: tooltips are text too
        p.hover()
    assert page.evaluate("window.__xss") is None


@pytest.mark.parametrize("which", ["embed.html", "site index", "host page"])
def test_xss_payloads_are_inert_around_the_bundle(built: Path, open_watched: Callable, tmp_path: Path,
                                                  which: str) -> None:
    folder = built / "dist" / "evil" / "xss"
    if which == "embed.html":
        url = (folder / "embed.html").as_uri()
    elif which == "site index":
        url = (built / "dist" / "index.html").as_uri()
    else:
        snippet = embed_snippet((folder / "embed.html").read_text(encoding="utf-8"), (folder / "index.html").as_uri())
        url = write_host_page(tmp_path / "site", snippet).as_uri()
    page, watch = open_watched(url)
    page.wait_for_timeout(200)
    assert_inert(page, watch)
    if which == "embed.html":
        assert EVIL_NAME in page.title()
    elif which == "site index":
        assert EVIL_NAME in page.evaluate("document.body.innerText")
