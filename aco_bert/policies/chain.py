"""Chain: a fixed escalation ladder of tiers (e.g. two cheap models, then the frontier).

Why: a response-aware cascade works best when the tiers it tries are few and chosen for value -- a cheap model
whose answer is often right, a second cheap one whose *agreement* with the first is strong evidence, and the
frontier as the last resort. The ladder is chosen on training folds (:mod:`aco_bert.decision.cascade_search`).
As a policy it picks the cheapest ladder tier at or above each prompt's floor (the top tier if none is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext


@dataclass
class Chain(Policy):
    tiers: tuple[int, ...]  # 0-based, increasing
    name: str = "chain"

    def __post_init__(self) -> None:
        self.tiers = tuple(int(t) for t in self.tiers)
        if not self.tiers or list(self.tiers) != sorted(set(self.tiers)):
            raise ValueError(f"chain tiers must be distinct and increasing, got {self.tiers}")

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        ladder = np.asarray(self.tiers)
        pos = np.searchsorted(ladder, ctx.min_tier, side="left")
        return np.where(pos < len(ladder), ladder[np.minimum(pos, len(ladder) - 1)], ctx.shape[1] - 1)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return f"chain {'->'.join(str(t + 1) for t in self.tiers)}: tier {raw_tier + 1}"
