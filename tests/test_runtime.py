"""The torch-free runtime on the real tiny bundles (stacked and heads-only) and real SWE-bench texts.

What must hold: no torch/transformers in the process; decisions obey the contract (tiers, probabilities, costs,
floors with their reasons, budgets, min tiers); batch = one-by-one; bad input is refused with a readable
RoutingInputError; a tampered, missing or unlisted bundle file is refused on load with a BundleError naming it;
the runtime's fast XGBoost path gives the library's numbers; heads-only mode is the calibrated heads' sigmoid.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aco_bert.artifacts import bundle as B
from aco_bert.types import BundleError, Decision, Escalation, RoutingInputError
from aco_bert.runtime import Router

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def router(tiny_bundle) -> Router:
    return Router.load(tiny_bundle, threads=1)


@pytest.fixture(scope="module")
def heads_router(tiny_heads_bundle) -> Router:
    return Router.load(tiny_heads_bundle, threads=1)


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    """60 real issue texts (full length: most are longer than the tiny model's 64 tokens)."""
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["problem_statement"] for r in rows[100:160]]


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


# --- torch-free ------------------------------------------------------------------------------------------------


def test_runtime_process_never_imports_torch_or_transformers(tiny_bundle):
    code = (
        "import sys, json\n"
        "from aco_bert.runtime import Router\n"
        f"r = Router.load({str(tiny_bundle)!r})\n"
        "d = r.route('Fix the crash in the admin when the list is empty', step_type='edit')\n"
        "b = r.route_batch(['a legal question about a tenant and a landlord', 'Traceback: ValueError in parser'])\n"
        "e = r.escalate('Fix the crash', 1, {'api_calls': 40, 'cost': 0.2})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'accelerate'})\n"
        "print(json.dumps({'tier': d.tier, 'n': len(b), 'accept': e.accept, 'heavy': heavy, 'int8': r.int8}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], f"the runtime imported {out['heavy']}"
    assert out["n"] == 2 and 1 <= out["tier"] <= 5 and out["int8"] is True


# --- the decision contract -------------------------------------------------------------------------------------


def _check_decision(d: Decision, router: Router) -> None:
    t = router.spec.n_tiers
    assert isinstance(d, Decision)
    assert 1 <= d.tier <= t and d.model == router.spec.models[d.tier - 1]
    assert len(d.probs) == t and all(0.0 <= p <= 1.0 for p in d.probs)
    assert len(d.expected_cost) == t and all(c >= 0 and math.isfinite(c) for c in d.expected_cost)
    assert d.tier >= d.min_tier >= 1
    assert 1 <= d.n_tokens <= router.max_length
    assert d.reasons and all(isinstance(r, str) for r in d.reasons)
    json.dumps(d.to_dict())


def test_route_obeys_the_contract_on_real_prompts(router, texts):
    ds = router.route_batch(texts)
    assert len(ds) == len(texts)
    for d in ds:
        _check_decision(d, router)
    assert router.mode == "stacked" and router.int8
    # the threshold policy: the chosen tier is the cheapest with P >= tau, else the highest P
    tau = router.config["routing"]["tau"]
    for d in ds:
        allowed = range(d.min_tier - 1, router.spec.n_tiers)
        ok = [i for i in allowed if d.probs[i] >= tau]
        assert d.tier - 1 == (ok[0] if ok else max(allowed, key=lambda i: (d.probs[i], -i)))
    # real issue texts are longer than 64 tokens: cut head+tail and said so
    long = [d for d in ds if d.truncated]
    assert long and all(d.n_tokens == router.max_length for d in long)
    assert all(any(r.startswith("truncated:") for r in d.reasons) for d in long)


def test_batch_equals_one_by_one_and_chunking_does_not_change_results(router, texts, tiny_bundle):
    batch = router.route_batch(texts[:12])
    small = Router.load(tiny_bundle, threads=1, max_batch=5)
    chunked = small.route_batch(texts[:12])
    for i, t in enumerate(texts[:12]):
        one = router.route(t)
        for other in (batch[i], chunked[i]):
            assert other.tier == one.tier
            np.testing.assert_allclose(other.probs, one.probs, atol=1e-6)
            np.testing.assert_allclose(other.expected_cost, one.expected_cost, rtol=1e-5)
            assert (other.n_tokens, other.truncated) == (one.n_tokens, one.truncated)


def test_floors_step_minimums_and_requested_minimums_are_never_violated(router, texts):
    spec = router.spec
    rng = np.random.default_rng(0)
    legal = "The tenant says the landlord's lease clause is not legally binding. " + texts[0][:300]
    d = router.route(legal)
    assert d.tier >= spec.floors["legal"] and f"floor: legal -> tier >= {spec.floors['legal']}" in d.reasons
    d = router.route(texts[1], domain="medical")
    assert d.tier >= spec.floors["medical"] and any(r.startswith("floor: medical") for r in d.reasons)
    d = router.route(texts[2], step_type="plan")
    assert d.tier >= spec.step_type_min["plan"] and any(r.startswith("step_type: plan") for r in d.reasons)
    steps = [None, "search", "read", "edit", "test", "verify", "plan"]
    doms = [None, "legal", "medical", "security", ["security", "medical"], "cooking"]
    for i in range(40):
        st, dom = steps[rng.integers(len(steps))], doms[rng.integers(len(doms))]
        mt = None if rng.random() < 0.5 else int(rng.integers(1, spec.n_tiers + 1))
        bud = None if rng.random() < 0.5 else float(rng.choice([0.0, 0.01, 0.3, 5.0]))
        d = router.route(texts[i], step_type=st, domain=dom, min_tier=mt, budget=bud)
        dl = [dom] if isinstance(dom, str) else (dom or [])
        need = spec.min_tier(dl, st)
        if mt:
            need = max(need, mt)
        assert d.min_tier >= need and d.tier >= need, (st, dom, mt, bud, d)


def test_budget_requests_use_the_budget_policy(router, texts):
    for t in texts[:10]:
        d0 = router.route(t, budget=0.0)  # nothing fits: the cheapest allowed tier
        allowed = list(range(d0.min_tier - 1, router.spec.n_tiers))
        assert d0.policy == "budget" and d0.tier - 1 == min(allowed, key=lambda i: d0.expected_cost[i])
        big = router.route(t, budget=1e6)  # everything fits: the most likely allowed tier
        assert big.tier - 1 == max(allowed, key=lambda i: (big.probs[i], -i))
        mid = float(np.median(d0.expected_cost))
        d = router.route(t, budget=mid)
        fits = [i for i in allowed if d.expected_cost[i] <= mid]
        if fits:
            assert d.tier - 1 == max(fits, key=lambda i: (d.probs[i], -i))
            assert any(r.startswith(f"budget ${mid:.4g}: highest") for r in d.reasons)


@pytest.mark.parametrize("kwargs, match", [
    ({"prompt": ""}, "empty"),
    ({"prompt": "  \n\t "}, "empty"),
    ({"prompt": None}, "string"),
    ({"prompt": 42}, "string"),
    ({"prompt": "ok", "step_type": "dance"}, "step_type"),
    ({"prompt": "ok", "budget": -0.5}, "budget"),
    ({"prompt": "ok", "budget": float("nan")}, "budget"),
    ({"prompt": "ok", "budget": "cheap"}, "budget"),
    ({"prompt": "ok", "min_tier": 0}, "min_tier"),
    ({"prompt": "ok", "min_tier": 6}, "min_tier"),
    ({"prompt": "ok", "min_tier": True}, "min_tier"),
    ({"prompt": "ok", "domain": 7}, "domain"),
])
def test_bad_input_is_refused_with_a_readable_error(router, kwargs, match):
    prompt = kwargs.pop("prompt")
    with pytest.raises(RoutingInputError, match=match):
        router.route(prompt, **kwargs)


def test_bad_batch_input_names_the_position(router):
    with pytest.raises(RoutingInputError, match="prompt 2: prompt is empty"):
        router.route_batch(["a", "b", " ", "d"])
    with pytest.raises(RoutingInputError, match="one entry per prompt"):
        router.route_batch(["a", "b"], step_types=["edit"])
    with pytest.raises(RoutingInputError, match="list of strings"):
        router.route_batch("a single string")
    assert router.route_batch([]) == []


# --- escalation ------------------------------------------------------------------------------------------------


def test_escalate_uses_the_verifier_on_real_traces(tiny_bundle, swebench):
    from aco_bert.decision.verifier import trace_arrays
    from aco_bert.signals.handcrafted import featurize

    router = Router.load(tiny_bundle, threads=1)
    m = swebench.matrix(router.spec.models)
    tr = trace_arrays(m)
    v = router.layer.verifier
    assert v is not None and router.layer.cascade.accept == router.config["routing"]["cascade"]["accept"]
    runs = [(i, t) for i in range(200, 212) for t in range(router.spec.n_tiers)]
    sig = {(i, t): {"api_calls": float(tr["api_calls"][i, t]), "cost": float(tr["cost"][i, t])} for i, t in runs}
    scores = {}
    for i, t in runs:  # the runtime's score is the verifier's P(success | features, trace, prior)
        e = router.escalate(m.prompts[i], t + 1, sig[i, t])
        assert isinstance(e, Escalation) and e.tier_run == t + 1
        prior = router.route(m.prompts[i]).probs[t]
        want = v.predict_runs(np.array([t]), {k: np.array([x]) for k, x in sig[i, t].items()},
                              featurize([m.prompts[i]]), np.array([prior]))[0]
        assert e.p_success == pytest.approx(float(want), abs=1e-6)
        scores[i, t] = e.p_success
    # accept/escalate follows the accept threshold; set it mid-way so both branches run on these real traces
    router.layer.cascade.accept = accept = float(np.median(list(scores.values())))
    seen = set()
    for i, t in runs:
        e = router.escalate(m.prompts[i], t + 1, sig[i, t])
        if t == router.spec.n_tiers - 1 or e.p_success >= accept:
            assert e.accept and e.next_tier is None
        else:
            assert not e.accept and e.next_tier > t + 1 and e.next_model == router.spec.models[e.next_tier - 1]
            d = router.route(m.prompts[i])
            assert e.next_tier >= d.min_tier
        seen.add(e.accept)
    assert seen == {True, False}


def test_escalate_refuses_bad_input(router):
    with pytest.raises(RoutingInputError, match="tier_run"):
        router.escalate("fix it", 0, {})
    with pytest.raises(RoutingInputError, match="tier_run"):
        router.escalate("fix it", router.spec.n_tiers + 1, {})
    with pytest.raises(RoutingInputError, match="api_calls"):
        router.escalate("fix it", 1, {"api_calls": -3})
    with pytest.raises(RoutingInputError, match="empty"):
        router.escalate("", 1, {})
    e = router.escalate("fix it", 1, {})  # unknown signals are missing values, not errors
    assert isinstance(e.p_success, float)


def test_heads_mode_escalates_on_the_prior_and_says_so(heads_router):
    e = heads_router.escalate("fix the crash", 2, {"api_calls": 10})
    assert any("no verifier" in r for r in e.reasons)
    assert e.p_success == pytest.approx(heads_router.route("fix the crash").probs[1])


# --- the two modes -------------------------------------------------------------------------------------------


def _dmatrix_predictions(layer, out, feats):
    """Stacker / cost model / verifier predictions as the models computed them before the numpy trees: XGBoost's
    own ``Booster.predict`` on a DMatrix of the models' design matrices (the reference)."""
    import xgboost as xgb

    from aco_bert.decision.cost_model import EPS
    from aco_bert.decision.cost_model import design_matrix as cost_design
    from aco_bert.decision.stacker import StackInputs, design_matrix

    st, cm, v = layer.stacker, layer.cost_model, layer.verifier
    d = xgb.DMatrix(design_matrix(StackInputs(logits=out["logits"], embeddings=out["pooled"], features=feats),
                                  st.cfg, st.pca))
    stack = np.empty((len(feats), st.n_tiers))
    for t, b in enumerate(st.boosters):
        stack[:, t] = st.base_rate[t] if b is None else b.predict(d)
    cl = cm.layout
    d = xgb.DMatrix(cost_design(feats if cl["features"] else None, out["pooled"] if cl["pca"] else None,
                                layer.cost_heads(out) if cl["heads"] else None, cm.pca))
    cost = np.tile(cm.mean, (len(feats), 1)).astype(float)
    for t, b in enumerate(cm.boosters):
        if b is not None:
            cost[:, t] = np.maximum(np.exp(b.predict(d)) * cm.smear[t] - EPS, 0.0)
    tiers = np.arange(len(feats)) % st.n_tiers
    traces = {"api_calls": np.linspace(0, 90, len(feats)), "cost": np.linspace(0.01, 2, len(feats))}
    rows = v.design_matrix(tiers, traces, feats, stack[np.arange(len(feats)), tiers])
    return stack, cost, (tiers, traces, v.booster.predict(xgb.DMatrix(rows)))


def test_fast_tree_path_equals_the_library_predictions(router, texts, tiny_bundle, monkeypatch):
    """The runtime calls the models' own predict; those evaluate the trees in numpy (TreeEnsemble), within float
    rounding of XGBoost's DMatrix predictions, and with the numpy trees off they give XGBoost's numbers exactly."""
    from aco_bert.signals.handcrafted import featurize
    from aco_bert.decision.stacker import StackInputs

    enc, out = router.infer(texts[:20])
    feats = featurize(texts[:20])
    lay = router.layer
    assert all(m.fast_trees() is not None for m in (lay.stacker, lay.cost_model, lay.verifier))
    got = lay.stacker.predict(StackInputs(logits=out["logits"], embeddings=out["pooled"], features=feats))
    np.testing.assert_array_equal(lay.raw_scores(out, feats), got)  # the runtime's scores are Stacker.predict's
    cm, cl = lay.cost_model, lay.cost_model.layout
    assert cl["heads"] == 5  # the stacking stage feeds the neural cost heads (USD) to the cost model
    got_cost = cm.predict(n=20, features=feats if cl["features"] else None,
                          embeddings=out["pooled"] if cl["pca"] else None,
                          heads=np.clip(np.expm1(out["cost"].astype(float)), 0, None))
    np.testing.assert_array_equal(lay.expected_cost(out, feats), got_cost)
    stack, cost, (tiers, traces, ver) = _dmatrix_predictions(lay, out, feats)
    prior = stack[np.arange(20), tiers]
    np.testing.assert_allclose(got, stack, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_cost, cost, rtol=1e-5)
    np.testing.assert_allclose(lay.verifier.predict_runs(tiers, traces, feats, prior), ver, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(got, stack)  # really two code paths (float64 trees vs XGBoost's float32)
    monkeypatch.setenv("ACO_BERT_NO_FAST_TREES", "1")
    slow = Router.load(tiny_bundle, threads=1).layer
    assert all(m.fast_trees() is None for m in (slow.stacker, slow.cost_model, slow.verifier))
    np.testing.assert_array_equal(slow.raw_scores(out, feats), stack)
    np.testing.assert_array_equal(slow.expected_cost(out, feats), cost)
    np.testing.assert_array_equal(slow.verifier.predict_runs(tiers, traces, feats, prior), ver)


def test_a_stacker_that_does_not_fit_the_model_is_a_bundle_error(router, texts):
    from aco_bert.signals.handcrafted import featurize

    _, out = router.infer(texts[:2])
    bad = dict(out, logits=out["logits"][:, :3])
    with pytest.raises(BundleError, match=r"stacker expects logits of width 5.*the model gives logits \(2, 3\)"):
        router.layer.raw_scores(bad, featurize(texts[:2]))


def test_heads_mode_is_calibrated_head_sigmoid_and_mean_cost(heads_router, tiny_heads_bundle, texts, swebench):
    from aco_bert.decision.calibration import IsotonicCalibrator

    r = heads_router
    assert r.mode == "heads" and r.layer.stacker is None and not (tiny_heads_bundle / B.STACKER_DIR).exists()
    enc, out = r.infer(texts[:20])
    cal = IsotonicCalibrator.load(tiny_heads_bundle / B.CALIBRATORS)
    want = cal.transform(1.0 / (1.0 + np.exp(-out["logits"].astype(float))))
    ds = r.route_batch(texts[:20])
    np.testing.assert_allclose([d.probs for d in ds], want, atol=1e-6)
    run = json.loads((tiny_heads_bundle / B.MANIFEST).read_text())["source"]["model_dir"]
    pids = json.loads((Path(run).parent / "oof_meta.json").read_text())["prompt_ids"]
    m = swebench.matrix(r.spec.models)
    rows = [m.prompt_ids.index(p) for p in pids]
    np.testing.assert_allclose(ds[0].expected_cost, np.nanmean(m.cost[rows], axis=0), rtol=1e-9)
    assert all(d.expected_cost == ds[0].expected_cost for d in ds)


def test_int8_is_used_when_present_and_fp32_on_request(tiny_bundle, texts):
    r8 = Router.load(tiny_bundle, threads=1)
    r32 = Router.load(tiny_bundle, int8=False, threads=1)
    assert r8.int8 and not r32.int8
    _, o8 = r8.infer(texts[:30])
    _, o32 = r32.infer(texts[:30])
    dp = np.abs(1 / (1 + np.exp(-o8["logits"])) - 1 / (1 + np.exp(-o32["logits"]))).max()
    assert 0 < dp <= 0.03  # really a different (quantised) model, within the export gate


# --- bundle verification ---------------------------------------------------------------------------------------


def test_tampered_file_is_refused_on_load(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    y = b / B.ROUTER_YAML
    y.write_text(y.read_text().replace("tau:", "tau: 0.01 #", 1))  # a hand-edited threshold
    with pytest.raises(BundleError, match="router.yaml: (sha256 mismatch|size)"):
        Router.load(b)
    Router.load(b, verify=False)  # verification is what caught it


def test_same_size_corruption_is_caught_by_sha256(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    f = b / B.MODEL_INT8
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.int8\.onnx: sha256 mismatch"):
        Router.load(b)


def test_missing_unlisted_and_unmanifested_files_are_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    (b / B.TOKENIZER_DIR / "vocab.txt").unlink()
    with pytest.raises(BundleError, match="tokenizer/vocab.txt: missing"):
        Router.load(b)
    b2 = tmp_path / "b2"
    shutil.copytree(tiny_bundle, b2)
    (b2 / "stacker" / "extra.json").write_text("{}")
    with pytest.raises(BundleError, match="not in the manifest"):
        Router.load(b2)
    (b2 / "stacker" / "extra.json").unlink()
    (b2 / B.MANIFEST).unlink()
    with pytest.raises(BundleError, match="missing manifest.json"):
        Router.load(b2)
    with pytest.raises(BundleError, match="not a directory"):
        Router.load(tmp_path / "nope")


def test_a_bad_routing_section_is_a_bundle_error_naming_the_file(tiny_bundle, tmp_path):
    import yaml

    b = _copy(tiny_bundle, tmp_path)
    y = b / B.ROUTER_YAML
    config = yaml.safe_load(y.read_text())
    for bad, match in [({"policy": "cheapest"}, "unknown routing policy 'cheapest'"),
                       ({"cascade": {"accept": 3}}, r"\.cascade: cascade\.accept 3\.0 not in"),
                       ({"mode": "stacked", "per_step": {"edit": {"policy": "utility"}}}, "needs lam")]:
        y.write_text(yaml.safe_dump({**config, "routing": {**config["routing"], **bad}}))
        with pytest.raises(BundleError, match=re.escape(f"{b / B.ROUTER_YAML}:routing") + ".*" + match):
            Router.load(b, verify=False)


def test_model_card_hook_keeps_the_bundle_verifiable(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    B.write_model_card(b, text="# Router card\n\nGenerated.\n")
    assert B.verify_bundle(b)["files"][B.MODEL_CARD]["bytes"] == len("# Router card\n\nGenerated.\n")
    (b / B.MODEL_CARD).write_text("# edited by hand\n")
    with pytest.raises(BundleError, match="model_card.md"):
        B.verify_bundle(b)


def test_tree_ensemble_matches_xgboost_on_missing_values_and_exact_thresholds(router):
    from aco_bert.decision.trees import TreeEnsemble

    boosters = [b for b in router.layer.stacker.boosters if b is not None]
    te = TreeEnsemble(boosters, boosters[0].num_features())
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, te.n_features)).astype(np.float32) * 3
    x[rng.random(x.shape) < 0.2] = np.nan
    inner = te.left != np.arange(len(te.left))
    x[:50, te.feat[inner]] = te.thr[inner]  # exactly at split thresholds: XGBoost sends x == t right
    want = np.stack([b.inplace_predict(x) for b in boosters], axis=1)
    np.testing.assert_allclose(te.predict(x), want, atol=1e-6)
