"""Threshold: the cheapest allowed tier whose calibrated P(success) reaches tau."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext, masked
from aco_bert.policies.registry import register


def threshold_reason(tau: float, ctx: RoutingContext, i: int, raw_tier: int) -> str:
    """Why :class:`Threshold` with ``tau`` picked ``raw_tier`` for prompt ``i`` (shared with target-success)."""
    p = ctx.probs[i, raw_tier]
    if p >= tau and raw_tier >= ctx.min_tier[i]:
        return f"threshold {tau:.3f}: P(success)={p:.3f} is the cheapest allowed tier >= tau"
    return f"threshold {tau:.3f}: no allowed tier reaches tau; highest P(success)={p:.3f}"


@register("threshold")
@dataclass
class Threshold(Policy):
    """Cheapest allowed tier with P(success) >= tau; if none clears it, the allowed tier with the highest P."""

    tau: float
    name: str = "threshold"
    requires = ("tau",)

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        ok = (ctx.probs >= self.tau) & ctx.allowed()
        first = np.argmax(ok, axis=1)
        best = np.argmax(masked(ctx.probs, ctx.allowed(), -np.inf), axis=1)
        return np.where(ok.any(axis=1), first, best)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return threshold_reason(float(self.tau), ctx, i, raw_tier)

    @classmethod
    def from_config(cls, cfg) -> "Threshold":
        return cls(float(cfg.tau))
