"""The OpenHands Index and MMLU-Pro adapters (and the pooled SWE-bench table) on the real shared data, checked against
numbers recomputed here from the raw JSON / zips and the data README, their online paths through a fake ``urlopen``
serving the local copy under the pinned URLs, their shipped specs, and malformed copies that must fail naming the
file, the row and the reason."""

from __future__ import annotations

import io
import json
import math
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aco_bert.data.adapters import mmlu_pro, openhands
from aco_bert.data.prices import PriceTable
from aco_bert.data.registry import DATASETS, default_spec_name, load_outcomes
from aco_bert.data.schema import DataError
from aco_bert.spec import SPECS_DIR, RouterSpec

QWEN7 = "Qwen1.5-7B-Chat"


@pytest.fixture(scope="module")
def oh(data_dir):
    return load_outcomes("openhands-index", data_dir=data_dir)


@pytest.fixture(scope="module")
def mmlu(data_dir):
    return load_outcomes("mmlu-pro", data_dir=data_dir)


@pytest.fixture(scope="module")
def litellm(data_dir):
    return PriceTable.from_litellm(data_dir / "prices" / "litellm_model_prices.json")


def _raw_sidecars(data_dir: Path, benchmark: str = "swe-bench") -> dict[str, dict]:
    root = data_dir / "openhands-index"
    out = {}
    for p in sorted(root.glob(f"results/*/instance_results/{benchmark}.json")):
        out[p.parts[-3]] = json.loads(p.read_text())
    for p in sorted(root.glob(f"alternative_agents/*/*/instance_results/{benchmark}.json")):
        out[f"{p.parts[-4]}/{p.parts[-3]}"] = json.loads(p.read_text())
    return out


def _raw_zip(data_dir: Path, model: str) -> list:
    with zipfile.ZipFile(data_dir / "mmlu-pro" / mmlu_pro.zip_name(model)) as zf:
        return json.loads(zf.read(zf.namelist()[0]))


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve_locally(monkeypatch, mapping: dict[str, Path]) -> list[str]:
    """Patch urlopen: URLs under each base are read from the local folder (404 when absent); returns the URLs asked."""
    asked: list[str] = []

    def fake_urlopen(url, timeout=None):
        asked.append(url)
        for base, local in mapping.items():
            if url.startswith(base + "/"):
                p = local / url[len(base) + 1:]
                if not p.exists():
                    raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
                return _Resp(p.read_bytes())
        raise AssertionError(f"unexpected URL {url}")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


# --------------------------------------------------------------------------------------------------- openhands-index
def test_openhands_counts_rates_and_costs_match_raw(oh, data_dir):
    raw = _raw_sidecars(data_dir)
    assert len(raw) == 43 and len(oh.models) == 43 and set(oh.models) == set(raw)
    assert "acp-codex/GPT-5.4" in oh.models and "GPT-5.4" in oh.models  # agent/model vs OpenHands model
    n_known = sum(v["resolved"] is not None for d in raw.values() for v in d.values())
    n_null = sum(v["resolved"] is None for d in raw.values() for v in d.values())
    assert len(oh.df) == n_known and n_null == 9
    assert oh.skipped["outcomes with resolved null (no outcome in the archive; left missing)"] == n_null
    assert oh.skipped["systems without instance_results/swe-bench.json"] == 1  # results/Minimax-2.7
    m = oh.matrix()
    assert m.n_prompts == 500
    cost, succ = _means(m)
    # The data README: DeepSeek-V4-Pro 73.2 % at $0.039/task, claude-fable-5 95.8 % at $1.43/task.
    assert succ["DeepSeek-V4-Pro"] == pytest.approx(0.732)
    assert cost["DeepSeek-V4-Pro"] == pytest.approx(0.0395, abs=5e-4)
    assert succ["claude-fable-5"] == pytest.approx(0.958) and cost["claude-fable-5"] == pytest.approx(1.432, abs=5e-3)
    # No nulls in GPT-5.4's sidecar: its rate equals its own scores.json swe-bench score.
    scores = json.loads((data_dir / "openhands-index/results/GPT-5.4/scores.json").read_text())
    assert succ["GPT-5.4"] * 100 == pytest.approx(next(s["score"] for s in scores if s["benchmark"] == "swe-bench"))
    # One cell, straight from the file.
    iid, v = next((k, v) for k, v in raw["GPT-5.4"].items() if v["cost"])
    j, i = m.models.index("GPT-5.4"), m.prompt_ids.index(iid)
    assert m.success[i, j] == float(v["resolved"]) and m.cost[i, j] == pytest.approx(v["cost"])


