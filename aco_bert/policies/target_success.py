"""TargetSuccess: the Threshold policy with tau certified by Learn-then-Test (success >= target w.p. >= 1 - delta)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext, knob
from aco_bert.policies.registry import register
from aco_bert.policies.threshold import Threshold, threshold_reason


NO_CERTIFIED_TAU = 1.01  # no tau certified: above every probability, i.e. each prompt to its most likely tier


@register("target-success")
@dataclass
class TargetSuccess(Policy):
    """Threshold policy whose tau is certified by Learn-then-Test: success >= target w.p. >= 1 - delta.

    Fit it with :meth:`fit` on calibration prompts that the probabilities were *not* fitted on (out-of-fold).
    When no tau can be certified (too few calibration prompts for the margin, or an unreachable target),
    ``guaranteed`` stays False and it routes to ``fallback_tier`` if set (e.g. the frontier: no saving, no false
    promise), else with tau = :data:`NO_CERTIFIED_TAU` (> 1: every prompt to its most likely allowed tier). The
    latter is what a bundle can store (a tau), so the stack stage and the nested report both use it: the report
    measures exactly the rule a bundle ships. From a bundle's config it is the Threshold policy at the stored tau.
    """

    target: float | None
    delta: float = 0.1
    fallback_tier: int | None = None  # 0-based tier used when no tau can be certified (e.g. the frontier)
    tau: float | None = None
    guaranteed: bool = False
    name: str = "target-success"
    requires = ("tau",)

    def fit(self, ctx: RoutingContext, success: np.ndarray, cost: np.ndarray | None = None,
            taus: Sequence[float] | None = None) -> "TargetSuccess":
        from aco_bert.decision.conformal import DEFAULT_TAUS, choose_tau

        if self.target is None:
            raise ValueError("TargetSuccess.fit needs a target success rate")
        r = choose_tau(ctx, success, cost, target=self.target, delta=self.delta,
                       taus=DEFAULT_TAUS if taus is None else tuple(taus))
        self.tau, self.guaranteed = r.tau, r.guaranteed
        if not r.guaranteed and self.fallback_tier is None:
            self.tau = NO_CERTIFIED_TAU
        self.result = r
        return self

    def _fallback(self) -> bool:
        return not self.guaranteed and self.fallback_tier is not None

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        if self.tau is None:
            raise RuntimeError("TargetSuccess policy is not fitted: call .fit(calibration context, outcomes)")
        if self._fallback():
            return np.full(ctx.shape[0], self.fallback_tier, dtype=int)
        return Threshold(self.tau).choose(ctx)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        if self._fallback():
            return f"target-success: no tau certified; fallback tier {int(self.fallback_tier) + 1}"
        return threshold_reason(float(self.tau), ctx, i, raw_tier)

    def to_dict(self) -> dict:
        return {"policy": self.name, "target": self.target, "delta": self.delta, "tau": self.tau,
                "guaranteed": self.guaranteed, "fallback_tier": self.fallback_tier}

    @classmethod
    def from_config(cls, cfg) -> "TargetSuccess":
        return cls(target=knob(cfg, "target"), delta=float(knob(cfg, "delta", 0.1)), tau=float(cfg.tau),
                   guaranteed=bool(knob(cfg, "guaranteed", False)))
