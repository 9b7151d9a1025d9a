"""One report JSON -> the files of its bundle: ``index.html`` (everything inline),
``data.json``, one CSV per widget and ``embed.html``.

Pure and deterministic: the same report JSON and options give the same bytes.
The page's only inline ``<style>`` and executable ``<script>`` are hashed into
its Content-Security-Policy, so it renders under ``default-src 'none'``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from erp.core.config import shipped
from erp.core.errors import ConfigError
from erp.reports.render import behaviour_views  # noqa: F401  (registers funnel, retention, …)
from erp.reports.render import theme as themes
from erp.reports.render.charts import svg_markup
from erp.reports.render.views import VIEWS, View, range_text, rows_markup, widget_view

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Cells starting with these are formulas to a spreadsheet: prefixed with ' in CSVs.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Options:
    theme: str = "auto"          # light | dark | auto
    transparent: bool = False    # no page background (the host page shows through)

    def __post_init__(self) -> None:
        if self.theme not in themes.THEMES:
            raise ConfigError(f"theme {self.theme!r} is not one of {', '.join(themes.THEMES)}", key="--theme")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(shipped("templates"))), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True, auto_reload=False)
    env.globals["svg_markup"] = svg_markup
    env.globals["rows_markup"] = rows_markup
    return env


def _asset(name: str, closing: str) -> str:
    text = shipped("templates", "bundle", name).read_text(encoding="utf-8")
    if closing in text.lower():
        raise RuntimeError(f"templates/bundle/{name} must not contain {closing}")
    return text


def _minify_css(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "".join(line.strip() for line in text.splitlines())


@lru_cache(maxsize=1)
def page_style() -> str:
    """The page's inline CSS: theme variables, then the stylesheet."""
    return themes.css_variables() + _minify_css(_asset("erp.css", "</style"))


@lru_cache(maxsize=1)
def page_script() -> str:
    return _asset("erp.js", "</script")


@lru_cache(maxsize=1)
def host_script() -> str:
    return _asset("embed.js", "</script").strip()


def csp_hash(text: str) -> str:
    """The CSP source for an inline block: ``'sha256-<base64>'`` of its exact text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(style: str, script: str) -> str:
    """The bundle's policy: nothing but its own inline style and script, and images from
    data:/blob: URLs (used only to draw the "download PNG" image)."""
    return (f"default-src 'none'; style-src {csp_hash(style)}; script-src {csp_hash(script)}; "
            "img-src data: blob:; base-uri 'none'; form-action 'none'")


def script_json(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` and
    U+2028/2029 are written as ``\\u`` escapes, so no value can close the element."""
    text = orjson.dumps(value).decode("utf-8")
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


# --- CSV ------------------------------------------------------------------------------

def csv_cell(value: Any) -> str:
    """One CSV cell. Text starting with ``= + - @`` (or tab / CR) gets a leading ``'`` so a
    spreadsheet shows it instead of running it; numbers are written as numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if text.startswith(FORMULA_START):
        text = "'" + text
    return text


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([csv_cell(h) for h in header])
    for row in rows:
        w.writerow([csv_cell(c) for c in row])
    return buf.getvalue()


# --- the bundle -----------------------------------------------------------------------

def _partial(v: View) -> str:
    return f"bundle/widgets/{v.type if v.type in VIEWS else 'generic'}.html"


def check_report(report: dict[str, Any]) -> None:
    for key in ("report_id", "tenant_id"):
        if not isinstance(report.get(key), str) or not ID_RE.match(report[key]):
            raise ConfigError(f"report JSON: {key} {report.get(key)!r} is not a valid id", key=key)
    seen = set()
    for i, w in enumerate(report.get("widgets") or []):
        wid = w.get("widget_id")
        if not isinstance(wid, str) or not ID_RE.match(wid) or wid in seen:
            raise ConfigError(f"report {report['report_id']}: widgets[{i}].widget_id {wid!r} is not a valid, "
                              "unique id", key=f"widgets[{i}].widget_id")
        seen.add(wid)


#: CSVs up to this size are also embedded in the page, so "download CSV" works from
#: file:// and inside a sandboxed iframe; larger ones are linked (the file is beside it).
EMBED_CSV_MAX = 20_000


def render_bundle(report: dict[str, Any], *, tenant_name: str | None = None,
                  options: Options = Options(),
                  sparklines: dict[str, dict[str, Any]] | None = None) -> dict[str, bytes]:
    """The files of one bundle, by name. ``report`` is the engine's JSON for one tenant
    and report (docs/reports.md); ``sparklines`` maps metric widget ids to
    ``{"values": [...], "incomplete": [...]}`` drawn in their KPI tiles."""
    check_report(report)
    widgets = report.get("widgets") or []
    if sparklines:
        widgets = [dict(w, data=dict(w.get("data") or {}, sparkline=sparklines[w["widget_id"]]))
                   if w.get("widget_id") in sparklines and isinstance(w.get("data"), dict) else w for w in widgets]
    views = [widget_view(w, report) for w in widgets]
    csvs = {v.widget_id: to_csv(v.csv_header, v.csv_rows) for v in views}
    embedded = {k: text for k, text in csvs.items() if len(text) <= EMBED_CSV_MAX}
    style, script = page_style(), page_script()
    csp = content_security_policy(style, script)
    env = environment()
    name = tenant_name or report["tenant_id"]
    page = env.get_template("bundle/page.html").render(
        report=report, tenant_name=name, range_text=range_text(report), theme=options.theme,
        transparent=options.transparent, csp=csp, style=Markup(style), script=Markup(script),
        widgets=[(v, _partial(v), f"{v.widget_id}.csv") for v in views],
        data_json=script_json({"report_id": report["report_id"], "tenant_id": report["tenant_id"], "csv": embedded}))
    host = host_script()
    embed = env.get_template("bundle/embed.html").render(
        report=report, tenant_name=name, csp=csp, host_script=Markup(host),
        snippet=embed_snippet(report, name, host))
    files = {"index.html": page.encode("utf-8"),
             "data.json": orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE),
             "embed.html": embed.encode("utf-8")}
    for wid, text in csvs.items():
        files[f"{wid}.csv"] = text.encode("utf-8")
    return files


SANDBOX = "allow-scripts allow-downloads"


def embed_snippet(report: dict[str, Any], tenant_name: str, host: str) -> str:
    """The HTML to paste into a page (src relative to where the bundle folder is published)."""
    title = f"{report.get('report_name') or report['report_id']} · {tenant_name}"
    env = environment()
    return env.from_string(
        '<iframe data-erp-report src="{{ src }}" title="{{ title }}" width="100%" height="600" '
        'sandbox="{{ sandbox }}" referrerpolicy="no-referrer" loading="lazy" frameborder="0"></iframe>\n'
        "<script>{{ host }}</script>").render(src="index.html", title=title, sandbox=SANDBOX, host=Markup(host))
