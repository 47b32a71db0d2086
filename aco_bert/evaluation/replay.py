"""Offline policy evaluation: replay routing decisions against real outcomes; the yardstick for every router.

A routing decision picks one model per prompt; since every model was actually run on every prompt, the realised
success and cost of any decision vector can be read off the :class:`OutcomeMatrix` (:func:`replay`). On top of
that this module builds the reference policies every router is compared with, curves of swept policies, and the
report the ``python -m aco_bert.evaluate`` CLI prints. Metric arithmetic lives in :mod:`aco_bert.evaluation.metrics.core`.

Reference policies (all respect the prompts' minimum tiers when given):

* ``always-<model>``: that model on every prompt.
* ``cheapest``: the fixed model with the lowest realised cost/task ("weak").
* ``always-frontier``: the spec's ``frontier`` model, else the fixed model with the best success (ties: cheaper)
  ("strong"). ``savings_vs_frontier`` of every policy is ``1 - cost / cost(always-frontier)``.
* ``zero-router``: the cheapest fixed model whose success is within 1 pt of the frontier's -- what you get by
  "routing" with no router at all. The full zero-router *curve* is the hull of all fixed models: what randomly
  mixing two fixed models achieves.
* ``oracle``: per prompt, the best realised success, ties broken by that prompt's actual cost (so for binary
  outcomes: the cheapest succeeding model; if none succeeds, the cheapest run on that prompt -- a try is still
  paid for). The ``oracle`` curve sweeps ``success - lambda * cost`` on actual outcomes.
* ``random``: a uniformly random allowed tier per prompt (seeded).

Prompts: by default only those every candidate model ran (:mod:`aco_bert.evaluation.metrics.complete_case`), so
no model's rate over its own prompts is compared with another's over different ones; the rule is printed in the
notes and the JSON (``zero_router_rule``). Cost: realised USD, or RouteLLM's strong-call share
(:mod:`aco_bert.evaluation.metrics.cost_metric`), replaced before any policy is chosen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from aco_bert.data.schema import OutcomeMatrix
from aco_bert.artifacts.jsonio import json_safe
from aco_bert.evaluation.metrics.complete_case import complete_case
from aco_bert.evaluation.metrics.cost_metric import check_cost_metric, cost_header, fmt_cost, share_cost, strong_column
from aco_bert.evaluation.metrics.core import (
    ONE_POINT,
    curve_metrics,
    pgr,
    savings,
    summarize,
    upper_hull,
)
from aco_bert.policies import Policy, Random, RoutingContext, Threshold, Utility

REFERENCE_NAMES = ("always-frontier", "zero-router", "cheapest", "oracle", "random")


@dataclass
class PolicyResult:
    """The realised operating point of one decision vector."""

    name: str
    success: float  # mean realised success over prompts with a known outcome
    cost_per_task: float  # mean realised USD over prompts with a known outcome and cost
    n: int  # prompts with a known outcome
    chosen: dict[str, float]  # model -> number of prompts routed to it (a cascade: mean runs per prompt)
    n_missing: int = 0  # prompts whose chosen model has no outcome (excluded from the means, never a failure)
    n_cost_missing: int = 0  # prompts with a known outcome but unknown cost
    kind: str = "policy"  # "fixed" (always-<model>), "reference", "learned"
    model: str | None = None  # the model of a fixed-model policy
    param: float | None = None  # the swept parameter (tau, lambda) of a curve point
    savings_vs_frontier: float = float("nan")
    tiers: np.ndarray | None = field(default=None, repr=False)  # (P,) chosen 0-based tier; not serialised

    @classmethod
    def from_outcomes(cls, name: str, success, cost, *, chosen: dict[str, float] | None = None,
                      kind: str = "policy", param: float | None = None, frontier_cost: float | None = None,
                      tiers: np.ndarray | None = None) -> "PolicyResult":
        """The operating point of per-prompt realised outcomes (NaN = unknown), by the one rule every evaluation
        uses (:func:`~aco_bert.evaluation.metrics.core.summarize`): a missing outcome is excluded and counted,
        never a failure. :func:`replay` and the nested report's cascade rows both build their results here."""
        s = summarize(success, cost)
        res = cls(name=name, success=s.success, cost_per_task=s.cost_per_task, n=s.n, chosen=dict(chosen or {}),
                  n_missing=s.n_missing, n_cost_missing=s.n_cost_missing, kind=kind, param=param, tiers=tiers)
        if frontier_cost is not None:
            res.savings_vs_frontier = savings(res.cost_per_task, frontier_cost)
        return res

    def renamed(self, name: str, kind: str) -> "PolicyResult":
        return PolicyResult(**{**self.__dict__, "name": name, "kind": kind})

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "tiers"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _columns(matrix: OutcomeMatrix, models: Sequence[str]) -> list[int]:
    unknown = [m for m in models if m not in matrix.models]
    if unknown:
        raise ValueError(f"models not in the outcome matrix: {unknown}; have {matrix.models}")
    return [matrix.models.index(m) for m in models]


