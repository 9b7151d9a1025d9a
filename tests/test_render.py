"""The renderer on fixed report JSON (tests/fixtures/reports/*.json, shaped as in
docs/reports.md and docs/behaviour.md): escaping, CSP, CSV, determinism, charts."""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import io
import json
import re
from html import unescape as html_unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from erp.core.errors import ConfigError
from erp.reports.render.bundle import Options, csv_cell, render_bundle, script_json, to_csv
from erp.reports.render.views import VIEWS

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
PAYLOAD = "</script><img src=x onerror=alert(1)>"
ALL_TYPES = {"metric", "time_series", "table", "funnel", "retention", "cohort", "lifecycle", "stickiness"}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixtures() -> list[dict[str, Any]]:
    return [load(p.stem) for p in sorted(FIXTURES.glob("*.json"))]


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of <style>/<script> blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: list[tuple[str, dict[str, str | None], str]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("script", "style"):
            self._open, self._text = (tag, a), []

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            self.blocks.append((tag, self._open[1], "".join(self._text)))
            self._open = None

    def handle_data(self, data):
        if self._open:
            self._text.append(data)
        else:
            self.text.append(data)


def parse(html: bytes | str) -> Page:
    p = Page()
    p.feed(html.decode() if isinstance(html, bytes) else html)
    return p


def hostile(report: dict[str, Any]) -> dict[str, Any]:
    """Every text a tenant's events (or its config) can put into a report replaced by an
    XSS payload: labels, names, keys, values, titles, cohort and period texts."""
    r = copy.deepcopy(report)
    text_keys = {"label", "labels", "name", "title", "report_name", "value", "key", "keys", "event_types",
                 "property", "unit", "by", "measure"}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in text_keys and isinstance(v, str):
                    node[k] = PAYLOAD + v
                elif k in text_keys and isinstance(v, list) and all(isinstance(x, (str, type(None))) for x in v):
                    node[k] = [PAYLOAD + (x or "") for x in v]
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)
        return node

    return walk(r)


def test_fixtures_cover_every_widget_type():
    seen = {w["type"] for r in fixtures() for w in r["widgets"]}
    assert seen == ALL_TYPES
    assert ALL_TYPES <= set(VIEWS)


@pytest.mark.parametrize("report", fixtures(), ids=lambda r: r["report_id"])
def test_every_widget_has_ids_numbers_summary_and_table(report):
    html = render_bundle(report)["index.html"].decode()
    page = parse(html)
    sections = [a for t, a in page.tags if t == "section"]
    assert [(a["data-widget-id"], a["data-widget-type"]) for a in sections] == \
        [(w["widget_id"], w["type"]) for w in report["widgets"]]
    for w in report["widgets"]:
        block = html.split(f'data-widget-id="{w["widget_id"]}"', 1)[1].split("</section>", 1)[0]
        assert f'id="w-{w["widget_id"]}-s"' in block  # the text summary
        assert "<details" in block and "<table>" in block  # the data table
        assert "data-value=" in block
        if w["type"] != "metric":
            assert "<svg" in block and "<title" in block  # every chart has a title


def test_key_numbers_are_in_data_values():
    r = load("traffic")
    html = render_bundle(r)["index.html"].decode()
    visitors = html.split('data-widget-id="visitors"', 1)[1].split("</section>", 1)[0]
    assert 'class="tile-value" data-value="8123">8,123</div>' in visitors
    assert "▲ +9.6%" in visitors
    revenue = html.split('data-widget-id="revenue"', 1)[1].split("</section>", 1)[0]
    assert 'data-value="1234.5">1,234.50 USD' in revenue
    assert "▼ -17.7%" in revenue
    daily = html.split('data-widget-id="daily"', 1)[1].split("</section>", 1)[0]
    total = sum(r["widgets"][2]["data"]["series"][0]["values"])
    assert f'data-value="{total}"' in daily
    b = load("behaviour")
    html = render_bundle(b)["index.html"].decode()
    funnel = html.split('data-widget-id="checkout"', 1)[1].split("</section>", 1)[0]
    assert 'data-value="1000">1,000<' in funnel and 'data-value="12.0">12.0%<' in funnel


