"""The service's Prometheus metrics, on ``prometheus_client``: one set of families per app, one scrape for all workers.

Single process: each :class:`ServeMetrics` has its own ``CollectorRegistry`` (tests build several apps in one
process). ``--workers N``: the supervisor (:mod:`aco_bert.serve.server`) points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh private directory before it spawns the workers, so every worker writes its samples to files there and any
worker answering ``/metrics`` reads them all through ``MultiProcessCollector``: counters and histograms are summed
over workers (dead ones included, so totals never go back), gauges follow their ``multiprocess_mode``.
Call sites keep a keyword-label API (``m.decisions.inc(tier="1", ...)``) through the thin :class:`Family` wrapper.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess, values)

# Latency buckets (seconds): routing is milliseconds, proxied completions can take minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# ``*_created`` series exist only in single-process mode; dropping them makes one exposition for both modes.
disable_created_metrics()


def multiprocess_mode() -> bool:
    """True when this process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (the variable was set before
    prometheus_client was imported, as it is in ``--workers N`` workers)."""
    return values.ValueClass is not values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))


class Family:
    """One metric family with labels passed as keywords: ``inc(amount, **labels)``, ``observe(v, **labels)``."""

    def __init__(self, name: str, metric: Any, labelnames: tuple[str, ...]) -> None:
        self.name, self.metric, self.labelnames = name, metric, labelnames

    def _child(self, labels: dict[str, Any]) -> Any:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return self.metric.labels(**{k: str(v) for k, v in labels.items()}) if labels else self.metric

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        self._child(labels).inc(amount)  # a counter refuses a negative amount (ValueError)

    def dec(self, amount: float = 1.0, **labels: Any) -> None:
        self._child(labels).dec(amount)

    def set(self, value: float, **labels: Any) -> None:
        self._child(labels).set(value)

    def observe(self, value: float, **labels: Any) -> None:
        self._child(labels).observe(value)


class ServeMetrics:
    """The service's metric families; names are part of the API (the dashboard in deploy/grafana and tests read
    them)."""

    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        # multiprocess: samples go to the shared files, the scrape registry reads them back (summed)
        self.registry = CollectorRegistry()
        own = None if self.multiprocess else self.registry
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)

        def fam(kind: type, name: str, help: str, labels: tuple[str, ...] = (), **kw: Any) -> Family:
            if kind is not Gauge:
                kw.pop("multiprocess_mode", None)
            return Family(name, kind(name, help, labels, registry=own, **kw), labels)

        C, G, H = Counter, Gauge, Histogram
        self.requests = fam(C, "aco_requests_total", "HTTP requests by endpoint, method and status code.",
                            ("endpoint", "method", "status"))
        self.latency = fam(H, "aco_request_latency_seconds", "HTTP request latency (until the last body byte).",
                           ("endpoint",), buckets=LATENCY_BUCKETS)
        self.inflight = fam(G, "aco_requests_in_flight", "HTTP requests being served now (summed over live "
                            "workers).", multiprocess_mode="livesum")
        self.decisions = fam(C, "aco_route_decisions_total", "Routing decisions by chosen tier.",
                             ("tier", "model", "endpoint"))
        self.cost_chosen = fam(C, "aco_route_expected_cost_usd_total", "Expected USD of the chosen tiers "
                               "(the bundle's cost model), by endpoint.", ("endpoint",))
        self.cost_frontier = fam(C, "aco_route_frontier_cost_usd_total", "Expected USD had each routed request gone "
                                 "to the frontier tier (spec.frontier, else the top tier): savings = this - "
                                 "aco_route_expected_cost_usd_total.", ("endpoint",))
        self.truncated = fam(C, "aco_prompts_truncated_total", "Prompts cut head+tail because they were too long.")
        self.escalations = fam(C, "aco_escalations_total", "Escalation verdicts by tier run and outcome.",
                               ("tier_run", "outcome"))
        self.errors = fam(C, "aco_errors_total", "Error responses by endpoint and error code.", ("endpoint", "code"))
        self.shed = fam(C, "aco_shed_total", "Requests refused with 503 + Retry-After to shed load, by reason "
                        "(concurrency|queue_full|queue_wait).", ("reason",))
        self.upstream = fam(C, "aco_upstream_requests_total", "Proxied upstream calls by tier and upstream status.",
                            ("tier", "status"))
        self.upstream_latency = fam(H, "aco_upstream_latency_seconds", "Time to upstream response headers.",
                                    ("tier",), buckets=LATENCY_BUCKETS)
        self.route_latency = fam(H, "aco_route_seconds", "Router compute time per call (tokenise..policy).",
                                 ("kind",), buckets=LATENCY_BUCKETS)
        self.batch_size = fam(H, "aco_route_batch_size", "Prompts per router forward pass.",
                              buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.ready = fam(G, "aco_ready", "1 when the bundle is loaded and verified (one series per live worker "
                         "under --workers N: sum() = ready workers).", multiprocess_mode="liveall")
        # model "aco-cascade": every upstream call it makes is counted (and priced) once, when its answer is read
        self.cascade_calls = fam(C, "aco_cascade_calls_total", "Upstream calls made by aco-cascade, by tier.",
                                 ("tier",))
        self.cascade_failures = fam(C, "aco_cascade_failures_total",
                                    "aco-cascade upstream calls that failed, by tier and error code.", ("tier", "code"))
        self.cascade_accepted = fam(C, "aco_cascade_accepted_total", "aco-cascade answers returned, by the tier "
                                    "that answered and why it stopped (accepted|top_tier|max_runs).", ("tier", "stop"))
        self.cascade_cost = fam(C, "aco_cascade_cost_usd_total", "USD of aco-cascade upstream calls (answer usage "
                                "x the tier's spec prices), by tier.", ("tier",))
        self.cascade_tokens = fam(C, "aco_cascade_tokens_total", "Tokens of aco-cascade upstream calls, by tier "
                                  "and kind (prompt|completion).", ("tier", "kind"))
        self.cascade_unpriced = fam(C, "aco_cascade_unpriced_calls_total", "aco-cascade calls with no cost: no "
                                    "usage in the answer or no prices in the spec.", ("tier",))
        self.cascade_runs = fam(H, "aco_cascade_runs", "Tiers run per answered aco-cascade request.",
                                buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24))

    def record_decision(self, d: Any, endpoint: str, frontier: int) -> None:
        """One routing decision: its tier, and its expected cost next to the frontier tier's (``frontier`` 1-based)."""
        self.decisions.inc(tier=str(d.tier), model=d.model, endpoint=endpoint)
        costs = list(d.expected_cost)
        if 1 <= d.tier <= len(costs) and 1 <= frontier <= len(costs):
            self.cost_chosen.inc(max(0.0, float(costs[d.tier - 1])), endpoint=endpoint)
            self.cost_frontier.inc(max(0.0, float(costs[frontier - 1])), endpoint=endpoint)

    def render(self) -> bytes:
        """The Prometheus text exposition of every family (all workers' samples in multiprocess mode)."""
        return generate_latest(self.registry)

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """sample name -> [(labels, value)], as scraped (summed over workers in multiprocess mode)."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for fam in self.registry.collect():
            for s in fam.samples:
                out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
        return out

    def summary(self) -> dict:
        """A JSON-friendly digest for GET /v1/router (the same numbers as a scrape)."""
        s = self.samples()

        def total(name: str) -> float:
            return float(sum(v for _, v in s.get(name, [])))

        def by(name: str, label: str) -> dict[str, float]:
            out: dict[str, float] = {}
            for lab, v in s.get(name, []):
                out[lab.get(label, "")] = out.get(lab.get(label, ""), 0.0) + v
            return out

        return {
            "requests": total("aco_requests_total"),
            "errors": total("aco_errors_total"),
            "decisions_per_tier": by("aco_route_decisions_total", "tier"),
            "escalations": by("aco_escalations_total", "outcome"),
            "prompts_truncated": total("aco_prompts_truncated_total"),
            "expected_cost_usd": total("aco_route_expected_cost_usd_total"),
            "saved_vs_frontier_usd": total("aco_route_frontier_cost_usd_total")
                                     - total("aco_route_expected_cost_usd_total"),
            "shed": total("aco_shed_total"),
            "cascade": {"calls_per_tier": by("aco_cascade_calls_total", "tier"),
                        "answers_per_tier": by("aco_cascade_accepted_total", "tier"),
                        "cost_usd": total("aco_cascade_cost_usd_total")},
        }