def replay(matrix: OutcomeMatrix, tiers: np.ndarray, models: Sequence[str], *, name: str = "policy",
           min_tier: np.ndarray | None = None, kind: str = "policy", param: float | None = None,
           frontier_cost: float | None = None) -> PolicyResult:
    """Realised success and cost/task of routing prompt ``i`` to ``models[tiers[i]]``.

    ``min_tier`` (0-based, per prompt) is checked, not applied: a decision below a floor is a bug in the policy
    and raises. Prompts whose chosen model has no outcome are excluded from the means and counted.
    """
    tiers = np.asarray(tiers)
    if tiers.shape != (matrix.n_prompts,):
        raise ValueError(f"tiers has shape {tiers.shape}; expected ({matrix.n_prompts},), one per prompt")
    if not np.issubdtype(tiers.dtype, np.integer):
        raise ValueError(f"tiers must be integer tier indices, got dtype {tiers.dtype}")
    if len(tiers) and (tiers.min() < 0 or tiers.max() >= len(models)):
        raise ValueError(f"tiers must lie in [0, {len(models)}); got [{tiers.min()}, {tiers.max()}]")
    if min_tier is not None:
        below = np.flatnonzero(tiers < np.asarray(min_tier))
        if len(below):
            i = int(below[0])
            raise ValueError(f"policy {name!r} routes {len(below)} prompt(s) below their floor, e.g. prompt "
                             f"{matrix.prompt_ids[i]!r}: tier {tiers[i]} < min tier {int(np.asarray(min_tier)[i])}")
    cols = np.asarray(_columns(matrix, models))[tiers]
    rows = np.arange(matrix.n_prompts)
    counts = np.bincount(tiers, minlength=len(models))
    return PolicyResult.from_outcomes(name, matrix.success[rows, cols], matrix.cost[rows, cols],
                                      chosen={m: int(c) for m, c in zip(models, counts)}, kind=kind, param=param,
                                      frontier_cost=frontier_cost, tiers=tiers.astype(int))


def evaluate_policy(matrix: OutcomeMatrix, models: Sequence[str], policy: Policy, ctx: RoutingContext,
                    *, name: str | None = None, kind: str = "learned", param: float | None = None) -> PolicyResult:
    """Replay ``policy`` on ``ctx`` (one row per prompt of ``matrix``, one column per model); floors enforced."""
    if ctx.shape != (matrix.n_prompts, len(models)):
        raise ValueError(f"context shape {ctx.shape} != (prompts, models) = ({matrix.n_prompts}, {len(models)})")
    return replay(matrix, policy.decide(ctx), models, name=name or policy.name, min_tier=ctx.min_tier,
                  kind=kind, param=param)