@pytest.mark.parametrize("report", fixtures(), ids=lambda r: r["report_id"])
def test_hostile_values_are_text_in_every_widget_type(report):
    bad = hostile(report)
    bad["widgets"] = [dict(w, title=PAYLOAD) for w in bad["widgets"]]
    files = render_bundle(bad, tenant_name=PAYLOAD)
    for name in ("index.html", "embed.html"):
        page = parse(files[name])
        tags = [t for t, _ in page.tags]
        assert "img" not in tags
        assert tags.count("script") == (2 if name == "index.html" else 1)
        for _, attrs in page.tags:
            assert not any(k.startswith("on") for k in attrs), attrs
        # the payload is shown, as text, where it was
        assert PAYLOAD in "".join(page.text) or name == "embed.html"
    html = files["index.html"].decode()
    assert html.count("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") > len(report["widgets"])
    data_block = html.split('<script type="application/json" id="erp-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data_block and ">" not in data_block
    assert json.loads(data_block)["csv"]  # still valid JSON that the script can read


def test_script_json_escapes_everything_that_could_end_the_block():
    text = str(script_json({"a": "</script><!-- & \u2028\u2029 >"}))
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028\u2029 >"}


@pytest.mark.parametrize("report", fixtures(), ids=lambda r: r["report_id"])
def test_csp_hashes_match_the_inline_blocks(report):
    html = render_bundle(report)["index.html"].decode()
    page = parse(html)
    meta = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(meta) == 1
    policy = dict(d.strip().split(" ", 1) for d in meta[0]["content"].split(";"))
    assert policy["default-src"] == "'none'"

    def h(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    styles = [text for tag, _, text in page.blocks if tag == "style"]
    scripts = [text for tag, a, text in page.blocks if tag == "script" and a.get("type") != "application/json"]
    assert len(styles) == 1 and len(scripts) == 1
    assert policy["style-src"] == h(styles[0])
    assert policy["script-src"] == h(scripts[0])
    embed = html_unescape(render_bundle(report)["embed.html"].decode())
    assert "Content-Security-Policy: " + meta[0]["content"] in embed  # the header snippet is the same policy


@pytest.mark.parametrize("report", fixtures(), ids=lambda r: r["report_id"])
def test_no_style_attributes_handlers_or_network_references(report):
    files = render_bundle(report, options=Options(theme="dark", transparent=True))
    for name in ("index.html", "embed.html"):
        page = parse(files[name])
        for tag, attrs in page.tags:
            assert "style" not in attrs, (name, tag)
            assert not any(k.startswith("on") for k in attrs), (name, tag, attrs)
            for k, v in attrs.items():
                assert not re.search(r"^\s*(https?:|//|javascript:)", v or "", re.I), (name, tag, k, v)
                if tag in ("img", "script", "link", "iframe") and k in ("src", "href"):
                    assert "://" not in (v or "")
        for tag, _, text in page.blocks:
            assert "http://" not in text and "https://" not in text, (name, tag)
            assert "url(" not in text and "@import" not in text
            assert "eval(" not in text and "new Function" not in text
    assert b"<link" not in files["index.html"]


def test_themes_and_transparency_are_attributes_of_the_page():
    r = load("traffic")
    for theme in ("light", "dark", "auto"):
        html = render_bundle(r, options=Options(theme=theme))["index.html"].decode()
        assert f'<html lang="en" data-theme="{theme}">' in html
    html = render_bundle(r, options=Options(transparent=True))["index.html"].decode()
    assert 'class="transparent"' in html
    style = parse(html).blocks[0][2]
    assert "@media (prefers-color-scheme:dark){[data-theme=auto]" in style
    assert "@media print{:root,[data-theme]{--bg:#ffffff" in style  # print is always light
    with pytest.raises(ConfigError):
        Options(theme="neon")


def test_same_input_gives_identical_bytes_and_inputs_change_output():
    for r in fixtures():
        a, b = render_bundle(r), render_bundle(copy.deepcopy(r))
        assert a == b
    r = load("traffic")
    changed = copy.deepcopy(r)
    changed["widgets"][0]["data"]["value"] = 9999
    a, b = render_bundle(r), render_bundle(changed)
    assert a["index.html"] != b["index.html"] and a["visitors.csv"] != b["visitors.csv"]
    assert a["daily.csv"] == b["daily.csv"]


def test_csv_cells_cannot_become_formulas():
    assert csv_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    for start in ("+", "-", "@", "\t", "\r"):
        assert csv_cell(start + "1+1") == "'" + start + "1+1"
    assert csv_cell("plain") == "plain"
    assert csv_cell(-5) == "-5" and csv_cell(-0.25) == "-0.25"  # numbers stay numbers
    assert csv_cell(None) == "" and csv_cell(True) == "true" and csv_cell(2.0) == "2"
    text = to_csv(["a", "b"], [["=1+2", "@SUM(A1)"], ["x,y", 'q"q']])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["a", "b"], ["'=1+2", "'@SUM(A1)"], ["x,y", 'q"q']]


def test_widget_csvs_hold_the_raw_values():
    r = load("behaviour")
    files = render_bundle(r)
    rows = list(csv.DictReader(io.StringIO(files["retention.csv"].decode())))
    cohorts = r["widgets"][1]["data"]["cohorts"]
    assert len(rows) == sum(len(c["cells"]) for c in cohorts)
    assert rows[1]["cohort"] == cohorts[0]["cohort"] and rows[1]["count"] == str(cohorts[0]["cells"][1]["count"])
    funnel = list(csv.DictReader(io.StringIO(files["checkout.csv"].decode())))
    assert [x["count"] for x in funnel if x["group"] == "(all)"] == \
        [str(s["count"]) for s in r["widgets"][0]["data"]["steps"]]
    hostile_csv = render_bundle(hostile(load("traffic")))["top_pages.csv"].decode()
    assert "\r\n'=" not in hostile_csv  # nothing else is prefixed …
    evil = copy.deepcopy(load("traffic"))
    evil["widgets"][3]["data"]["rows"][0]["keys"] = ["=cmd|' /C calc'!A0"]
    got = list(csv.reader(io.StringIO(render_bundle(evil)["top_pages.csv"].decode())))
    assert got[1][0] == "'=cmd|' /C calc'!A0"  # … but formulas are


def test_bundle_sizes():
    """A typical bundle stays small: everything inline, no library."""
    for r in fixtures():
        files = render_bundle(r)
        assert len(files["index.html"]) < 150_000
        assert sum(len(b) for b in files.values()) < 150_000


def test_invalid_ids_are_refused():
    r = load("traffic")
    for key, value in (("tenant_id", "../etc"), ("report_id", "A B")):
        bad = dict(r, **{key: value})
        with pytest.raises(ConfigError):
            render_bundle(bad)
    bad = copy.deepcopy(r)
    bad["widgets"][1]["widget_id"] = bad["widgets"][0]["widget_id"]
    with pytest.raises(ConfigError):
        render_bundle(bad)


def test_incomplete_buckets_are_drawn_distinctly():
    r = load("traffic")
    html = render_bundle(r)["index.html"].decode()
    daily = html.split('data-widget-id="daily"', 1)[1].split("</section>", 1)[0]
    assert daily.count('class="line stroke-s1 incomplete"') == 1
    assert daily.count('class="line stroke-s1"') == 1
    assert "Nov 18, 2026 (incomplete)" in daily or "Nov 18 (incomplete)" in daily


def test_unknown_widget_types_render_as_a_table():
    r = load("traffic")
    r["widgets"].append({"widget_id": "odd", "type": "sankey", "title": "Odd", "data": {"n": 3, "x": PAYLOAD}})
    html = render_bundle(r)["index.html"].decode()
    assert 'data-widget-type="sankey"' in html and "<img" not in html


def test_large_matrices_and_tables_stay_readable_and_small():
    r = load("behaviour")
    ret = r["widgets"][1]
    cells = [{"period": p, "count": 10, "pct": 50.0, "incomplete": False} for p in range(401)]
    ret["data"]["cohorts"] = [{"cohort": f"2026-01-{1 + i % 28:02d}", "size": 20, "cells": cells} for i in range(300)]
    ret["data"]["average"] = []
    r["widgets"] = [ret]
    files = render_bundle(r)
    html = files["index.html"].decode()
    assert html.count('class="cell h') == 40 * 24
    assert "the CSV has every cell" in html
    assert files["retention.csv"].decode().count("\r\n") == 1 + 300 * 401
    assert len(html) < 300_000
