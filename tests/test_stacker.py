"""Stacker: per-tier XGBoost on out-of-fold inputs; no leakage; save -> load round trip; OOF file alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aco_bert.data.splits import kfold
from aco_bert.decision.stacker import PCA, StackerConfig, StackInputs, Stacker, cross_fit, fit_stack, load_oof

FAST = StackerConfig(n_rounds=40, max_depth=3, pca_dim=4, nthread=1, inner_k=3, min_labels=10)


def _synthetic(n: int = 300, t: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)  # latent prompt difficulty
    logits = z[:, None] + rng.normal(0, 0.7, (n, t))
    emb = np.column_stack([z, rng.normal(size=(n, 15))]) @ rng.normal(size=(16, 16))
    feats = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(1.5 * z[:, None] + np.linspace(-1, 1, t)[None, :])))
    y = (rng.random((n, t)) < p).astype(float)
    return StackInputs(logits=logits, embeddings=emb, features=feats), y


def _auc(y, p):
    ok = ~np.isnan(y)
    return roc_auc_score(y[ok], p[ok])


def test_save_load_round_trip_json_and_ubj(tmp_path):
    inp, y = _synthetic()
    for fmt in ("json", "ubj"):
        cfg = StackerConfig(**{**FAST.__dict__, "fmt": fmt})
        st = Stacker.fit(inp, y, cfg, tiers=["a", "b", "c"])
        d = st.save(tmp_path / fmt)
        assert (d / f"tier_00.{fmt}").exists() and not list(d.glob("*.pkl"))
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["tiers"] == ["a", "b", "c"] and len(manifest["pca"]["components"]) == 4
        back = Stacker.load(d)
        np.testing.assert_array_equal(back.predict(inp), st.predict(inp))


def test_stacker_learns_from_out_of_fold_inputs():
    inp, y = _synthetic(400)
    oof = cross_fit(inp, y, kfold(400, 5, 0), FAST)
    assert not np.isnan(oof).any()
    for t in range(3):
        assert _auc(y[:, t], oof[:, t]) > 0.7


def test_no_leakage_each_prediction_comes_from_a_model_that_never_saw_the_prompt():
    """Canary: pure-noise inputs and labels. A stacker that saw the prompt memorises it (high in-sample AUC);
    the cross-fit predictions must stay at chance. If cross_fit leaked any in-fold row, AUC would rise."""
    rng = np.random.default_rng(1)
    n = 400
    inp = StackInputs(logits=rng.normal(size=(n, 2)), features=rng.normal(size=(n, 6)))
    y = (rng.random((n, 2)) < 0.5).astype(float)
    deep = StackerConfig(n_rounds=150, max_depth=6, eta=0.3, min_child_weight=0.0, reg_lambda=0.0,
                         subsample=1.0, colsample_bytree=1.0, nthread=1, inner_k=4)
    in_sample = Stacker.fit(inp, y, deep).predict(inp)
    assert min(_auc(y[:, t], in_sample[:, t]) for t in range(2)) > 0.9  # the canary can fire
    oof = cross_fit(inp, y, kfold(n, 4, 0), deep)
    assert max(abs(_auc(y[:, t], oof[:, t]) - 0.5) for t in range(2)) < 0.08
    # the calibrator of fit_stack is fitted on inner cross-fit predictions: also at chance on noise
    fs = fit_stack(inp, y, deep)
    assert max(abs(_auc(y[:, t], fs.inner_oof[:, t]) - 0.5) for t in range(2)) < 0.08


def test_cross_fit_refuses_overlapping_folds():
    from aco_bert.data.splits import Fold

    inp, y = _synthetic(60)
    bad = [Fold(0, np.arange(0, 40), np.arange(30, 60))]
    with pytest.raises(ValueError, match="overlap"):
        cross_fit(inp, y, bad, FAST)


def test_nan_labels_are_masked_per_tier():
    inp, y = _synthetic(300, seed=2)
    y_nan = y.copy()
    y_nan[:150, 1] = np.nan
    a = Stacker.fit(inp, y_nan, FAST)
    # only tier 1 changes: the other tiers' models (and the label-free PCA) are untouched by tier 1's NaNs
    b = Stacker.fit(inp, y, FAST)
    assert a.n_train == [300, 150, 300]
    np.testing.assert_array_equal(a.predict(inp)[:, [0, 2]], b.predict(inp)[:, [0, 2]])
    assert not np.allclose(a.predict(inp)[:, 1], b.predict(inp)[:, 1])
    # a tier with no labels at all predicts its base rate (0.5), not failure
    y_nan[:, 2] = np.nan
    c = Stacker.fit(inp, y_nan, FAST)
    assert c.boosters[2] is None and (c.predict(inp)[:, 2] == 0.5).all()


def test_pca_is_fitted_on_training_prompts_only():
    inp, y = _synthetic(200)
    tr = np.arange(100)
    st = Stacker.fit(inp.subset(tr), y[tr], FAST)
    np.testing.assert_allclose(st.pca.mean, inp.embeddings[tr].mean(axis=0))
    assert not np.allclose(st.pca.mean, inp.embeddings.mean(axis=0))
    pca = PCA.fit(inp.embeddings, 3)
    back = PCA.from_dict(json.loads(json.dumps(pca.to_dict())))
    np.testing.assert_allclose(back.transform(inp.embeddings), pca.transform(inp.embeddings))


def test_input_shape_errors():
    inp, y = _synthetic(50)
    with pytest.raises(ValueError, match="disagree"):
        StackInputs(logits=np.zeros((5, 2)), features=np.zeros((6, 1)))
    st = Stacker.fit(inp, y, FAST)
    with pytest.raises(ValueError, match="logits of width 3"):
        st.predict(StackInputs(logits=np.zeros((5, 2)), embeddings=np.zeros((5, 16)), features=np.zeros((5, 3))))


def test_real_swebench_slice_with_handcrafted_features_and_oof_file(swebench, tmp_path):
    """Real outcomes: a k-fold-style OOF file is read back aligned to the outcome matrix, then stacked."""
    from safetensors.numpy import save_file

    from aco_bert.signals.handcrafted import featurize

    models = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]
    m = swebench.matrix().select_models(models).subset(np.arange(200))
    rng = np.random.default_rng(0)
    # a fake OOF run in shuffled prompt order and with one extra tier, as the neural k-fold writes it
    order = rng.permutation(200)
    run_models = ["extra-model"] + models
    logits = rng.normal(size=(200, 4))
    save_file({"logits": logits[order].astype(np.float32), "embeddings": rng.normal(size=(200, 8)).astype(np.float32)[order],
               "fold": (np.arange(200) % 5)[order].astype(np.int64)}, str(tmp_path / "oof.safetensors"))
    (tmp_path / "oof_meta.json").write_text(json.dumps({"prompt_ids": [m.prompt_ids[i] for i in order],
                                                        "models": run_models}))
    inp, meta, cost = load_oof(tmp_path, m.prompt_ids, models)
    assert cost is None and inp.logits.shape == (200, 3)
    np.testing.assert_allclose(inp.logits, logits[:, 1:], rtol=1e-6)
    np.testing.assert_array_equal(inp.fold, np.arange(200) % 5)
    with pytest.raises(ValueError, match="no out-of-fold row"):
        load_oof(tmp_path, m.prompt_ids + ["not-a-prompt"], models)
    with pytest.raises(ValueError, match="not in the run"):
        load_oof(tmp_path, m.prompt_ids, ["nope"])
    inp.features = featurize(m.prompts)
    fs = fit_stack(inp, m.success, FAST, tiers=models, prompt_ids=m.prompt_ids)
    p = fs.predict(inp)
    assert p.shape == (200, 3) and (p >= 0).all() and (p <= 1).all()
    # calibrated probabilities track each tier's base rate on its own prompts
    np.testing.assert_allclose(fs.calibrator(fs.inner_oof).mean(axis=0), m.success.mean(axis=0), atol=0.02)


def test_standardize_by_fold_removes_fold_scale_and_logit_mean_is_an_input():
    from aco_bert.decision.stacker import standardize_by_fold

    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 2))
    fold = np.arange(200) % 4
    scaled = z * (1 + fold)[:, None] + fold[:, None]  # each fold model on its own scale
    out = standardize_by_fold(scaled, fold)
    for k in range(4):
        np.testing.assert_allclose(out[fold == k].mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(out[fold == k].std(axis=0), 1, atol=1e-12)
    inp, y = _synthetic(100)
    with_mean = Stacker.fit(inp, y, FAST)
    without = Stacker.fit(inp, y, StackerConfig(**{**FAST.__dict__, "logit_mean": False}))
    assert with_mean.layout["logit_mean"] == 1 and without.layout["logit_mean"] == 0
    assert with_mean.boosters[0].num_features() == without.boosters[0].num_features() + 1


def test_head_logits_map_to_the_spec_tiers_they_belong_to():
    """Heads over more tiers than the spec (a 2-tier spec routed by 3 heads): each spec tier's single source is
    its own head's column, found by model name, not by position."""
    from aco_bert.signals.sources import source_scores

    inp, y = _synthetic(200, t=3)
    heads = ["c", "a", "b"]
    st = Stacker.fit(inp, y[:, [1, 2]], FAST, tiers=["a", "b"], head_tiers=heads)
    assert st.layout["head_of_tier"] == [1, 2] and st.layout["logits"] == 3
    sc = source_scores(inp, st.layout, 2)
    np.testing.assert_array_equal(sc["heads"], inp.logits[:, [1, 2]])
    np.testing.assert_allclose(sc["heads_mean"][:, 0], inp.logits.mean(axis=1))
    assert all(s is not None and s["source"] in sc for s in st.sources)
    with pytest.raises(ValueError, match="source_scope"):
        StackerConfig(source_scope="per-prompt")
