"""Learn-then-Test tau: the success guarantee holds on synthetic data where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.decision.conformal import (
    binomial_pvalue,
    choose_tau,
    coverage_over_splits,
    hb_pvalue,
    naive_tau,
    policy_outcomes,
)
from aco_bert.policies import RoutingContext, Threshold

TAUS = tuple(np.round(np.linspace(0.95, 0.05, 37), 4))


def _world(n: int, rng: np.random.Generator):
    """3 tiers, prompt difficulty d ~ U(0,1); true P(success at tier t) = q[t](d), known exactly.

    The router sees noisy versions of the true probabilities (so it is imperfect), costs 1, 5, 20.
    """
    d = rng.random(n)
    q = np.column_stack([np.clip(1.0 - 1.4 * d, 0.02, 0.98), np.clip(1.0 - 0.9 * d, 0.05, 0.98),
                         np.clip(0.97 - 0.35 * d, 0.05, 0.98)])
    probs = np.clip(q + rng.normal(0, 0.08, q.shape), 0, 1)
    cost = np.tile([1.0, 5.0, 20.0], (n, 1))
    return q, probs, cost


def _true_success(q: np.ndarray, probs: np.ndarray, cost: np.ndarray, tau: float) -> float:
    """Population success of Threshold(tau): the mean true probability of the tier it picks (no sampling noise)."""
    s, _ = policy_outcomes(Threshold(tau), RoutingContext(probs, cost), q, cost)
    return float(s.mean())


def test_pvalues_are_valid_under_the_null():
    """At risk exactly alpha, P(p <= delta) <= delta (binomial: exact; HB: conservative)."""
    rng = np.random.default_rng(0)
    n, alpha, delta = 200, 0.2, 0.1
    losses = rng.random((4000, n)) < alpha
    rh = losses.mean(axis=1)
    pb = np.array([binomial_pvalue(r, n, alpha) for r in rh])
    ph = np.array([hb_pvalue(r, n, alpha) for r in rh])
    assert (pb <= delta).mean() <= delta + 0.015
    assert (ph <= delta).mean() <= delta + 0.015
    assert (ph >= pb - 1e-12).mean() > 0.99  # HB never beats the exact binomial tail
    assert binomial_pvalue(0.05, n, alpha) < 1e-6  # far below alpha: strong evidence


def test_guarantee_holds_over_200_calibration_draws():
    """>= 1 - delta of 200 independent calibration sets yield a tau whose TRUE success meets the target, while the
    naive choice (empirical success >= target) misses it about half the time: the test can fail."""
    rng = np.random.default_rng(1)
    target, delta, n_cal = 0.72, 0.1, 400
    qp, pp, cp = _world(100_000, rng)  # the population
    truth = {t: _true_success(qp, pp, cp, t) for t in TAUS}
    assert min(truth.values()) < target < max(truth.values())  # the target is reachable but not trivial
    ok_ltt, ok_naive, certified, costs = [], [], [], []
    for _ in range(200):
        q, probs, cost = _world(n_cal, rng)
        y = (rng.random(q.shape) < q).astype(float)  # realised outcomes of the calibration prompts
        ctx = RoutingContext(probs, cost)
        r = choose_tau(ctx, y, cost, target=target, delta=delta, taus=TAUS)
        certified.append(r.guaranteed)
        ok_ltt.append(truth[r.tau] >= target)
        ok_naive.append(truth[naive_tau(ctx, y, cost, target=target, taus=TAUS)] >= target)
        costs.append(r.cal_cost[TAUS.index(r.tau)])
    assert np.mean(certified) > 0.9  # the procedure is not vacuous (it does certify taus)
    assert np.mean(ok_ltt) >= 1 - delta
    assert np.mean(ok_naive) < 1 - delta
    assert np.mean(costs) < 20.0  # and it saves money against always-top-tier


def test_graded_outcomes_use_hoeffding_bentkus():
    rng = np.random.default_rng(2)
    q, probs, cost = _world(300, rng)
    ctx = RoutingContext(probs, cost)
    r = choose_tau(ctx, q, cost, target=0.7, delta=0.1, taus=TAUS)  # graded "outcomes" in [0, 1]
    assert r.method == "hb"
    with pytest.raises(ValueError, match="0/1 outcomes"):
        choose_tau(ctx, q, cost, target=0.7, method="binomial", taus=TAUS)


def test_fixed_sequence_stops_at_first_non_rejection_and_respects_floors():
    rng = np.random.default_rng(3)
    q, probs, cost = _world(300, rng)
    y = (rng.random(q.shape) < q).astype(float)
    floors = np.where(rng.random(300) < 0.3, 2, 0)
    ctx = RoutingContext(probs, cost, min_tier=floors)
    r = choose_tau(ctx, y, cost, target=0.7, delta=0.1, taus=TAUS)
    k = r.n_certified
    assert k > 0
    assert all(p <= 0.1 for p in r.p_values[:k])
    if k < len(TAUS):
        assert r.p_values[k] > 0.1
    assert r.tau in r.taus[:k]
    # floors are part of the certified policy: with them, calibration success is at least that of the floored tier
    t = Threshold(r.tau).decide(ctx)
    assert (t[floors == 2] == 2).all()


def test_unreachable_target_is_reported_not_faked():
    rng = np.random.default_rng(4)
    q, probs, cost = _world(200, rng)
    y = (rng.random(q.shape) < q).astype(float)
    r = choose_tau(RoutingContext(probs, cost), y, cost, target=0.99, delta=0.1, taus=TAUS)
    assert not r.guaranteed and r.n_certified == 0 and r.tau == TAUS[0]
    with pytest.raises(ValueError):
        choose_tau(RoutingContext(probs, cost), y, cost, target=1.2)


def test_coverage_over_splits_on_real_swebench(swebench):
    """Real outcomes, probabilities = per-repo training success rates (a weak but honest router)."""
    from aco_bert.data.splits import kfold

    m = swebench.matrix()
    models = ["DeepSeek V3.2 Reasoner", "GPT-5 (2025-08-07) (medium reasoning)", "Gemini 3 Pro Preview (2025-11-18)"]
    m = m.select_models(models)
    repo = m.meta["category"].astype(str).to_numpy()
    probs = np.zeros(m.success.shape)
    for f in kfold(m.prompt_ids, 5, 0):  # out-of-fold per-repo rates, shrunk to the global rate
        glob = m.success[f.train].mean(axis=0)
        for r in np.unique(repo[f.test]):
            tr = f.train[repo[f.train] == r]
            probs[f.test[repo[f.test] == r]] = (m.success[tr].sum(axis=0) + 5 * glob) / (len(tr) + 5)
    ctx = RoutingContext(probs, np.tile(np.nanmean(m.cost, axis=0), (m.n_prompts, 1)))
    res = coverage_over_splits(ctx, m.success, m.cost, target=0.68, delta=0.1, n_splits=40, seed=0,
                               taus=tuple(np.round(np.linspace(0.9, 0.3, 31), 3)))
    assert res["population_coverage"] >= 0.85
    assert 0.6 < res["mean_test_success"] < 0.8 and res["mean_test_cost"] < m.cost[:, 2].mean()
