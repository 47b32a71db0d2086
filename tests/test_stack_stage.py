"""The stack stage (python -m aco_bert.stack) on a real SWE-bench slice: it reads the run's typed contract
(run.json), fits the whole decision layer in both modes, and writes stack.json for the exporter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.artifacts.layout import ContractError, DatasetRef, RunInfo, StackInfo
from aco_bert.decision.calibration import IsotonicCalibrator
from aco_bert.decision.cost_model import CostModel, CostModelConfig
from aco_bert.decision.stage import StackStageConfig, main, run_stack
from aco_bert.decision.stacker import Stacker, StackerConfig
from aco_bert.decision.verifier import Verifier, VerifierConfig
from aco_bert.policies.config import RoutingConfig

MODELS = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]


@pytest.fixture()
def fake_run(swebench, tmp_path):
    """A k-fold-style run over 150 real prompts (logits/embeddings random, outcomes and traces real).

    As ``train`` writes it: ``oof_meta.json`` names the spec only (``t3``, a user spec shipped nowhere), and
    ``run.json`` holds the whole spec -- the stage must use the latter (it used to look the name up and fail)."""
    from safetensors.numpy import save_file

    from aco_bert.spec import RouterSpec, Tier

    m = swebench.matrix().select_models(MODELS).subset(np.arange(150))
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    save_file({"logits": rng.normal(size=(150, 3)).astype(np.float32),
               "embeddings": rng.normal(size=(150, 8)).astype(np.float32),
               "cost": np.abs(rng.normal(0.3, 0.1, (150, 3))).astype(np.float32),
               "fold": (np.arange(150) % 5).astype(np.int64)}, str(run / "oof.safetensors"))
    spec = RouterSpec("t3", [Tier(x) for x in MODELS], frontier=MODELS[-1], floors={"legal": 2})
    (run / "oof_meta.json").write_text(json.dumps({"prompt_ids": m.prompt_ids, "models": MODELS,
                                                   "dataset": "swebench-verified", "spec": "t3"}))
    RunInfo(dataset=DatasetRef.make("swebench-verified"), spec=spec.to_dict(), models=MODELS,
            prompt_ids=list(m.prompt_ids), mode="kfold", kfold=5).save(run)
    return run, m


def _cfg(run, data_dir, **kw):
    return StackStageConfig(run=str(run), data_dir=str(data_dir), k=3,
                            stacker=StackerConfig(n_rounds=15, nthread=1, inner_k=3, pca_dim=3),
                            cost=CostModelConfig(n_rounds=15, nthread=1, pca_dim=3),
                            verifier=VerifierConfig(n_rounds=15), **kw)


def test_stack_stage_writes_loadable_artifacts_and_stack_info(fake_run, data_dir):
    run, m = fake_run
    res = run_stack(_cfg(run, data_dir, policy="utility"), log=lambda s: None)
    out = run / "stack"
    st = Stacker.load(out / "stacker")
    cal = IsotonicCalibrator.load(out / "calibrators.json")
    cm = CostModel.load(out / "cost_model")
    v = Verifier.load(out / "verifier")  # SWE-bench carries api_calls: the cascade verifier is fitted
    assert st.tiers == MODELS and cal.tiers == MODELS and cm.layout["heads"] == 3 and v.tiers == MODELS
    info = StackInfo.load(out)
    assert not (out / "routing.json").exists()  # stack.json is the one routing record
    assert info.mode == "stacked" and info.run == str(run.resolve()) and info.head_models == MODELS
    assert info.prompt_ids == list(m.prompt_ids) and info.router_spec().name == "t3"
    assert info.spec["floors"] == {"legal": 2}  # the whole spec travels, not its name
    assert info.dataset.dataset == "swebench-verified" and info.dataset.data_dir == str(data_dir.resolve())
    routing = RoutingConfig.from_dict(info.routing)
    assert routing.mode == "stacked" and routing.policy == "utility" and routing.lam >= 0
    c = routing.cascade  # the knob chosen on held-out replays: the router first, then a ladder of spec models
    assert c.first == "router" and set(c.chain) <= set(MODELS) and c.chain[-1] == MODELS[-1]
    assert c.max_runs == len(c.chain) + 1 and 0 <= c.accept <= 1
    rep = json.loads((out / "stack_report.json").read_text())
    assert rep["frontier"] == MODELS[-1] and len(rep["calibration_held_out"]) == 3
    assert res["routing"] == info.routing


def test_stack_stage_target_success_is_honest_when_uncertifiable(fake_run, data_dir, tmp_path):
    run, _ = fake_run
    res = run_stack(_cfg(run, data_dir, out=str(tmp_path / "s2"), target=0.99, cascade=False), log=lambda s: None)
    r = res["routing"]
    assert r["policy"] == "target-success" and r["guaranteed"] is False and r["tau"] > 1 and r["note"]
    assert not (tmp_path / "s2" / "verifier").exists()
    res = run_stack(_cfg(run, data_dir, out=str(tmp_path / "s3"), target=0.5, cascade=False), log=lambda s: None)
    assert res["routing"]["guaranteed"] is True and res["routing"]["tau"] <= 1


def test_heads_mode_fits_isotonic_on_the_oof_heads_and_mean_cost(fake_run, data_dir, tmp_path):
    """Heads mode (the exporter used to fit this itself): isotonic maps on the out-of-fold head sigmoid, per-tier
    mean cost, tau by Learn-then-Test on cross-fitted calibrated probabilities; no stacker, no verifier."""
    from safetensors.numpy import load_file

    run, m = fake_run
    out = tmp_path / "heads"
    res = run_stack(_cfg(run, data_dir, mode="heads", out=str(out), target=0.5), log=lambda s: None)
    assert sorted(p.name for p in out.iterdir()) == ["calibrators.json", "cost_model", "stack.json",
                                                     "stack_report.json"]
    raw = 1 / (1 + np.exp(-load_file(str(run / "oof.safetensors"))["logits"].astype(float)))
    cal = IsotonicCalibrator.load(out / "calibrators.json")
    np.testing.assert_allclose(cal.transform(raw), IsotonicCalibrator.fit(raw, m.success).transform(raw))
    cm = CostModel.load(out / "cost_model")
    np.testing.assert_allclose(cm.predict(n=2), np.tile(np.nanmean(m.cost, axis=0), (2, 1)), rtol=1e-6)
    info = StackInfo.load(out)
    r = RoutingConfig.from_dict(info.routing)
    assert info.mode == r.mode == "heads" and r.policy == "target-success" and r.guaranteed is True
    assert 0 <= r.tau <= 1 and r.target == 0.5
    assert res["report"]["ltt"]["tau"] == r.tau


def test_spec_and_dataset_overrides_are_stored_whole(fake_run, data_dir, tmp_path):
    """``--spec PATH``: loaded once, then stored whole (export never looks it up again); heads mode refuses a
    spec whose tiers are not the heads'."""
    from aco_bert.spec import RouterSpec, Tier

    run, _ = fake_run
    two = RouterSpec("two", [Tier(x) for x in MODELS[1:]], frontier=MODELS[-1])
    two.save(tmp_path / "two.yaml")
    run_stack(_cfg(run, data_dir, spec=str(tmp_path / "two.yaml"), out=str(tmp_path / "s"), cascade=False),
              log=lambda s: None)
    (tmp_path / "two.yaml").unlink()
    info = StackInfo.load(tmp_path / "s")
    assert info.router_spec().models == MODELS[1:] and info.head_models == MODELS
    assert Stacker.load(tmp_path / "s" / "stacker").tiers == MODELS[1:]
    with pytest.raises(ValueError, match="heads' tiers"):
        run_stack(_cfg(run, data_dir, mode="heads", spec="swebench-verified-5tier", out=str(tmp_path / "h")),
                  log=lambda s: None)


