"""The cost axis of a report: realised USD (``usd``), or RouteLLM's strong-call share (``share``).

Why a second metric: RouteLLM and the papers that follow it report cost as the share of calls routed to the strong
model (CPT(50 %) = "calls to GPT-4 needed for 50 % of the quality gap"). ``share`` replaces the cost matrix with
that 0/1 cost -- 1 for the frontier (strong) tier, 0 for every other -- *before* any policy is chosen, so every
number of the report (cost/task, savings, AIQ, CPT) is then in strong-call share, comparable with those papers
without a hand-made 0/1-cost copy of the data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

COST_METRICS = ("usd", "share")
SHARE_LABEL = "strong-call share"


def check_cost_metric(metric: str) -> str:
    if metric not in COST_METRICS:
        raise ValueError(f"cost_metric must be one of {list(COST_METRICS)}, got {metric!r}")
    return metric


def strong_column(models: Sequence[str], cost: np.ndarray, frontier: str | None = None) -> int:
    """The strong model of the share metric: ``frontier`` when given, else the costliest model by mean realised
    USD (chosen a priori from prices, never from success: RouteLLM's strong model is fixed before routing)."""
    if frontier is not None:
        if frontier not in models:
            raise ValueError(f"frontier {frontier!r} is not among the models {list(models)}")
        return list(models).index(frontier)
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(cost[:, t]) if np.isfinite(cost[:, t]).any() else -np.inf
                         for t in range(cost.shape[1])])
    if not np.isfinite(mean).any():
        raise ValueError("cost_metric 'share' needs a frontier (spec frontier) or some known cost to pick the "
                         "strong model")
    return int(np.flatnonzero(mean == mean.max())[-1])


def share_cost(cost: np.ndarray, strong: int) -> np.ndarray:
    """The 0/1 strong-call cost matrix: 1 in the strong column, 0 elsewhere, for every prompt."""
    out = np.zeros(np.asarray(cost).shape, dtype=float)
    out[:, strong] = 1.0
    return out


def cost_header(metric: str) -> str:
    return "Cost/Task" if metric == "usd" else SHARE_LABEL.capitalize()


def fmt_cost(v: float | None, metric: str = "usd") -> str:
    """USD as :func:`aco_bert.evaluation.replay.usd` writes it; a share as a 3-decimal fraction (n/a if unknown)."""
    import math

    if metric == "usd":
        from aco_bert.evaluation.replay import usd

        return usd(v)
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"
