"""Prometheus text exposition (format 0.0.4), written out by hand: counters, gauges and histograms with labels.

The service needs five metric families and one text format; a small thread-safe registry here avoids a
dependency and keeps the exact names under test. Metrics are per process: with ``--workers N`` each worker
exposes its own, as Prometheus multi-process setups expect a scrape per worker or a sum at query time.
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Iterable

# Latency buckets (seconds): routing is milliseconds, proxied completions can take minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = list(zip(names, values)) + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        k = self._key(labels)
        with self._lock:
            self._values[k] = self._values.get(k, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        with self._lock:
            return sum(self._values.values())

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        with self._lock:
            return sorted(self._values.items())

    def render(self) -> list[str]:
        lines = self.header()
        for k, v in self.items():
            lines.append(f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}")
        return lines


class Gauge(Counter):
    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            self._values[k] = self._values.get(k, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            self._values[k] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = (), buckets=LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._series: dict[tuple[str, ...], list] = {}  # key -> [counts per bucket (non-cumulative) + inf, sum]

    def observe(self, value: float, **labels: str) -> None:
        k = self._key(labels)
        i = bisect.bisect_left(self.buckets, value)  # first bucket with le >= value
        with self._lock:
            s = self._series.setdefault(k, [[0] * (len(self.buckets) + 1), 0.0])
            s[0][i] += 1
            s[1] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            s = self._series.get(self._key(labels))
            return sum(s[0]) if s else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            series = sorted((k, (list(v[0]), v[1])) for k, v in self._series.items())
        for k, (counts, total) in series:
            cum = 0
            for le, c in zip(self.buckets + (math.inf,), counts):
                cum += c
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, k, (('le', _fmt(le)),))} {cum}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_fmt(total)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, k)} {cum}")
        return lines


class ServeMetrics:
    """The service's metric families; names are part of the API (dashboards and tests read them)."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.requests = Counter("aco_requests_total", "HTTP requests by endpoint, method and status code.",
                                ("endpoint", "method", "status"))
        self.latency = Histogram("aco_request_latency_seconds", "HTTP request latency (until the last body byte).",
                                 ("endpoint",))
        self.inflight = Gauge("aco_requests_in_flight", "HTTP requests being served now.")
        self.decisions = Counter("aco_route_decisions_total", "Routing decisions by chosen tier.",
                                 ("tier", "model", "endpoint"))
        self.truncated = Counter("aco_prompts_truncated_total", "Prompts cut head+tail because they were too long.")
        self.escalations = Counter("aco_escalations_total", "Escalation verdicts by tier run and outcome.",
                                   ("tier_run", "outcome"))
        self.errors = Counter("aco_errors_total", "Error responses by endpoint and error code.", ("endpoint", "code"))
        self.upstream = Counter("aco_upstream_requests_total", "Proxied upstream calls by tier and upstream status.",
                                ("tier", "status"))
        self.upstream_latency = Histogram("aco_upstream_latency_seconds", "Time to upstream response headers.",
                                          ("tier",))
        self.route_latency = Histogram("aco_route_seconds", "Router compute time per call (tokenise..policy).",
                                       ("kind",))
        self.batch_size = Histogram("aco_route_batch_size", "Prompts per router forward pass.", (),
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.ready = Gauge("aco_ready", "1 when the bundle is loaded and verified.")
        # model "aco-cascade": every upstream call it makes is counted (and priced) once, when its answer is read
        self.cascade_calls = Counter("aco_cascade_calls_total", "Upstream calls made by aco-cascade, by tier.",
                                     ("tier",))
        self.cascade_failures = Counter("aco_cascade_failures_total",
                                        "aco-cascade upstream calls that failed, by tier and error code.",
                                        ("tier", "code"))
        self.cascade_accepted = Counter("aco_cascade_accepted_total", "aco-cascade answers returned, by the tier "
                                        "that answered and why it stopped (accepted|top_tier|max_runs).",
                                        ("tier", "stop"))
        self.cascade_cost = Counter("aco_cascade_cost_usd_total", "USD of aco-cascade upstream calls (answer usage "
                                    "x the tier's spec prices), by tier.", ("tier",))
        self.cascade_tokens = Counter("aco_cascade_tokens_total", "Tokens of aco-cascade upstream calls, by tier "
                                      "and kind (prompt|completion).", ("tier", "kind"))
        self.cascade_unpriced = Counter("aco_cascade_unpriced_calls_total", "aco-cascade calls with no cost: no "
                                        "usage in the answer or no prices in the spec.", ("tier",))
        self.cascade_runs = Histogram("aco_cascade_runs", "Tiers run per answered aco-cascade request.", (),
                                      buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24))
        self.families = [self.requests, self.latency, self.inflight, self.decisions, self.truncated, self.escalations,
                         self.errors, self.upstream, self.upstream_latency, self.route_latency, self.batch_size,
                         self.ready, self.cascade_calls, self.cascade_failures, self.cascade_accepted,
                         self.cascade_cost, self.cascade_tokens, self.cascade_unpriced, self.cascade_runs]

    def render(self) -> str:
        lines: list[str] = []
        for m in self.families:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"

    def summary(self) -> dict:
        """A JSON-friendly digest for GET /v1/router."""
        return {
            "requests": self.requests.total(),
            "errors": self.errors.total(),
            "decisions_per_tier": {k[0]: v for k, v in _sum_by(self.decisions.items(), 0).items()},
            "escalations": {k[0]: v for k, v in _sum_by(self.escalations.items(), 1).items()},
            "prompts_truncated": self.truncated.total(),
            "cascade": {"calls_per_tier": {k[0]: v for k, v in self.cascade_calls.items()},
                        "answers_per_tier": {k[0]: v for k, v in _sum_by(self.cascade_accepted.items(), 0).items()},
                        "cost_usd": self.cascade_cost.total()},
        }


def _sum_by(items, idx: int) -> dict[tuple[str], float]:
    out: dict[tuple[str], float] = {}
    for k, v in items:
        out[(k[idx],)] = out.get((k[idx],), 0.0) + v
    return out
