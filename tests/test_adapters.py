"""Outcome adapters and price tables on real slices of the shared data, checked against numbers recomputed here from
the raw files with csv/json, plus malformed files that must fail naming the file, the row and the reason."""

from __future__ import annotations

import ast
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aco_bert.data.adapters import bfcl, generic, routerbench, scores_json
from aco_bert.data.prices import AmbiguousPrice, PriceNotFound, PriceTable
from aco_bert.data.registry import DATASETS, default_spec_name, load_outcomes
from aco_bert.data.schema import DataError

csv.field_size_limit(sys.maxsize)


# --------------------------------------------------------------------------------------------------- prices
def test_litellm_prices_match_raw_json(data_dir):
    raw = json.loads((data_dir / "prices" / "litellm_model_prices.json").read_text())
    t = PriceTable.from_litellm(data_dir / "prices" / "litellm_model_prices.json")
    p = t.lookup("gpt-4o-mini-2024-07-18")
    assert (p.input, p.output) == (raw["gpt-4o-mini-2024-07-18"]["input_cost_per_token"],
                                   raw["gpt-4o-mini-2024-07-18"]["output_cost_per_token"])
    assert p.cost(1000, 100) == pytest.approx(1000 * p.input + 100 * p.output)
    # Entries without numeric per-token prices are absent, not zero.
    nulls = [k for k, v in raw.items() if isinstance(v, dict) and k != "sample_spec"
             and v.get("input_cost_per_token") is None]
    assert nulls and nulls[0] not in t.prices and t.get(nulls[0]) is None
    # The table's default location is the data dir.
    assert len(PriceTable.from_litellm(data_dir=data_dir)) == len(t)


def test_price_lookup_rules_are_explicit():
    raw = {
        "openai/foo": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        "azure/foo": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        "a/bar": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        "b/bar": {"input_cost_per_token": 3e-6, "output_cost_per_token": 2e-6},
        "Baz-1": {"input_cost_per_token": 5e-7, "output_cost_per_token": 5e-7},
        "nullpriced": {"input_cost_per_token": None, "output_cost_per_token": None},
    }
    t = PriceTable.from_litellm(raw, aliases={"my-bar": "b/bar", "broken": "nope"})
    assert t.lookup("foo").input == 1e-6 and t.resolved["foo"] in ("openai/foo", "azure/foo")  # same price: fine
    assert t.lookup("baz-1").key == "Baz-1"  # case-insensitive exact
    assert t.lookup("my-bar").key == "b/bar"  # alias
    with pytest.raises(AmbiguousPrice, match="different prices"):
        t.lookup("bar")
    with pytest.raises(PriceNotFound, match="alias 'broken'"):
        t.lookup("broken")
    with pytest.raises(PriceNotFound, match="no price for 'fooo'.*close keys"):
        t.lookup("fooo")
    assert t.get("nullpriced") is None and "nullpriced" not in t


def test_per_million_table(data_dir, tmp_path):
    raw = json.loads((data_dir / "dcrouter" / "default_llm.json").read_text())
    t = PriceTable.from_per_million(data_dir / "dcrouter" / "default_llm.json")
    for m, v in raw.items():
        assert t.lookup(m).input_per_1m == pytest.approx(v["input_price"])
        assert t.lookup(m).output_per_1m == pytest.approx(v["output_price"])
    bad = tmp_path / "llm.json"
    bad.write_text(json.dumps({"ok": {"input_price": 1, "output_price": 1}, "m2": {"input_price": "cheap"}}))
    with pytest.raises(DataError, match=r"llm\.json, row m2: entry 'm2'"):
        PriceTable.from_per_million(bad)


# --------------------------------------------------------------------------------------------------- RouterBench
def _raw_routerbench(data_dir: Path, splits=("train", "test")):
    rows = []
    for sub in routerbench.SUBSETS:
        for sp in splits:
            with open(data_dir / "routerbench" / f"{sub}_{sp}.csv", newline="", encoding="utf-8") as f:
                rows += [dict(r, _split=sp) for r in csv.DictReader(f)]
    return rows


@pytest.fixture(scope="module")
def rb_all(data_dir):
    return routerbench.load_routerbench(data_dir / "routerbench", split="all")


