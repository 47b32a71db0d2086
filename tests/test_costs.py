"""Cost derived from tokens or turns (aco_bert.data.costs), the price-name rules (aco_bert.data.prices), and user
tables without cost routed and reported end to end with no code (issue 15).

The user tables are real rows: BFCL's per-prompt token counts (3 models x 40 prompts) and SWE-bench Verified's
per-instance agent step counts (mini-SWE-agent ``api_calls``) as ``turns``, under the names a user would write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from aco_bert.data import load_outcomes
from aco_bert.data.costs import CostRule, derive_costs, require_costs
from aco_bert.data.prices import AmbiguousPrice, PriceNotFound, PriceTable, is_regional
from aco_bert.data.schema import DataError

BFCL_MODELS = ["gpt-4o-mini-2024-07-18", "claude-3-haiku-20240307", "open-mixtral-8x7b"]
SWE_NAMES = {"Claude 4 Sonnet (20250514)": "claude-sonnet-4-20250514",
             "GPT-5 mini (2025-08-07) (medium reasoning)": "gpt-5-mini",
             "Qwen2.5-Coder 32B Instruct": "qwen2.5-coder-32b-instruct"}
TURN_RULE = {"input_tokens_per_turn": 3000, "output_tokens_per_turn": 500}


@pytest.fixture(scope="module")
def bfcl_rows(data_dir) -> pd.DataFrame:
    """40 BFCL prompts x 3 models with their real token counts (prompts where the models disagree first)."""
    t = load_outcomes("bfcl", data_dir=data_dir)
    df = t.df[t.df["model"].isin(BFCL_MODELS)]
    spread = df.groupby("prompt_id")["success"].agg(["min", "max"])
    mixed = sorted(spread.index[spread["min"] < spread["max"]])
    ids = (mixed + sorted(set(spread.index) - set(mixed)))[:40]
    return df[df["prompt_id"].isin(ids)][["prompt_id", "prompt", "model", "success", "input_tokens",
                                          "output_tokens", "cost_usd"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory, bfcl_rows, data_dir) -> dict[str, str]:
    d = tmp_path_factory.mktemp("costs")
    out = {}
    out["tokens"] = str(d / "tokens.csv")
    bfcl_rows.drop(columns="cost_usd").to_csv(out["tokens"], index=False)
    s = load_outcomes("swebench-verified", data_dir=data_dir).df
    s = s[s["model"].isin(list(SWE_NAMES))]
    ids = sorted(s["prompt_id"].unique())[:40]
    s = s[s["prompt_id"].isin(ids)].assign(model=lambda x: x["model"].map(SWE_NAMES), turns=lambda x: x["api_calls"])
    out["turns"] = str(d / "turns.csv")
    s[["prompt_id", "prompt", "model", "success", "turns"]].to_csv(out["turns"], index=False)
    # wide: one row per prompt, <model> success and <model>|input_tokens / |output_tokens / |turns columns
    w = bfcl_rows.pivot(index="prompt_id", columns="model")
    wide = pd.DataFrame({"prompt_id": w.index, "prompt": bfcl_rows.groupby("prompt_id")["prompt"].first()[w.index]})
    for m in BFCL_MODELS:
        wide[m] = w["success"][m].to_numpy()
        wide[f"{m}|input_tokens"] = w["input_tokens"][m].to_numpy()
        wide[f"{m}|output_tokens"] = w["output_tokens"][m].to_numpy()
    out["wide"] = str(d / "wide.csv")
    wide.to_csv(out["wide"], index=False)
    spec = {"name": "bfcl-user", "tiers": [{"model": "gpt-4o-mini-2024-07-18", "input_price": 0.15, "output_price": 0.6},
                                           {"model": "claude-3-haiku-20240307", "input_price": 0.25,
                                            "output_price": 1.25},
                                           {"model": "open-mixtral-8x7b", "input_price": 0.7, "output_price": 0.7}]}
    out["spec"] = str(d / "spec.yaml")
    (d / "spec.yaml").write_text(yaml.safe_dump(spec))
    out["dir"] = str(d)
    return out


def _raw_prices(data_dir) -> dict:
    return json.loads((data_dir / "prices" / "litellm_model_prices.json").read_text())


def test_cost_from_tokens_is_tokens_times_litellm_price(files, data_dir, bfcl_rows):
    t = load_outcomes(files["tokens"], data_dir=data_dir, cost={"prices": "litellm"})
    raw = _raw_prices(data_dir)
    rec = t.extras["derived_cost"]
    for m, key in (("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
                   ("claude-3-haiku-20240307", "vertex_ai/claude-3-haiku@20240307")):
        rows = t.df[t.df["model"] == m]
        want = rows["input_tokens"] * raw[key]["input_cost_per_token"] + rows["output_tokens"] * raw[key][
            "output_cost_per_token"]
        np.testing.assert_array_equal(rows["cost_usd"].to_numpy(), want.to_numpy())
        assert rec["models"][m]["key"] == key and rec["models"][m]["rows"] == 40
    # BFCL priced these two with the same LiteLLM entries: the derived cost is the published table's cost
    got = t.df.set_index(["prompt_id", "model"])["cost_usd"]
    ref = bfcl_rows.set_index(["prompt_id", "model"])["cost_usd"]
    for m in ("gpt-4o-mini-2024-07-18", "claude-3-haiku-20240307"):
        np.testing.assert_allclose(got.xs(m, level="model").sort_index(), ref.xs(m, level="model").sort_index(),
                                   rtol=1e-12)
    # a model with tokens but no price keeps NaN and is listed, with the reason
    assert t.df[t.df["model"] == "open-mixtral-8x7b"]["cost_usd"].isna().all()
    assert "no price for 'open-mixtral-8x7b'" in rec["unpriced"]["open-mixtral-8x7b"]["reason"]
    with pytest.raises(ValueError, match=r"no cost for 1 of 3 models .*open-mixtral-8x7b.*derive it"):
        require_costs(t.matrix(BFCL_MODELS), BFCL_MODELS, "tokens", t)


def test_spec_prices_beat_litellm_and_derive_automatically(files, data_dir):
    from aco_bert.spec import RouterSpec

    spec = RouterSpec.load(files["spec"])
    auto = load_outcomes(files["tokens"], data_dir=data_dir, spec=spec)  # no rule: the spec's prices, automatically
    rule = load_outcomes(files["tokens"], data_dir=data_dir, spec=files["spec"], cost={})  # rule: spec, else LiteLLM
    for t in (auto, rule):
        for tier in spec.tiers:
            rows = t.df[t.df["model"] == tier.model]
            want = rows["input_tokens"] * (tier.input_price / 1e6) + rows["output_tokens"] * (tier.output_price / 1e6)
            np.testing.assert_array_equal(rows["cost_usd"].to_numpy(), want.to_numpy())
    assert auto.extras["derived_cost"]["auto"] and auto.extras["derived_cost"]["models"]["open-mixtral-8x7b"][
        "price_source"] == "spec bfcl-user"
    # the LiteLLM price of gpt-4o-mini equals the spec's here
    assert not load_outcomes(files["tokens"], data_dir=data_dir).extras.get("derived_cost")  # no spec, no rule
    # the wide layout: <model>|input_tokens / |output_tokens, same rows, same derived cost
    wide = load_outcomes(files["wide"], data_dir=data_dir, spec=spec, name="my-bfcl")
    assert wide.name == "my-bfcl"
    a = auto.df.set_index(["prompt_id", "model"])["cost_usd"].sort_index()
    b = wide.df.set_index(["prompt_id", "model"])["cost_usd"].sort_index()
    pd.testing.assert_series_equal(a, b)


def test_turns_rule(files, data_dir, tmp_path):
    t = load_outcomes(files["turns"], data_dir=data_dir, cost={**TURN_RULE, "price_provider": "nscale"})
    raw = _raw_prices(data_dir)
    rec = t.extras["derived_cost"]
    assert rec["turn_rule"]["input_tokens_per_turn"] == 3000 and rec["rows"] == 120
    for m in SWE_NAMES.values():
        key = rec["models"][m]["key"]
        rows = t.df[t.df["model"] == m]
        assert rows["turns"].notna().all() and rows["input_tokens"].isna().all()  # tokens are not invented
        want = (rows["turns"] * 3000) * raw[key]["input_cost_per_token"] + (rows["turns"] * 500) * raw[key][
            "output_cost_per_token"]
        np.testing.assert_array_equal(rows["cost_usd"].to_numpy(), want.to_numpy())
    assert rec["models"]["gpt-5-mini"]["key"] == "gpt-5-mini"
    assert rec["models"]["qwen2.5-coder-32b-instruct"]["key"] == "nscale/Qwen/Qwen2.5-Coder-32B-Instruct"
    # turns without a stated per-turn assumption are refused, never given a default
    with pytest.raises(DataError, match="no per-turn token assumption.*input_tokens_per_turn"):
        load_outcomes(files["turns"], data_dir=data_dir, cost={"prices": "litellm"})
    with pytest.raises(ValueError, match="give both input_tokens_per_turn and output_tokens_per_turn"):
        CostRule(input_tokens_per_turn=3000)
    # the turns column is kept as a trace without a rule (describe lists it), and another name is read by rule
    plain = load_outcomes(files["turns"], data_dir=data_dir)
    assert plain.df["turns"].notna().all() and plain.df["cost_usd"].isna().all()
    assert "turns" in plain.matrix().traces
    other = tmp_path / "steps.csv"
    pd.read_csv(files["turns"]).rename(columns={"turns": "n_steps"}).to_csv(other, index=False)
    renamed = load_outcomes(str(other), data_dir=data_dir, cost={**TURN_RULE, "turns_column": "n_steps",
                                                                 "price_provider": "nscale"})
    np.testing.assert_array_equal(renamed.df["cost_usd"].to_numpy(), t.df["cost_usd"].to_numpy())


# name a user writes -> (key before this change or None, key now without a provider or None (ambiguous / absent))
NAMES = {
    "gpt-4o": ("gpt-4o", "gpt-4o"),
    "gpt-4o-mini": ("gpt-4o-mini", "gpt-4o-mini"),
    "gpt-4o-2024-08-06": ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    "claude-sonnet-4-20250514": (None, "anthropic.claude-sonnet-4-20250514-v1:0"),
    "claude-3-5-sonnet-20240620": (None, "anthropic.claude-3-5-sonnet-20240620-v1:0"),  # regional keys set aside
    "claude-3-haiku-20240307": (None, "vertex_ai/claude-3-haiku@20240307"),
    "gemini-2.0-flash-001": (None, "vertex_ai/gemini-2.0-flash"),
    "gemini-1.5-pro": (None, None),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (None, None),
    "mixtral-8x7b-instruct": (None, None),
    "meta-llama/Llama-3.1-8B-Instruct": (None, None),
    "deepseek-chat": ("deepseek-chat", "deepseek-chat"),
    "gpt-3.5-turbo": ("gpt-3.5-turbo", "gpt-3.5-turbo"),
}
WITH_PROVIDER = {"mistralai/Mixtral-8x7B-Instruct-v0.1": ("deepinfra", "deepinfra/mistralai/Mixtral-8x7B-Instruct-v0.1"),
                 "mixtral-8x7b-instruct": ("perplexity", "perplexity/mixtral-8x7b-instruct"),
                 "meta-llama/Llama-3.1-8B-Instruct": ("nscale", "nscale/meta-llama/Llama-3.1-8B-Instruct")}


def test_thirteen_plain_names(data_dir):
    t = PriceTable.from_litellm(data_dir=data_dir)
    for name, (_before, now) in NAMES.items():
        if now is not None:
            assert t.lookup(name).key == now, name
            continue
        if name in WITH_PROVIDER:
            with pytest.raises(AmbiguousPrice, match="different prices.*--price_provider"):
                t.lookup(name)
            provider, key = WITH_PROVIDER[name]
            assert t.lookup(name, provider=provider).key == key and t.resolved_by[name].endswith("+provider")
        else:
            with pytest.raises(PriceNotFound, match="no price for"):
                t.lookup(name)
    assert t.resolved_by["gemini-2.0-flash-001"] == "undated"
    assert t.resolved_by["claude-sonnet-4-20250514"] == "normalised"
    # a provider breaks ties only: it never changes an unambiguous answer
    assert t.lookup("gpt-4o", provider="azure").key == "gpt-4o"
    # GovCloud keys (+20 %) are regional: set aside while a global key matches, so the list price is found
    assert t.lookup("claude-3-5-sonnet-20240620").input == 3e-6 and t.lookup("claude-3-haiku-20240307").input == 2.5e-7
    assert is_regional("bedrock/us-gov-west-1/anthropic.claude-3-haiku-20240307-v1:0") and not is_regional(
        "vertex_ai/claude-3-haiku@20240307")
    # litellm_provider is kept: a provider without a key prefix picks by that field
    assert t.providers["anthropic.claude-sonnet-4-20250514-v1:0"].startswith("bedrock")


def test_ambiguous_name_and_provider_via_the_rule(files, data_dir, tmp_path):
    # the Mixtral rows under the name a user of a hosted API writes: several providers list it at different prices
    path = tmp_path / "mixtral.csv"
    pd.read_csv(files["tokens"]).replace({"model": {"open-mixtral-8x7b": "mixtral-8x7b-instruct"}}).to_csv(
        path, index=False)
    t = load_outcomes(str(path), data_dir=data_dir, cost={"prices": "litellm"})
    why = t.extras["derived_cost"]["unpriced"]["mixtral-8x7b-instruct"]["reason"]
    assert "--price_provider" in why and "perplexity/mixtral-8x7b-instruct" in why
    t2 = derive_costs(load_outcomes(str(path)), CostRule(prices="litellm", price_provider="perplexity"),
                      data_dir=data_dir)
    assert t2.extras["derived_cost"]["models"]["mixtral-8x7b-instruct"]["rule"] == "suffix+provider"
    assert t2.df[t2.df["model"] == "mixtral-8x7b-instruct"]["cost_usd"].notna().all()


def test_describe_prints_derived_ignored_and_idle_turns(files, data_dir, tmp_path):
    from aco_bert.data.describe import describe

    out = describe(load_outcomes(files["tokens"], data_dir=data_dir, spec=files["spec"]))
    assert "cost DERIVED for 120 outcomes of 3 models (automatically from the spec's tier prices)" in out
    assert "claude-3-haiku-20240307: 40 from tokens; spec bfcl-user" in out
    extra = tmp_path / "extra.csv"
    pd.read_csv(files["turns"]).assign(run_id=lambda x: range(len(x))).to_csv(extra, index=False)
    plain = describe(load_outcomes(str(extra), data_dir=data_dir))
    assert "columns ignored (not canonical, varying within a prompt): ['run_id']" in plain
    assert "turns: 120 outcomes have turns but no cost" in plain and "no cost at all for 3 models" in plain
    ruled = describe(load_outcomes(files["turns"], data_dir=data_dir, cost={**TURN_RULE, "price_provider": "nscale"}))
    assert "turns rule (stated): 3000 input + 500 output tokens per turn" in ruled
    assert "turns: " not in ruled.split("turns rule")[1].split("\n", 1)[1]  # no idle-turns line once used


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


def test_evaluate_end_to_end_without_code(files, data_dir):
    base = ["aco_bert.evaluate", "--data_dir", str(data_dir)]
    # no cost and no rule: a clear message naming the models and how to derive it (was "Mean of empty slice")
    r = _run([*base, "--dataset", files["turns"]])
    assert r.returncode == 2 and "no cost for 3 of 3 models" in r.stderr and "input_tokens_per_turn" in r.stderr
    assert "Mean of empty slice" not in r.stderr + r.stdout
    r = _run([*base, "--dataset", files["turns"], "--dataset_options", json.dumps({"cost": TURN_RULE}),
              "--price_provider", "nscale"])
    assert r.returncode == 0, r.stderr
    assert "cost DERIVED for 120 outcomes of 3 models" in r.stdout and "turns rule (stated)" in r.stdout
    assert "| cheapest (qwen2.5-coder-32b-instruct) |" in r.stdout
    r = _run([*base, "--dataset", files["tokens"], "--spec", files["spec"]])
    assert r.returncode == 0, r.stderr
    assert "automatically from the spec's tier prices" in r.stdout and "| cheapest (gpt-4o-mini-2024-07-18) |" in r.stdout


@pytest.mark.parametrize("which", ["tokens", "turns"])
def test_report_end_to_end_without_code(files, data_dir, which, monkeypatch):
    import aco_bert.decision.conformal as conformal
    from aco_bert.decision.cost_model import CostModelConfig
    from aco_bert.decision.stacker import StackerConfig
    from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval

    spec = files["spec"]
    opts: dict = {}
    if which == "turns":
        spec = os.path.join(files["dir"], "turns-spec.yaml")
        with open(spec, "w") as f:  # tiers without prices: the rule prices them from LiteLLM
            yaml.safe_dump({"name": "swe-user", "tiers": [{"model": m} for m in ("qwen2.5-coder-32b-instruct",
                                                                                "gpt-5-mini",
                                                                                "claude-sonnet-4-20250514")]}, f)
        opts = {"cost": TURN_RULE}
    real = conformal.coverage_over_splits  # the report's coverage diagnostic: 5 splits, not 200 (speed only)
    monkeypatch.setattr(conformal, "coverage_over_splits", lambda *a, **k: real(*a, **{**k, "n_splits": 5}))
    lines: list[str] = []
    cfg = RouterEvalConfig(dataset=files[which], spec=spec, data_dir=str(data_dir), dataset_options=opts,
                           price_provider="nscale" if which == "turns" else None, k_outer=3, k_inner=3,
                           tfidf=False, peers=[], cascade=False,
                           stacker=StackerConfig(n_rounds=10, nthread=1, inner_k=2, pca_dim=2),
                           cost=CostModelConfig(n_rounds=10, nthread=1))
    out = run_router_eval(cfg, log=lines.append)
    text = "\n".join(lines)
    assert "[router-eval] cost DERIVED for 120 outcomes of 3 models" in text
    names = {r["name"] for r in out["table"]}
    assert {"always-frontier", "zero-router", "oracle"} <= names
    assert all(np.isfinite(r["cost_per_task"]) for r in out["table"])


def test_score_evaluate_derives_cost_from_turns(bundle, data_dir, tmp_path):
    """`score --evaluate` on a table with turns but no cost: the rule derives it (printed) and the replay bills it;
    without a rule the run stops naming the models, before anything is scored."""
    from aco_bert.runtime import Router
    from aco_bert.score.config import ScoreConfig
    from aco_bert.score.scorer import score_dataset

    models = Router.load(bundle).spec.models
    s = load_outcomes("swebench-verified", data_dir=data_dir).df
    s = s[s["model"].isin(models)]
    s = s[s["prompt_id"].isin(sorted(s["prompt_id"].unique())[:24])].assign(turns=lambda x: x["api_calls"])
    inp = tmp_path / "turns.jsonl"
    s[["prompt_id", "prompt", "model", "success", "turns"]].to_json(inp, orient="records", lines=True)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({m: {"input_price": 1.0 + i, "output_price": 4.0 + i} for i, m in enumerate(models)}))
    lines: list[str] = []
    cfg = dict(bundle=bundle, input=str(inp), evaluate=True, progress=False, fresh=True, int8=False)
    with pytest.raises(ValueError, match=r"no cost for .* models.*derive it"):
        score_dataset(ScoreConfig(output=str(tmp_path / "none.parquet"), **cfg), log=lines.append)
    assert not (tmp_path / "none.parquet").exists()
    rule = {"prices": str(prices), **TURN_RULE}
    summary = score_dataset(ScoreConfig(output=str(tmp_path / "out.parquet"), cost=rule, **cfg), log=lines.append)
    assert any("cost DERIVED" in x and "from turns" not in x for x in lines)
    assert any("from turns" in x for x in lines)
    # always-<tier> costs = mean over prompts of turns x (3000 x input + 500 x output) per-1M prices
    for i, m in enumerate(models):
        want = float((s[s["model"] == m]["turns"] * (3000 * (1.0 + i) + 500 * (4.0 + i)) / 1e6).mean())
        got = summary.evaluation.get(f"always-{m}").cost_per_task
        assert got == pytest.approx(want, rel=1e-9), m


def test_price_sources_offline():
    """No data dir: the table an installed litellm ships is read as a file; an unreachable URL is one DataError."""
    from aco_bert.data.prices import installed_litellm_table

    path = installed_litellm_table()
    assert path is not None and path.name == "model_prices_and_context_window_backup.json"
    assert PriceTable.from_litellm(path).lookup("gpt-4o-mini").input > 0
    with pytest.raises(DataError, match="cannot read http://127.0.0.1:9/prices.json"):
        PriceTable.from_litellm("http://127.0.0.1:9/prices.json")
