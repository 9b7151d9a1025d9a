"""Report bundles in a real browser (Debian's chromium, headless, via Playwright).

Bundles are opened from ``file://`` and must: make no network request, log no
console error, cause zero CSP violations, show every widget with the numbers a
plain-Python reference computes from the test's own events, resize their iframe
embed both ways on a host page (and ignore forged resize messages), keep XSS
payloads from events inert and visible as text, follow ``prefers-color-scheme``
with theme ``auto``, never print dark, fit 320 px, let the keyboard reach every
chart, and show every number with JavaScript off.

The harness's own checks are shown to fail on pages built to misbehave
(``test_harness_*``). Screenshots go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from browser import (
    MESSAGE_RECORDER, contrast, copy_tree, embed_snippet, horizontal_overflow, launch, luminance,
    number, open_page, page_colors, screenshot, start_playwright, static_server, tab_stops,
    watched_context, widgets, write_host_page,
)

FIXTURES = Path(__file__).parent / "fixtures" / "browser"

# --- the test's own events and a plain-Python reference ------------------------------------

SINCE, UNTIL = date(2026, 9, 1), date(2026, 9, 3)

#: (day, hh:mm, event_type, user, page path, revenue). Users starting with "a" are
#: anonymous ids. Days 2026-08-29..31 are the previous period of the 3-day range.
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


def overview_events(tenant: str = "acme") -> list[dict[str, Any]]:
    """The events as NDJSON records (UTC timestamps)."""
    out = []
    for n, (day, hhmm, etype, user, path, revenue) in enumerate(ROWS, 1):
        rec: dict[str, Any] = {"event_id": f"{tenant}-{n:03d}", "tenant_id": tenant, "event_type": etype,
                               "timestamp": f"{day}T{hhmm}:00Z"}
        rec["anonymous_id" if user.startswith("a") else "user_id"] = user
        props: dict[str, Any] = {}
        if path:
            props["page_url"] = f"https://{tenant}.example.com{path}"
        if revenue is not None:
            props["revenue"] = revenue
        if props:
            rec["properties"] = props
        out.append(rec)
    return out


@dataclass(frozen=True)
class Ev:
    day: date
    event_type: str
    user: str
    path: str | None
    revenue: float | None


def parse(records: list[dict[str, Any]]) -> list[Ev]:
    out = []
    for r in records:
        ts = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).astimezone(timezone.utc)
        url = r.get("properties", {}).get("page_url")
        out.append(Ev(ts.date(), r["event_type"], r.get("user_id") or r.get("anonymous_id"),
                      "/" + url.split("/", 3)[3] if url else None, r.get("properties", {}).get("revenue")))
    return out


def in_range(evs: list[Ev], since: date, until: date, etype: str | None = None) -> list[Ev]:
    return [e for e in evs if since <= e.day <= until and (etype is None or e.event_type == etype)]


def expected_overview(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the overview report must show, by widget id: ``value`` for KPIs,
    ``points`` {key: value} for charts and tables (UTC days)."""
    evs = parse(records)
    days = (UNTIL - SINCE).days + 1
    prev_since, prev_until = SINCE - timedelta(days=days), SINCE - timedelta(days=1)
    pv = in_range(evs, SINCE, UNTIL, "page_view")
    prev_pv = in_range(evs, prev_since, prev_until, "page_view")
    purchases = in_range(evs, SINCE, UNTIL, "purchase")
    per_day = Counter(e.day.isoformat() for e in pv)
    pages = Counter(e.path for e in pv)
    return {
        "page_views": {"type": "metric", "value": len(pv), "previous": len(prev_pv)},
        "visitors": {"type": "metric", "value": len({e.user for e in pv})},
        "revenue": {"type": "metric", "value": sum(e.revenue or 0 for e in purchases)},
        "daily": {"type": "time_series",
                  "points": {(SINCE + timedelta(days=i)).isoformat(): per_day.get((SINCE + timedelta(days=i)).isoformat(), 0)
                             for i in range(days)}},
        "top_pages": {"type": "table", "points": dict(pages)},
    }


