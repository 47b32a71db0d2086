"""Stacker signals (TF-IDF-LR, kNN neighbour outcomes, spec metadata): one fit, one predict, a lossless artifact,
out-of-fold blocks that never see their own prompt; the stacker's base margin and guarantee; a bundle that reads
them routes with the same numbers the stage's refit gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.data.splits import kfold
from aco_bert.decision.stacker import LEGACY_SIGNALS, StackerConfig, StackInputs, Stacker, fit_stack
from aco_bert.evaluation.metrics.core import per_tier_auc
from aco_bert.decision.calibration import sigmoid
from aco_bert.signals.base import Signal, SignalData, cross_fit, logit
from aco_bert.signals.knn import KnnConfig, KnnSignal
from aco_bert.signals.metadata import MetadataSignal
from aco_bert.signals.registry import SIGNALS, check_names
from aco_bert.signals.tfidf_lr import TfidfLRSignal

MODELS = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]
FAST = StackerConfig(n_rounds=30, margin_rounds=10, pca_dim=3, nthread=1, inner_k=3, min_labels=10)


@pytest.fixture(scope="module")
def sw(swebench):
    """160 real SWE-bench Verified prompts: texts, handcrafted features as a stand-in embedding, real outcomes,
    the repository as metadata."""
    from aco_bert.signals.handcrafted import featurize

    m = swebench.matrix().select_models(MODELS).subset(np.arange(160))
    data = SignalData(m.prompts, featurize(m.prompts).astype(float), {"repo": m.meta["repo"].tolist()})
    return m, data


def _auc(y, p) -> float:
    return float(np.nanmean(per_tier_auc(np.asarray(y, float).reshape(len(y), -1),
                                         np.asarray(p, float).reshape(len(p), -1))))


@pytest.mark.parametrize("cls", [TfidfLRSignal, KnnSignal, MetadataSignal])
def test_signals_round_trip_with_identical_predictions(cls, sw, tmp_path):
    m, data = sw
    sig = cls.fit(data.subset(np.arange(120)), m.success[:120], m.cost[:120], tiers=MODELS)
    new = data.subset(np.arange(120, 160))
    block = sig.predict(new)
    assert block.shape == (40, sig.width) and np.isfinite(block).all()
    d = sig.save(tmp_path / cls.name)
    assert not list(d.glob("*.pkl")) and json.loads((d / "manifest.json").read_text())["signal"] == cls.name
    back = Signal.load(d)  # the base class dispatches on the manifest's signal name
    assert type(back) is cls and back.tiers == MODELS and back.width == sig.width
    np.testing.assert_array_equal(back.predict(new), block)
    with pytest.raises(ValueError, match="is not"):
        (TfidfLRSignal if cls is not TfidfLRSignal else KnnSignal).load(d)


def test_tfidf_signal_is_the_tfidf_baseline_logit(sw):
    """The wrapped fit is evaluation.tfidf's TfidfLR; the rebuilt vectoriser + coefficients give its numbers."""
    from aco_bert.evaluation.tfidf import TfidfLR

    m, data = sw
    sig = TfidfLRSignal.fit(data.subset(np.arange(120)), m.success[:120], tiers=MODELS)
    ref = TfidfLR().fit(m.prompts[:120], m.success[:120]).predict_proba(m.prompts[120:])
    np.testing.assert_allclose(sigmoid(sig.predict(data.subset(np.arange(120, 160)))), ref, atol=1e-5)
    assert TfidfLRSignal.scores(sig.predict(data.subset([0, 1])), 3).shape == (2, 3)


def test_knn_excludes_self_out_of_fold(sw):
    """Canary: noise outcomes. Fitted on all prompts, k=1 finds each prompt itself and memorises its outcome;
    cross-fitted, every neighbour is another fold's prompt and the block is at chance."""
    m, data = sw
    rng = np.random.default_rng(0)
    y = (rng.random((len(data), 2)) < 0.5).astype(float)
    cfg = KnnConfig(k=1, prior=0.1, cost=False)
    in_sample = KnnSignal.fit(data, y, config=cfg).predict(data)
    assert _auc(y, in_sample) > 0.95
    folds = kfold(len(data), 4, 0)
    oof = cross_fit(KnnSignal, data, y, None, folds, cfg)
    assert abs(_auc(y, oof) - 0.5) < 0.12
    for f in folds:  # and directly: no test prompt is among its own neighbours
        sig = KnnSignal.fit(data.subset(f.train), y[f.train], config=KnnConfig(k=5))
        idx, sims = sig.neighbours(data.embeddings[f.test])
        assert not np.isin(np.asarray(f.train)[idx], f.test).any()
        assert (np.diff(sims, axis=1) <= 1e-12).all()  # most similar first


