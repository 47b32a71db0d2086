"""Cascade with execution feedback: run a tier, judge from its trace whether it succeeded, accept or escalate.

Why: before a run the router only has the prompt text; *after* a run it also has how the run went (an agent that
burns many API calls on a task has usually failed it). The verifier (:class:`aco_bert.decision.verifier.Verifier`)
turns that into P(this run succeeded); the cascade accepts the answer when that is high enough, else escalates to
the tier its ``escalate`` policy picks strictly above the one that ran. The bill counts *every* tier that ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext

if TYPE_CHECKING:
    from aco_bert.policies.config import RoutingConfig
    from aco_bert.types import Escalation


@dataclass
class CascadeResult:
    success: np.ndarray  # (P,) real outcome of the accepted run (NaN: unknown, never a failure)
    cost: np.ndarray  # (P,) sum of the cost of every run (NaN when one run's cost is unknown)
    runs: list[list[int]]  # tiers run per prompt, in order
    final: np.ndarray  # (P,) accepted tier

    def summary(self) -> dict:
        """Success and cost/task by the rule every evaluation uses (:func:`aco_bert.evaluation.metrics.core
        .summarize`), plus how often the cascade escalated."""
        from aco_bert.evaluation.metrics.core import summarize

        s = summarize(self.success, self.cost)
        return {"success": s.success, "cost_per_task": s.cost_per_task,
                "mean_runs": float(np.mean([len(r) for r in self.runs])),
                "escalated": float(np.mean([len(r) > 1 for r in self.runs]))}


def with_min_tier(ctx: RoutingContext, min_tier: np.ndarray) -> RoutingContext:
    """A plain context like ``ctx`` whose floors are raised to at least ``min_tier`` (the tiers above a run)."""
    return RoutingContext(ctx.probs, ctx.exp_cost, np.maximum(ctx.min_tier, min_tier), ctx.budget)


@dataclass
class Cascade(Policy):
    """``first`` picks the first tier; after each run, accept if the verifier's score >= ``accept`` (a run with no
    earlier run on the prompt: >= ``accept_first`` when set -- its score lacks answer agreement, so it may need a
    stricter bar, 1.0 = always get a second opinion), else
    ``escalate`` picks among tiers strictly above the one that ran (floors still apply). ``max_runs`` caps it.

    As a :class:`Policy` it is its first pick (what runs before any feedback)."""

    first: Policy
    escalate: Policy
    accept: float
    max_runs: int = 2
    accept_first: float | None = None
    name: str = "cascade"

    @classmethod
    def from_config(cls, cfg: "RoutingConfig", n_tiers: int | None = None,
                    models: Sequence[str] | None = None) -> "Cascade":
        """A bundle's cascade: its default policy (or ``cascade.chain``'s bottom tier) picks first; escalation
        climbs ``cascade.chain`` when set (model names resolved against ``models``), else the default policy
        above the tier that ran; ``cascade.max_runs`` unset = every tier (``n_tiers``)."""
        from aco_bert.policies.chain import Chain
        from aco_bert.policies.registry import named_policy

        pol = named_policy(cfg)
        c = cfg.cascade
        esc: Policy = pol
        first: Policy = pol
        if c.chain is not None:
            if models is None:
                raise ValueError("cascade.chain names models: pass the spec's models")
            unknown = [x for x in c.chain if x not in models]
            if unknown:
                raise ValueError(f"cascade.chain models {unknown} are not tiers of the spec {list(models)}")
            esc = Chain(tuple(sorted(list(models).index(x) for x in c.chain)))
            first = esc if c.first == "chain" else pol
        max_runs = c.max_runs if c.max_runs is not None else (n_tiers or cls.max_runs)
        return cls(first=first, escalate=esc, accept=float(c.accept), max_runs=int(max_runs),
                   accept_first=None if c.accept_first is None else float(c.accept_first))

    def bar(self, n_earlier: int) -> float:
        """The verifier score a run needs to be kept, after ``n_earlier`` runs on its prompt."""
        return self.accept if self.accept_first is None or n_earlier else self.accept_first

    def choose(self, ctx: RoutingContext) -> np.ndarray:
        return self.first.choose(ctx)

    def label(self, ctx: RoutingContext, i: int) -> str:
        return self.first.label(ctx, i)

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        return self.first.reason(ctx, i, raw_tier)

    def replay(self, ctx: RoutingContext, success: np.ndarray, cost: np.ndarray, scores) -> CascadeResult:
        """Offline replay on real outcomes. ``scores``: (P, T) verifier P(success | that tier's real run) when the
        score does not depend on the history, or a scorer ``scores(rows, tiers, earlier) -> (N,)`` that scores the
        run of ``tiers[j]`` on prompt ``rows[j]`` after the runs ``earlier[j]`` (answer agreement)."""
        success, cost = np.asarray(success, float), np.asarray(cost, float)
        score_fn = scores if callable(scores) else (lambda r, t, e, a=np.asarray(scores, float): a[r, t])
        p_n, t_n = ctx.shape
        rows = np.arange(p_n)
        cur = self.first.decide(ctx)
        runs = [[int(t)] for t in cur]
        total = cost[rows, cur].copy()
        active = np.ones(p_n, dtype=bool)
        for step in range(self.max_runs - 1):
            cand = np.flatnonzero(active & (cur < t_n - 1))
            if not len(cand):
                break
            q = score_fn(cand, cur[cand], [runs[i][:-1] for i in cand])
            esc = np.zeros(p_n, dtype=bool)
            esc[cand] = q < self.bar(step)  # step 0: no earlier run
            if not esc.any():
                break
            nxt = self.escalate.decide(with_min_tier(ctx, np.minimum(cur + 1, t_n - 1)))
            cur = np.where(esc, nxt, cur)
            total = total + np.where(esc, cost[rows, cur], 0.0)
            for i in np.flatnonzero(esc):
                runs[i].append(int(cur[i]))
            active = esc
        return CascadeResult(success[rows, cur], total, runs, cur)

    def step(self, ctx: RoutingContext, tier_run: int, score: float,
             tier_names: Sequence[str] | None = None, n_earlier: int = 0) -> "Escalation":
        """Runtime decision for ONE prompt (ctx of one row) after ``tier_run`` (0-based) ran and was scored;
        ``n_earlier`` runs came before it on this prompt."""
        from aco_bert.types import Escalation

        bar = self.bar(n_earlier)
        accept = bool(score >= bar) or tier_run >= ctx.shape[1] - 1
        nxt = None if accept else int(self.escalate.decide(with_min_tier(ctx, np.array([tier_run + 1])))[0])
        what = "accept" if bar == self.accept else "accept (first run)"
        reasons = [f"verifier P(success)={score:.3f} {'>=' if score >= bar else '<'} {what} {bar:.3f}"]
        return Escalation(accept=accept, p_success=float(score), tier_run=tier_run + 1,
                          next_tier=None if nxt is None else nxt + 1,
                          next_model=None if nxt is None or tier_names is None else tier_names[nxt], reasons=reasons)
