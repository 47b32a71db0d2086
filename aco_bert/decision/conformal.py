"""Choosing the Threshold policy's tau with a statistical guarantee on the success rate (Learn-then-Test).

Method: Learn-then-Test (Angelopoulos, Bates, Candes, Jordan, Lei 2021) with fixed-sequence testing.
For each tau on a fixed grid, ordered from the most conservative (highest tau: routes to the most likely tier)
to the cheapest, we test the null hypothesis ``H_tau: E[loss(tau)] > alpha`` where ``loss = 1 - success`` of the
tier the policy picks (floors included) and ``alpha = 1 - target``. The p-value is the exact binomial tail for
0/1 outcomes, or the Hoeffding-Bentkus bound for graded outcomes in [0, 1]. We walk the sequence and stop at the
first tau whose null we cannot reject at level ``delta``; every tau before it is certified, and among those we
pick the one with the lowest mean cost on the calibration set. Fixed-sequence testing controls the family-wise
error at ``delta``, so

    P_calibration( E_new-prompt[success(tau_hat)] >= target ) >= 1 - delta.

Assumptions (say them wherever the number is reported):
- The calibration prompts and future prompts are exchangeable (i.i.d. from the same distribution). A shift in
  the traffic mix (new repos, new task types) voids the guarantee.
- The guarantee is on the *expected* success rate of the chosen tau (the population rate), conditional on the
  calibration set; the success rate realised on a finite batch of n test prompts also fluctuates around it by
  about sqrt(target (1 - target) / n).
- The probabilities and costs fed in were not fitted on the calibration prompts (use out-of-fold predictions).
- Missing outcomes (NaN) of the chosen tier count as failures (conservative).

Why not conformal risk control: CRC bounds the risk *in expectation over the calibration draw* and needs the loss
to be monotone in tau; the success of a cheapest-tier-above-tau policy is not monotone in general, and a
"with probability 1 - delta" statement is what an operator asks for. LTT gives that without monotonicity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from aco_bert.policies import Policy, RoutingContext, Threshold

DEFAULT_TAUS = tuple(np.round(np.linspace(0.99, 0.0, 100), 4))


def binomial_pvalue(risk_hat: float, n: int, alpha: float) -> float:
    """Exact p-value of ``H: risk > alpha`` for 0/1 losses: P(Binomial(n, alpha) <= n * risk_hat)."""
    from scipy.stats import binom

    k = int(math.floor(n * risk_hat + 1e-9))
    return float(binom.cdf(k, n, alpha))


def _h1(a: float, b: float) -> float:
    """Binary KL divergence kl(a || b) (Hoeffding's exponent)."""
    a = min(max(a, 1e-12), 1 - 1e-12)
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


def hb_pvalue(risk_hat: float, n: int, alpha: float) -> float:
    """Hoeffding-Bentkus p-value of ``H: risk > alpha`` for losses in [0, 1] (valid for graded outcomes)."""
    from scipy.stats import binom

    if risk_hat >= alpha:
        return 1.0
    hoeffding = math.exp(-n * _h1(risk_hat, alpha))
    bentkus = math.e * float(binom.cdf(math.ceil(n * risk_hat), n, alpha))
    return float(min(1.0, hoeffding, bentkus))


@dataclass
class LTTResult:
    """What :func:`choose_tau` decided, with the evidence (per-tau p-values and calibration success/cost)."""

    tau: float
    guaranteed: bool  # False: even the most conservative tau could not be certified; tau is that one
    target: float
    delta: float
    n: int
    method: str
    taus: list[float] = field(default_factory=list)
    p_values: list[float] = field(default_factory=list)
    cal_success: list[float] = field(default_factory=list)
    cal_cost: list[float] = field(default_factory=list)
    n_certified: int = 0

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def policy_outcomes(policy: Policy, ctx: RoutingContext, success: np.ndarray, cost: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt (success, cost) of ``policy`` (floors enforced) on real outcomes.

    A missing outcome counts as a failure here, unlike in evaluation (:func:`aco_bert.evaluation.metrics.core
    .summarize` excludes it): the Learn-then-Test bound must hold for the prompts routed, so an unknown outcome is
    taken at its worst case, which keeps the guarantee conservative."""
    t = policy.decide(ctx)
    rows = np.arange(len(t))
    s = np.nan_to_num(np.asarray(success, float)[rows, t], nan=0.0)
    c = np.asarray(cost, float)[rows, t]
    return s, c


def choose_tau(ctx: RoutingContext, success: np.ndarray, cost: np.ndarray | None = None, *, target: float,
               delta: float = 0.1, taus: tuple[float, ...] | np.ndarray = DEFAULT_TAUS, method: str = "auto",
               make_policy: Callable[[float], Policy] = Threshold) -> LTTResult:
    """Learn-then-Test choice of tau on a calibration set (see module docstring for the guarantee).

    ``ctx`` holds the calibration prompts' held-out probabilities/expected costs and floors; ``success`` (P, T) the
    real outcomes; ``cost`` (P, T) real costs used only to pick the cheapest certified tau (defaults to
    ``ctx.exp_cost``). ``taus`` are tested in the given order, most conservative first.
    """
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    success = np.asarray(success, float)
    cost = ctx.exp_cost if cost is None else np.asarray(cost, float)
    n = ctx.shape[0]
    if n == 0:
        raise ValueError("empty calibration set")
    obs = success[~np.isnan(success)]
    binary = bool(np.isin(obs, (0.0, 1.0)).all())
    if method == "auto":
        method = "binomial" if binary else "hb"
    if method == "binomial" and not binary:
        raise ValueError("binomial p-values need 0/1 outcomes; use method='hb' for graded outcomes")
    pfun = {"binomial": binomial_pvalue, "hb": hb_pvalue}.get(method)
    if pfun is None:
        raise ValueError(f"method must be 'auto', 'binomial' or 'hb', got {method!r}")
    alpha = 1.0 - target
    res = LTTResult(tau=float(taus[0]), guaranteed=False, target=target, delta=delta, n=n, method=method)
    certified = True
    for tau in taus:
        s, c = policy_outcomes(make_policy(float(tau)), ctx, success, cost)
        p = pfun(float(1.0 - s.mean()), n, alpha)
        res.taus.append(float(tau))
        res.p_values.append(p)
        res.cal_success.append(float(s.mean()))
        res.cal_cost.append(float(np.nanmean(c)))
        if certified and p <= delta:
            res.n_certified += 1
        else:
            certified = False  # fixed-sequence: nothing after the first non-rejection is certified
    if res.n_certified:
        costs = np.asarray(res.cal_cost[: res.n_certified])
        best = int(np.flatnonzero(costs == costs.min())[-1])  # ties: the last (cheapest-leaning) tau
        res.tau, res.guaranteed = res.taus[best], True
    return res


def naive_tau(ctx: RoutingContext, success: np.ndarray, cost: np.ndarray | None = None, *, target: float,
              taus: tuple[float, ...] | np.ndarray = DEFAULT_TAUS,
              make_policy: Callable[[float], Policy] = Threshold) -> float:
    """Cheapest tau whose *empirical* calibration success is >= target: no guarantee (a baseline for tests)."""
    cost = ctx.exp_cost if cost is None else np.asarray(cost, float)
    best, best_c = float(taus[0]), np.inf
    for tau in taus:
        s, c = policy_outcomes(make_policy(float(tau)), ctx, success, cost)
        if s.mean() >= target and np.nanmean(c) <= best_c:
            best, best_c = float(tau), float(np.nanmean(c))
    return best


def coverage_over_splits(ctx: RoutingContext, success: np.ndarray, cost: np.ndarray, *, target: float,
                         delta: float = 0.1, n_splits: int = 200, cal_frac: float = 0.5, seed: int = 0,
                         taus: tuple[float, ...] | np.ndarray = DEFAULT_TAUS, fallback_tier: int | None = None
                         ) -> dict:
    """Repeated random calibration/test splits of real held-out predictions: how often does tau_hat meet target?

    Reports two coverages: ``realised`` (success on the held-out half >= target; includes finite-test-set noise,
    so it can sit below 1 - delta even when the guarantee holds) and ``population`` (tau_hat from an i.i.d.
    bootstrap draw of the same size, judged on the *whole* set as the population it was drawn from; this is exactly
    the quantity LTT bounds).
    """
    success, cost = np.asarray(success, float), np.asarray(cost, float)
    n = ctx.shape[0]
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, float, float, bool]] = []
    # Success of every tau on the whole set, computed once.
    full = {float(t): policy_outcomes(Threshold(float(t)), ctx, success, cost) for t in taus}
    if fallback_tier is not None:
        from aco_bert.policies import FixedTier

        full[None] = policy_outcomes(FixedTier(fallback_tier), ctx, success, cost)

    def key(r: LTTResult):
        return r.tau if r.guaranteed or fallback_tier is None else None

    for _ in range(n_splits):
        perm = rng.permutation(n)
        k = int(round(cal_frac * n))
        cal, test = perm[:k], perm[k:]
        sub = RoutingContext(ctx.probs[cal], ctx.exp_cost[cal], ctx.min_tier[cal])
        r = choose_tau(sub, success[cal], cost[cal], target=target, delta=delta, taus=taus)
        s, c = full[key(r)]
        # Population view: an i.i.d. (with replacement) calibration draw from the whole set, judged on the whole set.
        boot = rng.integers(0, n, size=k)
        subb = RoutingContext(ctx.probs[boot], ctx.exp_cost[boot], ctx.min_tier[boot])
        rb = choose_tau(subb, success[boot], cost[boot], target=target, delta=delta, taus=taus)
        rows.append((float(s[test].mean()), float(np.nanmean(c[test])), float(full[key(rb)][0].mean()),
                     r.guaranteed))
    arr = np.array([r[:3] for r in rows])
    return {
        "target": target,
        "delta": delta,
        "n_splits": n_splits,
        "cal_size": int(round(cal_frac * n)),
        "realised_coverage": float((arr[:, 0] >= target).mean()),
        "population_coverage": float((arr[:, 2] >= target).mean()),
        "mean_test_success": float(arr[:, 0].mean()),
        "mean_test_cost": float(arr[:, 1].mean()),
        "frac_certified": float(np.mean([r[3] for r in rows])),
    }