def test_reference_is_plain_arithmetic() -> None:
    """The reference agrees with a count done by hand on ROWS (guards the reference)."""
    exp = expected_overview(overview_events())
    assert exp["page_views"]["value"] == 12 and exp["page_views"]["previous"] == 2
    assert exp["visitors"]["value"] == 6  # u1 u2 a1 u3 u4 u5
    assert exp["revenue"]["value"] == 169.5
    assert exp["daily"]["points"] == {"2026-09-01": 4, "2026-09-02": 3, "2026-09-03": 5}
    assert exp["top_pages"]["points"] == {"/": 6, "/pricing": 4, "/docs": 2}


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Any:
    playwright = start_playwright()
    try:
        chromium = launch(playwright)
    except Exception:
        playwright.stop()
        raise
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def open_watched(browser: Any) -> Any:
    """``open_watched(url, **context_options)`` -> (page, watch); contexts are closed after the test."""
    contexts = []

    def opener(url: str | None = None, allowed_origins: tuple[str, ...] = (), **options: Any):
        context, watch = watched_context(browser, allowed_origins, **options)
        contexts.append(context)
        page = open_page(context, url) if url else context.new_page()
        return page, watch

    yield opener
    for c in contexts:
        c.close()


# --- the bundles under test ------------------------------------------------------------------


@dataclass
class Bundle:
    name: str
    folder: Path                     # holds index.html and embed.html
    expected: dict[str, dict[str, Any]]

    @property
    def url(self) -> str:
        return (self.folder / "index.html").as_uri()


@pytest.fixture(scope="session")
def fixture_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The hand-written stand-in bundle, copied so that tests may write beside it."""
    folder = copy_tree(FIXTURES / "dist", tmp_path_factory.mktemp("fixture") / "dist")
    return Bundle("fixture-overview", folder / "acme" / "overview", expected_overview(overview_events()))


@pytest.fixture(params=["fixture"])
def bundle(request: pytest.FixtureRequest) -> Bundle:
    return request.getfixturevalue(f"{request.param}_bundle")


# --- checks shared by the bundle tests -------------------------------------------------------


def close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def assert_numbers(found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]],
                   *, rendered: bool = True) -> None:
    """Every expected widget is there, of its type, and shows the expected numbers."""
    for wid, exp in expected.items():
        assert wid in found, f"widget {wid!r} missing; found {sorted(found)}"
        w = found[wid]
        assert w["type"] == exp["type"], (wid, w["type"])
        assert w["visible"], f"widget {wid!r} is not displayed"
        values = [v for v in w["values"] if v["rendered"] or not rendered]
        if "value" in exp:
            assert values, f"{wid}: no rendered [data-value]"
            assert close(number(values[0]["value"]), exp["value"]), (wid, values[0], exp["value"])
        if "previous" in exp:
            prev = [v for v in values if v["attrs"].get("key") == "previous"]
            assert prev and close(number(prev[0]["value"]), exp["previous"]), (wid, values)
        if "points" in exp:
            got = {v["attrs"].get("key"): number(v["value"]) for v in values if "key" in v["attrs"]}
            for key, val in exp["points"].items():
                assert key in got, f"{wid}: no rendered value for {key!r}; found {sorted(map(str, got))}"
                assert close(got[key], val), (wid, key, got[key], val)


def is_dark(css: str) -> bool:
    return luminance(css) < 0.2


# --- the harness can fail --------------------------------------------------------------------

MISBEHAVING = """<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src http:; script-src 'unsafe-inline'">
</head><body>
<div style="color: red">an inline style attribute</div>
<img src="http://127.0.0.1:9/pixel.png" alt="">
<script>console.error("boom"); window.__xss = 1; throw new Error("uncaught");</script>
<div class="wide"></div>
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


def test_harness_catches_overflow_dark_print_and_focus(open_watched: Callable, tmp_path: Path) -> None:
    page_file = tmp_path / "wide.html"
    page_file.write_text("""<!doctype html><html><head><meta name="viewport" content="width=device-width">
<style>body{margin:0;background:#000;color:#fff}.wide{width:500px;height:10px}</style></head>
<body><div class="wide"></div><section data-widget-id="w" data-widget-type="time_series">
<svg viewBox="0 0 10 10"><rect data-value="3" width="5" height="5"/></svg></section></body></html>""",
                         encoding="utf-8")
    page, _ = open_watched(page_file.as_uri(), viewport={"width": 320, "height": 600})
    over = horizontal_overflow(page)
    assert over["scroll_width"] > over["viewport"] == 320 and over["sticking_out"]
    page.emulate_media(media="print")
    assert is_dark(page_colors(page)["background"])  # this page prints dark: the check sees it
    assert not any(s["chart"] for s in tab_stops(page, limit=5))  # an unfocusable chart


