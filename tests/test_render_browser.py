"""The bundle's own script in the real headless Chromium (Debian's, via Playwright):
CSV and PNG downloads, keyboard and pointer tooltips, long-series tooltips read from
the data table, all under the page's CSP with no network request. Skips (fails when
CI=true) without chromium or Playwright."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from browser import watched_context
from erp.reports.render.bundle import render_bundle

FIXTURES = Path(__file__).parent / "fixtures" / "reports"


def write(folder: Path, report: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in render_bundle(report).items():
        (folder / name).write_bytes(data)
    return folder / "index.html"


def long_series() -> dict[str, Any]:
    """The traffic fixture with an hourly series of 720 buckets (the script's data-table path)."""
    r = json.loads((FIXTURES / "traffic.json").read_text())
    w = r["widgets"][2]
    n = 720
    w["data"]["interval"] = "hour"
    w["data"]["buckets"] = [{"start": f"2026-10-{1 + i // 24:02d}T{i % 24:02d}:00:00-04:00",
                             "end": "", "label": f"2026-10-{1 + i // 24:02d} {i % 24:02d}:00",
                             "incomplete": False, "partial": False} for i in range(n)]
    for k, s in enumerate(w["data"]["series"]):
        s["values"] = [(i * (k + 3)) % 97 for i in range(n)]
        s["total"] = sum(s["values"])
    r["widgets"] = [w]
    return r


def test_csv_and_png_downloads_work_under_the_csp(browser: Any, tmp_path: Path) -> None:
    index = write(tmp_path / "traffic", json.loads((FIXTURES / "traffic.json").read_text()))
    context, watch = watched_context(browser, accept_downloads=True)
    page = context.new_page()
    page.goto(index.as_uri(), wait_until="load")
    with page.expect_download() as info:
        page.click('[data-widget-id="top_pages"] a[data-csv]')
    dl = info.value
    assert dl.suggested_filename == "top_pages.csv"
    assert Path(dl.path()).read_bytes() == (index.parent / "top_pages.csv").read_bytes()
    png_button = page.locator('[data-widget-id="daily"] button[data-png]')
    assert png_button.is_visible()  # shown only when the script runs
    with page.expect_download() as info:
        png_button.click()
    dl = info.value
    data = Path(dl.path()).read_bytes()
    assert dl.suggested_filename == "daily.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 480)  # the 640 x 240 chart at 2x
    watch.assert_clean()
    context.close()


def test_keyboard_and_pointer_tooltips(browser: Any, tmp_path: Path) -> None:
    index = write(tmp_path / "traffic", json.loads((FIXTURES / "traffic.json").read_text()))
    context, watch = watched_context(browser)
    page = context.new_page()
    page.goto(index.as_uri(), wait_until="load")
    svg = page.locator('[data-widget-id="daily"] svg.chart-svg')
    svg.focus()
    tip = page.locator("#erp-tip")
    assert tip.is_visible() and tip.text_content().startswith("Oct 20")
    page.keyboard.press("ArrowRight")
    assert tip.text_content().startswith("Oct 21 — Page views: ")
    page.keyboard.press("End")
    assert "(incomplete)" in tip.text_content()
    page.keyboard.press("Escape")
    assert not tip.is_visible()
    bar = page.locator('[data-widget-id="top_pages"] rect.hit').first
    bar.hover()
    assert tip.is_visible() and tip.text_content() == "/pricing: 1,200 events (30.0% of events)"
    watch.assert_clean()
    context.close()


def test_long_series_tooltips_come_from_the_data_table(browser: Any, tmp_path: Path) -> None:
    report = long_series()
    index = write(tmp_path / "long", report)
    html = index.read_text()
    assert html.count('class="hit"') == 0 and 'class="hits"' in html
    context, watch = watched_context(browser)
    page = context.new_page()
    page.goto(index.as_uri(), wait_until="load")
    svg = page.locator("svg.chart-svg")
    svg.focus()
    page.keyboard.press("End")
    tip = page.locator("#erp-tip")
    values = report["widgets"][0]["data"]["series"]
    assert tip.text_content() == f"Oct 30 23:00 — Page views: {values[0]['values'][-1]}, Visitors: {values[1]['values'][-1]}"
    box = page.locator("rect.hits").bounding_box()
    page.mouse.move(box["x"] + 0.2, box["y"] + box["height"] / 2)  # buckets are ~1.3 px apart
    assert tip.text_content().startswith("Oct 1 00:00 — ")
    assert page.locator("line.guide").count() == 1
    watch.assert_clean()
    context.close()
