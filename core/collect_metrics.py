"""The collector's counters, rendered in the Prometheus text format (0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from typing import Callable

#: Latency histogram buckets (seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (endpoint, status) -> n
        self.accepted: Counter = Counter()  # endpoint -> events
        self.rejected: Counter = Counter()  # reason -> events
        self.hist: dict[str, list[int]] = {}  # endpoint -> bucket counts (+Inf last)
        self.hist_sum: Counter = Counter()
        self.encodings: Counter = Counter()  # Content-Encoding of bodies read -> requests

    def body_read(self, encoding: str) -> None:
        with self._lock:
            self.encodings[encoding] += 1

    def observe(self, endpoint: str, status: int, seconds: float, accepted: int = 0,
                rejected: Counter | None = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if accepted:
                self.accepted[endpoint] += accepted
            if rejected:
                self.rejected.update(rejected)
            counts = self.hist.get(endpoint)
            if counts is None:
                counts = self.hist[endpoint] = [0] * (len(BUCKETS) + 1)
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.hist_sum[endpoint] += seconds

    def render(self, gauges: list[tuple[str, str, float]], counters: list[tuple[str, str, float]]) -> str:
        """``gauges`` / ``counters``: extra (name, help, value) without labels."""
        lines: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            head("erp_collect_requests_total", "counter", "HTTP requests by endpoint and status code.")
            for (ep, st), n in sorted(self.requests.items()):
                lines.append(f'erp_collect_requests_total{{endpoint="{_esc(ep)}",status="{st}"}} {n}')
            for name, label, values, text in (
                    ("erp_collect_events_accepted_total", "endpoint", self.accepted, "Events written to the spool."),
                    ("erp_collect_events_rejected_total", "reason", self.rejected,
                     "Events refused at the door, by reason."),
                    ("erp_collect_request_bodies_total", "encoding", self.encodings,
                     "Request bodies read, by Content-Encoding.")):
                head(name, "counter", text)
                for key, n in sorted(values.items()):
                    lines.append(f'{name}{{{label}="{_esc(key)}"}} {n}')
            head("erp_collect_request_duration_seconds", "histogram", "Request latency, receipt to answer.")
            for ep, counts in sorted(self.hist.items()):
                cum = 0
                for le, c in zip([*map(str, BUCKETS), "+Inf"], counts):
                    cum += c
                    lines.append(f'erp_collect_request_duration_seconds_bucket{{endpoint="{_esc(ep)}",le="{le}"}} {cum}')
                lines.append(f'erp_collect_request_duration_seconds_sum{{endpoint="{_esc(ep)}"}} '
                             f'{self.hist_sum[ep]:.6f}')
                lines.append(f'erp_collect_request_duration_seconds_count{{endpoint="{_esc(ep)}"}} {cum}')
        for name, text, value in counters:
            head(name, "counter", text)
            lines.append(f"{name} {value:g}")
        for name, text, value in gauges:
            head(name, "gauge", text)
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


GaugeFn = Callable[[], float]