def model_order(matrix: OutcomeMatrix, models: Iterable[str] | None = None) -> list[str]:
    """``models`` (default: all of the matrix) as tiers, cheapest first by realised mean cost (unknown cost last)."""
    models = list(matrix.models if models is None else models)
    cols = _columns(matrix, models)
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(matrix.cost[:, c]) if np.isfinite(matrix.cost[:, c]).any() else np.inf
                         for c in cols])
    return [models[i] for i in np.argsort(mean, kind="stable")]


def prior_context(matrix: OutcomeMatrix, models: Sequence[str], min_tier: np.ndarray | None = None) -> RoutingContext:
    """Every prompt looks the same: each tier's mean success and mean cost (what a router without features sees)."""
    cols = _columns(matrix, models)
    with np.errstate(all="ignore"):
        p = np.nan_to_num(np.nanmean(matrix.success[:, cols], axis=0), nan=0.0)
        c = np.nan_to_num(np.nanmean(matrix.cost[:, cols], axis=0), nan=0.0)
    n = matrix.n_prompts
    return RoutingContext(np.tile(p, (n, 1)), np.tile(c, (n, 1)), min_tier=min_tier)


def oracle_context(matrix: OutcomeMatrix, models: Sequence[str], min_tier: np.ndarray | None = None) -> RoutingContext:
    """The actual outcomes as if they were predictions (unknown success -> -1, never preferred; unknown cost ->
    that model's mean cost): policies replayed on it are oracles."""
    cols = _columns(matrix, models)
    s, c = matrix.success[:, cols], matrix.cost[:, cols]
    with np.errstate(all="ignore"):
        mean_c = np.nan_to_num(np.nanmean(c, axis=0), nan=0.0)
    return RoutingContext(np.where(np.isnan(s), -1.0, s), np.where(np.isnan(c), mean_c[None, :], c), min_tier=min_tier)


def oracle_tiers(matrix: OutcomeMatrix, models: Sequence[str], min_tier: np.ndarray | None = None) -> np.ndarray:
    """Per prompt, among allowed tiers with a known outcome: the best realised success, then the lowest actual cost
    (unknown cost loses ties). Prompts with no known outcome go to their lowest allowed tier (replay counts them)."""
    cols = _columns(matrix, models)
    s, c = matrix.success[:, cols], matrix.cost[:, cols]
    p, t = s.shape
    lo = np.zeros(p, dtype=int) if min_tier is None else np.asarray(min_tier, dtype=int)
    ok = (np.arange(t)[None, :] >= lo[:, None]) & ~np.isnan(s)
    best = np.max(np.where(ok, s, -np.inf), axis=1, keepdims=True)
    top = ok & (s >= best - 1e-12)
    cost_key = np.where(top, np.where(np.isnan(c), np.inf, c), np.inf)
    # lexicographic: cheapest among the top; argmin over +inf everywhere (unknown costs) falls back to the first top
    pick = np.where(np.isfinite(cost_key).any(axis=1), np.argmin(cost_key, axis=1), np.argmax(top, axis=1))
    return np.where(ok.any(axis=1), pick, lo).astype(int)


@dataclass
class Curve:
    """Operating points of one policy family (a sweep) plus the hull they achieve by random mixing."""

    name: str
    points: list[PolicyResult]
    kind: str = "learned"

    @property
    def cost(self) -> np.ndarray:
        return np.array([p.cost_per_task for p in self.points], dtype=float)

    @property
    def success(self) -> np.ndarray:
        return np.array([p.success for p in self.points], dtype=float)

    def hull(self) -> tuple[np.ndarray, np.ndarray]:
        return upper_hull(self.cost, self.success)

    def to_dict(self) -> dict[str, Any]:
        hx, hy = self.hull()
        return {
            "name": self.name, "kind": self.kind,
            "params": [p.param for p in self.points], "labels": [p.name for p in self.points],
            "cost": self.cost.tolist(), "success": self.success.tolist(),
            "hull_cost": hx.tolist(), "hull_success": hy.tolist(),
        }


