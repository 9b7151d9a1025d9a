"""From a widget's JSON ``data`` (docs/reports.md, docs/behaviour.md) to what a page
shows: KPI tiles, one chart, a text summary, a data table and the CSV rows.

One function per widget type, found through ``VIEWS``; a new type joins with
``@view("name")`` and a template ``bundle/widgets/<name>.html``. Views never
escape: they return plain text, and the templates escape everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from markupsafe import Markup, escape

from erp.reports.render import charts
from erp.reports.render.charts import Chart, SeriesIn
from erp.reports.render.ticks import (
    MONTHS, bucket_label, format_change, format_number, parse_bucket, tick_label, time_tick_indexes,
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
    """The view of one widget of a report JSON; unknown types get a generic table."""
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


# --- funnel ----------------------------------------------------------------------------

def _duration(seconds: Any) -> str:
    if not _is_num(seconds):
        return "–"
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


_STEP_CSV = ["step", "name", "count", "pct_of_first", "pct_of_previous", "dropped", "pending",
             "median_seconds_from_previous", "mean_seconds_from_previous", "median_seconds_from_first",
             "mean_seconds_from_first"]


@view("funnel")
def funnel_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    steps = d.get("steps") or []
    unit = str(d.get("unit") or "users")
    names = [str(s.get("name")) for s in steps]
    v.chart = charts.funnel_chart(names, [s.get("count") for s in steps])
    v.tiles = [
        Tile(f"Entered ({unit})", format_number(d.get("entered")), d.get("entered"), "entered"),
        Tile("Completed", format_number(d.get("completed")), d.get("completed"), "completed"),
        Tile("Conversion", _pct_text(d.get("conversion_pct")), d.get("conversion_pct"), "conversion_pct"),
    ]
    if d.get("pending"):
        v.notes.append(f"{format_number(d.get('pending'))} {unit} are still inside the conversion window "
                       "and may yet convert (pending).")
    worst = max(steps[1:], default=None, key=lambda s: (s.get("dropped") or 0))
    v.summary = (f"{v.title}: {format_number(d.get('entered'))} {unit} entered, {format_number(d.get('completed'))} "
                 f"completed all {len(steps)} steps ({_pct_text(d.get('conversion_pct'))}), {range_text(report)}.")
    if worst is not None and worst.get("dropped"):
        v.summary += f" The largest drop-off is into {worst.get('name')} ({format_number(worst.get('dropped'))} {unit})."
    cols = ["Step", "Count", "Of step 1", "Of previous", "Dropped", "Pending", "Median time from previous"]
    v.tables.append(Table(cols, [
        [Cell(f"{s.get('step')}. {s.get('name')}"), num_cell(s.get("count")), pct_cell(s.get("pct_of_first")),
         pct_cell(s.get("pct_of_previous")), num_cell(s.get("dropped")), num_cell(s.get("pending")),
         Cell(_duration(s.get("median_seconds_from_previous")), s.get("median_seconds_from_previous"), True)]
        for s in steps]))
    v.csv_header = ["group"] + _STEP_CSV
    v.csv_rows = [["(all)"] + [s.get(k) for k in _STEP_CSV] for s in steps]
    brk = d.get("breakdown")
    if isinstance(brk, dict):
        groups = brk.get("groups") or []
        v.tables.append(Table([str(brk.get("property")), "Entered", "Completed", "Conversion", "Pending"], [
            [Cell(str(g.get("value"))), num_cell(g.get("entered")), num_cell(g.get("completed")),
             pct_cell(g.get("conversion_pct")), num_cell(g.get("pending"))] for g in groups],
            caption=f"By {brk.get('property')}"))
        for g in groups:
            for s in g.get("steps") or []:
                if isinstance(s, dict):
                    v.csv_rows.append([g.get("value")] + [s.get(k) for k in _STEP_CSV])
    trend = d.get("trend")
    if isinstance(trend, dict) and trend.get("points"):
        pts = trend["points"]
        period = str(trend.get("period") or "day")
        starts = _starts(pts)
        labels = _bucket_texts(pts, starts, period)
        v.tables.append(Table(["Period", "Entered", "Completed", "Conversion"], [
            [Cell(lab + (" (incomplete)" if p.get("incomplete") else "")), num_cell(p.get("entered")),
             num_cell(p.get("completed")), pct_cell(p.get("conversion_pct"))] for lab, p in zip(labels, pts)],
            caption=f"Conversion per {period}"))
    return v


# --- retention and cohort (heatmaps) ---------------------------------------------------

def _period_label(text: str, period: str) -> str:
    try:
        s = parse_bucket(text)
    except ValueError:
        return text
    return f"{MONTHS[s.month - 1]} {s.year}" if period == "month" else f"{MONTHS[s.month - 1]} {s.day}, {s.year}"


def _matrix_view(widget: dict[str, Any], report: dict[str, Any], *, what: str) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    period = str(d.get("period") or "week")
    cohorts = d.get("cohorts") or []
    average = d.get("average") or []
    has_value = isinstance(d.get("value"), dict)
    n = 1 + max([len(c.get("cells") or []) - 1 for c in cohorts] + [len(average) - 1, 0])
    cols = [str(i) for i in range(n)]
    rows, sizes, cells = [], [], []
    if average:
        rows.append("All cohorts")
        sizes.append("")
        cells.append([None if a is None else (_ratio(a.get("pct")), _pct_short(a.get("pct")),
                                              f"All cohorts, {period} {a.get('period')}: {format_number(a.get('count'))}"
                                              f" of {format_number(a.get('cohort_size'))} ({_pct_text(a.get('pct'))}),"
                                              f" {a.get('cohorts')} cohorts") for a in average])
    for c in cohorts:
        label = _period_label(str(c.get("cohort")), period)
        rows.append(label)
        sizes.append(format_number(c.get("size")))
        row = []
        for cell in c.get("cells") or []:
            if cell.get("count") is None:
                row.append(None)
                continue
            tip = (f"Cohort {label} ({format_number(c.get('size'))} users), {period} {cell.get('period')}: "
                   f"{format_number(cell.get('count'))} users, {_pct_text(cell.get('pct'))}")
            if has_value and "value" in cell:
                tip += f", value {format_number(cell.get('value'))}"
            if cell.get("incomplete"):
                tip += " (incomplete)"
            row.append((_ratio(cell.get("pct")), _pct_short(cell.get("pct")), tip, bool(cell.get("incomplete"))))
        cells.append(row)
    if len(cols) > HEAT_COLS or len(rows) > HEAT_ROWS:  # keep the chart readable; the CSV has all
        head = 1 if average else 0
        keep = list(range(head)) + list(range(max(head, len(rows) - (HEAT_ROWS - head)), len(rows)))
        rows, sizes = [rows[i] for i in keep], [sizes[i] for i in keep]
        cells = [cells[i][:HEAT_COLS] for i in keep]
        cols = cols[:HEAT_COLS]
        v.notes.append(f"The chart shows the latest {len(rows) - head} cohorts and {period}s 0–{len(cols) - 1}; "
                       "the CSV has every cell.")
    v.chart = charts.heatmap(rows, cols, cells, row_head=f"{period} →", sizes=sizes)
    first = average[1] if len(average) > 1 else None
    v.summary = (f"{v.title}: {what} of {_count(len(cohorts), ADJ.get(period, period) + ' cohort')} over "
                 f"{_count(n - 1, period)}, "
                 f"{range_text(report)}.")
    if first:
        v.summary += (f" On average {_pct_text(first.get('pct'))} of a cohort is active in {period} 1"
                      f" ({_count(first.get('cohorts') or 0, 'cohort')}).")
    v.notes.append(f"Rows are cohorts (by {period} of the first event), columns are {period}s since; "
                   "empty cells have not started yet, incomplete ones are still filling.")
    shown = min(n, HEAT_COLS)  # the table holds what the chart shows; the CSV has every cell
    tcols = ["Cohort", "Size"] + [f"{period.capitalize()} {i}" for i in range(shown)]
    trows = []
    if average:
        trows.append([Cell("All cohorts"), Cell("")] + [pct_cell(a.get("pct")) for a in average[:shown]])
    for c in cohorts[-HEAT_ROWS:]:
        trows.append([Cell(_period_label(str(c.get("cohort")), period)), num_cell(c.get("size"))]
                     + [pct_cell(x.get("pct")) if x.get("count") is not None else Cell("")
                        for x in (c.get("cells") or [])[:shown]])
    v.tables.append(Table(tcols, trows))
    v.csv_header = ["cohort", "size", "period", "count", "pct", "incomplete"] + (["value"] if has_value else [])
    for c in cohorts:
        for x in c.get("cells") or []:
            v.csv_rows.append([c.get("cohort"), c.get("size"), x.get("period"), x.get("count"), x.get("pct"),
                               bool(x.get("incomplete"))] + ([x.get("value")] if has_value else []))
    return v


ADJ = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ratio(pct: Any) -> float | None:
    return float(pct) / 100 if _is_num(pct) else None


def _pct_short(pct: Any) -> str:
    return "" if not _is_num(pct) else f"{float(pct):.0f}%"


@view("retention")
def retention_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    d = widget.get("data") or {}
    return _matrix_view(widget, report, what=f"{d.get('mode', 'first_time').replace('_', '-')} retention")


@view("cohort")
def cohort_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    return _matrix_view(widget, report, what="activity")


# --- lifecycle -------------------------------------------------------------------------

_LIFE = ("new", "returning", "resurrecting", "dormant")


@view("lifecycle")
def lifecycle_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    period = str(d.get("period") or "week")
    pts = d.get("points") or []
    starts = _starts(pts)
    labels = _bucket_texts(pts, starts, period)
    idx, ticks = _axis(starts, period)
    incomplete = [bool(p.get("incomplete")) for p in pts]
    series = [SeriesIn(k, [(-(p.get(k) or 0) if k == "dormant" else p.get(k)) for p in pts]) for k in _LIFE]
    tips = [f"{lab}{' (incomplete)' if inc else ''} — active {format_number(p.get('active'))}: "
            + ", ".join(f"{k} {format_number(p.get(k))}" for k in _LIFE) for lab, inc, p in zip(labels, incomplete, pts)]
    v.chart = charts.time_chart(labels, idx, ticks, incomplete, series, kind="bar", tips=tips)
    for k, name in enumerate(_LIFE):
        total = sum((p.get(name) or 0) for p in pts)
        v.legend.append((name, f"s{k + 1}", format_number(total), total))
    last = next((p for p in reversed(pts) if not p.get("incomplete")), pts[-1] if pts else None)
    v.summary = f"{v.title}: active users per {period} split into new, returning and resurrecting; dormant below the axis"
    if last is not None:
        i = pts.index(last)
        v.summary += (f". Last complete {period} ({labels[i]}): {format_number(last.get('active'))} active, "
                      + ", ".join(f"{format_number(last.get(k))} {k}" for k in _LIFE))
    v.summary += "."
    v.tables.append(Table(["Period", "Active", "New", "Returning", "Resurrecting", "Dormant"], [
        [Cell(lab + (" (incomplete)" if p.get("incomplete") else "")), num_cell(p.get("active"))]
        + [num_cell(p.get(k)) for k in _LIFE] for lab, p in zip(labels, pts)]))
    v.csv_header = ["period", "active", *_LIFE, "incomplete"]
    v.csv_rows = [[p.get("period"), p.get("active")] + [p.get(k) for k in _LIFE] + [bool(p.get("incomplete"))]
                  for p in pts]
    return v


# --- stickiness ------------------------------------------------------------------------

@view("stickiness")
def stickiness_view(widget: dict[str, Any], report: dict[str, Any]) -> View:
    v = _base(widget)
    d = widget.get("data") or {}
    period = str(d.get("period") or "day")
    buckets = d.get("buckets") or []
    n = len(buckets)
    labels = [f"{b.get('periods')} {period}{'' if b.get('periods') == 1 else 's'}" for b in buckets]
    stride = max(1, -(-n // 8))
    idx = list(range(0, n, stride))
    tips = [f"{lab}: {format_number(b.get('count'))} users ({_pct_text(b.get('pct'))})" for lab, b in zip(labels, buckets)]
    v.chart = charts.time_chart(labels, idx, [str(buckets[i].get("periods")) for i in idx], [False] * n,
                                [SeriesIn("Users", [b.get("count") for b in buckets])], kind="bar", tips=tips)
    v.tiles = [Tile("Active users", format_number(d.get("users")), d.get("users"), "users")]
    if d.get("incomplete"):
        v.notes.append("The range includes today: the last period is still filling.")
    top = max(buckets, default=None, key=lambda b: (b.get("count") or 0, -(b.get("periods") or 0)))
    v.summary = (f"{v.title}: how many of the {d.get('total_periods')} {period}s each of "
                 f"{format_number(d.get('users'))} active users was active, {range_text(report)}.")
    if top is not None:
        v.summary += f" Most users ({_pct_text(top.get('pct'))}) were active on {top.get('periods')} {period}(s)."
    v.tables.append(Table([f"{period.capitalize()}s active", "Users", "Share"], [
        [Cell(str(b.get("periods"))), num_cell(b.get("count")), pct_cell(b.get("pct"))] for b in buckets]))
    v.csv_header = ["periods", "count", "pct"]
    v.csv_rows = [[b.get("periods"), b.get("count"), b.get("pct")] for b in buckets]
    return v


# --- anything else ---------------------------------------------------------------------

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


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