def test_openhands_missing_is_missing_and_zero_cost_is_unknown(oh, data_dir):
    raw = _raw_sidecars(data_dir)
    m = oh.matrix()
    j = m.models.index("Nemotron-3-Nano")
    nulls = [k for k, v in raw["Nemotron-3-Nano"].items() if v["resolved"] is None]
    assert len(nulls) == 3
    for iid in nulls:  # missing, never a failure
        assert np.isnan(m.success[m.prompt_ids.index(iid), j])
    assert int(np.isfinite(m.success[:, j]).sum()) == 497
    assert not (oh.df["cost_usd"] == 0).any()  # 0 = not metered -> NaN, never free
    for name in ("acp-codex/GPT-5.4", "acp-codex/GPT-5.5"):
        assert oh.extras["cost_unknown"][name] == 500 and np.isnan(m.cost[:, m.models.index(name)]).all()
    for name, d in raw.items():
        known = [v for v in d.values() if v["resolved"] is not None]
        unknown = sum(not v["cost"] for v in known)  # null or 0
        assert oh.extras["cost_unknown"].get(name, 0) == unknown, name
    assert oh.extras["cost_unknown"]["GLM-5"] == 95 and "not metered" in oh.extras["cost_unknown_reason"]["GLM-5"]


def test_openhands_prompts_equal_the_swebench_tables(oh, swebench):
    a = oh.df.drop_duplicates("prompt_id").set_index("prompt_id")
    b = swebench.df.drop_duplicates("prompt_id").set_index("prompt_id")
    assert set(a.index) == set(b.index) and len(a) == 500
    assert (a.loc[b.index, "prompt"] == b["prompt"]).all() and (a.loc[b.index, "category"] == b["category"]).all()
    assert set(a["source"]) == {"swebench-verified"}


def test_swt_bench_is_a_separate_task(data_dir):
    t = load_outcomes("openhands-index", data_dir=data_dir, benchmark="swt-bench")
    raw = _raw_sidecars(data_dir, "swt-bench")
    assert len(t.models) == 43 and t.name == "openhands-index-swt-bench"
    assert len(t.df) == sum(v["resolved"] is not None for d in raw.values() for v in d.values())
    assert set(t.df["source"]) == {"swt-bench"} and t.n_prompts == 433
    m = t.matrix()
    assert int(np.isfinite(m.success[:, m.models.index("Nemotron-3-Nano")]).sum()) == 26  # 406 of 432 null
    with pytest.raises(ValueError, match="benchmark must be one of"):
        load_outcomes("openhands-index", data_dir=data_dir, benchmark="gaia")
    with pytest.raises(ValueError, match="SWE-bench outcomes only"):
        load_outcomes("swebench-pooled", data_dir=data_dir, benchmark="swt-bench")


