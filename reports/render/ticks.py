"""Nice axis ticks and readable labels: numbers and calendar buckets.

Everything here is pure and locale-free (English month names, ``,`` thousands),
so the same data always gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Ticks:
    values: tuple[float, ...]
    step: float

    @property
    def lo(self) -> float:
        return self.values[0]

    @property
    def hi(self) -> float:
        return self.values[-1]


def nice_step(span: float, max_ticks: int) -> float:
    """The smallest step of the form {1, 2, 2.5, 5} x 10^k that cuts ``span`` into at
    most ``max_ticks - 1`` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, max_ticks - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for m in _STEPS:
        if m * power >= raw * (1 - 1e-12):
            return m * power
    return 10 * power  # pragma: no cover - the loop always returns


def nice_ticks(lo: float, hi: float, max_ticks: int = 6, *, zero: bool = True) -> Ticks:
    """Ticks covering ``[lo, hi]``: multiples of a nice step, at most ``max_ticks`` of
    them (``max_ticks`` below 3 counts as 3: a range across zero needs three).
    ``zero`` includes 0 in the range (counts start at 0)."""
    max_ticks = max(3, max_ticks)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo > hi:
        lo, hi = hi, lo
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:  # one value (or differences below any chart's resolution)
        hi = lo + (abs(lo) if abs(lo) >= 1e-12 else 1.0)
    n = max(2, max_ticks)
    while True:
        step = nice_step(hi - lo, n)
        first = math.floor(lo / step + 1e-9)
        last = math.ceil(hi / step - 1e-9)
        if last - first + 1 <= max(2, max_ticks) or n <= 2:
            break
        n -= 1
    values = tuple(_clean(k * step) for k in range(first, last + 1))
    return Ticks(values, step)


def _clean(x: float) -> float:
    """Drop floating-point noise (0.30000000000000004 -> 0.3)."""
    r = float(f"{x:.12g}")
    return 0.0 if r == 0 else r


def _trim(v: float) -> str:
    text = f"{v:,.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_tick(value: float, step: float) -> str:
    """An axis label: compact units (1.5k, 2M) once the step reaches a tenth of the unit;
    as few decimals as the value needs (ticks are exact multiples of the step)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(step) >= size / 10 and abs(value) >= size:
            return _trim(value / size) + unit
    return _trim(value)


def format_number(value: float | int | None, *, decimals: int | None = None) -> str:
    """A number for people: thousands separators, at most 2 decimals, ``–`` for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def format_percent(value: float | None, *, decimals: int = 1) -> str:
    """A ratio (0.123) as ``12.3%``."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * 100:.{decimals}f}%"


def format_change(value: float | None) -> str:
    """A relative change (0.05) as ``+5.0%``; ``–`` when it is undefined."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * 100:+.1f}%"


# --- calendar buckets ----------------------------------------------------------------

def parse_bucket(text: str) -> datetime:
    """A bucket start as the engine writes it: ``YYYY-MM-DD`` or an ISO timestamp with
    offset (already in the tenant's timezone). Naive results keep local wall time."""
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def bucket_label(start: datetime, interval: str, *, with_year: bool = False) -> str:
    """A full, readable label for one bucket (tooltips, tables)."""
    day = f"{MONTHS[start.month - 1]} {start.day}"
    year = f", {start.year}" if with_year else ""
    if interval == "hour":
        return f"{day}{year} {start.hour:02d}:00"
    if interval == "week":
        return f"week of {day}{year}"
    if interval == "month":
        return f"{MONTHS[start.month - 1]} {start.year}"
    if interval == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    if interval == "year":
        return str(start.year)
    return f"{day}{year}"


_DAY_STRIDES = (1, 2, 7, 14, 28)


def time_tick_indexes(starts: list[datetime], interval: str, max_ticks: int = 7) -> list[int]:
    """Which buckets get an axis label: evenly strided, aligned to weeks (Mondays) for
    daily data, always including the first bucket."""
    n = len(starts)
    if n <= max_ticks:
        return list(range(n))
    if interval == "day":
        for stride in _DAY_STRIDES:
            if math.ceil(n / stride) <= max_ticks:
                break
        else:
            stride = math.ceil(n / max_ticks)
        if stride >= 7:
            first = next((i for i, s in enumerate(starts) if s.weekday() == 0), 0)
            return list(range(first, n, stride))
        return list(range(0, n, stride))
    stride = math.ceil(n / max_ticks)
    if interval == "hour":
        for s in (1, 2, 3, 6, 12, 24, 48, 72, 168):
            if s >= stride:
                stride = s
                break
    return list(range(0, n, stride))


def tick_label(start: datetime, prev: datetime | None, interval: str) -> str:
    """A short axis label: the month is named when it changes, the year when it changes."""
    if interval in ("month", "quarter", "year"):
        if interval == "month" and prev is not None and prev.year == start.year:
            return MONTHS[start.month - 1]
        return bucket_label(start, interval)
    if interval == "hour":
        if start.hour == 0:
            return f"{MONTHS[start.month - 1]} {start.day}"
        if prev is None or prev.date() != start.date():
            return f"{MONTHS[start.month - 1]} {start.day} {start.hour:02d}:00"
        return f"{start.hour:02d}:00"
    if prev is not None and prev.year != start.year:
        return f"{MONTHS[start.month - 1]} {start.day} {start.year}"
    if prev is None or prev.month != start.month:
        return f"{MONTHS[start.month - 1]} {start.day}"
    return str(start.day)
