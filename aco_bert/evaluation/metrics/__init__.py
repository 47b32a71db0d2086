"""Routing metrics: numpy implementation in :mod:`aco_bert.evaluation.metrics.core`, plus ``evaluate.Metric`` wrappers.

Each wrapper lives in ``<name>/<name>.py`` -- the layout ``evaluate.load`` accepts for a local metric -- so it loads
by path, offline (no Hub access): ``evaluate.load(metric_path("routing_metrics"))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aco_bert.evaluation.metrics.core import (
    ONE_POINT,
    CurveMetrics,
    RoutingSummary,
    aiq,
    apgr,
    cpt,
    curve_metrics,
    hull_value,
    pgr,
    savings,
    summarize,
    upper_hull,
)

METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("routing_metrics", "cost_quality_curve")


def metric_path(name: str) -> str:
    """Folder of the ``evaluate`` metric ``name`` (pass it to ``evaluate.load``)."""
    p = METRICS_DIR / name
    if name not in METRIC_NAMES or not (p / f"{name}.py").is_file():
        raise ValueError(f"unknown metric {name!r}; have {list(METRIC_NAMES)}")
    return str(p)


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a metric shipped here, by local path (works with ``HF_HUB_OFFLINE=1``)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = [
    "METRIC_NAMES", "ONE_POINT", "CurveMetrics", "RoutingSummary", "aiq", "apgr", "cpt", "curve_metrics",
    "hull_value", "load_metric", "metric_path", "pgr", "savings", "summarize", "upper_hull",
]
