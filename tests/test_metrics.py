"""Routing metrics: synthetic curves with known answers, a brute-force cross-check, and the evaluate.Metric
wrappers loaded by path (offline) agreeing with replay on real SWE-bench outcomes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from aco_bert.evaluation.metrics import core
from aco_bert.evaluation.metrics import load_metric, metric_path
from aco_bert.evaluation.replay import evaluate_policies

WEAK, STRONG = (0.0, 0.5), (1.0, 1.0)


def brute_q(cost: np.ndarray, success: np.ndarray, budget: float) -> float:
    """Best success reachable within ``budget`` by any point or random mix of two points (independent of the hull)."""
    best = 0.0
    for i, j in itertools.product(range(len(cost)), repeat=2):
        ci, cj, si, sj = cost[i], cost[j], success[i], success[j]
        if ci <= budget:
            best = max(best, si)
        if ci <= budget < cj:  # spend exactly the budget: weight w on j with w*cj + (1-w)*ci = budget
            w = (budget - ci) / (cj - ci)
            best = max(best, (1 - w) * si + w * sj)
    return best


def test_upper_hull_drops_dominated_and_inner_points():
    cost = [0.0, 0.2, 0.5, 0.6, 1.0, 1.2]
    succ = [0.5, 0.55, 0.9, 0.7, 1.0, 0.95]  # 0.2 lies under the chord 0->0.5; 0.6 and 1.2 are dominated
    hx, hy = core.upper_hull(cost, succ)
    assert hx.tolist() == [0.0, 0.5, 1.0]
    assert hy.tolist() == [0.5, 0.9, 1.0]


def test_aiq_of_a_line_and_of_its_hull():
    assert core.aiq([0.0, 1.0], [0.5, 1.0], 0.0, 1.0) == pytest.approx(0.75)
    cost, succ = [0.0, 0.3, 0.5, 0.7, 1.0], [0.5, 0.55, 0.9, 0.6, 1.0]
    hx, hy = core.upper_hull(cost, succ)
    # a curve that is exactly the hull has the hull's AIQ; the dominated points change nothing
    assert core.aiq(hx, hy, 0.0, 1.0) == pytest.approx(core.aiq(cost, succ, 0.0, 1.0))
    # hand value: trapezoids 0->0.5 (mean 0.7) and 0.5->1 (mean 0.95)
    assert core.aiq(cost, succ, 0.0, 1.0) == pytest.approx(0.5 * 0.7 + 0.5 * 0.95)


def test_aiq_counts_unaffordable_budgets_as_zero_and_flat_above():
    assert core.aiq([0.5], [1.0], 0.0, 1.0) == pytest.approx(0.5)
    assert core.aiq([0.0, 0.5], [0.5, 1.0], 0.0, 1.0) == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    assert core.aiq([2.0], [1.0], 0.0, 1.0) == 0.0
    assert core.aiq([0.0, 1.0], [0.5, 1.0], 0.5, 0.5) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        core.aiq([0.0], [1.0], 1.0, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_hull_and_aiq_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    cost, succ = rng.uniform(0.05, 1.0, 9), rng.uniform(0.1, 0.9, 9)
    hx, hy = core.upper_hull(cost, succ)
    grid = np.linspace(0.0, 1.2, 601)
    q = np.array([brute_q(cost, succ, b) for b in grid])
    np.testing.assert_allclose(core.hull_value(hx, hy, grid), q, atol=1e-9)
    lo, hi = 0.1, 1.1
    inside = (grid >= lo) & (grid <= hi)
    # fine-grid Riemann mean vs the exact integral (the only difference is the step at the cheapest point)
    assert core.aiq(cost, succ, lo, hi) == pytest.approx(q[inside].mean(), abs=5e-3)


def test_apgr_known_answers():
    # perfect router: the strong model's success at the weak model's cost
    assert core.apgr([0.0], [1.0], WEAK, STRONG) == pytest.approx(1.0)
    # mixing weak and strong at random recovers half the gap on average; the weak model alone nothing
    assert core.apgr([0.0, 1.0], [0.5, 1.0], WEAK, STRONG) == pytest.approx(0.5)
    assert core.apgr([0.0], [0.5], WEAK, STRONG) == pytest.approx(0.0)
    # beating the strong model shows as > 1
    assert core.apgr([0.0], [1.1], WEAK, STRONG) == pytest.approx(1.2)
    with pytest.raises(ValueError):
        core.pgr(0.7, 0.8, 0.8)


def test_cpt_known_answers():
    assert core.cpt([0.0, 1.0], [0.5, 1.0], WEAK, STRONG, 0.5) == pytest.approx((0.5, 0.5))
    assert core.cpt([0.0, 1.0], [0.5, 1.0], WEAK, STRONG, 0.8) == pytest.approx((0.8, 0.8))
    assert core.cpt([0.0], [1.0], WEAK, STRONG, 0.8) == (0.0, 0.0)
    # a concave curve gets there sooner: (0,.5)-(0.25,.9)-(1,1): 0.75 is reached at 0.25 * 0.25/0.4
    assert core.cpt([0.0, 0.25, 1.0], [0.5, 0.9, 1.0], WEAK, STRONG, 0.5)[0] == pytest.approx(0.25 * 0.25 / 0.4)
    assert core.cpt([0.0, 1.0], [0.5, 0.6], WEAK, STRONG, 0.5) == (math.inf, math.inf)
    m = core.curve_metrics([0.0, 1.0], [0.5, 0.6], WEAK, STRONG).to_dict()
    assert m["cpt_50"] is None and m["cpt_80_frac"] is None


def test_summarize_excludes_and_counts_missing():
    s = core.summarize([1.0, np.nan, 0.0, 1.0], [0.2, 0.3, np.nan, 0.4])
    assert (s.success, s.n, s.n_missing, s.n_cost_missing) == (pytest.approx(2 / 3), 3, 1, 1)
    assert s.cost_per_task == pytest.approx(0.3)
    assert core.savings(0.25, 1.0) == pytest.approx(0.75)


def test_metric_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown metric"):
        metric_path("accuracy")


@pytest.fixture(scope="module")
def report(swebench):
    return evaluate_policies(swebench.matrix(), dataset="swebench-verified")


def test_evaluate_metrics_load_offline_and_agree_with_replay(swebench, report, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    m = swebench.matrix()
    rm = load_metric("routing_metrics")
    cq = load_metric("cost_quality_curve")
    r = report.metrics["range"]

    oracle = report.get("oracle")
    cols = np.array([m.models.index(report.models[t]) for t in oracle.tiers])
    rows = np.arange(m.n_prompts)
    out = rm.compute(success=m.success[rows, cols], cost=m.cost[rows, cols], frontier_cost=r["strong_cost"],
                     frontier_success=r["strong_success"], weak_success=r["weak_success"])
    assert out["success"] == pytest.approx(oracle.success, abs=1e-12)
    assert out["cost_per_task"] == pytest.approx(oracle.cost_per_task, abs=1e-12)
    assert out["savings_vs_frontier"] == pytest.approx(oracle.savings_vs_frontier, abs=1e-12)
    oracle_json = next(d for d in report.to_dict()["policies"] if d["name"] == "oracle")
    assert out["pgr"] == pytest.approx(oracle_json["pgr"], abs=1e-12)
    assert out["n"] == 500 and out["n_missing"] == 0

    for name in ("zero-router", "oracle"):
        c = report.curves[name]
        got = cq.compute(cost=c.cost, success=c.success, weak_cost=r["weak_cost"], weak_success=r["weak_success"],
                         strong_cost=r["strong_cost"], strong_success=r["strong_success"])
        for k, v in report.metrics[name].items():
            assert got[k] == pytest.approx(v, abs=1e-12), (name, k)
        np.testing.assert_allclose(got["hull_cost"], c.hull()[0])

    # the zero-router hull passes through the cheapest model, so its AIQ is above the weak model's success
    # and below the strong model's
    zr = report.metrics["zero-router"]
    assert r["weak_success"] < zr["aiq"] < r["strong_success"]
    assert 0.5 < zr["apgr"] < 1.0  # Gemini 3 Pro bends the hull above the weak-strong chord
