"""Choosing a cascade on training prompts: which ladder of tiers, what runs first, when to accept.

A cascade knob is (first, chain, accept, accept_first): ``first`` = the ladder's bottom tier ("chain") or an
ex-ante pick (Threshold tau or Utility lambda on the stacked probabilities, or a bundle's own policy, "router");
``chain`` = the escalation ladder (:class:`~aco_bert.policies.chain.Chain`, ending at the frontier; one tier =
that tier alone); ``accept`` = the verifier score a run needs to be kept, ``accept_first`` the bar for a run with
no earlier answer to agree with (None = ``accept``). Every knob is
replayed on the *training* prompts with held-out verifier scores (:class:`~aco_bert.decision.verifier
.CrossFitScorer`), and one knob is chosen by a rule fixed in advance:

* ``match`` / ``savings``: the rules of :mod:`aco_bert.evaluation.selection` (as every other policy);
* ``budget`` (the cascade curve): for each budget, the best training success among knobs that cost at most
  that much (so each point of the curve is a knob chosen without the test prompts);
* ``ltt`` (a success target with a guarantee): Learn-then-Test -- a (first, chain, accept_first) family is
  chosen on half of the training prompts, then on the other half its accept thresholds are tested from the most
  cautious down (fixed-sequence), H0 "success < target" rejected by the binomial tail bound at level ``delta``;
  the cheapest certified knob wins, else the frontier alone.

Ladders: from the training prompts' zero-router hull tiers and the best-succeeding cheaper tiers, every ladder of
1..``max_below`` tiers below the frontier, then the frontier. A scorer cache makes a knob's replay cheap: the same
(prompt, tier, earlier runs) is scored once however many accept thresholds share it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from aco_bert.decision.conformal import binomial_pvalue, hb_pvalue
from aco_bert.policies.base import Policy, RoutingContext
from aco_bert.policies.cascade import Cascade, CascadeResult
from aco_bert.policies.chain import Chain
from aco_bert.policies.threshold import Threshold
from aco_bert.policies.utility import Utility

ACCEPTS = [0.0] + [float(round(x, 3)) for x in np.linspace(0.3, 0.98, 18)]
# the bar for a run with no earlier run (None: the same as accept; 1.0: always ask a second tier)
ACCEPT_FIRST: tuple[float | None, ...] = (None, 0.9, 0.97, 1.0)
FIRST_TAUS = (0.7,)


@dataclass(frozen=True)
class CascadeKnob:
    first: str  # "chain" (the ladder's bottom), "router" (a given ex-ante policy), "tau=<v>" or "lam=<v>"
    chain: tuple[int, ...]  # 0-based ladder, frontier last (one tier: run it alone)
    accept: float
    accept_first: float | None = None

    def policy(self, router: Policy | None = None) -> Cascade:
        """The cascade of this knob; ``router`` is the ex-ante policy a ``first="router"`` knob starts with."""
        ladder = Chain(self.chain)
        if self.first == "router":
            if router is None:
                raise ValueError("a first='router' knob needs the router's policy")
            first: Policy = router
        else:
            kind, _, val = self.first.partition("=")
            first = ladder if self.first == "chain" else (Threshold if kind == "tau" else Utility)(float(val))
        return Cascade(first, ladder, float(self.accept), max_runs=self.max_runs, accept_first=self.accept_first)

    @property
    def max_runs(self) -> int:
        return len(self.chain) + (self.first != "chain")

    def to_dict(self, models: Sequence[str] | None = None) -> dict[str, Any]:
        names = [models[t] if models is not None else t for t in self.chain]
        return {"first": self.first, "chain": names, "accept": self.accept, "accept_first": self.accept_first}


def candidate_chains(success: np.ndarray, cost: np.ndarray, frontier: int, max_below: int = 2,
                     max_candidates: int = 6) -> list[tuple[int, ...]]:
    """Ladders ending at ``frontier`` from the training prompts' useful cheaper tiers (see module docstring),
    plus each hull tier alone (so the family reaches the zero router's cheap end)."""
    from aco_bert.evaluation.metrics.core import upper_hull

    success, cost = np.asarray(success, float), np.asarray(cost, float)
    ran_all = ~np.isnan(success).any(axis=1)  # hull tiers compared on the prompts every tier ran (complete case)
    if ran_all.any():
        success, cost = success[ran_all], cost[ran_all]
    with np.errstate(all="ignore"):
        s, c = np.nanmean(success, axis=0), np.nanmean(cost, axis=0)
    below = [t for t in range(frontier) if np.isfinite(s[t]) and np.isfinite(c[t])]  # tiers are cheapest first
    if not below:
        return [(frontier,)]
    hx, hy = upper_hull(c[below], s[below])
    on_hull = [t for t in below if any(abs(c[t] - x) < 1e-15 and abs(s[t] - y) < 1e-12 for x, y in zip(hx, hy))]
    best = sorted(below, key=lambda t: -s[t])
    cands: list[int] = []
    for t in on_hull[::-1] + best:  # the strongest hull tiers first, then the best succeeding ones
        if t not in cands and len(cands) < max_candidates:
            cands.append(t)
    cands.sort(key=lambda t: c[t])
    chains = [tuple(sorted(sub)) + (frontier,) for k in range(1, max_below + 1)
              for sub in itertools.combinations(cands, k)]
    return [(t,) for t in sorted(on_hull, key=lambda t: c[t])] + chains


def knob_grid(chains: Sequence[tuple[int, ...]], accepts: Sequence[float] = ACCEPTS,
              first_taus: Sequence[float] = FIRST_TAUS, router: bool = False,
              accept_first: Sequence[float | None] = ACCEPT_FIRST, first_lams: Sequence[float] = ()
              ) -> list[CascadeKnob]:
    """Every (first, chain, accept, accept_first): firsts = the ladder's bottom, Threshold(tau) per
    ``first_taus``, Utility(lambda) per ``first_lams``, and the bundle's own ex-ante policy when ``router``.
    A one-tier chain is one knob. Pass ``accept_first=(None,)`` for a trace-only verifier: without answers the
    runtime cannot tell a first run from a later one, so one bar serves every run."""
    firsts = (["chain"] + [f"tau={t}" for t in first_taus] + [f"lam={lam:.6g}" for lam in first_lams]
              + (["router"] if router else []))
    out = []
    for ch in chains:
        if len(ch) == 1:
            out.append(CascadeKnob("chain", ch, 0.0))
            continue
        out += [CascadeKnob(f, ch, float(a), af) for f in firsts for a in accepts for af in accept_first
                if af is None or af > a]
    return out


class CachedScorer:
    """Memoises ``score(rows, tiers, earlier)`` per (row, tier, earlier runs): what :meth:`Cascade.replay` calls."""

    def __init__(self, score: Callable[[np.ndarray, np.ndarray, list], np.ndarray]):
        self.score, self.cache = score, {}

    def __call__(self, rows: np.ndarray, tiers: np.ndarray, earlier: list) -> np.ndarray:
        keys = [(int(r), int(t), tuple(e)) for r, t, e in zip(rows, tiers, earlier)]
        todo = [j for j, k in enumerate(keys) if k not in self.cache]
        if todo:
            q = self.score(np.asarray(rows)[todo], np.asarray(tiers)[todo], [earlier[j] for j in todo])
            for j, v in zip(todo, q):
                self.cache[keys[j]] = float(v)
        return np.array([self.cache[k] for k in keys], dtype=float)


def replay_knobs(knobs: Sequence[CascadeKnob], ctx: RoutingContext, success: np.ndarray, cost: np.ndarray,
                 scorer: CachedScorer, router: Policy | None = None) -> list[CascadeResult]:
    return [k.policy(router).replay(ctx, success, cost, scorer) for k in knobs]


def points(results: Sequence[CascadeResult]) -> list[tuple[int, float, float]]:
    """(knob index, success, cost/task) of each replay: the selection rules' input."""
    out = []
    for j, r in enumerate(results):
        sm = r.summary()
        out.append((j, sm["success"], sm["cost_per_task"]))
    return out


def select_budget(pts: Sequence[tuple[int, float, float]], budgets: Sequence[float]) -> list[int]:
    """Per budget: the best training success among knobs costing <= it (none: the cheapest knob)."""
    from aco_bert.evaluation.selection import select_savings

    return [select_savings(pts, b) for b in budgets]


def ltt_select(knobs: Sequence[CascadeKnob], results: Sequence[CascadeResult], target: float, delta: float,
               seed: int = 0) -> tuple[int | None, dict]:
    """Learn-then-Test choice among ``knobs`` (see module docstring). Returns (knob index or None, evidence).

    The training prompts are split in two: the (first, chain, accept_first) family is chosen on one half (the
    cheapest knob reaching the target there), its accept thresholds are tested on the other half from the most
    cautious down (fixed-sequence at level ``delta``), so the guarantee does not pay for the families' number."""
    n = len(results[0].success)
    perm = np.random.default_rng(seed).permutation(n)
    sel, cal = perm[: n // 2], perm[n // 2:]

    def rate(j, rows):
        return float(np.nan_to_num(results[j].success[rows], nan=0.0).mean())

    def spend(j, rows):
        return float(np.nanmean(results[j].cost[rows]))

    ok = [j for j in range(len(knobs)) if rate(j, sel) >= target]
    info: dict[str, Any] = {"target": target, "delta": delta, "n_select": len(sel), "n_calibrate": len(cal),
                            "n_certified": 0}
    if not ok:
        return None, info
    fam = knobs[min(ok, key=lambda j: spend(j, sel))]
    members = [j for j, k in enumerate(knobs) if (k.first, k.chain, k.accept_first) == (fam.first, fam.chain,
                                                                                      fam.accept_first)]
    certified: list[int] = []
    for j in sorted(members, key=lambda j: -knobs[j].accept):  # most cautious first
        s = np.nan_to_num(results[j].success[cal], nan=0.0)  # unknown outcome = failure: keeps the bound honest
        obs = results[j].success[cal]
        binary = bool(np.isin(obs[~np.isnan(obs)], (0.0, 1.0)).all())
        p = (binomial_pvalue if binary else hb_pvalue)(float(1.0 - s.mean()), len(cal), 1.0 - target)
        if p > delta:
            break
        certified.append(j)
    info["family"] = fam.to_dict()
    info["n_certified"] = len(certified)
    if not certified:
        return None, info
    best = min(certified, key=lambda j: (spend(j, cal), -knobs[j].accept))
    info["chosen"] = knobs[best].to_dict()
    return best, info
