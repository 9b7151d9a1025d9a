"""Axis ticks, date labels, chart geometry and theme contrast."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.reports.render import charts
from erp.reports.render.theme import CONTRAST_PAIRS, PALETTES, contrast
from erp.reports.render.ticks import (
    bucket_label, format_number, format_tick, nice_ticks, tick_label, time_tick_indexes,
)

NICE_MANTISSAS = {1.0, 2.0, 2.5, 5.0}


def mantissa(step: float) -> float:
    return round(step / 10 ** math.floor(math.log10(step)), 6)


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e9, 1e9, allow_nan=False), st.floats(-1e9, 1e9, allow_nan=False), st.integers(3, 10))
def test_ticks_are_nice_cover_the_data_and_are_few(a, b, max_ticks):
    lo, hi = min(a, b), max(a, b)
    t = nice_ticks(lo, hi, max_ticks)
    assert mantissa(t.step) in NICE_MANTISSAS
    assert 2 <= len(t.values) <= max_ticks
    eps = 1e-9 * (t.hi - t.lo)  # below a billionth of the axis: invisible
    assert t.lo <= min(lo, 0) + eps and t.hi >= max(hi, 0) - eps
    for v in t.values:  # every tick is a whole multiple of the step
        k = v / t.step
        assert abs(k - round(k)) < 1e-6
    assert list(t.values) == sorted(set(t.values))


@pytest.mark.parametrize(("lo", "hi", "want"), [
    (0, 1234, ["0", "250", "500", "750", "1k", "1.25k"]),
    (0, 7, ["0", "2", "4", "6", "8"]),
    (0, 0.37, ["0", "0.1", "0.2", "0.3", "0.4"]),
    (3, 97, ["0", "20", "40", "60", "80", "100"]),
    (-12, 55, ["-20", "0", "20", "40", "60"]),
    (0, 9_999_999, ["0", "2M", "4M", "6M", "8M", "10M"]),
    (0, 0, ["0", "0.2", "0.4", "0.6", "0.8", "1"]),
])
def test_tick_labels_are_short_and_round(lo, hi, want):
    t = nice_ticks(lo, hi)
    assert [format_tick(v, t.step) for v in t.values] == want


def test_numbers_for_people():
    assert format_number(1234567) == "1,234,567"
    assert format_number(2.0) == "2"
    assert format_number(3.14159) == "3.14"
    assert format_number(None) == "–"
    assert format_number(1234.5, decimals=2) == "1,234.50"


def test_dates_are_readable_local_labels():
    days = [datetime(2026, 10, 20 + i) if 20 + i <= 31 else datetime(2026, 11, i - 11) for i in range(30)]
    idx = time_tick_indexes(days, "day")
    assert len(idx) <= 7
    assert all(days[i].weekday() == 0 for i in idx)  # weekly ticks fall on Mondays
    labels, prev = [], None
    for i in idx:
        labels.append(tick_label(days[i], prev, "day"))
        prev = days[i]
    assert labels == ["Oct 26", "Nov 2", "9", "16"]
    assert tick_label(datetime(2027, 1, 4), datetime(2026, 12, 28), "day") == "Jan 4 2027"
    assert bucket_label(datetime(2026, 11, 1, 13), "hour") == "Nov 1 13:00"
    assert bucket_label(datetime(2026, 11, 1), "month") == "Nov 2026"
    assert bucket_label(datetime(2026, 3, 30), "week", with_year=True) == "week of Mar 30, 2026"
    assert time_tick_indexes(days[:5], "day") == [0, 1, 2, 3, 4]


def _shapes(chart, cls):
    return [s for s in chart.shapes if cls in str(s.attrs.get("class", "")).split()]


def test_line_chart_draws_incomplete_buckets_dashed_and_gaps_for_nulls():
    labels = [f"d{i}" for i in range(6)]
    c = charts.time_chart(labels, [0, 5], ["a", "b"], [False] * 5 + [True],
                          [charts.SeriesIn("x", [1, 2, None, 4, 5, 3])], kind="line")
    solid = [s for s in _shapes(c, "line") if "incomplete" not in s.attrs["class"]]
    dashed = [s for s in _shapes(c, "line") if "incomplete" in s.attrs["class"]]
    assert len(solid) == 1 and len(dashed) == 1
    assert solid[0].attrs["d"].count("M") == 2  # the null breaks the line
    assert dashed[0].attrs["d"].count("L") == 1  # last complete point -> the incomplete one
    assert len(_shapes(c, "hit")) == 6 and _shapes(c, "hit")[2].tip == "d2"
    ys = {s.attrs["y1"] for s in _shapes(c, "grid")}
    assert len(ys) == len(nice_ticks(0, 5).values)


def test_stacked_bars_put_negative_values_below_the_axis():
    c = charts.time_chart(["a", "b"], [0, 1], ["a", "b"], [False, False],
                          [charts.SeriesIn("up", [10, 20]), charts.SeriesIn("down", [-5, -8])], kind="bar")
    zero = [s for s in _shapes(c, "zero")][0].attrs["y1"]
    bars = _shapes(c, "bar")
    ups = [b for b in bars if "fill-s1" in b.attrs["class"]]
    downs = [b for b in bars if "fill-s2" in b.attrs["class"]]
    assert all(round(b.attrs["y"] + b.attrs["height"], 1) == zero for b in ups)
    assert all(b.attrs["y"] == zero for b in downs)


def test_long_series_get_one_hover_area_instead_of_per_bucket_elements():
    n = 720
    c = charts.time_chart([str(i) for i in range(n)], [0], ["0"], [False] * n,
                          [charts.SeriesIn("x", list(range(n)))])
    assert not _shapes(c, "hit") and not _shapes(c, "dot")
    area = _shapes(c, "hits")
    assert len(area) == 1 and area[0].attrs["data-n"] == n


def test_funnel_chart_shows_conversion_and_drop_off():
    c = charts.funnel_chart(["a", "b", "c"], [1000, 400, 100])
    texts = [s.text for s in c.shapes if s.tag == "text"]
    assert "100.0%" in texts and "40.0%" in texts and "10.0%" in texts
    assert len(_shapes(c, "drop")) == 2
    tips = [s.tip for s in _shapes(c, "hit")]
    assert tips[1] == "b: 400 (40.0% of step 1), 60.0% dropped off since the step before"


def test_heatmap_levels_and_missing_cells():
    assert charts.heat_level(None) == 0 and charts.heat_level(0) == 0
    assert charts.heat_level(0.01) == 1 and charts.heat_level(1.0) == charts.LEVELS - 1
    levels = [charts.heat_level(x / 100) for x in range(0, 101)]
    assert levels == sorted(levels)
    c = charts.heatmap(["r1", "r2"], ["0", "1"], [[(1.0, "100%", "t", False), (0.5, "50%", "t2", True)],
                                                 [(1.0, "100%", "t3"), None]])
    cells = _shapes(c, "cell")
    assert len(cells) == 3 and "incomplete" in cells[1].attrs["class"]


def test_every_theme_passes_wcag_aa():
    for name, palette in PALETTES.items():
        for fg, bg, minimum in CONTRAST_PAIRS:
            assert contrast(palette[fg], palette[bg]) >= minimum, (name, fg, bg)
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0


@pytest.mark.parametrize("kind", ["line", "area", "bar"])
@pytest.mark.parametrize("n", [1, 2, 7, 62])
def test_every_point_sits_inside_its_own_hover_target(kind, n):
    c = charts.time_chart([f"b{i}" for i in range(n)], [0], ["b0"], [False] * n,
                          [charts.SeriesIn("x", [i % 5 for i in range(n)])], kind=kind)
    hits = _shapes(c, "hit")
    assert [h.tip for h in hits] == [f"b{i}" for i in range(n)]
    centres = ([d.attrs["cx"] for d in _shapes(c, "dot")] if kind != "bar"
               else [b.attrs["x"] + b.attrs["width"] / 2 for b in _shapes(c, "bar")])
    assert len(centres) == n
    for i, (h, x) in enumerate(zip(hits, centres)):
        left, right = h.attrs["x"], h.attrs["x"] + h.attrs["width"]
        assert left < x < right, (i, left, x, right)  # strictly inside, edges included
        if i:
            prev = hits[i - 1].attrs
            assert prev["x"] + prev["width"] <= left + 0.1  # targets do not overlap
        assert 0 <= left and right <= c.width


def test_points_on_the_plot_edges_are_inside_their_targets_vertically():
    c = charts.time_chart(["a", "b", "c"], [0], ["a"], [False] * 3, [charts.SeriesIn("x", [0, 2, 5])])
    for dot, hit in zip(_shapes(c, "dot"), _shapes(c, "hit")):
        assert hit.attrs["y"] < dot.attrs["cy"] < hit.attrs["y"] + hit.attrs["height"]