def test_routerbench_counts_and_rates_match_raw_csv(data_dir, rb_all):
    raw = _raw_routerbench(data_dir)
    assert len(raw) == 3178
    ids = {r["sample_id"] for r in raw}
    assert rb_all.n_prompts == len(ids) == 3164  # 14 sample ids spread over two rows are merged
    assert sorted(rb_all.models) == sorted(routerbench.model_columns(raw[0].keys()))
    m = rb_all.matrix()
    assert not np.isnan(m.success).any()  # after merging, every prompt has all 11 outcomes
    j = m.models.index("gpt-4-1106-preview")
    vals = [float(r["gpt-4-1106-preview"]) for r in raw if r["gpt-4-1106-preview"] != ""]
    costs = [float(r["gpt-4-1106-preview|total_cost"]) for r in raw if r["gpt-4-1106-preview"] != ""]
    assert len(vals) == 3164
    assert m.success[:, j].mean() == pytest.approx(sum(vals) / len(vals))
    assert m.cost[:, j].sum() == pytest.approx(sum(costs))
    assert rb_all.extras["merged_rows"] == 14
    assert rb_all.extras["disambiguated_sample_ids"] == 0
    assert set(m.meta["category"]) == {"arc-challenge", "mbpp", "winogrande"}
    # The prompt is the parsed list literal, never the stringified list.
    r0 = next(r for r in raw if r["sample_id"] == "winogrande.dev.949")
    assert m.prompts[m.prompt_ids.index("winogrande.dev.949")] == ast.literal_eval(r0["prompt"])[0]


def test_routerbench_split_meta_and_test_split(data_dir, rb_all):
    raw_test = _raw_routerbench(data_dir, ("test",))
    t = routerbench.load_routerbench(data_dir / "routerbench", split="test")
    assert t.n_prompts == len({r["sample_id"] for r in raw_test})
    split = rb_all.extras["prompt_meta"]["split"]
    assert set(split.values()) == {"train", "test"}
    assert rb_all.extras["cross_split_merges"] == 6
    # A single file, and the same frame as parquet, load identically.
    one = routerbench.load_routerbench(data_dir / "routerbench" / "mbpp_test.csv")
    assert one.n_prompts == 128 and set(one.df["category"]) == {"mbpp"}


def _tiny_wide(data_dir: Path, n: int = 5) -> pd.DataFrame:
    return pd.read_csv(data_dir / "routerbench" / "mbpp_test.csv").head(n)


def test_routerbench_parquet_and_pickle_opt_in(data_dir, tmp_path):
    df = _tiny_wide(data_dir)
    pq = tmp_path / "rb.parquet"
    df.to_parquet(pq)
    t = routerbench.load_routerbench(pq)
    assert t.n_prompts == 5 and len(t.models) == 11
    pk = tmp_path / "routerbench_0shot.pkl"
    df.drop(columns=["Unnamed: 0"]).to_pickle(pk)
    with pytest.raises(DataError, match="refusing to unpickle.*allow_pickle=True"):
        routerbench.load_routerbench(pk)
    with pytest.raises(DataError, match="allow_pickle=True"):
        routerbench.load_routerbench("hf:withmartian/routerbench")
    t2 = routerbench.load_routerbench(pk, allow_pickle=True)
    assert t2.n_prompts == 5
    pd.testing.assert_series_equal(t.df["success"], t2.df["success"])


def test_routerbench_malformed(data_dir, tmp_path):
    df = _tiny_wide(data_dir)
    bad = df.copy()
    bad.loc[2, "prompt"] = "['unterminated"
    p = tmp_path / "bad_prompt.csv"
    bad.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"bad_prompt\.csv, row 2: prompt is not a Python list literal"):
        routerbench.load_routerbench(p)
    bad = df.copy()
    bad.loc[3, "claude-v2"] = 2.0
    p = tmp_path / "bad_score.csv"
    bad.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"row 3: model column 'claude-v2': 2\.0 is not a number in \[0, 1\]"):
        routerbench.load_routerbench(p)
    p = tmp_path / "no_models.csv"
    df[["sample_id", "prompt", "eval_name"]].to_csv(p, index=False)
    with pytest.raises(DataError, match="no model columns"):
        routerbench.load_routerbench(p)
    with pytest.raises(ValueError, match="split selects"):
        routerbench.load_routerbench(p, split="train")