def test_knn_block_is_shrunk_neighbour_success_and_log_cost(sw):
    m, data = sw
    sig = KnnSignal.fit(data.subset(np.arange(100)), m.success[:100], m.cost[:100], KnnConfig(k=7, prior=2.0))
    q = data.subset([130])
    idx, sims = sig.neighbours(q.embeddings)
    w = np.maximum(sims[0], 1e-3)
    want = (w @ m.success[idx[0]] + 2.0 * np.nanmean(m.success[:100], axis=0)) / (w.sum() + 2.0)
    block = sig.predict(q)
    np.testing.assert_allclose(block[0, :3], want)
    assert block.shape == (1, 6) and (block[0, 3:] < 5).all()  # mean log(USD + eps)
    np.testing.assert_allclose(KnnSignal.scores(block, 3), logit(block[:, :3]))


def test_metadata_one_hot_unknown_values_and_post_hoc_columns_refused(sw):
    from aco_bert.spec import RouterSpec, Tier

    m, data = sw
    sig = MetadataSignal.fit(data, m.success)
    repos = sig.vocab["repo"]
    assert repos == sorted(repos) and len(repos) >= 2
    block = sig.predict(SignalData(["a", "b", "c"], None, {"repo": [repos[1], "never/seen", None]}))
    assert block[0].tolist() == [float(j == 1) for j in range(len(repos))] and not block[1:].any()
    with pytest.raises(ValueError, match="needs columns"):
        sig.predict(SignalData(["a"], None, {}))
    with pytest.raises(ValueError, match="known only after"):
        RouterSpec("s", [Tier("a")], metadata=["difficulty"])
    assert RouterSpec("s", [Tier("a")], metadata=["repo"]).to_dict()["metadata"] == ["repo"]
    check_names(["heads", "tfidf"])
    with pytest.raises(ValueError, match="unknown input"):
        StackerConfig(signals=["heads", "bogus"])
    assert set(SIGNALS) == {"tfidf", "knn", "metadata"}


def _synthetic(n=300, t=3, seed=0, perfect=False):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(1.5 * z[:, None] + np.linspace(-1, 1, t)[None, :])))
    y = (rng.random((n, t)) < p).astype(float)
    src = (2 * y - 1) + rng.normal(0, 0.05, y.shape) if perfect else z[:, None] + rng.normal(0, 0.3, (n, t))
    inp = StackInputs(logits=rng.normal(size=(n, t)), embeddings=rng.normal(size=(n, 8)),
                      features=rng.normal(size=(n, 4)), signals={"tfidf": src})
    return inp, y


def test_base_margin_from_a_perfect_source_keeps_its_auc():
    """Trees that start from a perfect source's logit only learn a correction: held-out AUC stays ~1 although
    every other input is noise (an unanchored stacker over the same inputs is far from it)."""
    inp, y = _synthetic(perfect=True)
    folds = kfold(len(y), 3, 0)
    from aco_bert.decision.stacker import cross_fit as stack_cross_fit

    cfg = StackerConfig(**{**FAST.__dict__, "guarantee": False})
    held = stack_cross_fit(inp, y, folds, cfg)
    assert _auc(y, held) > 0.99
    st = Stacker.fit(inp, y, cfg)
    assert [s["source"] for s in st.sources] == ["tfidf"] * 3 and all(s["margin"] for s in st.sources)
    assert st.modes == ["stack"] * 3
    noise = StackInputs(logits=inp.logits, embeddings=inp.embeddings, features=inp.features)
    assert _auc(y, stack_cross_fit(noise, y, folds, StackerConfig(**{**FAST.__dict__, "signals": list(LEGACY_SIGNALS)}))) < 0.65


def test_guarantee_falls_back_to_the_best_source_when_stacking_hurts(tmp_path):
    """Deep, unregularised trees on noise next to a good source overfit; on inner folds the stack loses to the
    source, so every tier falls back: predictions are the source's Platt map, never below its AUC."""
    inp, y = _synthetic(perfect=False)
    rng = np.random.default_rng(5)
    inp.features = rng.normal(size=(len(y), 40))
    hurt = StackerConfig(**{**FAST.__dict__, "margin_rounds": 200, "max_depth": 6, "eta": 0.5, "reg_lambda": 0.0,
                            "min_child_weight": 0.0, "subsample": 1.0, "colsample_bytree": 1.0})
    fs = fit_stack(inp, y, hurt)
    st = fs.stacker
    assert st.modes == ["source"] * 3 and all(b is None for b in st.boosters)
    assert all(g["kept"] is False and g["stack_auc"] <= g["source_auc"] for g in st.guarantee)
    assert {s["source"] for s in st.sources} <= {"tfidf", "tfidf_mean"}  # the informative input, not noise
    margins = st.source_margins(inp)  # the chosen source's Platt logit per tier
    np.testing.assert_allclose(fs.inner_oof, sigmoid(margins))  # held out: exactly the source
    np.testing.assert_allclose(st.predict(inp), sigmoid(margins))  # and so is the refit's prediction
    src_auc = _auc(y, margins)
    assert src_auc >= _auc(y, inp.signals["tfidf"]) - 0.01 and _auc(y, fs.stacked_oof) < src_auc
    s = st.sources[0]
    from aco_bert.signals.sources import source_scores

    raw = source_scores(inp, st.layout, 3)[s["source"]][:, 0]
    np.testing.assert_allclose(margins[:, 0], s["a"] * raw + s["b"])
    back = Stacker.load(st.save(tmp_path / "st"))  # the fallback survives the artifact
    assert back.modes == st.modes
    np.testing.assert_array_equal(back.predict(inp), st.predict(inp))
    # the same data with gentle trees: a tier may keep its stack only where it beats the source
    fs2 = fit_stack(inp, y, FAST)
    for g in fs2.stacker.guarantee:
        assert g["kept"] == (g["stack_auc"] > max(g["source_auc"], g["source_cross_fit_auc"]))