# --- the bundle tests ------------------------------------------------------------------------


def test_bundle_loads_clean(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url)
    page.wait_for_timeout(200)  # let scripts settle; late errors are errors too
    watch.assert_clean()
    assert all(u.startswith("file:") for u in watch.requests), watch.requests
    screenshot(page, f"{bundle.name}-light")
    for wtype in sorted({e["type"] for e in bundle.expected.values()}):
        el = page.locator(f'[data-widget-type="{wtype}"]').first
        screenshot(page, f"{bundle.name}-{wtype}", element=el)


def test_widgets_show_expected_numbers(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url)
    assert_numbers(widgets(page), bundle.expected)
    watch.assert_clean()


def test_javascript_off_still_shows_every_number(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, java_script_enabled=False)
    assert page.evaluate("1") == 1  # evaluate works; the page's own scripts do not run
    found = widgets(page)
    assert_numbers(found, bundle.expected)
    for wid, exp in bundle.expected.items():
        if "value" in exp:
            shown = found[wid]["values"][0]["text"]
            assert any(ch.isdigit() for ch in shown), (wid, shown)
    screenshot(page, f"{bundle.name}-nojs")
    assert not watch.blocked and not watch.console_errors


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_theme_auto_follows_color_scheme(bundle: Bundle, open_watched: Callable, scheme: str) -> None:
    page, watch = open_watched(bundle.url, color_scheme=scheme)
    assert page.evaluate("document.documentElement.dataset.theme || 'auto'") == "auto"
    colors = page_colors(page)
    assert is_dark(colors["background"]) == (scheme == "dark"), colors
    assert contrast(colors["color"], colors["background"]) >= 4.5, colors
    if scheme == "dark":
        screenshot(page, f"{bundle.name}-dark")
    watch.assert_clean()


def test_print_is_never_dark(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, color_scheme="dark")
    assert is_dark(page_colors(page)["background"])  # dark on screen ...
    page.emulate_media(media="print", color_scheme="dark")
    colors = page_colors(page)
    assert luminance(colors["background"]) > 0.8 and luminance(colors["color"]) < 0.2, colors  # ... not on paper
    watch.assert_clean()


def test_fits_320px_without_horizontal_overflow(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url, viewport={"width": 320, "height": 640})
    over = horizontal_overflow(page)
    assert over["scroll_width"] <= over["viewport"] and not over["sticking_out"], over
    screenshot(page, f"{bundle.name}-320px")
    watch.assert_clean()


def test_keyboard_focus_reaches_every_chart(bundle: Bundle, open_watched: Callable) -> None:
    page, watch = open_watched(bundle.url)
    charts = {wid for wid, w in widgets(page).items() if w["charts"]}
    assert charts, "the bundle has no chart"
    stops = tab_stops(page)
    reached = {s["widget"] for s in stops if s["chart"]}
    assert charts <= reached, f"charts never focused: {sorted(charts - reached)}; tab stops {stops}"
    watch.assert_clean()


# --- embedding -------------------------------------------------------------------------------

#: The embed iframe's inner height (without its border), in CSS pixels.
IFRAME_HEIGHT = "() => document.querySelector('iframe.erp-embed, iframe:not(#other)').clientHeight"


def embed_frame(page: Any, bundle_url: str) -> Any:
    for frame in page.frames:
        if frame.url == bundle_url:
            return frame
    raise AssertionError(f"no frame for {bundle_url}; frames {[f.url for f in page.frames]}")


def content_height(frame: Any) -> int:
    return frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")


def wait_iframe_height(page: Any, target: int, tolerance: int = 2) -> int:
    page.wait_for_function(f"(t) => Math.abs(({IFRAME_HEIGHT})() - t) <= {tolerance}", arg=target,
                           timeout=3000)
    return page.evaluate(IFRAME_HEIGHT)


