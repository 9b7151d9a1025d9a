"""Server-rendered SVG charts as plain shapes.

Each builder turns numbers into a :class:`Chart`: a list of :class:`Shape`
(an SVG element name, its attributes and optional text / tooltip). One Jinja
partial (``bundle/svg.html``) writes any chart, escaping every attribute and
text, so no value ever reaches the page unescaped. Colours are CSS classes
(``s1``…``s6``, ``h0``…``h6``) resolved by the theme; geometry is rounded to
one decimal so the same numbers give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from markupsafe import Markup, escape

from erp.reports.render.ticks import Ticks, format_number, format_percent, format_tick, nice_ticks

W = 640  # viewBox width of full-size charts
HIT_LIMIT = 62  # buckets with their own tooltip element; beyond, the script reads the data table
SERIES = 6  # distinct series colours (s1..s6); more series reuse them


@dataclass
class Shape:
    tag: str
    attrs: dict[str, Any]
    text: str | None = None
    tip: str | None = None  # becomes an SVG <title>: a native tooltip, read by screen readers


@dataclass
class Chart:
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    kind: str = ""

    def add(self, tag: str, text: str | None = None, tip: str | None = None, **attrs: Any) -> Shape:
        shape = Shape(tag, {k.rstrip("_").replace("_", "-"): _fmt(v) for k, v in attrs.items() if v is not None},
                      text, tip)
        self.shapes.append(shape)
        return shape


def svg_markup(chart: Chart, *, id: str | None = None, title: str | None = None,
               described_by: str | None = None, cls: str = "chart-svg") -> Markup:
    """The chart as an ``<svg>`` element. Every attribute value and text is escaped here;
    tag and attribute names come from this module only."""
    out = [f'<svg class="{cls} kind-{escape(chart.kind)}" viewBox="0 0 {chart.width} {chart.height}" '
           f'width="{chart.width}" height="{chart.height}"']
    if title is None:
        out.append(' aria-hidden="true" focusable="false">')
    else:
        out.append(f' role="img" aria-labelledby="{escape(id)}-ct" aria-describedby="{escape(described_by)}" '
                   f'tabindex="0"><title id="{escape(id)}-ct">{escape(title)}</title>')
    for s in chart.shapes:
        out.append(f"<{s.tag}")
        for k, v in s.attrs.items():
            out.append(f' {k}="{escape(v)}"')
        out.append(">")
        if s.tip is not None:
            out.append(f"<title>{escape(s.tip)}</title>")
        if s.text is not None:
            out.append(str(escape(s.text)))
        out.append(f"</{s.tag}>")
    out.append("</svg>")
    return Markup("".join(out))


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        r = round(v, 1)
        return int(r) if r.is_integer() else r
    return v


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (the full text stays in tooltips)."""
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


# --- time series ---------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesIn:
    label: str
    values: Sequence[float | None]


