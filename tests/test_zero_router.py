"""The complete-case rule on a real table with holes: a model that ran only 75 % of the prompts (its failures
deleted) must not become frontier or zero router at its partial success rate; every reference and policy is
measured on the prompts every candidate ran, and the rule is printed and written to the JSON. Also ``--name``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from aco_bert.data.registry import load_outcomes
from aco_bert.evaluation.metrics.complete_case import complete_case
from aco_bert.evaluation.replay import best_within, evaluate_policies, frontier_model, replay

MODELS = ["DeepSeek V3.2 Reasoner", "GPT-5 (2025-08-07) (medium reasoning)", "Gemini 3 Pro Preview (2025-11-18)",
          "Claude 4.5 Opus medium (20251101)"]  # cheapest first
CHEAP = MODELS[0]


@pytest.fixture(scope="module")
def holes(data_dir, tmp_path_factory):
    """A user file: 4 real SWE-bench models, the cheap one's rows deleted on 125 of its failures (25 % of 500)."""
    t = load_outcomes("swebench-verified", data_dir=data_dir)
    df = t.df[t.df["model"].isin(MODELS)][["prompt_id", "prompt", "model", "success", "cost_usd"]]
    fails = np.sort(df[(df["model"] == CHEAP) & (df["success"] < 0.5)]["prompt_id"].to_numpy())
    drop = set(np.random.default_rng(0).choice(fails, 125, replace=False))
    df = df[~((df["model"] == CHEAP) & df["prompt_id"].isin(drop))]
    p = tmp_path_factory.mktemp("holes") / "outcomes.csv"
    df.to_csv(p, index=False)
    return p, drop, pd.DataFrame(df)


def test_zero_router_is_chosen_on_the_prompts_every_model_ran(holes):
    path, drop, df = holes
    m = load_outcomes(str(path)).matrix(MODELS)
    assert m.n_prompts == 500
    rep = evaluate_policies(m, MODELS)
    # the old rule (each model over its own prompts): the cheap model's 300/375 beats every full-data rate
    old = evaluate_policies(m, MODELS, complete_case_only=False)
    assert old.frontier == old.zero_router_model == CHEAP
    assert old.get("always-frontier").success == pytest.approx(0.8)
    # complete case: 375 common prompts, every fixed row over exactly them
    assert rep.n_prompts == 375 and rep.n_prompts_total == 500
    assert all(p.n == 375 and p.n_missing == 0 for p in rep.policies)
    common = [i for i, pid in enumerate(m.prompt_ids) if pid not in drop]
    sub = m.subset(common)
    fixed = {mm: replay(sub, np.full(375, t), MODELS) for t, mm in enumerate(MODELS)}
    f = frontier_model(fixed)
    assert (rep.frontier, rep.zero_router_model) == (f, best_within(fixed, f)) == (MODELS[3], MODELS[2])
    assert rep.get("zero-router").success == pytest.approx(float(np.mean(sub.success[:, 2])))
    assert rep.zero_router_rule.startswith("complete-case: 375 of 500 prompts every candidate ran")
    assert f"{CHEAP} lacks 125" in rep.zero_router_rule and rep.zero_router_rule in rep.notes
    d = rep.to_dict()
    assert d["zero_router_rule"] == rep.zero_router_rule and d["n_prompts_total"] == 500
    # the hull of fixed models is over the same prompts
    assert all(p.n == 375 for p in rep.curves["zero-router"].points)


def test_complete_case_respects_floors_and_refuses_disjoint_models():
    s = np.array([[np.nan, 1.0], [1.0, 1.0], [np.nan, np.nan]])
    cc = complete_case(s, ["a", "b"], np.array([1, 0, 0]))  # prompt 0: floor at b, so a's hole does not matter
    assert cc.keep.tolist() == [True, True, False] and cc.lacking == {"a": 1, "b": 1}
    with pytest.raises(ValueError, match="no prompt has an outcome of every candidate model"):
        complete_case(np.array([[1.0, np.nan], [np.nan, 0.0]]), ["a", "b"])


def test_evaluate_verb_reports_the_rule_and_the_name(holes, tmp_path, capsys):
    from aco_bert.evaluate import main

    path, _, _ = holes
    out = tmp_path / "r.json"
    assert main(["--dataset", str(path), "--name", "my-agents", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## my-agents: 375 prompts" in text and "note: complete-case: 375 of 500 prompts" in text
    assert "CPT(50%)" in text
    d = json.loads(out.read_text())
    assert d["dataset"] == "my-agents" and d["zero_router_rule"].startswith("complete-case: 375 of 500")
    assert d["zero_router_model"] == MODELS[2] and d["cost_metric"] == "usd"


def test_nested_report_selects_on_complete_prompts(holes, tmp_path):
    from aco_bert.decision.cost_model import CostModelConfig
    from aco_bert.decision.stacker import StackerConfig
    from aco_bert.evaluation.bootstrap import BootstrapConfig
    from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval

    path, _, _ = holes
    spec = tmp_path / "four.yaml"
    spec.write_text(yaml.safe_dump({"name": "four", "tiers": [{"model": m} for m in MODELS]}))
    cfg = RouterEvalConfig(dataset=str(path), name="my-agents", spec=str(spec), k_outer=2, k_inner=2, tfidf=False,
                           peers=[], cascade=False, out_dir=str(tmp_path), bootstrap=BootstrapConfig(n_boot=0),
                           stacker=StackerConfig(n_rounds=5, nthread=1, inner_k=2, pca_dim=2),
                           cost=CostModelConfig(n_rounds=5, nthread=1))
    out = run_router_eval(cfg, log=lambda s: None)
    assert out["dataset"] == "my-agents" and out["n_prompts"] == 375
    assert out["zero_router_rule"].startswith("complete-case: 375 of 500")
    rows = {r["name"]: r for r in out["table"]}
    assert rows["always-frontier"]["model"] == MODELS[3] and rows["zero-router"]["model"] == MODELS[2]
    assert all(r["n"] == 375 for r in out["table"])
    # training-side choices on the complete prompts too: by its partial 80 % the cheap model looked like the
    # frontier of every training fold, and the nested zero router sent every prompt to it
    assert rows["zero-router [match]"]["chosen"][CHEAP] == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("## my-agents /") and "Prompts: complete-case: 375 of 500" in md
    assert "| Curve | AIQ | APGR | CPT(50%) | CPT(80%) |" in md
    assert f"| zero-router | {out['evaluator']['metrics']['zero-router']['aiq']:.4f} |" in md
