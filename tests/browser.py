"""Helpers for the real-browser tests of report bundles (tests/test_browser.py).

Debian's ``chromium`` is driven headless through Playwright for Python; Playwright's
own browser download is never used. Every page is opened in a context that

- routes every request: ``file:`` and ``data:`` (and origins a test allows, such as
  its own 127.0.0.1 server) go through, anything else is aborted and recorded;
- records console errors, uncaught page errors and Content-Security-Policy reports
  (``securitypolicyviolation`` events, collected by an init script in every frame,
  and the console messages Chromium prints for a violation).

``Watch.problems()`` lists all of that; a clean page has none.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_HINT = ("install the system browser with `apt-get install -y chromium` and Playwright with "
                "`pip install -e '.[test]'` (never `playwright install`)")
ARTIFACTS = Path(__file__).parent / "artifacts"

#: Collects CSP violations of every frame before any page script runs. Playwright
#: evaluates init scripts through the DevTools protocol, so the page's CSP does not
#: block them.
CSP_RECORDER = """
(() => {
  const seen = [];
  Object.defineProperty(window, "__cspViolations", {value: seen, configurable: false});
  document.addEventListener("securitypolicyviolation", (e) => {
    seen.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
               source: e.sourceFile, line: e.lineNumber});
  }, true);
})();
"""

#: Records every message a window receives (used by the host page of the embed tests).
MESSAGE_RECORDER = """
(() => {
  const seen = [];
  Object.defineProperty(window, "__messages", {value: seen, configurable: false});
  window.addEventListener("message", (e) => { seen.push(e.data); }, true);
})();
"""


def unavailable(reason: str) -> None:
    """A missing system part: a failure under CI=true, else a skip naming the install."""
    message = f"{reason}: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def start_playwright() -> Any:
    """The started Playwright driver (``.stop()`` it), or skip/fail when it or the
    system chromium is missing."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"{CHROMIUM} not found")
    return sync_playwright().start()