def test_pooled_table_keeps_both_sources_apart(oh, swebench, data_dir):
    pooled = load_outcomes("swebench-pooled", data_dir=data_dir)
    assert len(pooled.models) == len(swebench.models) + len(oh.models) == 67
    assert {m.split("/", 1)[0] for m in pooled.models} == {"bash-only", "openhands-index"}
    assert set(pooled.df["prompt_id"]) == set(swebench.df["prompt_id"]) == set(oh.df["prompt_id"])
    pm, sm = pooled.matrix(), swebench.matrix()
    for name in ("Claude 4.5 Opus medium (20251101)", "DeepSeek V3.2 Reasoner"):
        a = pm.success[[pm.prompt_ids.index(p) for p in sm.prompt_ids], pm.models.index(f"bash-only/{name}")]
        assert np.array_equal(a, sm.success[:, sm.models.index(name)], equal_nan=True)
    assert pooled.extras["cost_unknown"]["openhands-index/acp-codex/GPT-5.5"] == 500
    assert pooled.skipped["openhands-index: outcomes with resolved null (no outcome in the archive; left missing)"] == 9
    assert set(pooled.extras["prompt_meta"]["difficulty"]) >= set(sm.prompt_ids)


def test_openhands_online_path_reads_the_pinned_urls(data_dir, monkeypatch):
    asked = _serve_locally(monkeypatch, {openhands.RAW_BASE: data_dir / "openhands-index"})
    t = openhands.load_openhands(openhands.RAW_BASE, data_dir / "swebench-verified" / "tasks.jsonl",
                                 models=["GPT-5.4", "acp-codex/GPT-5.5", "Minimax-2.7"])
    local = load_outcomes("openhands-index", data_dir=data_dir).select_models(["GPT-5.4", "acp-codex/GPT-5.5"])
    assert sorted(t.models) == sorted(local.models) and len(t.df) == len(local.df) == 1000
    assert t.skipped["systems without instance_results/swe-bench.json"] == 1  # 404 for Minimax-2.7
    assert f"{openhands.RAW_BASE}/results/GPT-5.4/instance_results/swe-bench.json" in asked
    assert set(openhands.SYSTEM_DIRS) == set(openhands.list_systems(data_dir / "openhands-index"))


def _tiny_openhands(tmp_path: Path, data_dir: Path, entries: dict) -> Path:
    d = tmp_path / "oh" / "results" / "Tiny" / "instance_results"
    d.mkdir(parents=True)
    (d / "swe-bench.json").write_text(json.dumps(entries))
    return tmp_path / "oh"


@pytest.mark.parametrize("bad, match", [
    ({"resolved": "yes", "cost": 0.1}, r"resolved 'yes' is not true, false or null"),
    ({"resolved": True, "cost": "abc"}, r"cost 'abc' is not a number"),
    ({"resolved": True, "cost": -1.0}, r"negative cost"),
    ({"cost": 0.1}, r"not an object with a 'resolved' field"),
])
def test_openhands_malformed_entry_names_file_and_instance(tmp_path, data_dir, bad, match):
    tasks = data_dir / "swebench-verified" / "tasks.jsonl"
    good = json.loads((data_dir / "openhands-index/results/GPT-5.4/instance_results/swe-bench.json").read_text())
    ids = list(good)[:3]
    root = _tiny_openhands(tmp_path, data_dir, {ids[0]: good[ids[0]], ids[1]: bad, ids[2]: good[ids[2]]})
    with pytest.raises(DataError, match=match) as e:
        openhands.load_openhands(root, tasks)
    assert e.value.file.endswith("results/Tiny/instance_results/swe-bench.json") and e.value.row == ids[1]


def test_openhands_unknown_instance_is_an_error(tmp_path, data_dir):
    root = _tiny_openhands(tmp_path, data_dir, {"nope__nope-1": {"resolved": True, "cost": 0.1}})
    with pytest.raises(DataError, match="has no task text") as e:
        openhands.load_openhands(root, data_dir / "swebench-verified" / "tasks.jsonl")
    assert e.value.row == "nope__nope-1"