def test_base_margin_predictions_equal_xgboost_with_base_margin():
    import xgboost as xgb

    from aco_bert.decision.stacker import design_matrix

    inp, y = _synthetic(seed=3)
    st = Stacker.fit(inp, y, FAST)
    x = design_matrix(inp, st.layout, st.pca)
    bm = st.source_margins(inp)
    for t in range(3):
        want = st.boosters[t].predict(xgb.DMatrix(x, base_margin=bm[:, t]))
        np.testing.assert_allclose(st.predict(inp)[:, t], want, rtol=1e-5, atol=1e-6)


def test_manifest_written_before_signals_loads_as_it_was(tmp_path):
    inp, y = _synthetic(seed=4)
    legacy = StackerConfig(**{**FAST.__dict__, "signals": list(LEGACY_SIGNALS), "base_margin": False,
                              "guarantee": False})
    st = Stacker.fit(inp, y, legacy)
    d = st.save(tmp_path / "old")
    m = json.loads((d / "manifest.json").read_text())
    for k in ("signals", "base_margin", "guarantee", "guarantee_tol", "source_scope", "margin_rounds"):
        m["config"].pop(k)
    for k in ("sources", "modes", "guarantee"):
        m.pop(k)
    m["layout"].pop("signals"), m["layout"].pop("head_of_tier")
    (d / "manifest.json").write_text(json.dumps(m))
    back = Stacker.load(d)
    assert back.cfg.signals == list(LEGACY_SIGNALS) and back.modes == ["stack"] * 3
    np.testing.assert_array_equal(back.predict(inp), st.predict(inp))


ALL = ["heads", "pca", "features", "tfidf", "knn"]


@pytest.fixture(scope="module")
def signals_bundle(tiny_bundle, data_dir, tmp_path_factory):
    """The tiny bundle's trained run, stacked with the new signals (TF-IDF-LR + kNN) and exported."""
    from aco_bert.testing import build_test_bundle

    out = tmp_path_factory.mktemp("sig") / "bundle"
    work = tiny_bundle.parent / "work"
    build_test_bundle(out, data_dir, int8=False, work_dir=work, validation_slice=64, signals=ALL)
    return out, work / "run" / f"stack-{'-'.join(ALL)}"


def test_bundle_with_signals_builds_routes_and_equals_the_stage_refit(signals_bundle, swebench):
    from aco_bert.artifacts import bundle as B
    from aco_bert.runtime import Router

    bundle, stack = signals_bundle
    manifest = B.verify_bundle(bundle)
    assert manifest["signals"] == ["knn", "tfidf"]
    assert {f"{B.SIGNALS_DIR}/tfidf/manifest.json", f"{B.SIGNALS_DIR}/knn/arrays.safetensors"} <= set(manifest["files"])
    rep = json.loads((stack / "stack_report.json").read_text())["sources_held_out"]
    got = rep["stack_guaranteed"]["per_tier_auc"]
    checked = 0
    for t, src in enumerate(rep["sources"]):  # held out, each tier is never below the source it started from
        if src is not None and got[t] is not None:
            assert got[t] >= rep[src]["per_tier_auc"][t] - 1e-9
            checked += 1
    assert checked >= 3
    for k in ("heads", "tfidf", "knn", "stack", "stack_guaranteed"):
        assert len(rep[k]["per_tier_auc"]) == 5
    router = Router.load(bundle)
    texts = swebench.matrix().prompts[-12:]
    enc, out = router.infer(texts)
    lay = router.layer
    blocks = lay.signal_blocks(texts, out)
    for name in ("tfidf", "knn"):  # the runtime's blocks are the stage's refit signal's predict
        ref = Signal.load(stack / "signals" / name).predict(SignalData(texts, out["pooled"]))
        np.testing.assert_array_equal(blocks[name], ref)
    st = Stacker.load(stack / "stacker")
    from aco_bert.signals.handcrafted import featurize

    feats = featurize(texts)
    want = st.predict(StackInputs(logits=out["logits"], embeddings=out["pooled"], features=feats, signals=blocks))
    np.testing.assert_array_equal(lay.raw_scores(out, feats, texts), want)
    ds = router.route_batch(texts)
    assert [d.tier for d in ds] == [d.tier for d in router.decide_from_outputs(texts, out, enc)]
    assert all(1 <= d.tier <= 5 and len(d.probs) == 5 for d in ds)
    from aco_bert.types import RoutingInputError

    with pytest.raises(RoutingInputError, match="not declared"):
        router.route(texts[0], metadata={"repo": "django/django"})