def time_chart(labels: Sequence[str], tick_indexes: Sequence[int], tick_texts: Sequence[str],
               incomplete: Sequence[bool], series: Sequence[SeriesIn], *, kind: str = "line",
               tips: Sequence[str] | None = None, height: int = 240) -> Chart:
    """Line, area or bar chart over buckets. Incomplete buckets are drawn dashed (lines),
    lighter (areas) or hatched (bars)."""
    left, right, top, bottom = 52, 12, 12, 28
    chart = Chart(W, height, kind=kind)
    n = len(labels)
    plot_w, plot_h = W - left - right, height - top - bottom
    values = [v for s in series for v in (_num(x) for x in s.values) if v is not None]
    if kind == "bar" and len(series) > 1:  # stacked bars: positives up, negatives down
        pos = [sum(max(0.0, _num(_get(s.values, i)) or 0) for s in series) for i in range(n)]
        neg = [sum(min(0.0, _num(_get(s.values, i)) or 0) for s in series) for i in range(n)]
        ticks = nice_ticks(min(neg, default=0), max(pos, default=0))
    else:
        ticks = nice_ticks(min(values, default=0), max(values, default=0))
    y = _scale(ticks, top + plot_h, top)
    _y_axis(chart, ticks, y, left, W - right)
    if n == 0:
        return chart
    band = plot_w / n
    if kind == "bar":
        xs = [left + band * (i + 0.5) for i in range(n)]
    else:
        xs = [left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1)) for i in range(n)]
    for i, text in zip(tick_indexes, tick_texts):
        chart.add("text", text, x=xs[i], y=height - 8, class_="tick", text_anchor="middle")
    first_incomplete = next((i for i, inc in enumerate(incomplete) if inc), n)
    if kind == "bar":
        up, down = [0.0] * n, [0.0] * n
        w = max(1.0, band * 0.72)
        for k, s in enumerate(series):
            cls = f"s{k % SERIES + 1}"
            for i in range(n):
                v = _num(_get(s.values, i)) or 0.0
                base = up if v >= 0 else down
                y0, y1 = round(y(base[i]), 1), round(y(base[i] + v), 1)
                base[i] += v
                chart.add("rect", x=xs[i] - w / 2, y=min(y0, y1), width=w, height=abs(y0 - y1),
                          class_=f"bar fill-{cls}" + (" incomplete" if i >= first_incomplete else ""))
    else:
        for k, s in enumerate(series):
            cls = f"s{k % SERIES + 1}"
            pts = [(xs[i], y(v)) if (v := _num(_get(s.values, i))) is not None else None for i in range(n)]
            split = max(0, first_incomplete - 1) if first_incomplete < n else n - 1
            done, todo = pts[: split + 1], pts[split:] if first_incomplete < n else []
            if first_incomplete == 0:
                done, todo = [], pts
            if kind == "area":
                for part, extra in ((done, ""), (todo, " incomplete")):
                    d = _area_path(part, y(max(ticks.lo, 0.0)))
                    if d:
                        chart.add("path", d=d, class_=f"area fill-{cls}{extra}")
            for part, extra in ((done, ""), (todo, " incomplete")):
                d = _line_path(part)
                if d:
                    chart.add("path", d=d, class_=f"line stroke-{cls}{extra}")
            if n <= 62:
                for i, p in enumerate(pts):
                    if p is not None:
                        chart.add("circle", cx=p[0], cy=p[1], r=2.5,
                                  class_=f"dot fill-{cls}" + (" incomplete" if i >= first_incomplete else ""))
    # hover / focus targets. Up to HIT_LIMIT buckets: one transparent column each, with
    # its tooltip as an SVG <title> (works without JavaScript). More: one area whose
    # data-* geometry lets the script find the bucket and read its row of the data table.
    # Each bucket owns the band centred on its point (bars: its slot), so a point at the
    # plot's edge is inside its own target; bands may reach into the margins.
    step = band if kind == "bar" else (plot_w / (n - 1) if n > 1 else plot_w)
    pad = 6  # targets reach a little above and below the plot: a point on its edge is inside
    if n > HIT_LIMIT:
        chart.add("rect", x=xs[0] - step / 2, y=top - pad, width=step * n, height=plot_h + 2 * pad,
                  class_="hits", data_n=n)
        return chart
    for i in range(n):  # rounded edges first, so neighbouring targets meet exactly
        x0, x1 = round(max(0.0, xs[i] - step / 2), 1), round(min(float(W), xs[i] + step / 2), 1)
        chart.add("rect", tip=tips[i] if tips else labels[i], x=x0, y=top - pad, width=round(x1 - x0, 1),
                  height=plot_h + 2 * pad, class_="hit", data_i=i)
    return chart


def _get(values: Sequence[Any], i: int) -> Any:
    return values[i] if i < len(values) else None


def _scale(ticks: Ticks, px_lo: float, px_hi: float):
    span = (ticks.hi - ticks.lo) or 1.0

    def f(v: float) -> float:
        return px_lo + (v - ticks.lo) / span * (px_hi - px_lo)

    return f


def _y_axis(chart: Chart, ticks: Ticks, y, x0: float, x1: float) -> None:
    for t in ticks.values:
        yy = y(t)
        chart.add("line", x1=x0, x2=x1, y1=yy, y2=yy, class_="grid" + (" zero" if t == 0 else ""))
        chart.add("text", format_tick(t, ticks.step), x=x0 - 6, y=yy + 4, class_="tick", text_anchor="end")