# --------------------------------------------------------------------------------------------------- mmlu-pro
def test_mmlu_counts_rates_and_skips_match_raw(mmlu, data_dir):
    assert mmlu.models == list(mmlu_pro.MODELS) and len(mmlu.models) == 12
    assert len(mmlu.extras["revised_question_ids"]) == 48 and mmlu.n_prompts == 12032 - 48
    assert mmlu.skipped["non-record entries in model_outputs_DeepSeek-Coder-V2_5shots.zip"] == 43
    revised = set(mmlu.extras["revised_question_ids"])
    n_rev = 0
    for m in mmlu.models:
        recs = [r for r in _raw_zip(data_dir, m) if isinstance(r, dict)]
        n_rev += sum(str(r["question_id"]) in revised for r in recs)
        kept = [r for r in recs if str(r["question_id"]) not in revised]
        got = mmlu.df[mmlu.df["model"] == m]
        assert len(got) == len(kept), m
        assert got["success"].mean() == pytest.approx(np.mean([r["pred"] == r["answer"] for r in kept])), m
    assert mmlu.skipped["outcome rows of questions revised between runs (text, options or answer key differ)"] == n_rev
    succ = mmlu.df.groupby("model")["success"].mean()
    assert succ[QWEN7] == pytest.approx(0.264, abs=0.005)  # data README: 26.4 %
    assert succ["gemini-1.5-pro-002"] == pytest.approx(0.702, abs=0.005)  # 70.2 %
    n_ds = int((mmlu.df["model"] == "DeepSeek-Coder-V2").sum())
    assert mmlu.extras["absent"]["DeepSeek-Coder-V2"] == mmlu.n_prompts - n_ds == 1680  # 10,351 records, 47 revised
    assert set(mmlu.df["category"]) == set(mmlu.df.drop_duplicates("prompt_id")["category"]) and \
        mmlu.df["category"].nunique() == 14


def test_mmlu_no_answer_is_a_failure_and_absent_is_missing(mmlu, data_dir):
    revised = set(mmlu.extras["revised_question_ids"])
    recs = [r for r in _raw_zip(data_dir, QWEN7) if str(r["question_id"]) not in revised]
    nulls = {str(r["question_id"]) for r in recs if r["pred"] is None}
    assert mmlu.extras["no_answer"][QWEN7] == len(nulls) > 2000
    q = mmlu.df[(mmlu.df["model"] == QWEN7) & mmlu.df["prompt_id"].isin(nulls)]
    assert len(q) == len(nulls) and (q["success"] == 0).all()  # ran, gave no valid answer: outcome 0
    m = mmlu.matrix()
    have = {str(r["question_id"]) for r in _raw_zip(data_dir, "DeepSeek-Coder-V2") if isinstance(r, dict)}
    absent = [i for i, p in enumerate(m.prompt_ids) if p not in have]
    assert absent and np.isnan(m.success[absent, m.models.index("DeepSeek-Coder-V2")]).all()


def test_mmlu_prompt_and_cost_are_derived_as_documented(mmlu, data_dir, litellm):
    df = mmlu.df
    assert df["cost_usd"].notna().all() and (df["cost_usd"] > 0).all() and not mmlu.extras["cost_unknown"]
    r = next(r for r in _raw_zip(data_dir, QWEN7) if str(r["question_id"]) not in mmlu.extras["revised_question_ids"])
    row = df[(df["model"] == QWEN7) & (df["prompt_id"] == str(r["question_id"]))].iloc[0]
    assert row["prompt"].startswith(f"Question:\n{r['question']}\nOptions:\nA. {r['options'][0]}\nB. ")
    assert row["output_tokens"] == math.ceil(len(r["generated_text"]) / 4)
    p = litellm.lookup("together-ai-4.1b-8b")  # Qwen1.5-7B: Together AI's 4.1B-8B price
    assert row["cost_usd"] == pytest.approx(row["input_tokens"] * p.input + row["output_tokens"] * p.output)
    # Input = the whole 5-shot prompt: longer than the question alone, the same for every model.
    assert row["input_tokens"] > len(row["prompt"]) / 4 + 5 * mmlu_pro.SHOT_ANSWER_CHARS / 4
    assert df.groupby("prompt_id")["input_tokens"].nunique().max() == 1
    assert mmlu.extras["prices_per_1m"]["gemini-1.5-pro-002"] == pytest.approx([1.25, 5.0])  # fallback table
    for m, key in mmlu_pro.PRICE_KEYS.items():
        if key is not None:
            assert mmlu.extras["price_source"][m] == f"LiteLLM {key}"


