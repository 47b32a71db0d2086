"""Choosing a policy knob (tau, lambda, accept threshold) from realised points on *training* prompts only.

Shared by the nested router report and the stack stage, so the knob a bundle ships is chosen by exactly the rule
the report measured. A point is ``(knob, success, cost_per_task)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TAUS = [round(float(x), 4) for x in np.linspace(0.0, 1.0, 101)]
RULES = ("match", "savings")
# the cascade's first-tier taus and its verifier's accept thresholds (0 = never escalate, so the cascade curve
# reaches the first policy's own points); shared by the stack stage and the report so both search the same grid
CASCADE_TAUS = [float(round(x, 3)) for x in np.linspace(0.3, 0.95, 14)]
ACCEPTS = [0.0] + CASCADE_TAUS


def frontier_col(spec_models: Sequence[str], frontier: str | None, success: np.ndarray, cost: np.ndarray) -> int:
    """The frontier tier's column: the spec's ``frontier`` when set, else the best mean success (ties: the cheaper
    mean cost). ``success``/``cost`` are (prompts, tiers) on the prompts a choice may look at (training only)."""
    if frontier is not None:
        return list(spec_models).index(frontier)
    s = np.nanmean(np.asarray(success, float), axis=0)
    c = np.nanmean(np.asarray(cost, float), axis=0)
    s, c = np.where(np.isnan(s), -np.inf, s), np.where(np.isnan(c), np.inf, c)
    return int(min(range(len(s)), key=lambda t: (-s[t], c[t])))


def lambda_grid(cost_scale: float) -> list[float]:
    """Utility lambdas spanning 1e-3..1e3 per unit of the dataset's mean cost (0 = ignore cost)."""
    return [0.0] + [float(x) for x in np.logspace(-3, 3, 61) / cost_scale]


def select_match(points: Sequence[tuple[Any, float, float]], target: float) -> Any:
    """Rule "match": the cheapest knob whose training success >= target; none -> the best success."""
    ok = [p for p in points if p[1] >= target - 1e-12]
    if ok:
        return min(ok, key=lambda p: (p[2], -p[1]))[0]
    return max(points, key=lambda p: (p[1], -p[2]))[0]


def select_savings(points: Sequence[tuple[Any, float, float]], max_cost: float) -> Any:
    """Rule "savings": the best training success among knobs costing <= max_cost; none -> the cheapest knob."""
    ok = [p for p in points if p[2] <= max_cost + 1e-12]
    if ok:
        return max(ok, key=lambda p: (p[1], -p[2]))[0]
    return min(points, key=lambda p: (p[2], -p[1]))[0]
