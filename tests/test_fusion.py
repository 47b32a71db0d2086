"""Signal fusion with a guarantee: the blend of single sources (chosen only where its cross-fitted AUC wins, the
same numbers after save/load), nested-fold signal blocks that never see a test prompt's outcome, and the paired
bootstrap of AIQ differences the report prints."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.decision.stacker import StackerConfig, StackInputs, Stacker, fit_stack
from aco_bert.evaluation.bootstrap import BootstrapConfig, aiq_bootstrap
from aco_bert.evaluation.metrics.core import aiq, per_tier_auc
from aco_bert.signals.sources import choose_sources, cross_fitted_blend_auc, source_logit, source_scores

FAST = StackerConfig(n_rounds=30, margin_rounds=10, pca_dim=0, nthread=1, inner_k=3, min_labels=10,
                     signals=["heads", "knn"])


def _complementary(n=600, t=2, seed=0):
    """Success driven by two independent factors; the heads see one, the kNN block the other."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, n))
    y = (rng.random((n, t)) < 1 / (1 + np.exp(-(1.5 * a + 1.5 * b)))[:, None]).astype(float)
    heads = a[:, None] + rng.normal(0, 0.3, (n, t))
    knn = 1 / (1 + np.exp(-(b[:, None] + rng.normal(0, 0.3, (n, t)))))  # a knn block holds probabilities
    return StackInputs(logits=heads, signals={"knn": knn}), y


def test_blend_is_chosen_for_complementary_sources_and_ranks_better_than_each():
    inp, y = _complementary()
    st = Stacker.fit(inp, y, FAST)
    assert [s["source"] for s in st.sources] == ["blend", "blend"]
    cands = source_scores(inp, st.layout, 2)
    for t in range(2):
        singles = [per_tier_auc(y[:, [t]], cands[k][:, [t]])[0] for k in ("heads", "knn")]
        blended = cross_fitted_blend_auc(cands, y[:, t], np.arange(len(y)), t, 5, 0)
        assert blended > max(singles) + 0.05
        # the margin the trees start from is the blend's linear map of the candidates
        s = st.sources[t]
        manual = sum(w * cands[k][:, t] for k, w in s["terms"].items()) + s["b"]
        assert np.allclose(source_logit(s, cands, t), manual)
    assert s["terms"]["heads"] > 0 and s["terms"]["knn"] > 0


def test_blend_is_not_chosen_when_one_source_holds_all_the_signal():
    rng = np.random.default_rng(1)
    inp, y = _complementary()
    inp = StackInputs(logits=rng.normal(size=inp.logits.shape), signals={"knn": 0.02 + 0.96 * y})  # knn ~ perfect
    chosen = choose_sources(source_scores(inp, {"logits": 2, "signals": {"knn": 2}, "head_of_tier": [0, 1]}, 2),
                            y, 10, "global", with_blend=True)
    assert {c["source"] for c in chosen} <= {"knn", "knn_mean"}


def test_blend_stacker_round_trips_and_falls_back_to_held_out_blend_predictions(tmp_path):
    inp, y = _complementary(n=400)
    fs = fit_stack(inp, y, StackerConfig(**{**FAST.__dict__, "guarantee_tol": 1.0}))  # force the fallback
    st = fs.stacker
    assert st.modes == ["source", "source"] and all(s["source"] == "blend" for s in st.sources)
    # the fallback's held-out predictions are the inner folds' own blends (never the final, in-sample blend)
    assert not np.allclose(fs.inner_oof, st.predict(inp))
    for t in range(2):
        assert st.guarantee[t]["source"] == "blend" and not st.guarantee[t]["kept"]
        assert per_tier_auc(y[:, [t]], fs.inner_oof[:, [t]])[0] == pytest.approx(
            st.guarantee[t]["source_cross_fit_auc"])
    back = Stacker.load(st.save(tmp_path / "st"))
    assert np.array_equal(back.predict(inp), st.predict(inp))


def test_nested_signal_blocks_never_see_test_outcomes(swebench):
    from aco_bert.data.splits import kfold
    from aco_bert.signals.base import SignalData
    from aco_bert.signals.fitting import fold_blocks, usable_signals

    m = swebench.matrix().subset(np.arange(120))
    y = m.success[:, :3].copy()
    data = SignalData(m.prompts, np.random.default_rng(0).normal(size=(120, 8)))
    sigs = usable_signals(["heads", "tfidf", "knn", "metadata"], data, log=lambda s: None)
    assert set(sigs) == {"tfidf", "knn"}  # metadata: the spec declares none (skipped, not an error)
    tr, te = np.arange(90), np.arange(90, 120)
    inner = kfold(list(range(90)), 3, 0)
    b_tr, b_te = fold_blocks(sigs, data, y, None, tr, te, inner, ["a", "b", "c"])
    y2 = y.copy()
    y2[te] = 1 - np.nan_to_num(y2[te])  # flip every test outcome
    c_tr, c_te = fold_blocks(sigs, data, y2, None, tr, te, inner, ["a", "b", "c"])
    for k in sigs:
        assert np.array_equal(b_tr[k], c_tr[k]) and np.array_equal(b_te[k], c_te[k])
        assert b_tr[k].shape[0] == 90 and b_te[k].shape[0] == 30
    with pytest.raises(ValueError, match="unknown signal"):
        usable_signals(["tfidf"], data, {"tfidf-lr": {}})


def test_aiq_bootstrap_is_paired_and_centred_on_the_report_numbers(swebench):
    from aco_bert.evaluation.replay import oracle_tiers

    models = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]
    m = swebench.matrix().select_models(models)
    y, cost = m.success, m.cost
    n = len(y)
    floor = np.zeros(n, dtype=int)
    fixed = [np.full(n, t) for t in range(3)]
    oracle = oracle_tiers(m, models, floor)
    order = np.argsort(np.nanmean(cost, axis=0))
    weak, strong = int(order[0]), int(np.nanargmax(np.nanmean(y, axis=0)))
    cfg = BootstrapConfig(n_boot=300, seed=0)
    ci = aiq_bootstrap(y, cost, {"same": fixed, "oracle": fixed + [oracle]}, floor, weak, strong,
                       pairs=[("oracle", "same")], cfg=cfg)
    same = ci["same - zero-router"]
    assert same["diff"] == 0 and same["lo"] == same["hi"] == 0  # the hull against itself: no spread at all
    o = ci["oracle - zero-router"]
    lo_c, hi_c = np.nanmean(cost[:, weak]), np.nanmean(cost[:, strong])
    pts = [(np.nanmean(cost[np.arange(n), v]), np.nanmean(y[np.arange(n), v])) for v in fixed + [oracle]]
    direct = aiq([p[0] for p in pts], [p[1] for p in pts], lo_c, hi_c) - aiq(
        [p[0] for p in pts[:3]], [p[1] for p in pts[:3]], lo_c, hi_c)
    assert o["diff"] == pytest.approx(direct)
    assert 0 < o["lo"] <= o["diff"] <= o["hi"] and o["p_le_0"] == 0.0
    assert ci["oracle - same"]["diff"] == pytest.approx(o["diff"])
