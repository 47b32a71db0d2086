"""Cascade with execution feedback on real SWE-bench traces: cost accounting, verifier signal, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aco_bert.decision.verifier import Verifier, VerifierConfig, cross_fit_verifier, trace_arrays
from aco_bert.policies import Cascade, FixedTier, RoutingContext, Threshold
from aco_bert.data.splits import kfold

MODELS = ["DeepSeek V3.2 Reasoner", "GPT-5 (2025-08-07) (medium reasoning)", "Gemini 3 Pro Preview (2025-11-18)",
          "Claude 4.5 Opus medium (20251101)"]
FAST = VerifierConfig(n_rounds=60, max_depth=3, nthread=1)


@pytest.fixture(scope="module")
def sw(swebench):
    m = swebench.matrix().select_models(MODELS).subset(np.arange(300))
    from aco_bert.signals.handcrafted import featurize

    return m, featurize(m.prompts), trace_arrays(m)


def _ctx(m, min_tier=None):
    base = np.nanmean(m.success, axis=0)
    return RoutingContext(np.tile(base, (m.n_prompts, 1)), np.tile(np.nanmean(m.cost, axis=0), (m.n_prompts, 1)),
                          min_tier)


def test_cascade_cost_counts_every_tier_that_ran(sw):
    m, _, _ = sw
    rng = np.random.default_rng(0)
    scores = rng.random(m.success.shape)
    ctx = _ctx(m)
    casc = Cascade(FixedTier(0), FixedTier(2), accept=0.5, max_runs=2)
    r = casc.replay(ctx, m.success, m.cost, scores)
    esc = scores[:, 0] < 0.5
    np.testing.assert_allclose(r.cost, m.cost[:, 0] + np.where(esc, m.cost[:, 2], 0.0))
    np.testing.assert_array_equal(r.success, np.where(esc, m.success[:, 2], m.success[:, 0]))
    assert all(runs == ([0, 2] if e else [0]) for runs, e in zip(r.runs, esc))
    # a cascade that escalates everything costs more than the escalation tier alone: both runs are paid for
    always = Cascade(FixedTier(0), FixedTier(2), accept=2.0).replay(ctx, m.success, m.cost, scores)
    assert always.cost.mean() == pytest.approx(m.cost[:, 0].mean() + m.cost[:, 2].mean())
    never = Cascade(FixedTier(0), FixedTier(2), accept=-1.0).replay(ctx, m.success, m.cost, scores)
    assert never.summary() == {"success": m.success[:, 0].mean(), "cost_per_task": m.cost[:, 0].mean(),
                               "mean_runs": 1.0, "escalated": 0.0}


def test_three_step_cascade_escalates_upward_and_respects_floors(sw):
    m, _, _ = sw
    floors = np.where(np.arange(m.n_prompts) % 3 == 0, 1, 0)
    ctx = _ctx(m, floors)
    r = Cascade(FixedTier(0), Threshold(0.99), accept=2.0, max_runs=3).replay(ctx, m.success, m.cost,
                                                                             np.zeros(m.success.shape))
    for runs, fl in zip(r.runs, floors):
        assert runs[0] >= fl and all(b > a for a, b in zip(runs, runs[1:]))
    exp = np.array([m.cost[i, runs].sum() for i, runs in enumerate(r.runs)])
    np.testing.assert_allclose(r.cost, exp)


def test_verifier_reads_real_traces_better_than_chance_and_round_trips(sw, tmp_path):
    """The real per-instance api_calls/cost of each model's run predict whether that run resolved the issue."""
    m, x, tr = sw
    q = cross_fit_verifier(m.success, tr, kfold(m.prompt_ids, 3, 0), features=x, cfg=FAST)
    aucs = [roc_auc_score(m.success[:, t], q[:, t]) for t in range(len(MODELS))]
    assert np.mean(aucs) > 0.58 and min(aucs) > 0.54, aucs
    v = Verifier.fit(m.success, tr, features=x, cfg=FAST, tiers=MODELS)
    d = v.save(tmp_path / "verifier")
    assert (d / "verifier.json").exists()
    back = Verifier.load(d)
    np.testing.assert_array_equal(back.predict_all(tr, x), v.predict_all(tr, x))
    with pytest.raises(ValueError, match="prompt features"):
        v.predict_all(tr)


def test_runtime_step_gives_an_escalation(sw):
    m, _, _ = sw
    ctx = _ctx(m.subset([0]), np.array([1]))
    casc = Cascade(FixedTier(0), Threshold(0.99), accept=0.6)
    e = casc.step(ctx, tier_run=1, score=0.3, tier_names=MODELS)
    assert not e.accept and e.tier_run == 2 and e.next_tier is not None and e.next_tier > 2
    assert e.next_model == MODELS[e.next_tier - 1]
    e = casc.step(ctx, tier_run=1, score=0.9)
    assert e.accept and e.next_tier is None
    assert casc.step(ctx, tier_run=3, score=0.0).accept  # nothing above the top tier: accept