def test_mmlu_responses_shots_and_online_path(data_dir, litellm, monkeypatch, tmp_path):
    asked = _serve_locally(monkeypatch, {mmlu_pro.RAW_BASE: data_dir / "mmlu-pro"})
    t = mmlu_pro.load_mmlu_pro(mmlu_pro.RAW_BASE, models=[QWEN7], prices=litellm, with_responses=True)
    assert asked == [f"{mmlu_pro.RAW_BASE}/{mmlu_pro.zip_name(QWEN7)}"]
    raw = _raw_zip(data_dir, QWEN7)
    assert t.n_prompts == len(raw) == 12032  # one file alone: nothing to disagree with
    assert t.extras["responses"][QWEN7][str(raw[5]["question_id"])] == raw[5]["generated_text"]
    assert "responses" not in mmlu_pro.load_mmlu_pro(data_dir / "mmlu-pro", models=[QWEN7], prices=litellm).extras
    # Real validation examples, when given, replace the estimate (one example per category here).
    cats = sorted({r["category"] for r in raw})
    shots = [{"question": f"Q about {c}?", "options": ["yes", "no", "N/A"], "cot_content": "A: Let's think step "
              "by step. Because. The answer is (A).", "category": c} for c in cats]
    (tmp_path / "val.json").write_text(json.dumps(shots))
    s = mmlu_pro.load_mmlu_pro(data_dir / "mmlu-pro", models=[QWEN7], prices=litellm, shots=tmp_path / "val.json")
    r0 = s.df.iloc[0]
    shot = len(mmlu_pro.format_question(f"Q about {r0['category']}?", ["yes", "no"])) + 1 + \
        len("Answer: Let's think step by step. Because. The answer is (A).") + 2
    want = len(mmlu_pro.HEADER.format(subject=r0["category"])) + shot + len(r0["prompt"]) + 1 + len(mmlu_pro.ANSWER_CUE)
    assert r0["input_tokens"] == math.ceil(want / 4)
    (tmp_path / "val1.json").write_text(json.dumps(shots[:1]))
    with pytest.raises(DataError, match="no validation examples for categories"):
        mmlu_pro.load_mmlu_pro(data_dir / "mmlu-pro", models=[QWEN7], prices=litellm, shots=tmp_path / "val1.json")


def _tiny_zip(folder: Path, model: str, payload: bytes) -> Path:
    folder.mkdir(exist_ok=True)
    p = folder / mmlu_pro.zip_name(model)
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr(f"model_outputs_{model}_5shots.json", payload)
    return p