def test_routerbench_reused_sample_id_is_disambiguated(data_dir, tmp_path):
    df = _tiny_wide(data_dir, 3)
    df.loc[1, "sample_id"] = df.loc[0, "sample_id"]  # same id, different text, overlapping models
    p = tmp_path / "dup.csv"
    df.to_csv(p, index=False)
    t = routerbench.load_routerbench(p)
    assert t.n_prompts == 3 and t.extras["disambiguated_sample_ids"] == 1
    sid = df.loc[0, "sample_id"]
    assert {f"{sid}#{df.loc[0, 'Unnamed: 0']}", f"{sid}#{df.loc[1, 'Unnamed: 0']}"} <= set(t.df["prompt_id"])


# --------------------------------------------------------------------------------------------------- BFCL
@pytest.fixture(scope="module")
def bfcl_table(data_dir):
    return load_outcomes("bfcl", data_dir=data_dir)


def test_bfcl_matches_raw_csv_and_prices(data_dir, bfcl_table):
    raw_prices = json.loads((data_dir / "prices" / "litellm_model_prices.json").read_text())
    acc = defaultdict(list)
    cost = 0.0
    models = set()
    with open(data_dir / "bfcl-v2" / "outcomes.csv", newline="") as f:
        for r in csv.DictReader(f):
            models.add(r["model"])
            acc[r["model"]].append(int(r["correct"]))
            if r["model"] == "gpt-4o-mini-2024-07-18-FC":
                pr = raw_prices["gpt-4o-mini-2024-07-18"]
                cost += (float(r["input_token_count"]) * pr["input_cost_per_token"]
                         + float(r["output_token_count"]) * pr["output_cost_per_token"])
    assert len(models) == 71
    t = bfcl_table
    assert t.n_prompts == 1700 and len(t.models) == 70  # the broken gpt-4o-2024-08-06 prompt-mode run is excluded
    assert "gpt-4o-2024-08-06" not in t.models and "gpt-4o-2024-08-06-FC" in t.models
    assert any("gpt-4o-2024-08-06" in k and v == 1700 for k, v in t.skipped.items())
    m = t.matrix()
    for name in ("gpt-4o-mini-2024-07-18-FC", "claude-3-5-sonnet-20240620", "Salesforce_xLAM-7b-fc-r"):
        assert np.mean(m.success[:, m.models.index(name)]) == pytest.approx(np.mean(acc[name]))
    assert np.nansum(m.cost[:, m.models.index("gpt-4o-mini-2024-07-18-FC")]) == pytest.approx(cost)
    # Locally served (no token counts) and unpriced models: cost NaN, counted and explained, never dropped.
    j = m.models.index("meta-llama_Meta-Llama-3-8B-Instruct")
    assert np.isnan(m.cost[:, j]).all() and np.isfinite(m.success[:, j]).all()
    assert t.extras["cost_unknown"]["meta-llama_Meta-Llama-3-8B-Instruct"] == 1700
    assert "no token counts" in t.extras["cost_unknown_reason"]["meta-llama_Meta-Llama-3-8B-Instruct"]
    assert t.extras["cost_unknown_reason"]["gemini-1.0-pro"].startswith("no price")
    assert int(np.isnan(m.cost).sum()) == sum(t.extras["cost_unknown"].values())
    assert np.isfinite(m.traces["latency_s"][:, m.models.index("gpt-4o-mini-2024-07-18-FC")]).all()


def test_bfcl_prompt_is_question_plus_compact_schema(data_dir, bfcl_table):
    q = json.loads((data_dir / "bfcl-v2" / "questions.jsonl").open().readline())
    m = bfcl_table.matrix(["gpt-4o-mini-2024-07-18"])
    text = m.prompts[m.prompt_ids.index(q["id"])]
    assert text.startswith(q["question"] + "\n\n")
    assert json.loads(text[len(q["question"]) + 2:]) == q["function"]
    assert json.dumps(q["function"], separators=(",", ":"), ensure_ascii=False) in text
    assert m.meta.set_index("prompt_id").loc[q["id"], "category"] == q["category"]


def _bfcl_slice(data_dir: Path, tmp_path: Path, n: int = 6) -> tuple[Path, Path]:
    out = pd.read_csv(data_dir / "bfcl-v2" / "outcomes.csv")
    out = out[out["model"].isin(["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"])]
    out = out[out["prompt_id"].isin(out["prompt_id"].unique()[:n])]
    qp = tmp_path / "questions.jsonl"
    with open(data_dir / "bfcl-v2" / "questions.jsonl") as f, open(qp, "w") as g:
        g.writelines(line for line in f if json.loads(line)["id"] in set(out["prompt_id"]))
    op = tmp_path / "outcomes.csv"
    out.to_csv(op, index=False)
    return op, qp


