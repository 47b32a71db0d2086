"""Budget: the best P(success) whose expected cost fits a per-task budget; and a request's own budget winning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext, masked
from aco_bert.policies.registry import register


@register("budget")
@dataclass
class Budget(Policy):
    """Best P(success) among allowed tiers whose E[cost] fits the per-task budget (else the cheapest allowed).

    ``per_task`` applies when the context carries no budget of its own; a request's budget wins.
    """

    per_task: float | None = None
    name: str = "budget"

    def budgets(self, ctx: RoutingContext) -> np.ndarray:
        """(P,) the budget each prompt is held to: its request's, else ``per_task``, else inf (none)."""
        b = np.full(ctx.shape[0], np.inf if self.per_task is None else self.per_task)
        if ctx.budget is not None:
            b = np.where(np.isnan(ctx.budget), b, ctx.budget)
        return b

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        b = self.budgets(ctx)
        allowed = ctx.allowed()
        fits = allowed & (ctx.exp_cost <= b[:, None])
        best = np.argmax(masked(ctx.probs, fits, -np.inf), axis=1)
        cheapest = np.argmin(masked(ctx.exp_cost, allowed, np.inf), axis=1)
        return np.where(fits.any(axis=1), best, cheapest)

    def budget_of(self, ctx: RoutingContext, i: int) -> float:
        """:meth:`budgets` of prompt ``i`` alone (per-prompt reasons of a big batch stay linear in its size)."""
        own = np.nan if ctx.budget is None else float(ctx.budget[i])
        if not np.isnan(own):
            return own
        return np.inf if self.per_task is None else float(self.per_task)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        b = self.budget_of(ctx, i)
        if b == np.inf:
            return "budget: none set; highest P(success) among allowed tiers"
        if (ctx.allowed_row(i) & (ctx.exp_cost[i] <= b)).any():
            return f"budget ${b:.4g}: highest P(success) among tiers with E[cost] <= budget"
        return f"budget ${b:.4g}: no allowed tier fits; cheapest allowed tier"

    @classmethod
    def from_config(cls, cfg) -> "Budget":
        return cls(None if cfg.budget is None else float(cfg.budget))


@dataclass
class RequestBudget(Policy):
    """A request's own budget wins: prompts whose context carries a budget get :class:`Budget`, the rest ``inner``.

    Why a policy: a caller's budget is a hard constraint on *that* request, whatever the bundle's default policy.
    """

    inner: Policy
    name: str = "request-budget"

    def __post_init__(self) -> None:
        self._budget = Budget(None)

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        raw = np.asarray(self.inner.choose(ctx), dtype=int)
        if ctx.budget is not None:
            has = ~np.isnan(ctx.budget)
            if has.any():
                raw = np.where(has, np.asarray(self._budget.choose(ctx), dtype=int), raw)
        return raw

    def _part(self, ctx: RoutingContext, i: int) -> Policy:
        return self.inner if ctx.budget is None or np.isnan(ctx.budget[i]) else self._budget

    def label(self, ctx: RoutingContext, i: int) -> str:
        return self._part(ctx, i).label(ctx, i)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return self._part(ctx, i).reason(ctx, i, raw_tier)
