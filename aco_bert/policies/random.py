"""Random: a uniformly random allowed tier, the floor below which a router is useless."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext


@dataclass
class Random(Policy):
    """Uniformly random allowed tier (seeded): the floor below which a router is useless."""

    seed: int = 0
    name: str = "random"
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        p, t = ctx.shape
        return ctx.min_tier + (self._rng.random(p) * (t - ctx.min_tier)).astype(int)