def _line_path(pts: Sequence[tuple[float, float] | None]) -> str:
    out, pen = [], False
    for p in pts:
        if p is None:
            pen = False
            continue
        out.append(f"{'L' if pen else 'M'}{_c(p[0])} {_c(p[1])}")
        pen = True
    return "".join(out) if len(out) > 1 or (out and len(pts) == 1) else ""


def _area_path(pts: Sequence[tuple[float, float] | None], base: float) -> str:
    runs: list[list[tuple[float, float]]] = [[]]
    for p in pts:
        if p is None:
            runs.append([])
        else:
            runs[-1].append(p)
    out = []
    for run in runs:
        if len(run) < 2:
            continue
        out.append(f"M{_c(run[0][0])} {_c(base)}" + "".join(f"L{_c(x)} {_c(y)}" for x, y in run)
                   + f"L{_c(run[-1][0])} {_c(base)}Z")
    return "".join(out)


def _c(v: float) -> str:
    r = round(v, 1)
    return str(int(r)) if r.is_integer() else str(r)


# --- sparkline -----------------------------------------------------------------------

def sparkline(values: Sequence[float | None], incomplete_from: int | None = None,
              width: int = 120, height: int = 32) -> Chart | None:
    nums = [_num(v) for v in values]
    present = [v for v in nums if v is not None]
    if len(nums) < 2 or not present:
        return None
    chart = Chart(width, height, kind="sparkline")
    lo, hi = min(present + [0.0]), max(present)
    span = (hi - lo) or 1.0
    pts = [None if v is None else (2 + (width - 4) * i / (len(nums) - 1),
                                   height - 2 - (v - lo) / span * (height - 4)) for i, v in enumerate(nums)]
    cut = len(pts) if incomplete_from is None else max(1, incomplete_from)
    d = _line_path(pts[:cut])
    if d:
        chart.add("path", d=d, class_="line stroke-s1")
    if cut < len(pts):
        d = _line_path(pts[cut - 1:])
        if d:
            chart.add("path", d=d, class_="line stroke-s1 incomplete")
    return chart


# --- horizontal bars (breakdown tables) ------------------------------------------------

def bar_chart(labels: Sequence[str], values: Sequence[float], tips: Sequence[str],
              value_texts: Sequence[str], *, highlight_last: bool = False) -> Chart:
    row, top, bottom = 24, 4, 22
    label_w, value_w = 200, 64
    n = len(labels)
    chart = Chart(W, top + row * max(n, 1) + bottom, kind="bars")
    ticks = nice_ticks(0, max([v for v in values if v is not None] or [0]), 5)
    x = _scale(ticks, label_w, W - value_w)
    for t in ticks.values:
        chart.add("line", x1=x(t), x2=x(t), y1=top, y2=top + row * n, class_="grid" + (" zero" if t == 0 else ""))
        chart.add("text", format_tick(t, ticks.step), x=x(t), y=chart.height - 6, class_="tick",
                  text_anchor="middle")
    for i, (label, v) in enumerate(zip(labels, values)):
        y0 = top + row * i
        other = highlight_last and i == n - 1
        chart.add("text", truncate(label, 30), x=label_w - 8, y=y0 + 16, class_="label", text_anchor="end")
        chart.add("rect", x=label_w, y=y0 + 4, width=max(0.0, x(v or 0) - label_w), height=row - 8,
                  class_="bar fill-s1" + (" other" if other else ""))
        chart.add("text", value_texts[i], x=W - value_w + 6, y=y0 + 16, class_="value")
        chart.add("rect", tip=tips[i], x=0, y=y0, width=W, height=row, class_="hit", data_i=i)
    return chart


# --- funnel ---------------------------------------------------------------------------