def assert_height_stays(page: Any, height: int, ms: int = 400) -> None:
    """The iframe keeps ``height`` and no further resize message arrives (no loop)."""
    before = page.evaluate("window.__messages.length")
    page.wait_for_timeout(ms)
    assert page.evaluate(IFRAME_HEIGHT) == height
    assert page.evaluate("window.__messages.length") - before <= 1


FORGE = """([msg, height]) => {
  // the bundle's own message shape with another height in place of its number
  if (typeof msg === "number") return height;
  const out = JSON.parse(JSON.stringify(msg));
  for (const k of Object.keys(out)) if (typeof out[k] === "number") out[k] = height;
  return out;
}"""

NOT_NUMBERS = ["5000", "5000px", None, True, [5000], {"height": "5000"},
               "<img src=x onerror=window.__xss=1>"]


def check_embed(page: Any, bundle_url: str) -> None:
    frame = embed_frame(page, bundle_url)
    h0 = content_height(frame)
    wait_iframe_height(page, h0)

    # up: content grows by 1500 px
    frame.evaluate("""() => { const d = document.createElement("div"); d.id = "__grow";
                              d.style.height = "1500px"; document.body.appendChild(d); }""")
    h1 = content_height(frame)
    assert h1 >= h0 + 1500
    wait_iframe_height(page, h1)
    # down: back to the original content, then below it
    frame.evaluate("() => document.getElementById('__grow').remove()")
    wait_iframe_height(page, h0)
    frame.evaluate("""() => { for (const el of document.body.children)
                               if (el.tagName !== "SCRIPT") el.style.display = "none"; }""")
    h2 = content_height(frame)
    assert h2 < h0 - 100
    settled = wait_iframe_height(page, h2)
    assert_height_stays(page, settled)

    # forged messages: the right shape from another frame, and non-numbers from the bundle's frame
    messages = page.evaluate("window.__messages")
    assert messages, "the bundle never posted a resize message to the host"
    shape = messages[-1]
    forged = page.evaluate(FORGE, [shape, 4321])
    page.query_selector("#other").content_frame().evaluate("(m) => window.parent.postMessage(m, '*')", forged)
    page.evaluate("(m) => window.postMessage(m, '*')", forged)  # the host page itself
    for junk in NOT_NUMBERS:
        frame.evaluate("(m) => window.parent.postMessage(m, '*')", page.evaluate(FORGE, [shape, junk]))
    page.wait_for_timeout(300)
    assert page.evaluate(IFRAME_HEIGHT) == settled, "a forged resize message was obeyed"
    assert page.evaluate("window.__xss") is None
    # the same channel with a real number from the bundle's frame is obeyed: the
    # rejections above are not an artefact of the test
    frame.evaluate("(m) => window.parent.postMessage(m, '*')", page.evaluate(FORGE, [shape, 777]))
    wait_iframe_height(page, 777)


def test_embed_resizes_on_file_host_page(bundle: Bundle, open_watched: Callable, tmp_path: Path) -> None:
    """Host page in another folder, bundle from file://."""
    snippet = embed_snippet((bundle.folder / "embed.html").read_text(encoding="utf-8"), bundle.url)
    host = write_host_page(tmp_path / "elsewhere" / "site", snippet)
    page, watch = open_watched()
    page.add_init_script(MESSAGE_RECORDER)
    page.goto(host.as_uri(), wait_until="load")
    check_embed(page, bundle.url)
    screenshot(page, f"{bundle.name}-embed")
    watch.assert_clean()


def test_embed_resizes_cross_origin_over_http(bundle: Bundle, open_watched: Callable, tmp_path: Path) -> None:
    """Host and bundle on two 127.0.0.1 servers (two origins), as on a real site."""
    with static_server(bundle.folder) as bundle_origin:
        bundle_url = f"{bundle_origin}/index.html"
        snippet = embed_snippet((bundle.folder / "embed.html").read_text(encoding="utf-8"), bundle_url)
        site = tmp_path / "site"
        write_host_page(site, snippet)
        with static_server(site) as host_origin:
            page, watch = open_watched(allowed_origins=(bundle_origin, host_origin))
            page.add_init_script(MESSAGE_RECORDER)
            page.goto(f"{host_origin}/host.html", wait_until="load")
            assert page.evaluate("location.origin") != page.evaluate(
                "(u) => new URL(u).origin", bundle_url)
            check_embed(page, bundle_url)
            watch.assert_clean()
