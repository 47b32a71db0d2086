"""The nested report end to end on a small real slice: every row is replayed, nothing leaks, files are written;
a neural run is judged on exactly its own prompts; the `aco-bert report` verb."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.decision.verifier import VerifierConfig
from aco_bert.decision.cost_model import CostModelConfig
from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval
from aco_bert.evaluation.report_inputs import load_report_data, restrict_to
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
    # report.json's per-source summary: tfidf-lr is the one peer without a neural run (the embedding peers are
    # skipped, and say so); the cascade is a curve of the stacked source
    assert rep["peers"] == ["tfidf-lr"] and len(rep["peer_notes"]) == 3
    assert set(rep["per_source"]) == set(rep["sources"]) == {"tfidf-lr", "stacked"}
    assert set(rep["per_source"]["stacked"]["curves"]) == {"threshold", "utility", "cascade"}
    assert rep["per_source"]["stacked"]["selected"]["cascade [match]"]["success"] == rows["stacked + cascade [match]"][
        "success"]
    assert rep["hull_aiq"] == rep["evaluator"]["metrics"]["zero-router"]["aiq"] < rep["oracle_aiq"]
    md = (tmp_path / "report.md").read_text()
    assert "| tfidf-lr (peer) | threshold |" in md and "| stacked | cascade |" in md
    # the stacked source is the stage's stacker: it reads the TF-IDF signal (kNN needs a neural run's embeddings)
    assert out["diagnostics"]["stacker"]["signals"] == ["tfidf"] and len(out["diagnostics"]["stacker"]["sources"]) == 3
    gap = rep["per_source"]["stacked"]["curves"]["utility"]["aiq_vs_hull"]
    assert gap["diff"] == pytest.approx(rep["per_source"]["stacked"]["curves"]["utility"]["aiq"] - rep["hull_aiq"])
    assert gap["lo"] <= gap["diff"] <= gap["hi"] and "AIQ - hull [95 % CI]" in md
    assert set(rep["aiq_ci"]) >= {"stacked utility - tfidf-lr utility", "tfidf-lr threshold - zero-router"}


def test_merge_holdout_oof_keeps_test_prompts_out_of_the_kfold_rows(tmp_path):
    from safetensors.numpy import save_file

    from aco_bert.evaluation.oof_merge import merge_holdout_oof
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


def test_report_of_a_max_prompts_run_uses_exactly_the_runs_prompts(data_dir, tmp_path, capsys):
    """Regression: `train --max_prompts 48` then `report --max_prompts 48 --oof_run RUN` drew other prompts than
    train did and failed with "N prompts have no out-of-fold row"; now the run's record (run.json) decides."""
    from aco_bert.artifacts.layout import RunInfo
    from aco_bert.report import main
    from aco_bert.testing import REPO, train_test_run

    run = train_test_run(tmp_path / "run", data_dir, kfold=3, max_prompts=48, final_fit=False, num_epochs=1)
    info = RunInfo.load(run)
    assert len(info.prompt_ids) == 48
    # the prompts, their order and the whole spec come from the run; dataset and spec need not be repeated
    data = load_report_data(None, None, str(data_dir), str(run), 48, seed=0, log=lambda s: None)
    assert data.matrix.prompt_ids == info.prompt_ids and data.spec.to_dict() == info.spec
    assert data.dataset == "swebench-verified"
    sub = load_report_data(None, None, str(data_dir), str(run), 20, seed=0, log=lambda s: None)
    assert sub.matrix.n_prompts == 20 and set(sub.matrix.prompt_ids) <= set(info.prompt_ids)
    hull3 = REPO / "configs" / "specs" / "swebench-verified-hull3.yaml"  # --spec (a path here) overrides the run's
    other = load_report_data(None, str(hull3), str(data_dir), str(run), None, seed=0, log=lambda s: None)
    assert other.spec.name == "swebench-verified-hull3" and other.matrix.prompt_ids == info.prompt_ids
    with pytest.raises(ValueError, match="1 of its 49 prompts are not in the outcome data"):
        restrict_to(data.matrix, info.prompt_ids + ["no-such-prompt"], "run X")

    # the verb (flags generated from RouterEvalConfig): markdown on stdout, --json written
    js = tmp_path / "rep.json"
    assert main(["--data-dir", str(data_dir), "--oof_run", str(run), "--max_prompts", "48", "--k_inner", "2",
                 "--tfidf", "false", "--cascade", "false", "--json", str(js),
                 "--stacker", "{n_rounds: 10, nthread: 1, inner_k: 2, pca_dim: 2}",
                 "--cost", "{n_rounds: 10, nthread: 1}"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## swebench-verified / ") and f"wrote {js}" in printed
    rep = json.loads(js.read_text())
    assert rep["n_prompts"] == 48 and rep["n_folds"] == 3 and "neural-heads" in rep["sources"]
    assert rep["spec"] == info.spec["name"] and rep["neural_run"]["dir"] == str(run)
    assert rep["markdown"] in printed
    # the peers run on the run's embeddings; report.json has, per source and curve, AUC and the curve metrics
    assert rep["peers"] == ["knn", "mlp", "mf"] and rep["sources"][:3] == ["knn", "mlp", "mf"]
    assert isinstance(rep["hull_aiq"], float) and isinstance(rep["oracle_aiq"], float)
    for src in rep["sources"]:
        per = rep["per_source"][src]
        assert per["auc"] == rep["diagnostics"]["auc"][src]["mean"]
        assert per["kind"] == ("peer" if src in rep["peers"] else "router")
        for fam in ("threshold", "utility"):
            c = per["curves"][fam]
            assert set(c) >= {"auc", "aiq", "apgr", "cpt50", "cpt80"} and c["auc"] == per["auc"]
            assert c["aiq"] == rep["evaluator"]["metrics"][f"{src} {fam}"]["aiq"]
            assert 0 <= c["aiq"] <= rep["oracle_aiq"] + 1e-9
        assert set(per["selected"]) >= {"threshold [match]", "utility [savings]"}
    assert "| knn (peer) | utility |" in printed


def test_report_verb_rejects_bad_flags(capsys):
    from aco_bert.report import main

    assert main(["--k_outer", "three"]) == 2
    assert "aco-bert report" in capsys.readouterr().err


def test_missing_outcomes_are_excluded_in_replay_and_in_the_report_rows():
    """One realised rule: an unknown outcome is left out of success (and of cost), never counted as a failure --
    in replay's PolicyResult, in the training-side selection (`realised`) and in the cascade rows the report
    builds from per-prompt outcomes."""
    import pandas as pd

    from aco_bert.data.schema import OutcomeMatrix
    from aco_bert.evaluation.metrics.core import realised
    from aco_bert.evaluation.replay import PolicyResult, replay

    s = np.array([[1.0, 1.0], [np.nan, 0.0], [0.0, 1.0], [1.0, np.nan]])
    c = np.array([[0.1, 1.0], [0.2, 1.0], [0.3, 1.0], [0.4, 1.0]])
    m = OutcomeMatrix(prompt_ids=[f"p{i}" for i in range(4)], prompts=[f"t{i}" for i in range(4)], models=["a", "b"],
                      success=s, cost=c, traces={}, meta=pd.DataFrame({"prompt_id": [f"p{i}" for i in range(4)]}))
    tiers = np.zeros(4, dtype=int)
    r = replay(m, tiers, m.models)
    assert (r.success, r.cost_per_task, r.n, r.n_missing) == (pytest.approx(2 / 3), pytest.approx(0.8 / 3), 3, 1)
    assert realised(tiers, s, c) == (r.success, r.cost_per_task)
    row = PolicyResult.from_outcomes("cascade", s[:, 0], c[:, 0], kind="learned", frontier_cost=1.0)
    assert (row.success, row.cost_per_task, row.n_missing) == (r.success, r.cost_per_task, 1)
    assert row.savings_vs_frontier == pytest.approx(1 - 0.8 / 3)
