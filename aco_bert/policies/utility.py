"""Utility: trade P(success) against expected cost at a fixed exchange rate lambda."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext, masked
from aco_bert.policies.registry import register


@register("utility")
@dataclass
class Utility(Policy):
    """argmax_t P(success_t) - lam * E[cost_t] over allowed tiers (ties go to the cheaper tier)."""

    lam: float
    name: str = "utility"
    requires = ("lam",)

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        u = ctx.probs - self.lam * ctx.exp_cost
        return np.argmax(masked(u, ctx.allowed(), -np.inf), axis=1)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return f"utility: argmax P(success) - {float(self.lam):.4g} * E[cost]"

    @classmethod
    def from_config(cls, cfg) -> "Utility":
        return cls(float(cfg.lam))