def test_mmlu_malformed_files_name_file_and_row(tmp_path, data_dir, litellm):
    good = [r for r in _raw_zip(data_dir, QWEN7)[:3]]
    # Non-records are skipped and counted; a model without a price keeps NaN cost, counted.
    _tiny_zip(tmp_path, "Tiny", json.dumps(good[:2] + ["total"] + good[2:]).encode())
    t = mmlu_pro.load_mmlu_pro(tmp_path, models=["Tiny"], prices=litellm)
    assert len(t.df) == 3 and t.skipped == {"non-record entries in model_outputs_Tiny_5shots.zip": 1}
    assert t.df["cost_usd"].isna().all() and t.extras["cost_unknown"] == {"Tiny": 3}
    cases = [
        ([good[0], {k: v for k, v in good[1].items() if k != "answer"}], r"missing field 'answer'", 1),
        ([good[0], good[1], {**good[2], "answer": "Z"}], r"answer 'Z' is not one of", 2),
        ([good[0], {**good[1], "pred": 3}], r"pred 3 is not a letter", 1),
        ([good[0], good[0]], r"duplicate question_id", 1),
        ([{**good[0], "options": "not a list ["}], r"options is not a list literal", 0),
    ]
    for records, match, row in cases:
        p = _tiny_zip(tmp_path, "Bad", json.dumps(records).encode())
        with pytest.raises(DataError, match=match) as e:
            mmlu_pro.load_mmlu_pro(tmp_path, models=["Bad"], prices=litellm)
        assert e.value.file == str(p) and e.value.row == row, match
    for payload, match in ((b"{not json", "invalid JSON"), (b'{"a": 1}', "not a list of records")):
        p = _tiny_zip(tmp_path, "Bad", payload)
        with pytest.raises(DataError, match=match) as e:
            mmlu_pro.load_mmlu_pro(tmp_path, models=["Bad"], prices=litellm)
        assert e.value.file == str(p)
    (tmp_path / mmlu_pro.zip_name("Bad")).write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a zip file"):
        mmlu_pro.load_mmlu_pro(tmp_path, models=["Bad"], prices=litellm)


# ------------------------------------------------------------------------------------------ specs, registry, CLI
def _means(m):
    cost = {t: float(np.nanmean(m.cost[:, j])) if np.isfinite(m.cost[:, j]).any() else np.inf
            for j, t in enumerate(m.models)}
    return cost, {t: float(np.nanmean(m.success[:, j])) for j, t in enumerate(m.models)}


def test_shipped_specs_match_the_data(oh, mmlu, data_dir, litellm):
    assert {"openhands-index", "swebench-pooled", "mmlu-pro"} <= set(DATASETS)
    for ds, table in (("openhands-index", oh), ("mmlu-pro", mmlu)):
        spec = RouterSpec.load(default_spec_name(ds))
        assert spec.name == ds and spec.dataset == ds
        cost, succ = _means(table.matrix())
        assert set(spec.models) <= set(cost) and [cost[t] for t in spec.models] == sorted(cost[t] for t in spec.models)
        assert spec.frontier == max(spec.models, key=succ.get) and spec.floors
        for tier in spec.tiers:
            if ds == "openhands-index":
                meta = json.loads((data_dir / "openhands-index/results" / tier.model / "metadata.json").read_text())
                want = (meta["input_price"], meta["output_price"])
            else:
                want = tuple(mmlu.extras["prices_per_1m"][tier.model])
            assert (tier.input_price, tier.output_price) == pytest.approx(want), tier.model
    # openhands-index: the Pareto front of the systems with a known cost; mmlu-pro: all 12 models.
    cost, succ = _means(oh.matrix())
    ok = [t for t in cost if np.isfinite(cost[t])]
    front = {t for t in ok if not any(cost[u] <= cost[t] and succ[u] >= succ[t]
                                      and (cost[u], succ[u]) != (cost[t], succ[t]) for u in ok)}
    assert set(RouterSpec.load("openhands-index").models) == front and len(ok) == 41
    assert set(RouterSpec.load("mmlu-pro").models) == set(mmlu.models)
    assert "together-ai-4.1b-8b" in (SPECS_DIR / "mmlu-pro.yaml").read_text()


@pytest.mark.parametrize("dataset, head", [("openhands-index", "500 prompts x 43 models"),
                                           ("mmlu-pro", "11984 prompts x 12 models")])
def test_describe_cli_with_default_spec(dataset, head, data_dir, capsys):
    from aco_bert.data.describe import main

    assert main(["--dataset", dataset, "--data-dir", str(data_dir), "--spec", "default"]) == 0
    out = capsys.readouterr().out
    assert f"spec {dataset}:" in out and head in out and "oracle success" in out
