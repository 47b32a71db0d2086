"""PerStep: each agent step type (search / read / edit / test / verify / plan) may use its own policy.

E.g. a stricter tau for ``edit`` than for ``search``. The step type is also a model input and a floor
(``spec.step_type_min``); this is only *which policy* routes the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aco_bert.data.schema import STEP_TYPES
from aco_bert.policies.base import Policy, RoutingContext


@dataclass
class PerStep(Policy):
    """Dispatch on step type (from a :class:`~aco_bert.policies.base.StepContext`): ``policies[step_type]`` for
    that step, ``default`` otherwise."""

    default: Policy
    policies: dict[str, Policy] = field(default_factory=dict)
    name: str = "per-step"

    def __post_init__(self) -> None:
        bad = [k for k in self.policies if k not in STEP_TYPES]
        if bad:
            raise ValueError(f"unknown step types {bad}; expected {STEP_TYPES}")

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        out = np.asarray(self.default.choose(ctx), dtype=int)
        st = getattr(ctx, "step_types", None)
        if st is None or not self.policies:
            return out
        for k, pol in self.policies.items():
            m = np.array([s == k for s in st], dtype=bool)
            if m.any():
                out = np.where(m, np.asarray(pol.choose(ctx), dtype=int), out)
        return out

    def _step(self, ctx: RoutingContext, i: int) -> str | None:
        st = getattr(ctx, "step_types", None)
        s = None if st is None else st[i]
        return s if isinstance(s, str) and s in self.policies else None

    def label(self, ctx: RoutingContext, i: int) -> str:
        s = self._step(ctx, i)
        return self.default.label(ctx, i) if s is None else f"{self.policies[s].name} ({s})"

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        s = self._step(ctx, i)
        return (self.default if s is None else self.policies[s]).reason(ctx, i, raw_tier)
