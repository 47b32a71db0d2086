"""Request-level routing on top of :mod:`aco_bert.policies.base`: safety floors, per-step routing, target success.

Why a separate module: :mod:`aco_bert.policies.base` maps probabilities to tiers; this module decides what a request is
*allowed* to get (floors) and adds the policies that need more than (probs, costs):

- **Safety floors** come from the router spec, never from a policy: domains found in the prompt by
  :func:`aco_bert.signals.handcrafted.detect_domains` or declared by the request, and the request's ``step_type``, each give a
  minimum tier; the request may *raise* its own minimum but never lower it. :meth:`Policy.decide` applies
  ``RoutingContext.min_tier``, so no policy (learned, conformal, cascade) can route below a floor.
- **Per-step routing**: an agent step carries ``step_type`` (search / read / edit / test / verify / plan). It is
  a model input (one-hot in :func:`aco_bert.signals.handcrafted.featurize`), a floor (``spec.step_type_min``), and
  :class:`PerStep` lets each step type use its own policy (e.g. a stricter tau for ``edit`` than for ``search``).
- **Target success** (:class:`TargetSuccess`): the Threshold policy with tau chosen by Learn-then-Test
  (:mod:`aco_bert.decision.conformal`) so the success rate is >= target with probability >= 1 - delta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from aco_bert.data.schema import STEP_TYPES
from aco_bert.policies.base import Policy, RoutingContext, Threshold
from aco_bert.spec import RouterSpec


@dataclass
class Floors:
    """Per-prompt minimum tier (0-based) and the human-readable reasons for it."""

    min_tier: np.ndarray  # (P,) 0-based
    reasons: list[list[str]]
    domains: list[list[str]]


def floors_for(spec: RouterSpec, texts: Sequence[str], step_types: Sequence[str | None] | None = None,
               domains: Sequence[Sequence[str] | None] | None = None,
               min_tiers: Sequence[int | None] | None = None, detect: bool = True) -> Floors:
    """Minimum tier of each prompt from the spec's floors.

    ``domains``: domains the request declares (added to the detected ones, never replacing them).
    ``min_tiers``: a 1-based minimum the request asks for itself; it can only raise the floor.
    ``detect=False`` skips text detection (only declared domains count) -- for data without texts.
    """
    n = len(texts)
    for name, arg in (("step_types", step_types), ("domains", domains), ("min_tiers", min_tiers)):
        if arg is not None and len(arg) != n:
            raise ValueError(f"{name} has {len(arg)} entries for {n} prompts")
    if detect:
        from aco_bert.signals.handcrafted import detect_domains
    mins = np.zeros(n, dtype=int)
    reasons: list[list[str]] = []
    all_domains: list[list[str]] = []
    for i, text in enumerate(texts):
        found = list(detect_domains(text)) if detect else []
        for d in (domains[i] if domains is not None and domains[i] else ()):
            if d not in found:
                found.append(d)
        st = step_types[i] if step_types is not None else None
        if st is not None and not (isinstance(st, float) and np.isnan(st)) and st not in STEP_TYPES:
            raise ValueError(f"prompt {i}: unknown step_type {st!r}; expected one of {STEP_TYPES}")
        st = st if isinstance(st, str) else None
        r = []
        m1 = 1
        for d in found:
            f = int(spec.floors.get(d, 1))
            if f > 1:
                r.append(f"floor: {d} -> tier >= {f}")
            m1 = max(m1, f)
        if st is not None and int(spec.step_type_min.get(st, 1)) > 1:
            f = int(spec.step_type_min[st])
            r.append(f"step_type: {st} -> tier >= {f}")
            m1 = max(m1, f)
        req = min_tiers[i] if min_tiers is not None else None
        if req is not None:
            if not 1 <= int(req) <= spec.n_tiers:
                raise ValueError(f"prompt {i}: requested min tier {req} is not in 1..{spec.n_tiers}")
            if int(req) > m1:
                r.append(f"request: tier >= {int(req)}")
                m1 = int(req)
        mins[i] = m1 - 1
        reasons.append(r)
        all_domains.append(found)
    return Floors(mins, reasons, all_domains)


@dataclass
class StepContext(RoutingContext):
    """A :class:`RoutingContext` that also knows each prompt's step type (for :class:`PerStep`)."""

    step_types: np.ndarray | None = None  # (P,) object array of str | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_types is not None:
            self.step_types = np.asarray(self.step_types, dtype=object)
            if self.step_types.shape != (self.shape[0],):
                raise ValueError(f"step_types must be ({self.shape[0]},)")


