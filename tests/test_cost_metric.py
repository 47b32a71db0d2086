"""``cost_metric: share`` (RouteLLM's strong-call share) on real RouterBench outcomes: the 0/1 cost replaces USD
before any policy is chosen, always-frontier costs exactly 1, every cost lies in [0, 1], and the markdown says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.data.registry import load_outcomes
from aco_bert.evaluation.replay import evaluate_policies

WEAK, STRONG = "mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def rb(data_dir):
    return load_outcomes("routerbench", data_dir=data_dir).matrix([WEAK, STRONG])


def test_share_metric_on_two_routerbench_tiers(rb):
    usd = evaluate_policies(rb, [WEAK, STRONG])
    rep = evaluate_policies(rb, [WEAK, STRONG], cost_metric="share")
    assert rep.frontier == STRONG and rep.cost_metric == "share"
    costs = [p.cost_per_task for p in rep.policies] + [pt.cost_per_task for c in rep.curves.values()
                                                       for pt in c.points]
    assert all(0.0 <= c <= 1.0 for c in costs)
    assert rep.get("always-frontier").cost_per_task == 1.0 and rep.get(f"always-{WEAK}").cost_per_task == 0.0
    # share of strong calls = the fraction of prompts routed to the strong tier, for every policy
    for p in rep.policies:
        if p.tiers is not None:
            assert p.cost_per_task == pytest.approx(np.mean(p.tiers == 1))
    # same decisions for the fixed/oracle rows' successes; only the cost axis changed
    assert rep.get("oracle").success == pytest.approx(usd.get("oracle").success)
    m = rep.metrics["zero-router"]
    assert 0.0 <= m["cpt_50"] <= 1.0 and m["cpt_50"] == pytest.approx(0.5, abs=0.01)  # the hull: a straight mix
    md = rep.markdown()
    assert "| Policy | Success | Strong-call share |" in md and "CPT(80%)" in md and "$" not in md
    assert rep.to_dict()["cost_metric"] == "share"


def test_evaluate_verb_share(data_dir, tmp_path, capsys):
    from aco_bert.evaluate import main

    out = tmp_path / "r.json"
    assert main(["--dataset", "routerbench", "--data_dir", str(data_dir), "--models", f"{WEAK},{STRONG}",
                 "--cost_metric", "share", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "strong-call share" in text
    d = json.loads(out.read_text())
    assert d["cost_metric"] == "share"
    rows = {p["name"]: p for p in d["policies"]}
    assert rows["always-frontier"]["cost_per_task"] == 1.0
    assert main(["--dataset", "routerbench", "--cost_metric", "tokens"]) != 0
    assert "cost_metric must be one of ['usd', 'share']" in capsys.readouterr().err


def test_nested_report_share_metric_and_cpt_rows(data_dir, tmp_path):
    from aco_bert.decision.cost_model import CostModelConfig
    from aco_bert.decision.stacker import StackerConfig
    from aco_bert.evaluation.bootstrap import BootstrapConfig
    from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval

    cfg = RouterEvalConfig(dataset="swebench-verified", spec="swebench-verified-5tier", data_dir=str(data_dir),
                           max_prompts=60, k_outer=2, k_inner=2, tfidf=False, peers=[], cascade=False,
                           cost_metric="share", out_dir=str(tmp_path), bootstrap=BootstrapConfig(n_boot=0),
                           stacker=StackerConfig(n_rounds=5, nthread=1, inner_k=2, pca_dim=2),
                           cost=CostModelConfig(n_rounds=5, nthread=1))
    out = run_router_eval(cfg, log=lambda s: None)
    rows = {r["name"]: r for r in out["table"]}
    assert out["cost_metric"] == "share" and rows["always-frontier"]["cost_per_task"] == 1.0
    assert all(0.0 <= r["cost_per_task"] <= 1.0 for r in out["table"])
    md = (tmp_path / "report.md").read_text()
    assert "Cost metric: strong-call share" in md and "| Policy | Success | Strong-call share |" in md
    assert "| Curve | AIQ | APGR | CPT(50%) | CPT(80%) |" in md
    cpt = out["evaluator"]["metrics"]["oracle"]["cpt_80"]
    assert f"{cpt:.3f}" in md and 0.0 <= cpt <= 1.0
