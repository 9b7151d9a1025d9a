"""Views of the behavioural widget types (docs/behaviour.md): funnel, retention and
cohort (heatmaps), lifecycle, stickiness. Same contract as ``views``: plain text
out, the templates escape it; each registers itself with ``@view``."""

from __future__ import annotations

from typing import Any

from erp.reports.render import charts
from erp.reports.render.charts import SeriesIn
from erp.reports.render.ticks import MONTHS, format_number, parse_bucket
from erp.reports.render.views import (
    ADJ, HEAT_COLS, HEAT_ROWS, Cell, Table, Tile, View, _axis, _base, _bucket_texts, _count, _is_num, _pct_text,
    _starts, num_cell, pct_cell, range_text, view,
)

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
