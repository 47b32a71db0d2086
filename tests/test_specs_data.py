"""The shipped router specs against the data they describe: tiers exist, order and Pareto choices hold when
recomputed here, and every listed price equals the source table's entry named in the YAML comment."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from aco_bert.data.registry import DATASETS, load_outcomes
from aco_bert.spec import SPECS_DIR, RouterSpec

SHIPPED = ("swebench-verified-all", "swebench-verified-5tier", "routerbench", "bfcl", "dcrouter")


@pytest.fixture(scope="module")
def matrices(data_dir):
    return {d: load_outcomes(d, data_dir=data_dir).matrix() for d in ("swebench-verified", "routerbench", "bfcl",
                                                                       "dcrouter")}


def _means(m):
    cost = {t: float(np.nanmean(m.cost[:, j])) if np.isfinite(m.cost[:, j]).any() else np.inf
            for j, t in enumerate(m.models)}
    succ = {t: float(np.nanmean(m.success[:, j])) for j, t in enumerate(m.models)}
    return cost, succ


def _pareto(cost, succ):
    """Models no other model beats on both mean cost (<=) and success (>=, one strictly)."""
    ok = [t for t in cost if np.isfinite(cost[t])]
    return {t for t in ok if not any(cost[u] <= cost[t] and succ[u] >= succ[t]
                                     and (cost[u], succ[u]) != (cost[t], succ[t]) for u in ok)}


@pytest.mark.parametrize("name", SHIPPED)
def test_spec_tiers_exist_and_are_cheapest_first(name, matrices):
    spec = RouterSpec.load(name)
    assert spec.name == name and spec.dataset in DATASETS
    m = matrices[spec.dataset]
    assert set(spec.models) <= set(m.models)
    cost, succ = _means(m)
    costs = [cost[t] for t in spec.models]
    assert costs == sorted(costs)
    assert spec.frontier in spec.models
    assert spec.floors and all(1 <= v <= spec.n_tiers for v in spec.floors.values())


def test_swebench_specs(matrices, data_dir):
    m = matrices["swebench-verified"]
    cost, succ = _means(m)
    every = RouterSpec.load("swebench-verified-all")
    assert len(every.models) == 24 and set(every.models) == set(m.models)
    assert every.frontier == "Claude 4.5 Opus medium (20251101)"
    five = RouterSpec.load("swebench-verified-5tier")
    assert set(five.models) == _pareto(cost, succ) and five.n_tiers == 5
    assert five.frontier == max(five.models, key=succ.get) == "Claude 4.5 Opus medium (20251101)"
    assert five.step_type_min and all(1 <= v <= 5 for v in five.step_type_min.values())


def test_bfcl_spec_is_pareto_of_priced_configs(matrices):
    cost, succ = _means(matrices["bfcl"])
    spec = RouterSpec.load("bfcl")
    assert set(spec.models) == _pareto(cost, succ)
    assert spec.frontier == max(spec.models, key=succ.get)


def test_benchmark_candidate_sets(matrices):
    for name in ("routerbench", "dcrouter"):
        spec = RouterSpec.load(name)
        assert set(spec.models) == set(matrices[name].models)
        _, succ = _means(matrices[name])
        assert spec.frontier == max(spec.models, key=succ.get)


def test_prices_match_their_source(data_dir):
    litellm = json.loads((data_dir / "prices" / "litellm_model_prices.json").read_text())
    dc = json.loads((data_dir / "dcrouter" / "default_llm.json").read_text())
    checked = 0
    for name in SHIPPED:
        spec = RouterSpec.load(name)
        text = (SPECS_DIR / f"{name}.yaml").read_text()
        for tier in spec.tiers:
            block = text.split(f'- model: {json.dumps(tier.model)}', 1)[1].split("- model:", 1)[0]
            key = re.search(r"LiteLLM 1\.110\.2 key (\S+)", block)
            if tier.input_price is None:
                assert "no price" in block
                continue
            if key:
                e = litellm[key.group(1)]
                want = (e["input_cost_per_token"] * 1e6, e["output_cost_per_token"] * 1e6)
            else:
                assert "default_llm.json" in block
                want = (dc[tier.model]["input_price"], dc[tier.model]["output_price"])
            assert (tier.input_price, tier.output_price) == pytest.approx(want)
            checked += 1
    assert checked >= 40
