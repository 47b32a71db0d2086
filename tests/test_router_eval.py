"""The nested report end to end on a small real slice: every row is replayed, nothing leaks, files are written."""

from __future__ import annotations

import json

import numpy as np

from aco_bert.cascade import VerifierConfig
from aco_bert.cost_model import CostModelConfig
from aco_bert.router_eval import RouterEvalConfig, run_router_eval, select, select_savings
from aco_bert.stacking import StackerConfig


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