@dataclass
class Sweep:
    """A policy family ``make(param)`` swept over ``params`` on ``ctx`` -> a :class:`Curve`.

    ``params`` may be a function of the context (e.g. :func:`default_lambdas`), resolved when the sweep runs.
    """

    name: str
    make: Callable[[float], Policy]
    params: Sequence[float] | Callable[[RoutingContext], Sequence[float]]
    ctx: RoutingContext | None = None  # defaults to the context passed to run / evaluate_policies

    def run(self, matrix: OutcomeMatrix, models: Sequence[str], ctx: RoutingContext | None = None,
            kind: str = "learned") -> Curve:
        ctx = self.ctx if self.ctx is not None else ctx
        if ctx is None:
            raise ValueError(f"sweep {self.name!r} needs a RoutingContext")
        params = self.params(ctx) if callable(self.params) else self.params
        pts = [evaluate_policy(matrix, models, self.make(float(v)), ctx, name=f"{self.name}@{float(v):.6g}",
                               kind=kind, param=float(v)) for v in params]
        return Curve(self.name, pts, kind=kind)


def threshold_sweep(name: str = "threshold", taus: Sequence[float] | None = None,
                    ctx: RoutingContext | None = None) -> Sweep:
    """:class:`Threshold` over ``taus`` (default 0, 0.02, ..., 1)."""
    return Sweep(name, lambda t: Threshold(t), list(np.linspace(0, 1, 51) if taus is None else taus), ctx)


def default_lambdas(ctx: RoutingContext, n: int = 61) -> list[float]:
    """0 plus a log grid spanning 1e-3..1e3 success per (mean tier cost): from "ignore cost" to "cost only"."""
    scale = float(np.mean(ctx.exp_cost)) or 1.0
    return [0.0] + list(np.logspace(-3, 3, n) / scale)


def utility_sweep(name: str = "utility", lams: Sequence[float] | None = None, ctx: RoutingContext | None = None
                  ) -> Sweep:
    """:class:`Utility` (``P - lambda * E[cost]``) over ``lams`` (default :func:`default_lambdas` of the context)."""
    return Sweep(name, lambda lam: Utility(lam), default_lambdas if lams is None else list(lams), ctx)


def frontier_model(fixed: Mapping[str, PolicyResult], frontier: str | None = None) -> str:
    """``frontier`` if given, else the best success, ties to the cheaper (:func:`~aco_bert.evaluation.selection.
    frontier_col`, the rule the stack stage and the report use, on the realised points of ``fixed``)."""
    from aco_bert.evaluation.selection import frontier_col

    if frontier is not None and frontier not in fixed:
        raise ValueError(f"frontier {frontier!r} is not among the evaluated models {list(fixed)}")
    names = list(fixed)
    success = np.array([[_nz(fixed[m].success, np.nan) for m in names]])
    cost = np.array([[_nz(fixed[m].cost_per_task, np.nan) for m in names]])
    return names[frontier_col(names, frontier, success, cost)]


def cheapest_model(fixed: Mapping[str, PolicyResult]) -> str:
    """Lowest realised cost/task, ties to the better success."""
    return min(fixed, key=lambda m: (_nz(fixed[m].cost_per_task, np.inf), -_nz(fixed[m].success)))


def best_within(fixed: Mapping[str, PolicyResult], frontier: str, gap: float = ONE_POINT) -> str:
    """The cheapest fixed model whose success is at least the frontier's minus ``gap`` (absolute)."""
    target = fixed[frontier].success - gap - 1e-12
    ok = [m for m in fixed if _nz(fixed[m].success) >= target]
    return min(ok, key=lambda m: (_nz(fixed[m].cost_per_task, np.inf), -_nz(fixed[m].success)))


def _nz(v: float, fill: float = -np.inf) -> float:
    return v if v is not None and math.isfinite(v) else fill