def test_missing_run_contract_and_bad_flags_are_clear_errors(fake_run, data_dir, tmp_path, capsys):
    run, _ = fake_run
    (run / "run.json").unlink()
    with pytest.raises(ContractError, match="run.json.*aco_bert.train"):
        run_stack(_cfg(run, data_dir), log=lambda s: None)
    assert main(["--run", str(run), "--mode", "bogus"]) == 2
    assert "mode 'bogus' not in" in capsys.readouterr().err
    assert main(["--run", str(run), "--no_such_flag", "1"]) == 2


def test_stack_stage_cross_fits_signals_and_reports_every_source(fake_run, data_dir, tmp_path):
    """Stacked mode fits each listed signal out of fold (the stacker's inputs) and refits it for the bundle; the
    report holds every single source's held-out AUC and the guaranteed stack is never below its chosen source.
    A spec's metadata columns come from the dataset (a column it lacks is an error naming it)."""
    from aco_bert.signals.base import Signal
    from aco_bert.spec import RouterSpec, Tier

    run, m = fake_run
    spec = RouterSpec("t3m", [Tier(x) for x in MODELS], frontier=MODELS[-1], metadata=["repo"])
    spec.save(tmp_path / "t3m.yaml")
    out = tmp_path / "sig"
    cfg = _cfg(run, data_dir, out=str(out), spec=str(tmp_path / "t3m.yaml"), cascade=False,
               signal_options={"knn": {"k": 7}})
    res = run_stack(cfg, log=lambda s: None)
    assert sorted(p.name for p in (out / "signals").iterdir()) == ["knn", "metadata", "tfidf"]
    knn = Signal.load(out / "signals" / "knn")
    assert knn.config.k == 7 and knn.keys.shape == (150, 8)
    meta = Signal.load(out / "signals" / "metadata")
    assert meta.columns == ["repo"] and set(meta.vocab["repo"]) <= set(m.meta["repo"])
    st = Stacker.load(out / "stacker")
    assert list(st.layout["signals"]) == ["tfidf", "knn", "metadata"]
    assert st.layout["signals"]["knn"] == 6 and st.layout["signals"]["metadata"] == meta.width
    rep = res["report"]["sources_held_out"]
    for k in ("heads", "heads_mean", "tfidf", "knn", "stack", "stack_guaranteed", "per_tier_oracle"):
        assert len(rep[k]["per_tier_auc"]) == 3
    assert rep["best_single_source"] in ("heads", "heads_mean", "tfidf", "tfidf_mean", "knn", "knn_mean")
    for t, src in enumerate(rep["sources"]):
        assert rep["modes"][t] in ("stack", "source") and src in rep
        assert rep["stack_guaranteed"]["per_tier_auc"][t] >= rep[src]["per_tier_auc"][t] - 1e-9
    assert json.loads((out / "stack_report.json").read_text())["sources_held_out"]["modes"] == rep["modes"]
    bad = RouterSpec("bad", [Tier(x) for x in MODELS], metadata=["language"])
    bad.save(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match=r"declares metadata \['language'\]"):
        run_stack(_cfg(run, data_dir, out=str(tmp_path / "b"), spec=str(tmp_path / "bad.yaml"), cascade=False),
                  log=lambda s: None)
