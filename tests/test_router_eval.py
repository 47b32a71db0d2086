"""The nested report end to end on a small real slice: every row is replayed, nothing leaks, files are written."""

from __future__ import annotations

import json

import numpy as np

from aco_bert.decision.verifier import VerifierConfig
from aco_bert.decision.cost_model import CostModelConfig
from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval
from aco_bert.evaluation.selection import select_match as select, select_savings
from aco_bert.decision.stacker import StackerConfig


def test_selection_rules():
    pts = [("a", 0.70, 1.0), ("b", 0.74, 2.0), ("c", 0.75, 3.0)]
    assert select(pts, 0.73) == "b" and select(pts, 0.80) == "c"
    assert select_savings(pts, 2.5) == "b" and select_savings(pts, 0.5) == "a"


def test_nested_report_on_real_swebench_slice(data_dir, tmp_path):
    cfg = RouterEvalConfig(
        dataset="swebench-verified", spec="swebench-verified-5tier", data_dir=str(data_dir), max_prompts=100,
        k_outer=3, k_inner=2, tfidf=True, out_dir=str(tmp_path),
        cascade_taus=[0.5], cascade_accepts=[0.0, 0.6],
        stacker=StackerConfig(n_rounds=10, nthread=1, inner_k=2, pca_dim=2),
        cost=CostModelConfig(n_rounds=10, nthread=1), verifier=VerifierConfig(n_rounds=10))
    out = run_router_eval(cfg, log=lambda s: None)
    names = [r["name"] for r in out["table"]]
    for want in ("always-frontier", "zero-router", "cheapest", "oracle", "tfidf-lr utility [match]",
                 "stacked threshold [savings]", "stacked target-success (LTT)", "stacked + cascade [match]"):
        assert want in names
    rows = {r["name"]: r for r in out["table"]}
    assert rows["oracle"]["success"] >= max(r["success"] for r in out["table"])
    # the cascade pays for every run: never cheaper than its first tier alone on the same prompts
    assert rows["stacked + cascade [match]"]["cost_per_task"] >= rows["cheapest"]["cost_per_task"]
    assert out["n_prompts"] == 100 and out["n_folds"] == 3
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["table"] == json.loads(json.dumps(rep["table"]))
    for f in ("report.md", "cost_quality.png", "reliability_stacked.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert np.isfinite(out["diagnostics"]["auc"]["stacked"]["mean"])


def test_merge_holdout_oof_keeps_test_prompts_out_of_the_kfold_rows(tmp_path):
    import pytest
    from safetensors.numpy import save_file

    from aco_bert.evaluation.report import merge_holdout_oof
    from aco_bert.decision.stacker import load_oof

    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    save_file({"logits": rng.normal(size=(6, 2)).astype(np.float32), "embeddings": np.zeros((6, 3), np.float32),
               "fold": np.array([0, 1, 2, 0, 1, 2])}, str(a / "oof.safetensors"))
    (a / "oof_meta.json").write_text(json.dumps({"prompt_ids": [f"tr{i}" for i in range(6)], "models": ["x", "y"]}))
    # holdout predictions: the test rows only, in the order of test_meta's prompt ids (index = matrix rows)
    save_file({"logits": rng.normal(size=(2, 2)).astype(np.float32), "embeddings": np.ones((2, 3), np.float32),
               "index": np.array([7, 9])}, str(b / "test_predictions.safetensors"))
    (b / "test_meta.json").write_text(json.dumps({"prompt_ids": ["te0", "te1"], "models": ["x", "y"]}))
    out = merge_holdout_oof(a, b, tmp_path / "m")
    inp, meta, _ = load_oof(out, ["te1", "tr0", "te0"])
    assert inp.fold.tolist() == [3, 0, 3] and meta["test_fold"] == 3
    assert (inp.embeddings[[0, 2]] == 1).all() and (inp.embeddings[1] == 0).all()
    (b / "test_meta.json").write_text(json.dumps({"prompt_ids": ["tr0", "te1"], "models": ["x", "y"]}))
    with pytest.raises(ValueError, match="test prompts are in the k-fold"):
        merge_holdout_oof(a, b, tmp_path / "m2", max_overlap=0)
    out = merge_holdout_oof(a, b, tmp_path / "m3")  # a prompt in both: its k-fold row is dropped, counted
    inp, meta, _ = load_oof(out, ["tr0", "tr1"])
    assert inp.fold.tolist() == [3, 1] and meta["dropped_from_kfold"] == ["tr0"]