@dataclass
class EvalReport:
    """Reference + learned policies on one outcome matrix, their curves and curve metrics."""

    dataset: str
    models: list[str]  # tiers, cheapest first
    n_prompts: int
    frontier: str
    cheapest: str
    zero_router_model: str
    policies: list[PolicyResult]
    curves: dict[str, Curve]
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    zero_router_rule: str = ""  # which prompts the references were chosen on and every policy measured on
    n_prompts_total: int | None = None  # prompts of the table before the complete-case rule
    cost_metric: str = "usd"  # "usd" or "share" (strong-call share, RouteLLM's metric)

    def get(self, name: str) -> PolicyResult:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(f"no policy {name!r}; have {[p.name for p in self.policies]}")

    def _label(self, p: PolicyResult) -> str:
        return f"{p.name} ({p.model})" if p.kind == "reference" and p.model else p.name

    def markdown(self) -> str:
        cm = self.cost_metric
        lines = [f"| Policy | Success | {cost_header(cm)} | Savings vs frontier |", "|---|---:|---:|---:|"]
        for p in self.policies:
            sv = "-" if not math.isfinite(p.savings_vs_frontier) else f"{100 * p.savings_vs_frontier:.1f} %"
            lines.append(f"| {self._label(p)} | {100 * p.success:.1f} % | {fmt_cost(p.cost_per_task, cm)} | {sv} |")
        curves = {k: v for k, v in self.metrics.items() if k != "range"}
        if curves:
            lines += ["", "| Curve | AIQ | APGR | CPT(50%) | CPT(80%) |", "|---|---:|---:|---:|---:|"]
            for k, m in curves.items():
                def c(v, f):
                    return "never" if v is None else f"{fmt_cost(v, cm)} ({100 * f:.1f} %)"
                lines.append(f"| {k} | {m['aiq']:.4f} | {m['apgr']:.3f} | {c(m['cpt_50'], m['cpt_50_frac'])} | "
                             f"{c(m['cpt_80'], m['cpt_80_frac'])} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        r = self.metrics.get("range")
        pols = []
        for p in self.policies:
            d = p.to_dict()
            if r is not None and r["strong_success"] > r["weak_success"] and math.isfinite(p.success):
                d["pgr"] = pgr(p.success, r["weak_success"], r["strong_success"])
            pols.append(d)
        return {
            "dataset": self.dataset, "n_prompts": self.n_prompts, "models": self.models,
            "frontier": self.frontier, "cheapest": self.cheapest, "zero_router_model": self.zero_router_model,
            "policies": pols, "curves": {k: v.to_dict() for k, v in self.curves.items()},
            "metrics": self.metrics, "notes": self.notes, "zero_router_rule": self.zero_router_rule,
            "n_prompts_total": self.n_prompts_total, "cost_metric": self.cost_metric,
        }

    def save_json(self, path: str | Path) -> None:
        """Strict JSON: NaN/inf (an unknown cost, a CPT never reached) are written as null."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(json_safe(self.to_dict()), f, indent=2, allow_nan=False)


def usd(v: float | None) -> str:
    """4 decimals for cents and up (``$0.7212``), 4 significant digits below (``$0.0001234``); n/a if unknown."""
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"${v:.4f}" if abs(v) >= 0.01 else f"${v:.4g}"


def evaluate_policies(
    matrix: OutcomeMatrix,
    models: Sequence[str] | None = None,
    *,
    ctx: RoutingContext | None = None,
    policies: Sequence[Policy] = (),
    sweeps: Sequence[Sweep] = (),
    decisions: Mapping[str, np.ndarray] | None = None,
    decision_curves: Mapping[str, Sequence[tuple[float, np.ndarray]]] | None = None,
    min_tier: np.ndarray | None = None,
    frontier: str | None = None,
    within: float = ONE_POINT,
    seed: int = 0,
    dataset: str = "",
    complete_case_only: bool = True,
    cost_metric: str = "usd",
) -> EvalReport:
    """Reference policies plus any learned ones, on one table; the hook every router reports through.

    * ``models``: tiers, cheapest first (default: every model of ``matrix`` by mean cost).
    * ``ctx``: per-prompt per-tier probabilities + expected costs (e.g. out-of-fold predictions) that
      ``policies`` and ``sweeps`` are replayed on; its ``min_tier`` is the floor for everything unless
      ``min_tier`` is given.
    * ``decisions``: name -> precomputed (P,) tiers (e.g. chosen by nested CV per fold); checked against floors.
    * ``decision_curves``: name -> [(param, tiers), ...] for curves decided elsewhere.
    * ``complete_case_only``: measure everything on the prompts every candidate ran (default; see module docstring);
      False keeps every prompt, each policy's rate over the prompts its chosen models ran (not comparable).
    * ``cost_metric``: ``"usd"`` or ``"share"`` (cost 1 for the frontier, 0 otherwise, in matrix and ``ctx``).
    """
    models = model_order(matrix) if models is None else list(models)
    cols = _columns(matrix, models)
    p = matrix.n_prompts
    if ctx is not None and ctx.shape != (p, len(models)):
        raise ValueError(f"context shape {ctx.shape} != (prompts, models) = ({p}, {len(models)})")
    if min_tier is None:
        min_tier = ctx.min_tier if ctx is not None else np.zeros(p, dtype=int)
    min_tier = np.asarray(min_tier, dtype=int)
    if min_tier.shape != (p,) or (min_tier < 0).any() or (min_tier >= len(models)).any():
        raise ValueError(f"min_tier must be ({p},) ints in [0, {len(models)})")
    if check_cost_metric(cost_metric) == "share":
        strong = strong_column(models, matrix.cost[:, cols], frontier)
        frontier, cost01 = models[strong], np.zeros_like(matrix.cost, dtype=float)
        cost01[:, cols] = share_cost(matrix.cost[:, cols], strong)
        matrix = dataclasses.replace(matrix, cost=cost01)
        if ctx is not None:
            ctx = dataclasses.replace(ctx, exp_cost=share_cost(ctx.exp_cost, strong))
        sweeps = [sw if sw.ctx is None else dataclasses.replace(
            sw, ctx=dataclasses.replace(sw.ctx, exp_cost=share_cost(sw.ctx.exp_cost, strong))) for sw in sweeps]
    cc = complete_case(matrix.success[:, cols], models, min_tier)
    rule = cc.rule() if complete_case_only else \
        "all prompts: each policy over the prompts its chosen models ran (rates over different prompts)"
    notes: list[str] = [] if cc.complete else [rule]
    if complete_case_only and not cc.complete:
        matrix, ctx, min_tier, sweeps, decisions, decision_curves = _restrict(
            np.flatnonzero(cc.keep), matrix, ctx, min_tier, sweeps, decisions, decision_curves)
        p = matrix.n_prompts
    if (min_tier > 0).any():
        notes.append(f"floors: {int((min_tier > 0).sum())} of {p} prompts have a minimum tier above 1")

    fixed: dict[str, PolicyResult] = {}
    for i, m in enumerate(models):
        r = replay(matrix, np.maximum(i, min_tier), models, name=f"always-{m}", min_tier=min_tier, kind="fixed")
        r.model = m
        fixed[m] = r
    f_model = frontier_model(fixed, frontier)
    c_model = cheapest_model(fixed)
    z_model = best_within(fixed, f_model, within)
    prior = prior_context(matrix, models, min_tier)
    refs = [
        fixed[f_model].renamed("always-frontier", "reference"),
        fixed[z_model].renamed("zero-router", "reference"),
        fixed[c_model].renamed("cheapest", "reference"),
        replay(matrix, oracle_tiers(matrix, models, min_tier), models, name="oracle", min_tier=min_tier,
               kind="reference"),
        replay(matrix, Random(seed).decide(prior), models, name="random", min_tier=min_tier, kind="reference"),
    ]

    curves: dict[str, Curve] = {"zero-router": Curve("zero-router", list(fixed.values()), kind="reference")}
    octx = oracle_context(matrix, models, min_tier)
    oc = utility_sweep("oracle", ctx=octx).run(matrix, models, kind="reference")
    oc.points.append(refs[3])
    curves["oracle"] = oc

    learned: list[PolicyResult] = []
    for pol in policies:
        if ctx is None:
            raise ValueError("policies need a RoutingContext (ctx)")
        learned.append(evaluate_policy(matrix, models, pol, ctx))
    for sw in sweeps:
        curves[sw.name] = sw.run(matrix, models, ctx)
    for name, tiers in (decisions or {}).items():
        learned.append(replay(matrix, tiers, models, name=name, min_tier=min_tier, kind="learned"))
    for name, pts in (decision_curves or {}).items():
        curves[name] = Curve(name, [replay(matrix, t, models, name=f"{name}@{v:.6g}", min_tier=min_tier,
                                           kind="learned", param=float(v)) for v, t in pts])

    fc = fixed[f_model].cost_per_task
    everything = refs + learned + list(fixed.values()) + [pt for c in curves.values() for pt in c.points]
    for r in everything:
        r.savings_vs_frontier = savings(r.cost_per_task, fc)

    weak = (fixed[c_model].cost_per_task, fixed[c_model].success)
    strong = (fc, fixed[f_model].success)
    metrics: dict[str, Any] = {"range": {"weak": c_model, "weak_cost": weak[0], "weak_success": weak[1],
                                         "strong": f_model, "strong_cost": strong[0], "strong_success": strong[1]}}
    if strong[1] > weak[1] and strong[0] > weak[0]:
        for name, c in curves.items():
            metrics[name] = curve_metrics(c.cost, c.success, weak, strong).to_dict()
    else:
        notes.append("curve metrics skipped: the frontier is not both better and costlier than the cheapest model")
    missing = [f"{r.name} ({r.n_missing})" for r in refs + learned + list(fixed.values()) if r.n_missing]
    if missing:
        notes.append("prompts routed to a model without an outcome, excluded from the means: " + ", ".join(missing))
    return EvalReport(dataset=dataset, models=models, n_prompts=p, frontier=f_model, cheapest=c_model,
                      zero_router_model=z_model, policies=refs + learned + list(fixed.values()), curves=curves,
                      metrics=metrics, notes=notes, zero_router_rule=rule, n_prompts_total=cc.n_total,
                      cost_metric=cost_metric)


def _restrict(idx: np.ndarray, matrix: OutcomeMatrix, ctx: RoutingContext | None, min_tier: np.ndarray,
              sweeps: Sequence[Sweep], decisions: Mapping[str, np.ndarray] | None,
              decision_curves: Mapping[str, Sequence[tuple[float, np.ndarray]]] | None):
    """Everything :func:`evaluate_policies` replays, restricted to the prompts ``idx`` (decisions checked first:
    a vector of the wrong length must fail, not be silently cut)."""
    n = matrix.n_prompts

    def cut(name: str, t) -> np.ndarray:
        t = np.asarray(t)
        if t.shape != (n,):
            raise ValueError(f"decisions {name!r} have shape {t.shape}; expected ({n},), one per prompt")
        return t[idx]

    def sub(c: RoutingContext | None) -> RoutingContext | None:
        return None if c is None else RoutingContext(c.probs[idx], c.exp_cost[idx], c.min_tier[idx],
                                                     None if c.budget is None else c.budget[idx])
    return (matrix.subset(idx), sub(ctx), min_tier[idx],
            [dataclasses.replace(sw, ctx=sub(sw.ctx)) for sw in sweeps],
            {k: cut(k, v) for k, v in (decisions or {}).items()},
            {k: [(v, cut(k, t)) for v, t in pts] for k, pts in (decision_curves or {}).items()})