def funnel_chart(names: Sequence[str], counts: Sequence[float]) -> Chart:
    """One column per step: the solid bar is who reached the step; the hatched part
    above it is who dropped off since the step before."""
    n = len(names)
    top, bottom, left, right = 36, 44, 8, 8
    height = 260
    chart = Chart(W, height, kind="funnel")
    plot_h = height - top - bottom
    band = (W - left - right) / max(1, n)
    first = _num(counts[0]) if counts else None
    base = first or max([_num(c) or 0 for c in counts] or [0]) or 1.0
    for i, (name, c) in enumerate(zip(names, counts)):
        c = _num(c) or 0.0
        prev = (_num(counts[i - 1]) or 0.0) if i else c
        x0 = left + band * i + band * 0.14
        w = band * 0.72
        h = plot_h * c / base
        hp = plot_h * prev / base
        y_bottom = top + plot_h
        if i and prev > c:
            chart.add("rect", x=x0, y=y_bottom - hp, width=w, height=hp - h, class_="drop")
        chart.add("rect", x=x0, y=y_bottom - h, width=w, height=h, class_="bar fill-s1")
        conv = c / first if first else None
        chart.add("text", format_percent(conv), x=x0 + w / 2, y=y_bottom - max(hp, h) - 6, class_="value",
                  text_anchor="middle")
        chart.add("text", truncate(name, max(6, int(band / 7.5))), x=x0 + w / 2, y=height - 26, class_="label",
                  text_anchor="middle")
        chart.add("text", format_number(c), x=x0 + w / 2, y=height - 10, class_="tick", text_anchor="middle")
        drop = (prev - c) / prev if i and prev else None
        tip = f"{name}: {format_number(c)} ({format_percent(conv)} of step 1)"
        if drop is not None:
            tip += f", {format_percent(drop)} dropped off since the step before"
        chart.add("rect", tip=tip, x=left + band * i, y=0, width=band, height=height, class_="hit", data_i=i)
    return chart


# --- heatmap (cohorts, retention) -----------------------------------------------------

LEVELS = 7  # h0 (empty) .. h6 (highest)


def heat_level(ratio: float | None) -> int:
    """The colour step of a cell: 0 for no data or 0, then 6 even steps up to 100%."""
    if ratio is None or ratio <= 0:
        return 0
    return min(LEVELS - 1, 1 + int(min(ratio, 1.0) * (LEVELS - 1) * 0.9999))


def heatmap(row_labels: Sequence[str], col_labels: Sequence[str],
            cells: Sequence[Sequence[tuple[float | None, str, str] | None]],
            *, row_head: str = "", sizes: Sequence[str] | None = None) -> Chart:
    """``cells[r][c]`` is ``(ratio, text, tooltip[, incomplete])`` or None for a cell that does not exist
    (a cohort too young for that period)."""
    nr, nc = len(row_labels), len(col_labels)
    label_w = 96 + (56 if sizes else 0)
    cell_w = max(28.0, min(64.0, (W - label_w - 4) / max(1, nc)))
    cell_h = 22
    top = 22
    width = max(W, int(label_w + cell_w * nc + 4))
    chart = Chart(width, top + cell_h * nr + 4, kind="heatmap")
    if row_head:
        chart.add("text", row_head, x=4, y=15, class_="tick")
    for c, lab in enumerate(col_labels):
        chart.add("text", lab, x=label_w + cell_w * (c + 0.5), y=15, class_="tick", text_anchor="middle")
    for r, lab in enumerate(row_labels):
        y0 = top + cell_h * r
        chart.add("text", truncate(lab, 14), x=4, y=y0 + 15, class_="label")
        if sizes:
            chart.add("text", sizes[r], x=label_w - 6, y=y0 + 15, class_="tick", text_anchor="end")
        for c in range(nc):
            cell = cells[r][c] if c < len(cells[r]) else None
            if cell is None:
                continue
            ratio, text, tip, *rest = cell
            lvl = heat_level(ratio)
            extra = " incomplete" if rest and rest[0] else ""
            x0 = label_w + cell_w * c
            chart.add("rect", tip=tip, x=x0 + 1, y=y0 + 1, width=cell_w - 2, height=cell_h - 2,
                      class_=f"cell h{lvl}{extra}", data_i=r * nc + c)
            if cell_w >= 30:
                chart.add("text", text, x=x0 + cell_w / 2, y=y0 + 15, class_=f"cell-text t{lvl}",
                          text_anchor="middle")
    return chart