def test_bfcl_slice_options_and_malformed(data_dir, tmp_path):
    op, qp = _bfcl_slice(data_dir, tmp_path)
    prices = data_dir / "prices" / "litellm_model_prices.json"
    t = bfcl.load_bfcl(op, qp, prices=prices)
    assert t.models == ["gpt-4o-mini-2024-07-18"] and t.n_prompts == 6
    t_all = bfcl.load_bfcl(op, qp, prices=prices, include_all=True)
    assert sorted(t_all.models) == ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"] and not t_all.skipped
    with pytest.raises(PriceNotFound):
        bfcl.load_bfcl(op, qp, prices=prices, price_keys={"gpt-4o-mini-2024-07-18": "no-such-key"})

    df = pd.read_csv(op)
    bad = df.copy()
    bad.loc[4, "correct"] = 2
    bad.to_csv(tmp_path / "o2.csv", index=False)
    with pytest.raises(DataError, match=r"o2\.csv, row 4: correct 2 is not 0 or 1"):
        bfcl.load_bfcl(tmp_path / "o2.csv", qp, prices=prices)
    bad = df.copy()
    bad.loc[1, "prompt_id"] = "simple_99999"
    bad.to_csv(tmp_path / "o3.csv", index=False)
    with pytest.raises(DataError, match=r"row 1: prompt_id 'simple_99999' has no question"):
        bfcl.load_bfcl(tmp_path / "o3.csv", qp, prices=prices)
    df.drop(columns=["latency_s"]).to_csv(tmp_path / "o4.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['latency_s'\]"):
        bfcl.load_bfcl(tmp_path / "o4.csv", qp, prices=prices)
    pd.concat([df, df.iloc[[2]]]).to_csv(tmp_path / "o5.csv", index=False)
    with pytest.raises(DataError, match=rf"row {len(df)}: duplicate prompt x model"):
        bfcl.load_bfcl(tmp_path / "o5.csv", qp, prices=prices)
    lines = qp.read_text().splitlines()
    (tmp_path / "q2.jsonl").write_text("\n".join(lines[:2] + ["{not json"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"q2\.jsonl, row 2: invalid JSON line"):
        bfcl.load_bfcl(op, tmp_path / "q2.jsonl", prices=prices)


# --------------------------------------------------------------------------------------------------- DC-router
def test_dcrouter_train_matches_raw_json(data_dir):
    raw = json.loads((data_dir / "dcrouter" / "dcrouter_train.json").read_text())
    llm = json.loads((data_dir / "dcrouter" / "default_llm.json").read_text())
    tasks = defaultdict(set)
    for name in ("default_query_train.jsonl", "default_query_test.jsonl"):
        for line in (data_dir / "dcrouter" / name).read_text(encoding="utf-8").split("\n"):
            if line.strip():
                r = json.loads(line)
                tasks[r["query"]].add(r["task_name"])
    t = load_outcomes("dcrouter", data_dir=data_dir, split="train")
    m = t.matrix()
    assert (m.n_prompts, len(m.models)) == (len(raw), 9) == (5608, 9)
    j = m.models.index("gemma-2-9b-it")
    assert m.success[:, j].mean() == pytest.approx(np.mean([r["scores"]["gemma-2-9b-it"] for r in raw]))
    assert ((m.success > 0) & (m.success < 1)).any()  # graded scores survive
    # Estimated cost: ceil(len/4) input tokens + 256 output tokens at default_llm.json's per-1M price.
    q = raw[10]["question"]
    p = llm["gemma-2-9b-it"]["input_price"] / 1e6
    assert m.cost[10, j] == pytest.approx(math.ceil(len(q) / 4) * p + 256 * llm["gemma-2-9b-it"]["output_price"] / 1e6)
    assert t.extras["cost_estimate"]["estimated"] is True and np.isnan(m.traces["input_tokens"]).all()
    # Category by text join: unmatched and ambiguous counts recomputed from the raw files.
    assert t.extras["category_unmatched"] == sum(r["question"] not in tasks for r in raw) == 0
    assert t.extras["category_ambiguous"] == sum(len(tasks[r["question"]]) > 1 for r in raw) == 6
    gsm = sum(tasks[r["question"]] == {"gsm8k"} for r in raw)
    assert (m.meta["category"] == "gsm8k").sum() == gsm > 0


def test_dcrouter_all_drops_test_repeats(data_dir):
    tr = json.loads((data_dir / "dcrouter" / "dcrouter_train.json").read_text())
    te = json.loads((data_dir / "dcrouter" / "dcrouter_test.json").read_text())
    seen = {r["question"]: r["scores"] for r in tr}
    repeats = [r for r in te if r["question"] in seen]
    t = load_outcomes("dcrouter", data_dir=data_dir)
    assert t.n_prompts == len(tr) + len(te) - len(repeats) == 5989
    assert sum(t.skipped.values()) == len(repeats) == 119
    assert t.extras["test_train_repeats_with_different_scores"] == sum(seen[r["question"]] != r["scores"]
                                                                       for r in repeats)
    assert set(t.extras["prompt_meta"]["split"].values()) == {"train", "test"}
    kept = load_outcomes("dcrouter", data_dir=data_dir, dedupe=False)
    assert kept.n_prompts == len(tr) + len(te)


def test_scores_json_stringified_and_malformed(tmp_path):
    good = [{"question": "2+2?", "scores": "{'a': 1.0, 'b': 0.5}"}, {"question": "hi", "scores": {"a": 0, "b": 1}}]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(good))
    t = scores_json.load_scores_json(p, prices={"a": {"input_price": 1.0, "output_price": 2.0}})
    assert t.n_prompts == 2 and sorted(t.models) == ["a", "b"]
    assert t.extras["cost_unknown"] == {"b": 2}  # no price for b: NaN cost, counted
    cost_a = t.df[(t.df["model"] == "a") & (t.df["prompt_id"] == "s.0")]["cost_usd"].iloc[0]
    assert cost_a == pytest.approx(math.ceil(4 / 4) * 1e-6 + 256 * 2e-6)
    cases = [
        ([good[0], {"question": "x", "scores": "{'a': 1.5}"}], r"row 1: score of 'a' is 1\.5, outside \[0, 1\]"),
        ([good[0], good[1], {"question": "x", "scores": "{'a': "}], r"row 2: scores is not a dict literal"),
        ([{"question": "  ", "scores": {"a": 1}}], r"row 0: empty or non-string question"),
        ([good[0], {"scores": {"a": 1}}], r"row 1: missing field 'question'"),
        ([good[0], {"question": "q", "scores": {"a": "yes"}}], r"row 1: score of 'a' is 'yes', not a number"),
    ]
    for recs, msg in cases:
        p.write_text(json.dumps(recs))
        with pytest.raises(DataError, match=rf"s\.json, {msg}"):
            scores_json.load_scores_json(p)


# --------------------------------------------------------------------------------------------------- generic
@pytest.fixture(scope="module")
def swe_slice(swebench) -> pd.DataFrame:
    df = swebench.df
    pids = df["prompt_id"].drop_duplicates().head(12)
    models = swebench.models[:3]
    return df[df["prompt_id"].isin(pids) & df["model"].isin(models)].reset_index(drop=True)


def test_generic_long_roundtrip(swe_slice, tmp_path):
    cols = ["prompt_id", "prompt", "model", "success", "cost_usd", "api_calls", "category"]
    # `note` varies within a prompt (ignored); `level` has one value per prompt (kept as prompt metadata)
    src = swe_slice[cols].assign(note=[f"run {i}" for i in range(len(swe_slice))],
                                 level=swe_slice["prompt_id"].str.len())
    for suffix in ("jsonl", "csv", "parquet"):
        p = tmp_path / f"long.{suffix}"
        if suffix == "jsonl":
            src.to_json(p, orient="records", lines=True)
        elif suffix == "csv":
            src.to_csv(p, index=False)
        else:
            src.to_parquet(p)
        t = load_outcomes(str(p))  # a path goes through the generic loader
        assert t.extras["format"] == "long" and t.extras["ignored_columns"] == ["note"]
        level = t.extras["prompt_meta"]["level"]
        assert {k: int(v) for k, v in level.items()} == {p_: len(p_) for p_ in swe_slice["prompt_id"]}
        meta_level = t.matrix().meta.set_index("prompt_id")["level"]
        assert {k: int(v) for k, v in meta_level.items()} == {k: int(v) for k, v in level.items()}
        got = t.df.set_index(["prompt_id", "model"]).sort_index()
        exp = swe_slice.set_index(["prompt_id", "model"]).sort_index()
        np.testing.assert_allclose(got["success"], exp["success"])
        np.testing.assert_allclose(got["cost_usd"], exp["cost_usd"])
        assert (got["prompt"] == exp["prompt"]).all()


def test_generic_wide(swe_slice, tmp_path):
    w = swe_slice.pivot(index="prompt_id", columns="model", values="success")
    c = swe_slice.pivot(index="prompt_id", columns="model", values="cost_usd").add_suffix("|cost")
    texts = swe_slice.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    wide = pd.concat([texts, w, c], axis=1).reset_index()
    wide["junk|thing"] = 1
    m0 = swe_slice["model"].iloc[0]
    wide.loc[0, m0] = np.nan  # "not run": skipped and counted
    p = tmp_path / "wide.csv"
    wide.to_csv(p, index=False)
    t = generic.load_generic(p)
    assert t.extras["format"] == "wide" and t.extras["ignored_columns"] == ["junk|thing"]
    assert t.skipped == {"empty prompt x model success cells": 1}
    assert len(t.df) == len(swe_slice) - 1
    merged = t.df.merge(swe_slice, on=["prompt_id", "model"], suffixes=("", "_x"))
    np.testing.assert_allclose(merged["cost_usd"], merged["cost_usd_x"])
    np.testing.assert_allclose(merged["success"], merged["success_x"])
    with pytest.raises(DataError, match="missing required column"):
        generic.load_generic(p, format="long")


def _write_jsonl(path: Path, recs: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))