def build_context(spec: RouterSpec, probs: np.ndarray, exp_cost: np.ndarray, texts: Sequence[str] | None = None,
                  step_types: Sequence[str | None] | None = None,
                  domains: Sequence[Sequence[str] | None] | None = None,
                  min_tiers: Sequence[int | None] | None = None, budget: np.ndarray | float | None = None
                  ) -> tuple[StepContext, Floors]:
    """The routing context of a batch with the spec's floors applied (detected + declared domains, step types)."""
    probs = np.asarray(probs, float)
    if probs.shape[1] != spec.n_tiers:
        raise ValueError(f"probs have {probs.shape[1]} tiers, spec {spec.name!r} has {spec.n_tiers}")
    n = probs.shape[0]
    fl = floors_for(spec, texts if texts is not None else [""] * n, step_types, domains, min_tiers,
                    detect=texts is not None)
    ctx = StepContext(probs, exp_cost, fl.min_tier, None if budget is None else np.broadcast_to(budget, (n,)),
                      step_types=None if step_types is None else np.asarray(list(step_types), dtype=object))
    return ctx, fl


@dataclass
class PerStep(Policy):
    """Dispatch on step type: ``policies[step_type]`` for that step, ``default`` otherwise."""

    default: Policy
    policies: dict[str, Policy] = field(default_factory=dict)
    name: str = "per-step"

    def __post_init__(self) -> None:
        bad = [k for k in self.policies if k not in STEP_TYPES]
        if bad:
            raise ValueError(f"unknown step types {bad}; expected {STEP_TYPES}")

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        out = self.default.decide(ctx)
        st = getattr(ctx, "step_types", None)
        if st is None or not self.policies:
            return out
        for k, pol in self.policies.items():
            m = np.array([s == k for s in st])
            if m.any():
                out[m] = pol.decide(ctx)[m]
        return out


@dataclass
class TargetSuccess(Policy):
    """Threshold policy whose tau is certified by Learn-then-Test: success >= target w.p. >= 1 - delta.

    Fit it with :meth:`fit` on calibration prompts that the probabilities were *not* fitted on (out-of-fold).
    When no tau can be certified (too few calibration prompts for the margin, or an unreachable target) it routes
    to ``fallback_tier`` if set (typically the frontier: no saving, but no false promise either), else to the
    most conservative tau, and ``guaranteed`` stays False.
    """

    target: float
    delta: float = 0.1
    fallback_tier: int | None = None  # 0-based tier used when no tau can be certified (e.g. the frontier)
    tau: float | None = None
    guaranteed: bool = False
    name: str = "target-success"

    def fit(self, ctx: RoutingContext, success: np.ndarray, cost: np.ndarray | None = None,
            taus: Sequence[float] | None = None) -> "TargetSuccess":
        from aco_bert.decision.conformal import DEFAULT_TAUS, choose_tau

        r = choose_tau(ctx, success, cost, target=self.target, delta=self.delta,
                       taus=DEFAULT_TAUS if taus is None else tuple(taus))
        self.tau, self.guaranteed = r.tau, r.guaranteed
        self.result = r
        return self

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        if self.tau is None:
            raise RuntimeError("TargetSuccess policy is not fitted: call .fit(calibration context, outcomes)")
        if not self.guaranteed and self.fallback_tier is not None:
            return np.full(ctx.shape[0], self.fallback_tier, dtype=int)
        return Threshold(self.tau).choose(ctx)

    def to_dict(self) -> dict:
        return {"policy": self.name, "target": self.target, "delta": self.delta, "tau": self.tau,
                "guaranteed": self.guaranteed, "fallback_tier": self.fallback_tier}
