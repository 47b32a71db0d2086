"""Routing policies: map per-prompt, per-tier P(success) and expected cost to a chosen tier.

One interface for every policy (reference ones replayed by the evaluator, learned ones, the runtime's), and the
safety floor applied in one place, :meth:`Policy.decide`, so no policy can route below a prompt's minimum tier.
Tiers are 0-based indices here (tier 1 of a spec is index 0) and ordered cheapest first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoutingContext:
    """What a policy sees for a batch of P prompts over T tiers."""

    probs: np.ndarray  # (P, T) calibrated P(success) per tier
    exp_cost: np.ndarray  # (P, T) expected USD cost per tier
    min_tier: np.ndarray | None = None  # (P,) 0-based lowest allowed tier (floors, step-type minimums)
    budget: np.ndarray | None = None  # (P,) per-task USD budget, NaN = none

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=float)
        self.exp_cost = np.asarray(self.exp_cost, dtype=float)
        if self.probs.ndim != 2 or self.probs.shape != self.exp_cost.shape:
            raise ValueError(f"probs {self.probs.shape} and exp_cost {self.exp_cost.shape} must be equal (P, T)")
        p, t = self.probs.shape
        self.min_tier = np.zeros(p, dtype=int) if self.min_tier is None else np.asarray(self.min_tier, dtype=int)
        if self.min_tier.shape != (p,) or (self.min_tier < 0).any() or (self.min_tier >= t).any():
            raise ValueError(f"min_tier must be (P,) ints in [0, {t})")
        if self.budget is not None:
            self.budget = np.broadcast_to(np.asarray(self.budget, dtype=float), (p,)).copy()
            if (self.budget[~np.isnan(self.budget)] < 0).any():
                raise ValueError("budget must be >= 0")

    @property
    def shape(self) -> tuple[int, int]:
        return self.probs.shape  # type: ignore[return-value]

    def allowed(self) -> np.ndarray:
        """(P, T) bool: tiers at or above each prompt's minimum."""
        return np.arange(self.shape[1])[None, :] >= self.min_tier[:, None]


class Policy(ABC):
    """Base class: subclasses implement :meth:`choose`; callers use :meth:`decide` (floors enforced)."""

    name: str = "policy"

    @abstractmethod
    def choose(self, ctx: RoutingContext) -> np.ndarray:
        """(P,) 0-based tier per prompt. May ignore floors: :meth:`decide` enforces them."""

    def decide(self, ctx: RoutingContext) -> np.ndarray:
        tiers = np.asarray(self.choose(ctx), dtype=int)
        return np.maximum(tiers, ctx.min_tier)


def _masked(values: np.ndarray, allowed: np.ndarray, fill: float) -> np.ndarray:
    return np.where(allowed, values, fill)


@dataclass
class FixedTier(Policy):
    """Always the same tier (``always-<model>``; ``cheapest`` is tier 0)."""

    tier: int
    name: str = "fixed"

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        return np.full(ctx.shape[0], self.tier, dtype=int)


@dataclass
class Threshold(Policy):
    """Cheapest allowed tier with P(success) >= tau; if none clears it, the allowed tier with the highest P."""

    tau: float
    name: str = "threshold"

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        ok = (ctx.probs >= self.tau) & ctx.allowed()
        first = np.argmax(ok, axis=1)
        best = np.argmax(_masked(ctx.probs, ctx.allowed(), -np.inf), axis=1)
        return np.where(ok.any(axis=1), first, best)


@dataclass
class Utility(Policy):
    """argmax_t P(success_t) - lam * E[cost_t] over allowed tiers (ties go to the cheaper tier)."""

    lam: float
    name: str = "utility"

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        u = ctx.probs - self.lam * ctx.exp_cost
        return np.argmax(_masked(u, ctx.allowed(), -np.inf), axis=1)


@dataclass
class Budget(Policy):
    """Best P(success) among allowed tiers whose E[cost] fits the per-task budget (else the cheapest allowed).

    ``per_task`` applies when the context carries no budget of its own; a request's budget wins.
    """

    per_task: float | None = None
    name: str = "budget"

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        p, _ = ctx.shape
        b = np.full(p, np.inf if self.per_task is None else self.per_task)
        if ctx.budget is not None:
            b = np.where(np.isnan(ctx.budget), b, ctx.budget)
        allowed = ctx.allowed()
        fits = allowed & (ctx.exp_cost <= b[:, None])
        best = np.argmax(_masked(ctx.probs, fits, -np.inf), axis=1)
        cheapest = np.argmin(_masked(ctx.exp_cost, allowed, np.inf), axis=1)
        return np.where(fits.any(axis=1), best, cheapest)


def lambda_for_mean_budget(ctx: RoutingContext, mean_budget: float, iters: int = 60) -> float:
    """Smallest lambda whose :class:`Utility` policy spends at most ``mean_budget`` per task on ``ctx``.

    Mean cost falls as lambda grows, so bisection on a log scale finds it; used to turn a dataset-level budget
    into a per-prompt rule on training folds.
    """

    def spend(lam: float) -> float:
        t = Utility(lam).decide(ctx)
        return float(ctx.exp_cost[np.arange(len(t)), t].mean())

    lo, hi = 0.0, 1.0
    while spend(hi) > mean_budget and hi < 1e9:
        hi *= 10
    if spend(lo) <= mean_budget:
        return lo
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if spend(mid) <= mean_budget else (mid, hi)
    return hi


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