def test_generic_malformed_rows_name_file_row_reason(tmp_path):
    ok = {"prompt_id": "p1", "prompt": "fix the bug", "model": "m", "success": 1}
    p = tmp_path / "bad.jsonl"
    cases = [
        ([ok, {**ok, "prompt_id": "p2", "success": "yes"}], r"bad\.jsonl, row 1: non-numeric success 'yes'"),
        ([ok, {**ok, "prompt_id": "p2", "success": 1.5}], r"row 1: success 1\.5 is not in \[0, 1\]"),
        ([ok, {**ok, "prompt_id": "p2"}, ok], r"row 2: duplicate prompt x model \('p1', 'm'\)"),
        ([ok, {**ok, "prompt_id": "p2", "prompt": "  "}], r"row 1: empty prompt"),
        ([ok, "", "{oops"], r"row 2: invalid JSON line"),  # blank lines keep their number
        ([ok, "", {**ok, "prompt_id": "p3", "success": -1}], r"row 2: success -1"),
        ([{k: v for k, v in ok.items() if k != "success"}], r"missing required column\(s\) \['success'\]"),
    ]
    for recs, msg in cases:
        _write_jsonl(p, recs)
        with pytest.raises(DataError, match=msg):
            generic.load_generic(p, format="long")
    # CSV rows: 0-based data rows after the header, also for the wide layout (which names the model column).
    c = tmp_path / "bad.csv"
    c.write_text("prompt_id,prompt,m1,m2\np1,hello,1,0\np2,world,0,maybe\n")
    with pytest.raises(DataError, match=r"bad\.csv, row 1: model column 'm2': non-numeric success 'maybe'"):
        generic.load_generic(c)
    c.write_text("prompt_id,prompt,m1\np1,hello,1\np2,,0\n")
    with pytest.raises(DataError, match=r"bad\.csv, row 1: empty prompt"):
        generic.load_generic(c)
    c.write_text("prompt_id,prompt,m1\np1,hello,1\np1,hello,0\n")
    with pytest.raises(DataError, match=r"bad\.csv, row 1: duplicate prompt x model"):
        generic.load_generic(c)
    c.write_text("prompt_id,prompt,m1\np1,hello,7\n")
    with pytest.raises(DataError, match=r"row 0: model column 'm1': success '7' is not in \[0, 1\]"):
        generic.load_generic(c)


# --------------------------------------------------------------------------------------------------- registry
def test_registry_names_and_default_specs(data_dir):
    from aco_bert.spec import RouterSpec

    for name in ("swebench-verified", "routerbench", "bfcl", "dcrouter"):
        assert name in DATASETS
        spec = RouterSpec.load(default_spec_name(name))
        assert spec.dataset == name
    with pytest.raises(KeyError, match="no default router spec"):
        default_spec_name("nope")
    t = load_outcomes("routerbench", data_dir=data_dir, split="test", subsets=["mbpp"])
    assert t.n_prompts == 128
    with pytest.raises(FileNotFoundError, match="flattened local copy"):
        DATASETS["bfcl"](None)