def launch(playwright: Any) -> Any:
    """The system chromium, headless, with a fresh temporary profile (Playwright's
    ``launch`` creates a new user-data-dir and removes it on close)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      headless=True)


# --- watching a context ---------------------------------------------------------------


_CSP_CONSOLE = re.compile(r"Content Security Policy|Content-Security-Policy", re.I)
_LOCAL_SCHEMES = ("file:", "data:", "blob:")  # blob: is memory the page made itself (downloads)


@dataclass
class Watch:
    """What went wrong in one browser context (all pages and frames)."""

    allowed_origins: tuple[str, ...] = ()
    requests: list[str] = field(default_factory=list)        # every request URL seen
    blocked: list[str] = field(default_factory=list)         # non-local requests (aborted)
    console_errors: list[str] = field(default_factory=list)
    csp_console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    pages: list[Any] = field(default_factory=list)

    def local(self, url: str) -> bool:
        return url.startswith(_LOCAL_SCHEMES) or any(
            url == o or url.startswith(o.rstrip("/") + "/") for o in self.allowed_origins)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if self.local(url):
            route.continue_()
        else:
            if url not in self.blocked:
                self.blocked.append(url)
            route.abort("blockedbyclient")

    def _request(self, request: Any) -> None:
        self.requests.append(request.url)
        if not self.local(request.url) and request.url not in self.blocked:
            self.blocked.append(request.url)  # e.g. stopped by CSP before routing

    def _console(self, msg: Any) -> None:
        text = msg.text
        if _CSP_CONSOLE.search(text):
            self.csp_console.append(text)
        if msg.type == "error":
            self.console_errors.append(text)

    def attach(self, page: Any) -> None:
        self.pages.append(page)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("request", self._request)
        page.on("websocket", lambda ws: self.blocked.append(ws.url))

    def csp_violations(self) -> list[dict[str, Any]]:
        """``securitypolicyviolation`` events of every frame of every open page."""
        out: list[dict[str, Any]] = []
        for page in self.pages:
            if page.is_closed():
                continue
            for frame in page.frames:
                with contextlib.suppress(Exception):  # a frame may be gone already
                    out.extend(frame.evaluate("() => Array.from(window.__cspViolations || [])"))
        return out

    def problems(self) -> dict[str, list[Any]]:
        """Every recorded problem, by kind; empty lists when the page behaved."""
        return {"network requests": list(self.blocked), "console errors": list(self.console_errors),
                "page errors": list(self.page_errors), "CSP console messages": list(self.csp_console),
                "CSP violations": self.csp_violations()}

    def assert_clean(self) -> None:
        found = {k: v for k, v in self.problems().items() if v}
        assert not found, f"the page misbehaved: {found}"


def watched_context(browser: Any, allowed_origins: tuple[str, ...] = (), **options: Any
                    ) -> tuple[Any, Watch]:
    """A new context whose every request and page is watched (see :class:`Watch`)."""
    options.setdefault("viewport", {"width": 1024, "height": 768})
    context = browser.new_context(**options)
    watch = Watch(allowed_origins=tuple(allowed_origins))
    context.route("**/*", watch._route)
    if options.get("java_script_enabled", True):
        context.add_init_script(CSP_RECORDER)
    context.on("page", watch.attach)
    return context, watch


def open_page(context: Any, url: str) -> Any:
    """A new page of ``context`` loaded from ``url`` (fonts and images settled)."""
    page = context.new_page()
    page.goto(url, wait_until="load")
    return page


# --- reading a rendered bundle --------------------------------------------------------


WIDGETS_JS = """
() => {
  const drawn = (el) => {  // laid out, not in a closed <details>, not visibility:hidden
    const r = el.getBoundingClientRect();
    return el.checkVisibility({visibilityProperty: true}) && r.width > 0 && r.height > 0;
  };
  return Array.from(document.querySelectorAll("[data-widget-id]")).map((w) => ({
    id: w.getAttribute("data-widget-id"),
    type: w.getAttribute("data-widget-type"),
    visible: drawn(w),
    charts: w.querySelectorAll("svg:not([aria-hidden=true])").length,
    values: Array.from(w.querySelectorAll("[data-value]")).map((v) => {
      const keyed = v.closest("[data-key]");
      const tr = v.closest("tr");
      let row = null, column = null;
      if (tr) {
        const head = tr.querySelector("th") || tr.cells[0];
        row = head ? head.textContent.trim() : null;
        const table = tr.closest("table");
        const hr = table.tHead ? table.tHead.rows[0] : table.rows[0];
        if (hr && hr !== tr && hr.cells[v.cellIndex]) column = hr.cells[v.cellIndex].textContent.trim();
      }
      return {value: v.getAttribute("data-value"), key: keyed && w.contains(keyed) ? keyed.getAttribute("data-key") : null,
              row, column, text: (v.textContent || "").trim(), rendered: drawn(v), in_svg: !!v.closest("svg")};
    }),
  }));
}
"""


def widgets(page: Any) -> dict[str, dict[str, Any]]:
    """Every ``[data-widget-id]`` element with its ``[data-value]`` descendants: the
    number, the ``data-key`` around it, its table row and column headers, its text,
    and whether it is drawn."""
    return {w["id"]: w for w in page.evaluate(WIDGETS_JS)}


def open_details(page: Any, click: bool = False) -> int:
    """Open every closed ``<details>``: by clicking each summary as a reader would
    (works with JavaScript off), or at once through the DOM. Returns how many."""
    if not click:
        return page.evaluate("""() => { const closed = document.querySelectorAll("details:not([open])");
                                        closed.forEach((d) => { d.open = true; }); return closed.length; }""")
    summaries = page.locator("details:not([open]) > summary")
    n = summaries.count()
    for i in range(n):
        summaries.nth(0).click()  # the list shrinks as each one opens
    return n


def event_handler_attributes(page: Any) -> list[str]:
    """Elements of the page (and its same-origin frames) that carry an ``on*``
    attribute; a bundle has none, so any is injected markup."""
    return page.evaluate("""() => {
      const out = [];
      for (const el of document.querySelectorAll("*"))
        for (const a of el.attributes) if (a.name.startsWith("on")) out.push(el.tagName + " " + a.name);
      return out;
    }""")


_SHOWN_NUMBER = re.compile("[-+\u2212]?\\d[\\d,\u202f\u00a0]*(?:\\.\\d+)?")
_UNITS = {"%": (1, 100), " min": (1 / 60,), " h": (1 / 3600,), " d": (1 / 86400,), " s": (1,)}


def shows(text: str, value: float | None) -> bool:
    """Whether ``text`` (what the reader sees) states ``value`` (the ``data-value``),
    to the precision the text gives: 169.5 may be shown as "169.50 USD" or
    "170", 0.5 as "50.0%", 600 seconds as "10.0 min"; a missing value as "–"."""
    if value is None:
        return text.strip() in ("", "–", "-", "—", "n/a")
    m = _SHOWN_NUMBER.search(text)
    if not m:
        return False
    raw = m.group(0).replace(",", "").replace("\u202f", "").replace("\u00a0", "").replace("−", "-")
    shown = float(raw)
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    factors: tuple[float, ...] = (1,)
    for unit, f in _UNITS.items():
        if unit in text:
            factors = f
    suffix = text[m.end():m.end() + 1].lower()
    scale = {"k": 1e3, "m": 1e6, "b": 1e9}.get(suffix, 1)
    return any(abs(value * f / scale - shown) <= 0.5 * 10 ** -decimals + 1e-9 for f in factors)


def number(text: str | None) -> float | None:
    """A ``data-value`` as a number (``None`` for empty / ``null``)."""
    if text is None or text.strip() in ("", "null", "None", "NaN"):
        return None
    return float(text)


_RGB = re.compile(r"rgba?\(\s*([\d.]+)[ ,]+([\d.]+)[ ,]+([\d.]+)(?:[ ,/]+([\d.]+%?))?\s*\)")


def parse_color(css: str) -> tuple[float, float, float, float]:
    """``rgb(…)`` / ``rgba(…)`` (as getComputedStyle returns) → (r, g, b, alpha)."""
    m = _RGB.fullmatch(css.strip())
    if not m:
        raise ValueError(f"not an rgb() colour: {css!r}")
    alpha = m.group(4)
    a = 1.0 if alpha is None else (float(alpha[:-1]) / 100 if alpha.endswith("%") else float(alpha))
    return float(m.group(1)), float(m.group(2)), float(m.group(3)), a


def luminance(css: str) -> float:
    """WCAG relative luminance of an opaque CSS colour (0 black … 1 white)."""
    r, g, b, _ = parse_color(css)

    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def page_colors(page: Any) -> dict[str, str]:
    """The colour the page paints behind its content (body, else html, else the
    canvas default white) and the body's text colour."""
    return page.evaluate("""() => {
      const clear = (c) => c === "transparent" || /rgba\\(.*,\\s*0\\)$/.test(c);
      let bg = "rgb(255, 255, 255)";
      for (const el of [document.body, document.documentElement]) {
        const c = getComputedStyle(el).backgroundColor;
        if (!clear(c)) { bg = c; break; }
      }
      return {background: bg, color: getComputedStyle(document.body).color};
    }""")


