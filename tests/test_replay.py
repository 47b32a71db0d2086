"""Offline policy evaluation on real SWE-bench outcomes (reference numbers), floors, missing outcomes, the
learned-policy hook and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from aco_bert.data.schema import OutcomeMatrix
from aco_bert.policies import FixedTier, Random, RoutingContext, Threshold, Utility
from aco_bert.evaluation.replay import (
    evaluate_policies,
    evaluate_policy,
    model_order,
    oracle_context,
    oracle_tiers,
    prior_context,
    replay,
    threshold_sweep,
    utility_sweep,
)

OPUS = "Claude 4.5 Opus medium (20251101)"
GEMINI3 = "Gemini 3 Pro Preview (2025-11-18)"
DEEPSEEK = "DeepSeek V3.2 Reasoner"


@pytest.fixture(scope="module")
def matrix(swebench) -> OutcomeMatrix:
    return swebench.matrix()


@pytest.fixture(scope="module")
def report(matrix):
    return evaluate_policies(matrix, dataset="swebench-verified")


def tiny(success, cost, meta=None) -> OutcomeMatrix:
    s, c = np.asarray(success, float), np.asarray(cost, float)
    p, m = s.shape
    return OutcomeMatrix(prompt_ids=[f"p{i}" for i in range(p)], prompts=[f"text {i}" for i in range(p)],
                         models=[f"m{j}" for j in range(m)], success=s, cost=c, traces={},
                         meta=pd.DataFrame(meta or {"prompt_id": [f"p{i}" for i in range(p)]}))


def test_swebench_reference_policies(report):
    assert report.n_prompts == 500 and len(report.models) == 24
    f = report.get("always-frontier")
    assert f.model == OPUS and f.success == pytest.approx(0.744) and f.cost_per_task == pytest.approx(0.721, abs=5e-4)
    o = report.get("oracle")
    assert o.success == pytest.approx(0.872) and 0.0753 <= o.cost_per_task <= 0.0754
    z = report.get("zero-router")
    assert z.model == GEMINI3 and z.success == pytest.approx(0.742) and z.cost_per_task == pytest.approx(0.460, abs=5e-4)
    assert z.savings_vs_frontier == pytest.approx(1 - z.cost_per_task / f.cost_per_task)
    c = report.get("cheapest")
    assert c.model == DEEPSEEK and c.cost_per_task == min(p.cost_per_task for p in report.policies if p.kind == "fixed")
    names = [p.name for p in report.policies]
    assert names[:5] == ["always-frontier", "zero-router", "cheapest", "oracle", "random"]
    assert {f"always-{m}" for m in report.models} <= set(names)
    # the zero-router hull runs cheapest -> Gemini 3 Pro -> Opus
    hx, hy = report.curves["zero-router"].hull()
    assert hy.tolist() == pytest.approx([0.6, 0.742, 0.744])


def test_replay_fixed_matches_column_means(matrix, report):
    models = report.models
    for j in (0, 7, 23):
        r = replay(matrix, np.full(matrix.n_prompts, j), models)
        col = matrix.models.index(models[j])
        assert r.success == pytest.approx(matrix.success[:, col].mean())
        assert r.cost_per_task == pytest.approx(matrix.cost[:, col].mean())
        assert r.chosen[models[j]] == 500 and sum(r.chosen.values()) == 500
    assert model_order(matrix) == models and models[0] == DEEPSEEK


def test_oracle_against_brute_force(matrix, report):
    models = report.models
    t = oracle_tiers(matrix, models)
    cols = [matrix.models.index(m) for m in models]
    for i in range(0, 500, 7):
        s, c = matrix.success[i, cols], matrix.cost[i, cols]
        best = max(s)
        want = min((c[j], j) for j in range(len(models)) if s[j] == best)[0]
        assert s[t[i]] == best and c[t[i]] == want
    # no fixed model beats the oracle
    fixed = [p for p in report.policies if p.kind == "fixed"]
    assert all(p.success <= report.get("oracle").success for p in fixed)


def test_random_is_seeded_and_uniform(matrix, report):
    models = report.models
    ctx = prior_context(matrix, models)
    a, b, c = Random(3).decide(ctx), Random(3).decide(ctx), Random(4).decide(ctx)
    assert (a == b).all() and not (a == c).all()
    mean_fixed = np.mean([p.success for p in report.policies if p.kind == "fixed"])
    assert report.get("random").success == pytest.approx(mean_fixed, abs=0.06)


def test_replay_rejects_bad_decisions(matrix, report):
    models = report.models
    with pytest.raises(ValueError, match="below their floor"):
        replay(matrix, np.zeros(500, int), models, min_tier=np.ones(500, int))
    with pytest.raises(ValueError, match="one per prompt"):
        replay(matrix, np.zeros(10, int), models)
    with pytest.raises(ValueError, match="lie in"):
        replay(matrix, np.full(500, 24), models)
    with pytest.raises(ValueError, match="not in the outcome matrix"):
        replay(matrix, np.zeros(500, int), ["no such model"])


def test_floors_respected_by_every_policy():
    rng = np.random.default_rng(0)
    s = (rng.random((200, 4)) < [0.3, 0.5, 0.7, 0.9]).astype(float)
    c = np.tile([0.01, 0.05, 0.2, 1.0], (200, 1)) * rng.uniform(0.5, 1.5, (200, 4))
    m = tiny(s, c)
    models = m.models
    floor = np.where(np.arange(200) % 3 == 0, 2, 0)
    probs = np.clip(s * 0.6 + 0.2 + rng.normal(0, 0.1, s.shape), 0, 1)
    ctx = RoutingContext(probs, c, min_tier=floor)
    pols = [FixedTier(0, name="fixed0"), Threshold(0.5), Utility(1.0), Random(1)]
    rep = evaluate_policies(m, models, ctx=ctx, policies=pols, sweeps=[threshold_sweep(), utility_sweep()],
                            decisions={"nested-cv": np.maximum(floor, 1)})
    everything = rep.policies + [p for cv in rep.curves.values() for p in cv.points]
    for r in everything:
        assert (r.tiers >= floor).all(), r.name
    # the oracle under floors: floored prompts never use tiers 0-1, even where those succeed
    o = rep.get("oracle")
    assert o.success == pytest.approx(np.mean([s[i, floor[i]:].max() for i in range(200)]))
    assert rep.get("cheapest").chosen["m0"] == int((floor == 0).sum())
    assert "floors" in rep.notes[0]
    with pytest.raises(ValueError, match="below their floor"):
        evaluate_policies(m, models, ctx=ctx, decisions={"bad": np.zeros(200, int)})


def test_missing_outcomes_are_counted_not_failures():
    s = np.array([[1.0, 1.0], [np.nan, 1.0], [0.0, 1.0], [1.0, np.nan]])
    c = np.array([[0.1, 1.0], [0.1, 1.0], [0.1, 1.0], [0.1, 1.0]])
    m = tiny(s, c)
    r = replay(m, np.zeros(4, int), m.models)
    assert (r.n, r.n_missing, r.success) == (3, 1, pytest.approx(2 / 3))
    rep = evaluate_policies(m, complete_case_only=False)  # every prompt: each policy over what its models ran
    assert rep.get("oracle").success == 1.0 and rep.get("oracle").n_missing == 0
    assert any("without an outcome" in n for n in rep.notes) and rep.zero_router_rule.startswith("all prompts")
    cc = evaluate_policies(m)  # default: the two prompts both models ran
    assert cc.n_prompts == 2 and all(p.n_missing == 0 and p.n == 2 for p in cc.policies)
    assert cc.zero_router_rule.startswith("complete-case: 2 of 4 prompts") and cc.zero_router_rule in cc.notes


def test_hook_orders_learned_curves_between_prior_and_oracle(matrix, report):
    models = report.models
    perfect, prior = oracle_context(matrix, models), prior_context(matrix, models)
    rng = np.random.default_rng(0)
    noisy = RoutingContext(np.clip(perfect.probs * 0.5 + 0.25 + rng.normal(0, 0.2, perfect.shape), 0, 1),
                           prior.exp_cost)
    rep = evaluate_policies(matrix, models, ctx=noisy,
                            sweeps=[utility_sweep("perfect", ctx=perfect), utility_sweep("prior", ctx=prior),
                                    threshold_sweep("noisy-threshold")],
                            policies=[Threshold(0.6, name="noisy@0.6")])
    aiq = {k: v["aiq"] for k, v in rep.metrics.items() if k != "range"}
    # features-free routing can only pick fixed models: never above the zero-router hull
    assert aiq["prior"] <= aiq["zero-router"] + 1e-9
    assert aiq["perfect"] > aiq["noisy-threshold"] > aiq["prior"]
    assert rep.get("noisy@0.6").kind == "learned"
    d = rep.to_dict()
    assert set(d["curves"]) == {"zero-router", "oracle", "perfect", "prior", "noisy-threshold"}
    assert len(d["curves"]["noisy-threshold"]["cost"]) == 51
    pol = evaluate_policy(matrix, models, Threshold(0.6), noisy)
    assert pol.success == rep.get("noisy@0.6").success


def test_cli_writes_table_json_and_png(data_dir, tmp_path, capsys):
    from aco_bert.evaluate import main

    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--json", str(out_json),
                 "--plot", str(out_png), "--log-x"]) == 0
    printed = capsys.readouterr().out
    assert "| Policy | Success | Cost/Task | Savings vs frontier |" in printed
    assert f"| always-frontier ({OPUS}) | 74.4 % | $0.7212 | 0.0 % |" in printed
    d = json.loads(out_json.read_text())
    names = {p["name"]: p for p in d["policies"]}
    assert {"always-frontier", "oracle", "zero-router", "cheapest", "random"} <= set(names)
    assert sum(n.startswith("always-") and n != "always-frontier" for n in names) == 24
    assert names["zero-router"]["model"] == GEMINI3
    assert d["metrics"]["range"]["strong"] == OPUS and "aiq" in d["metrics"]["zero-router"]
    assert d["curves"]["zero-router"]["hull_success"] == pytest.approx([0.6, 0.742, 0.744])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 20_000


def test_cli_spec_floors(data_dir, tmp_path):
    from aco_bert.evaluate import main
    from aco_bert.evaluation.reference import spec_min_tier

    spec = {"name": "swe3", "frontier": OPUS, "floors": {"django/django": 2},
            "tiers": [{"model": DEEPSEEK}, {"model": GEMINI3}, {"model": OPUS}]}
    path = tmp_path / "swe3.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "r.json"
    assert main(["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--spec", str(path),
                 "--models", "spec", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    pol = {p["name"]: p for p in d["policies"]}
    tasks = (data_dir / "swebench-verified" / "tasks.jsonl").read_text().splitlines()
    n_django = sum(json.loads(x)["repo"] == "django/django" for x in tasks if x.strip())
    assert 0 < n_django < 500
    assert pol["cheapest"]["chosen"] == {DEEPSEEK: 500 - n_django, GEMINI3: n_django, OPUS: 0}
    assert pol["oracle"]["chosen"][DEEPSEEK] <= 500 - n_django
    assert pol["always-frontier"]["model"] == OPUS and d["models"] == [DEEPSEEK, GEMINI3, OPUS]
    from aco_bert.data import load_outcomes
    from aco_bert.spec import RouterSpec

    m = load_outcomes("swebench-verified", data_dir=data_dir).matrix()
    mt = spec_min_tier(RouterSpec.load(path), m)
    assert (mt == 1).sum() == n_django and set(mt.tolist()) == {0, 1}


def test_cli_reports_bad_flags_in_one_line(data_dir, capsys):
    from aco_bert.evaluate import main

    assert main(["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--models", "spec"]) == 2
    assert "--models spec needs --spec" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir)]) == 2  # --dataset is required
