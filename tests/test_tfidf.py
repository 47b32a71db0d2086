"""TF-IDF + LR baseline on a real SWE-bench slice: no label leakage out of fold, AUC against sklearn, NaN masking,
graded labels, and tiers with a single class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc
from aco_bert.evaluation.tfidf import TfidfLR, TfidfLRConfig, check_folds, oof_predict
from aco_bert.data.splits import Fold, kfold

N_PROMPTS = 120


@pytest.fixture(scope="module")
def sl(swebench):
    """120 real prompts x 4 tiers spanning weak to strong (base rates ~0.1 to ~0.75)."""
    m = swebench.matrix()
    rates = np.nanmean(m.success, axis=0)
    order = np.argsort(rates)
    cols = [order[0], order[len(order) // 3], order[2 * len(order) // 3], order[-1]]
    return m.subset(np.arange(N_PROMPTS)).select_models([m.models[c] for c in cols])


def test_oof_never_sees_a_prompts_own_label(sl):
    folds = kfold(sl.prompt_ids, 4, seed=1)
    base = oof_predict(sl.prompts, sl.success, folds)
    assert base.shape == sl.success.shape and np.isfinite(base).all() and ((base > 0) & (base < 1)).all()
    # Flip every label of fold 0's test prompts: their own OOF predictions must not move at all, everyone else's must.
    test0 = folds[0].test
    flipped = sl.success.copy()
    flipped[test0] = 1.0 - flipped[test0]
    after = oof_predict(sl.prompts, flipped, folds)
    np.testing.assert_array_equal(after[test0], base[test0])
    assert not np.allclose(np.delete(after, test0, axis=0), np.delete(base, test0, axis=0))


def test_oof_fits_on_train_only_spy(sl, monkeypatch):
    seen: list[tuple[set, set]] = []
    real_fit, real_predict = TfidfLR.fit, TfidfLR.predict_proba

    def fit(self, texts, success):
        self._spy_train = set(texts)
        return real_fit(self, texts, success)

    def predict(self, texts):
        seen.append((self._spy_train, set(texts)))
        return real_predict(self, texts)

    monkeypatch.setattr(TfidfLR, "fit", fit)
    monkeypatch.setattr(TfidfLR, "predict_proba", predict)
    folds = kfold(sl.prompt_ids, 3, seed=0)
    oof_predict(sl.prompts, sl.success, folds)
    assert len(seen) == 3
    assert all(not (train & scored) for train, scored in seen)  # texts are unique in the slice
    assert set().union(*(scored for _, scored in seen)) == set(sl.prompts)


def test_leaky_folds_are_refused(sl):
    n = sl.n_prompts
    with pytest.raises(ValueError, match="both train and test"):
        oof_predict(sl.prompts, sl.success, [Fold(0, np.arange(n), np.arange(10))])
    with pytest.raises(ValueError, match="overlap an earlier fold"):
        check_folds([Fold(0, np.arange(10, n), np.arange(10)), Fold(1, np.arange(5, n), np.arange(5))], n)
    with pytest.raises(ValueError, match="out of range"):
        check_folds([Fold(0, np.arange(n + 1), np.array([], dtype=int))], n)


def test_auc_matches_sklearn_with_missing_outcomes(sl):
    rng = np.random.default_rng(0)
    y = sl.success.copy()
    y[rng.random(y.shape) < 0.2] = np.nan
    p = rng.random(y.shape)
    p[3, 1] = np.nan  # a prompt without a prediction is left out too
    got = per_tier_auc(y, p)
    for t in range(y.shape[1]):
        ok = ~np.isnan(y[:, t]) & ~np.isnan(p[:, t])
        assert got[t] == pytest.approx(roc_auc_score(y[ok, t], p[ok, t]))
    assert mean_auc(got) == pytest.approx(np.mean(got))
    # graded outcomes count as success from 0.5 up
    g = np.array([[0.2], [0.5], [0.9], [0.4]])
    assert per_tier_auc(g, np.array([[0.1], [0.7], [0.8], [0.3]]))[0] == 1.0
    with pytest.raises(ValueError, match="same"):
        per_tier_auc(y, p[:, :2])


def test_single_class_tiers(sl):
    y = sl.success.copy()
    y[:, 0] = 1.0  # all successes: nothing to learn
    # tier 1: a single success, held out by fold 0, so fold 0 trains on failures only
    folds = kfold(sl.prompt_ids, 4, seed=2)
    y[:, 1] = 0.0
    y[folds[0].test[0], 1] = 1.0
    probs = oof_predict(sl.prompts, y, folds)
    assert (probs[:, 0] == 1.0).all()
    assert (probs[folds[0].test, 1] == 0.0).all()  # base rate of fold 0's training labels
    for f in folds[1:]:  # the other folds saw one success: a real model, not a constant
        assert ((probs[f.test, 1] > 0) & (probs[f.test, 1] < 1)).all()
    aucs = per_tier_auc(y, probs)
    assert np.isnan(aucs[0]) and np.isfinite(aucs[1:]).all()
    assert mean_auc(aucs) == pytest.approx(np.mean(aucs[1:]))
    assert np.isnan(mean_auc(np.array([np.nan, np.nan])))
    model = TfidfLR().fit(sl.prompts, y)
    assert model.constant_tiers == [0]


def test_missing_outcomes_are_unknown_not_failures(sl):
    y = sl.success.copy()
    t = int(np.argmin(np.nanmean(y, axis=0)))  # the weakest tier: mostly failures
    y[y[:, t] == 0, t] = np.nan  # hide every failure: what is left is all successes
    model = TfidfLR().fit(sl.prompts, y)
    assert model.n_train_[t] == int(np.nansum(sl.success[:, t]))
    assert t in model.constant_tiers and model.base_rates_[t] == 1.0  # NaN read as 0 would give a low base rate
    assert np.isfinite(model.predict_proba(sl.prompts[:5])).all()


def test_graded_labels_are_soft_targets(sl):
    """y = 0.5 everywhere carries no signal, so the fit sits at 0.5; binary labels reproduce an ordinary fit."""
    half = np.full((sl.n_prompts, 1), 0.5)
    p = TfidfLR().fit(sl.prompts, half).predict_proba(sl.prompts)
    np.testing.assert_allclose(p, 0.5, atol=1e-6)
    # soft targets y in {0.25, 0.75} pull predictions toward the target's side, within (0, 1)
    soft = np.where(sl.success[:, [3]] >= 0.5, 0.75, 0.25)
    q = TfidfLR().fit(sl.prompts, soft).predict_proba(sl.prompts)[:, 0]
    assert q[soft[:, 0] == 0.75].mean() > q[soft[:, 0] == 0.25].mean()
    assert (q > 0.25 - 1e-6).all() and (q < 0.75 + 1e-6).all()


def test_learns_a_learnable_label_on_real_texts(sl):
    """The pipeline is not a no-op: a label defined by the text (repo is django) is recovered out of fold."""
    y = np.array([[1.0 if "django" in pid else 0.0] for pid in sl.prompt_ids])
    assert 0 < y.sum() < len(y)
    probs = oof_predict(sl.prompts, y, kfold(sl.prompt_ids, 4, seed=0), TfidfLRConfig(C=10.0))
    assert per_tier_auc(y, probs)[0] > 0.85


def test_bad_inputs(sl):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TfidfLR().fit(sl.prompts[:4], np.array([[0.0], [2.0], [1.0], [0.0]]))
    with pytest.raises(ValueError, match="n_prompts = 3"):
        TfidfLR().fit(sl.prompts[:3], np.zeros((4, 1)))
    with pytest.raises(RuntimeError, match="before fit"):
        TfidfLR().predict_proba(["x"])
