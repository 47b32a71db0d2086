"""The stacking stage (python -m aco_bert.stack) on a real SWE-bench slice: artifacts load, knobs are chosen."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.decision.calibration import IsotonicCalibrator
from aco_bert.decision.verifier import Verifier
from aco_bert.decision.cost_model import CostModel, CostModelConfig
from aco_bert.decision.stage import StackStageConfig, run_stack
from aco_bert.decision.stacker import StackerConfig, Stacker
from aco_bert.decision.verifier import VerifierConfig

MODELS = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]


@pytest.fixture()
def fake_run(swebench, tmp_path):
    """A k-fold-style run over 150 real prompts (logits/embeddings random, outcomes and traces real)."""
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
    spec.save(tmp_path / "spec.yaml")
    (run / "oof_meta.json").write_text(json.dumps({"prompt_ids": m.prompt_ids, "models": MODELS,
                                                   "dataset": "swebench-verified", "spec": str(tmp_path / "spec.yaml")}))
    return run, m


def _cfg(run, data_dir, **kw):
    return StackStageConfig(run=str(run), data_dir=str(data_dir), k=3,
                            stacker=StackerConfig(n_rounds=15, nthread=1, inner_k=3, pca_dim=3),
                            cost=CostModelConfig(n_rounds=15, nthread=1, pca_dim=3),
                            verifier=VerifierConfig(n_rounds=15), **kw)


def test_stack_stage_writes_loadable_artifacts(fake_run, data_dir):
    run, m = fake_run
    res = run_stack(_cfg(run, data_dir, policy="utility"), log=lambda s: None)
    out = run / "stack"
    st = Stacker.load(out / "stacker")
    cal = IsotonicCalibrator.load(out / "calibrators.json")
    cm = CostModel.load(out / "cost_model")
    v = Verifier.load(out / "verifier")  # SWE-bench carries api_calls: the cascade verifier is fitted
    assert st.tiers == MODELS and cal.tiers == MODELS and cm.layout["heads"] == 3 and v.tiers == MODELS
    routing = json.loads((out / "routing.json").read_text())
    assert routing["policy"] == "utility" and routing["lam"] >= 0 and 0 <= routing["cascade"]["accept"] <= 1
    from aco_bert.runtime.router import make_policy

    assert make_policy(routing).name == "utility"
    rep = json.loads((out / "stack_report.json").read_text())
    assert rep["frontier"] == MODELS[-1] and len(rep["calibration_held_out"]) == 3
    assert res["routing"] == routing


def test_stack_stage_target_success_is_honest_when_uncertifiable(fake_run, data_dir, tmp_path):
    run, _ = fake_run
    res = run_stack(_cfg(run, data_dir, out=str(tmp_path / "s2"), target=0.99, cascade=False), log=lambda s: None)
    r = res["routing"]
    assert r["policy"] == "target-success" and r["guaranteed"] is False and r["tau"] > 1 and "note" in r
    assert not (tmp_path / "s2" / "verifier").exists()
    res = run_stack(_cfg(run, data_dir, out=str(tmp_path / "s3"), target=0.5, cascade=False), log=lambda s: None)
    assert res["routing"]["guaranteed"] is True and res["routing"]["tau"] <= 1
