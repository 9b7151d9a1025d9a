"""From a widget's JSON ``data`` (docs/reports.md, docs/behaviour.md) to what a page
shows: KPI tiles, one chart, a text summary, a data table and the CSV rows.

One function per widget type, found through ``VIEWS``; a new type joins with
``@view("name")`` and a template ``bundle/widgets/<name>.html``. Views never
escape: they return plain text, and the templates escape everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from markupsafe import Markup, escape

from erp.reports.render import charts
from erp.reports.render.charts import Chart, SeriesIn
from erp.reports.render.ticks import (
    bucket_label, format_change, format_number, parse_bucket, tick_label, time_tick_indexes,
)

Scalar = str | int | float | bool | None


@dataclass
class Cell:
    text: str
    value: Scalar = None  # raw number for data-value / CSV; None for text cells
    numeric: bool = False


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


def rows_markup(table: Table) -> Markup:
    """A data table's body rows: the first cell a row header, numbers with ``data-value``.
    Every text and value is escaped here (written in Python: long tables render fast)."""
    out = []
    for row in table.rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            if i == 0:
                out.append(f'<th scope="row">{escape(cell.text)}</th>')
            elif cell.value is not None:
                out.append(f'<td data-value="{escape(cell.value)}">{escape(cell.text)}</td>')
            elif cell.numeric:
                out.append(f"<td>{escape(cell.text)}</td>")
            else:
                out.append(f'<td class="t">{escape(cell.text)}</td>')
        out.append("</tr>\n")
    return Markup("".join(out))


@dataclass
class Tile:
    label: str
    text: str
    value: Scalar
    key: str  # data-key: which number this is (value, entered, …)
    change: str | None = None
    change_class: str = "flat"
    sub: str | None = None
    spark: Chart | None = None


@dataclass
class View:
    widget_id: str
    type: str
    title: str
    tiles: list[Tile] = field(default_factory=list)
    chart: Chart | None = None
    legend: list[tuple[str, str, str, Scalar]] = field(default_factory=list)  # (label, cls, total text, total)
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    csv_header: list[str] = field(default_factory=list)
    csv_rows: list[list[Scalar]] = field(default_factory=list)


BARS_MAX = 50  # rows drawn in a table's bar chart
HEAT_COLS, HEAT_ROWS = 24, 40  # cells drawn in a heatmap (the CSV has all)

VIEWS: dict[str, Callable[[dict[str, Any], dict[str, Any]], View]] = {}


def view(name: str):
    def deco(fn: Callable[[dict[str, Any], dict[str, Any]], View]):
        VIEWS[name] = fn
        return fn
    return deco


def widget_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    """The view of one widget of a report JSON; unknown types get a generic table.
    (The behavioural types register from ``behaviour_views``, imported by ``bundle``.)"""
    fn = VIEWS.get(str(widget.get("type")), _generic)
    return fn(widget, report)


def _base(widget: dict[str, Any]) -> View:
    return View(widget_id=str(widget.get("widget_id", "")), type=str(widget.get("type", "")),
                title=str(widget.get("title") or widget.get("widget_id") or ""))


def num_cell(v: Any, text: str | None = None) -> Cell:
    return Cell(format_number(v) if text is None else text, v if _is_num(v) else None, True)


def pct_cell(v: Any) -> Cell:
    """A 0–100 percentage."""
    return Cell("–" if v is None else f"{format_number(round(float(v), 1), decimals=1)}%", v if _is_num(v) else None,
                True)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _pct_text(v: Any) -> str:
    return "–" if v is None else f"{float(v):.1f}%"


def range_text(report: dict[str, Any]) -> str:
    r = report.get("range") or {}
    try:
        a, b = parse_bucket(str(r["since"])), parse_bucket(str(r["until"]))
    except (KeyError, ValueError):
        return ""
    if a == b:
        return bucket_label(a, "day", with_year=True)
    left = bucket_label(a, "day", with_year=a.year != b.year)
    return f"{left} – {bucket_label(b, 'day', with_year=True)}"


ADJ = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# --- metric ----------------------------------------------------------------------------

@view("metric")
def metric_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    unit = d.get("unit")
    value, prev, rel = d.get("value"), d.get("previous"), d.get("change_relative")
    money = bool(unit) and any(isinstance(x, float) and not x.is_integer() for x in (value, prev))
    fmt = (lambda x: format_number(x, decimals=2) if money and x is not None else format_number(x))
    text = fmt(value) + (f" {unit}" if unit and value is not None else "")
    cls = "flat" if not rel else ("up" if rel > 0 else "down")
    arrow = {"up": "▲ ", "down": "▼ ", "flat": ""}[cls]
    change = f"{arrow}{format_change(rel)}" if rel is not None else None
    pr = d.get("previous_range") or {}
    prev_text = f"previous period: {fmt(prev)}" + (f" {unit}" if unit and prev is not None else "")
    spark = None
    sp = d.get("sparkline")
    if isinstance(sp, dict):
        vals = sp.get("values") or []
        inc = sp.get("incomplete") or []
        first_inc = next((i for i, x in enumerate(inc) if x), None)
        spark = charts.sparkline(vals, first_inc)
    v.tiles.append(Tile("", text, value, "value", change, cls, prev_text, spark))
    if d.get("incomplete"):
        v.notes.append("The range includes today, so this is a partial period compared with a full previous one.")
    direction = {"up": "up", "down": "down", "flat": "unchanged"}[cls]
    v.summary = f"{v.title}: {text} for {range_text(report)}"
    if rel is not None:
        v.summary += f", {direction} {format_change(abs(rel)).lstrip('+')} from {format_number(prev)} in the previous period"
    elif prev is not None:
        v.summary += f"; previous period {format_number(prev)}"
    v.summary += "."
    v.tables.append(Table(["Figure", "Value"], [
        [Cell("Value"), num_cell(value)],
        [Cell("Previous period" + (f" ({pr.get('since')} – {pr.get('until')})" if pr else "")), num_cell(prev)],
        [Cell("Change"), num_cell(d.get("change"))],
        [Cell("Relative change"), Cell(format_change(rel), rel, True)],
    ]))
    v.csv_header = ["measure", "property", "unit", "value", "previous", "change", "change_relative", "incomplete"]
    v.csv_rows = [[d.get("measure"), d.get("property"), unit, value, prev, d.get("change"), rel,
                   bool(d.get("incomplete"))]]
    return v


# --- time series -----------------------------------------------------------------------

def _starts(buckets: Sequence[dict[str, Any]]) -> list[datetime]:
    out = []
    for b in buckets:
        try:
            out.append(parse_bucket(str(b.get("start") or b.get("period") or b.get("label"))))
        except ValueError:
            out.append(datetime(1970, 1, 1))
    return out


def _axis(starts: list[datetime], interval: str) -> tuple[list[int], list[str]]:
    idx = time_tick_indexes(starts, interval)
    texts, prev = [], None
    for i in idx:
        texts.append(tick_label(starts[i], prev, interval))
        prev = starts[i]
    return idx, texts


def _bucket_texts(buckets: Sequence[dict[str, Any]], starts: list[datetime], interval: str) -> list[str]:
    years = {s.year for s in starts}
    out = []
    for b, s in zip(buckets, starts):
        label = bucket_label(s, interval, with_year=len(years) > 1)
        if interval == "hour" and str(b.get("label", "")).count(" ") >= 2:  # repeated fall-back hour
            label += " " + str(b["label"]).rsplit(" ", 1)[1]
        out.append(label)
    return out


@view("time_series")
def time_series_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    interval = str(d.get("interval") or "day")
    buckets = d.get("buckets") or []
    series = d.get("series") or []
    starts = _starts(buckets)
    labels = _bucket_texts(buckets, starts, interval)
    incomplete = [bool(b.get("incomplete")) for b in buckets]
    idx, ticks = _axis(starts, interval)
    kind = d.get("chart") if d.get("chart") in ("line", "bar", "area") else "line"
    tips = []
    for i, label in enumerate(labels if len(labels) <= charts.HIT_LIMIT else ()):  # long: the script reads the table
        parts = [f"{s.get('label')}: {format_number(_at(s.get('values'), i))}" for s in series]
        flag = " (incomplete)" if incomplete[i] else (" (partial)" if buckets[i].get("partial") else "")
        tips.append(f"{label}{flag} — " + ", ".join(parts))
    v.chart = charts.time_chart(labels, idx, ticks, incomplete,
                                [SeriesIn(str(s.get("label")), s.get("values") or []) for s in series],
                                kind=kind, tips=tips)
    for k, s in enumerate(series):
        v.legend.append((str(s.get("label")), f"s{k % charts.SERIES + 1}", format_number(s.get("total")),
                         s.get("total")))
    brk = d.get("breakdown")
    parts = []
    for s in series[:6]:
        vals = s.get("values") or []
        nums = [(x, i) for i, x in enumerate(vals) if _is_num(x)]
        peak = max(nums, default=None, key=lambda t: (t[0], -t[1]))
        text = f"{s.get('label')} {format_number(s.get('total'))} in total"
        if peak is not None and len(vals) > 1:
            text += f", highest {format_number(peak[0])} on {labels[peak[1]]}"
        parts.append(text)
    v.summary = (f"{v.title} ({ADJ.get(interval, interval)}), {range_text(report)}"
                 + (f", broken down by {brk.get('property')}" if isinstance(brk, dict) else "") + ": "
                 + "; ".join(parts) + ("; more series in the data table" if len(series) > 6 else "") + ".")
    if any(incomplete):
        v.notes.append("Dashed or faded parts are incomplete periods that are still filling.")
    cols = ["Period"] + [str(s.get("label")) for s in series]
    rows = []
    long = len(buckets) > charts.HIT_LIMIT  # long tables: plain numbers (the CSV has them raw)
    for i, label in enumerate(labels):
        flag = " (incomplete)" if incomplete[i] else (" (partial)" if buckets[i].get("partial") else "")
        rows.append([Cell(label + flag)] + [Cell(format_number(_at(s.get("values"), i)), None, True) if long
                                            else num_cell(_at(s.get("values"), i)) for s in series])
    rows.append([Cell("Total")] + [num_cell(s.get("total")) for s in series])
    v.tables.append(Table(cols, rows))
    v.csv_header = ["bucket", "start", "end", "incomplete", "partial"] + [str(s.get("key", s.get("label")))
                                                                          for s in series]
    v.csv_rows = [[b.get("label"), b.get("start"), b.get("end"), bool(b.get("incomplete")), bool(b.get("partial"))]
                  + [_at(s.get("values"), i) for s in series] for i, b in enumerate(buckets)]
    return v


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


# --- table (breakdown) -----------------------------------------------------------------

@view("table")
def table_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    by = [str(b) for b in d.get("by") or []]
    sort = d.get("sort") if d.get("sort") in ("events", "users") else "events"
    rows = d.get("rows") or []
    other = d.get("other")
    total = d.get("total") or {}
    labels = [" / ".join(str(x) for x in r.get("labels") or []) for r in rows]
    values = [r.get(sort) or 0 for r in rows]
    shares = [r.get("share") for r in rows]
    if other:
        labels.append("Other")
        values.append(other.get(sort) or 0)
        shares.append(other.get("share"))
    tips = [f"{lab}: {format_number(val)} {sort}" + (f" ({float(sh) * 100:.1f}% of events)" if _is_num(sh) else "")
            for lab, val, sh in zip(labels, values, shares)]
    texts = [format_number(x) for x in values]
    if len(labels) > BARS_MAX:  # the chart shows the top rows; the table and CSV have all
        v.notes.append(f"The chart shows the first {BARS_MAX} of {len(labels)} rows; the data table has all.")
        labels, values, tips, texts = labels[:BARS_MAX], values[:BARS_MAX], tips[:BARS_MAX], texts[:BARS_MAX]
        other = None
    v.chart = charts.bar_chart(labels, values, tips, texts, highlight_last=bool(other))
    top = f"; the top is {labels[0]} with {format_number(values[0])} {sort}" if rows else ""
    v.summary = (f"{v.title}: {_count(len(rows), 'row')} by {', '.join(by)}, sorted by {sort}, {range_text(report)}"
                 f"{top}; {format_number(total.get('events'))} events and {format_number(total.get('users'))} users"
                 " in total.")
    cols = by + ["Events", "Users", "Share"]
    trows = [[Cell(str(x)) for x in r.get("labels") or []]
             + [num_cell(r.get("events")), num_cell(r.get("users")), Cell(_share(r.get("share")), r.get("share"), True)]
             for r in rows]
    if other:
        trows.append([Cell("Other")] + [Cell("") for _ in by[1:]]
                     + [num_cell(other.get("events")), num_cell(other.get("users")),
                        Cell(_share(other.get("share")), other.get("share"), True)])
    trows.append([Cell("Total")] + [Cell("") for _ in by[1:]]
                 + [num_cell(total.get("events")), num_cell(total.get("users")), Cell("100%")])
    v.tables.append(Table(cols, trows))
    v.csv_header = by + ["events", "users", "share"]
    v.csv_rows = [list(r.get("keys") or []) + [r.get("events"), r.get("users"), r.get("share")] for r in rows]
    if other:
        v.csv_rows.append(["(other)"] + [None] * (len(by) - 1) + [other.get("events"), other.get("users"),
                                                                  other.get("share")])
    return v


def _share(s: Any) -> str:
    return "–" if not _is_num(s) else f"{float(s) * 100:.1f}%"


# --- anything else ---------------------------------------------------------------------



def _generic(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    flat = [(k, d[k]) for k in d if not isinstance(d[k], (dict, list))] if isinstance(d, dict) else []
    v.summary = f"{v.title}: a {v.type} widget; its figures are in the data table and data.json."
    v.tables.append(Table(["Key", "Value"], [[Cell(str(k)), num_cell(x) if _is_num(x) else Cell(str(x))]
                                             for k, x in flat]))
    v.csv_header = ["key", "value"]
    v.csv_rows = [[k, x] for k, x in flat]
    return v