def horizontal_overflow(page: Any) -> dict[str, Any]:
    """Page width against the viewport, and the elements reaching past the right
    edge: ``sticking_out`` (widening the page), ``clipped`` (cut off by an
    ``overflow: hidden/clip`` box: content lost) and ``scrolled`` (inside a box
    that scrolls sideways: reachable, but not at a glance)."""
    return page.evaluate("""() => {
      const vw = document.documentElement.clientWidth;
      const out = {sticking_out: [], clipped: [], scrolled: []};
      const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
        (typeof el.className === "string" && el.className ? "." + el.className.split(" ")[0] : "");
      for (const el of document.body.querySelectorAll("*")) {
        const r = el.getBoundingClientRect();
        if (el.ownerSVGElement || !(r.width > 0 && el.checkVisibility())) continue;  // an <svg> is one unit
        let box = null;
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          const o = getComputedStyle(p).overflowX;
          if (o !== "visible") { box = [p, o]; break; }
        }
        const limit = box ? Math.min(vw, box[0].getBoundingClientRect().right) : vw;
        if (r.right <= limit + 1) continue;
        const what = name(el) + " right=" + Math.round(r.right) + (box ? " in " + name(box[0]) : "");
        if (!box) out.sticking_out.push(what);
        else if (box[1] === "hidden" || box[1] === "clip") out.clipped.push(what);
        else if (!out.scrolled.some((w) => w.endsWith(" in " + name(box[0])))) out.scrolled.push(what);
      }
      for (const k of Object.keys(out)) out[k] = out[k].slice(0, 12);
      return {viewport: vw, scroll_width: document.documentElement.scrollWidth, ...out};
    }""")


