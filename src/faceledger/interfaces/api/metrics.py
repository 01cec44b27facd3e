"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Counters and histograms are kept per process: with several workers, each scrape of ``/metrics`` is answered by
one of them (the ``pid`` label says which). Nothing here identifies a person: only routes, status codes,
durations and counts.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metrics:
    """Request counters, latency histograms and domain counters of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pid = str(os.getpid())
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[tuple[str, str], list[int]] = {}
        self.duration_sums: dict[tuple[str, str], float] = defaultdict(float)
        self.duration_counts: dict[tuple[str, str], int] = defaultdict(int)
        self.events: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.in_flight = 0

    def started(self) -> None:
        """A request began."""
        with self._lock:
            self.in_flight += 1

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request ended with ``status`` after ``seconds``."""
        key = (method, route)
        with self._lock:
            self.in_flight -= 1
            self.requests[(method, route, str(status))] += 1
            counts = self.durations.setdefault(key, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.duration_sums[key] += seconds
            self.duration_counts[key] += 1

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter ``faceledger_<name>_total`` with ``labels``."""
        with self._lock:
            self.events[(name, tuple(sorted(labels.items())))] += amount

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``gauges`` maps a metric name to ``(help, value)`` read at scrape time."""
        pid = ("pid", self.pid)
        lines = [
            "# HELP faceledger_http_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE faceledger_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                labels = _labels([pid, ("method", method), ("route", route), ("status", status)])
                lines.append(f"faceledger_http_requests_total{labels} {n}")
            lines += [
                "# HELP faceledger_http_request_duration_seconds Time to answer an HTTP request.",
                "# TYPE faceledger_http_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self.durations.items()):
                base = [pid, ("method", method), ("route", route)]
                for bound, n in zip(BUCKETS, counts, strict=True):
                    labels = _labels([*base, ("le", _num(bound))])
                    lines.append(f"faceledger_http_request_duration_seconds_bucket{labels} {_num(n)}")
                total = self.duration_counts[(method, route)]
                lines.append(
                    f"faceledger_http_request_duration_seconds_bucket{_labels([*base, ('le', '+Inf')])} {total}"
                )
                lines.append(
                    f"faceledger_http_request_duration_seconds_sum{_labels(base)} "
                    f"{_num(round(self.duration_sums[(method, route)], 6))}"
                )
                lines.append(f"faceledger_http_request_duration_seconds_count{_labels(base)} {total}")
            lines += [
                "# HELP faceledger_http_requests_in_flight Requests being answered now.",
                "# TYPE faceledger_http_requests_in_flight gauge",
                f"faceledger_http_requests_in_flight{_labels([pid])} {self.in_flight}",
            ]
            names = sorted({name for name, _ in self.events})
            for name in names:
                lines += [
                    f"# HELP faceledger_{name}_total {_EVENT_HELP.get(name, name.replace('_', ' '))}.",
                    f"# TYPE faceledger_{name}_total counter",
                ]
                for (event, pairs), value in sorted(self.events.items()):
                    if event == name:
                        lines.append(f"faceledger_{name}_total{_labels([pid, *pairs])} {_num(value)}")
        for name, (help_text, value) in sorted((gauges or {}).items()):
            lines += [
                f"# HELP faceledger_{name} {help_text}",
                f"# TYPE faceledger_{name} gauge",
                f"faceledger_{name}{_labels([pid])} {_num(value)}",
            ]
        return "\n".join(lines) + "\n"


_EVENT_HELP = {
    "identifications": "Identification searches answered",
    "faces_searched": "Faces searched in identification probes",
    "candidates": "Candidates produced for human review",
    "enrollments": "Enrollment requests answered",
    "templates_enrolled": "Templates stored by enrollments",
    "verifications": "1:1 verifications answered (kind: two images, or an image against a subject)",
    "reviews": "Review decisions recorded, by decision",
    "erasures": "Subjects erased",
    "rate_limited": "Requests refused by the per-key rate limit",
    "auth_failures": "Requests refused for a missing, unknown or revoked API key",
}
