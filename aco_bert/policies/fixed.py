"""FixedTier: always the same tier (the ``always-<model>`` reference policies of the evaluator)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext


@dataclass
class FixedTier(Policy):
    """Always the same tier (``always-<model>``; ``cheapest`` is tier 0)."""

    tier: int
    name: str = "fixed"

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        return np.full(ctx.shape[0], self.tier, dtype=int)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return f"{self.name}: always tier {self.tier + 1}"