def chart_text_px(page: Any) -> dict[str, float]:
    """Per widget, the smallest on-screen font size (CSS px) of the text in its charts
    (the SVG's scale included)."""
    return page.evaluate("""() => {
      const out = {};
      for (const w of document.querySelectorAll("[data-widget-id]")) {
        const sizes = Array.from(w.querySelectorAll("svg:not([aria-hidden=true]) text"))
          .filter((t) => t.checkVisibility() && t.textContent.trim())
          .map((t) => { const m = t.getScreenCTM(); return parseFloat(getComputedStyle(t).fontSize) * (m ? m.a : 1); });
        if (sizes.length) out[w.getAttribute("data-widget-id")] = Math.round(Math.min(...sizes) * 10) / 10;
      }
      return out;
    }""")


def tab_stops(page: Any, limit: int = 150) -> list[dict[str, Any]]:
    """Press Tab until focus comes back round (or ``limit``); where focus went each
    time: the element, and the ``data-widget-id`` of its widget."""
    page.evaluate("() => { if (document.activeElement) document.activeElement.blur(); }")
    stops: list[dict[str, Any]] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => {
          const el = document.activeElement;
          if (!el || el === document.body) return null;
          const w = el.closest("[data-widget-id]");
          const svg = el.tagName.toLowerCase() === "svg" || !!el.closest("svg") || !!el.querySelector("svg");
          return {tag: el.tagName.toLowerCase(), widget: w ? w.getAttribute("data-widget-id") : null,
                  chart: svg, label: el.getAttribute("aria-label") || (el.textContent || "").slice(0, 40)};
        }""")
        if info is None:
            if stops:
                break
            continue
        if stops and info == stops[0]:
            break
        stops.append(info)
    return stops


def screenshot(page: Any, name: str, element: Any | None = None) -> Path:
    """Save a PNG under tests/artifacts/ (full page, or one element)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if element is not None:
        element.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


# --- embedding --------------------------------------------------------------------------


_IFRAME_SRC = re.compile(r'(<iframe\b[^>]*?\ssrc=")([^"]*)(")', re.S)


def embed_snippet(embed_html: str, src: str) -> str:
    """The snippet of an ``embed.html`` with its iframe pointed at ``src``. When the
    file is a whole page showing the snippet, the snippet is the text of its first
    ``<pre>``/``<textarea>``/``<code>`` that holds an ``<iframe``."""
    import html as html_lib

    text = embed_html
    if not re.search(r"<iframe\b", text):
        raise AssertionError("embed.html holds no <iframe")
    for m in re.finditer(r"<(pre|textarea|code)\b[^>]*>(.*?)</\1>", embed_html, re.S):
        inner = html_lib.unescape(re.sub(r"<[^>]+>", "", m.group(2)))
        if "<iframe" in inner:
            text = inner
            break
    if not _IFRAME_SRC.search(text):
        raise AssertionError("the embed snippet's <iframe> has no src")
    return _IFRAME_SRC.sub(lambda m: m.group(1) + html_lib.escape(src, quote=True) + m.group(3), text, count=1)


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>host page</title></head>
<body>
<h1>A site that embeds a report</h1>
<p>Text before the report.</p>
{snippet}
<p id="after">Text after the report.</p>
<iframe id="other" title="another frame" src="{other}" width="200" height="50"></iframe>
</body></html>
"""


def write_host_page(folder: Path, snippet: str, other_src: str = "about:blank") -> Path:
    """A host page embedding ``snippet`` plus an unrelated second iframe."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "host.html"
    page.write_text(HOST_PAGE.format(snippet=snippet, other=other_src), encoding="utf-8")
    return page


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
