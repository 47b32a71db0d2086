"""Model responses as a canonical post-run column: parsed from RouterBench's ``<model>|model_response`` cells and
MMLU-Pro's output texts (real data), pivoted into ``OutcomeMatrix.responses``, read from user tables, described."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from aco_bert.data import load_outcomes
from aco_bert.data.adapters import mmlu_pro, routerbench
from aco_bert.data.adapters.routerbench import parse_response
from aco_bert.data.describe import describe, main, response_counts
from aco_bert.data.schema import CANONICAL_COLUMNS, TRACE_COLUMNS

GPT4 = "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def rb(data_dir):
    return load_outcomes("routerbench", data_dir=data_dir)


@pytest.fixture(scope="module")
def rb_matrix(rb):
    return rb.matrix()


def _is_none(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda x: x is None, otypes=[bool])(a)


def test_response_is_an_optional_string_column_not_a_router_trace():
    assert CANONICAL_COLUMNS["response"] == ("string", False)
    assert "response" not in TRACE_COLUMNS  # traces are float arrays; responses are their own object array


def test_routerbench_responses_are_parsed_from_the_list_literals(rb_matrix, data_dir):
    m = rb_matrix
    j = m.models.index(GPT4)
    raw = pd.read_csv(data_dir / "routerbench" / "arc_challenge_test.csv")
    cell = raw.loc[raw["sample_id"] == "arc-challenge.test.1", f"{GPT4}|model_response"].iloc[0]
    assert cell == "['A']"
    assert m.responses[m.prompt_ids.index("arc-challenge.test.1"), j] == "A"
    mbpp = m.responses[m.prompt_ids.index("mbpp.dev.1"), j]
    assert "def find_non_primes(upper_limit):\n" in mbpp and "```python" in mbpp  # real newlines, not "\\n"
    assert not mbpp.startswith("[") and not mbpp.endswith("]")
    cat = m.meta["category"].to_numpy()
    letters = [r.strip() for r in m.responses[cat == "arc-challenge", j]]
    assert np.mean([len(r) == 1 and r in "ABCD" for r in letters]) > 0.99
    assert np.mean(["def " in r for r in m.responses[cat == "mbpp", j]]) > 0.99
    assert not any(r.startswith("['") for r in m.responses.ravel())


def test_routerbench_response_pattern_matches_success(rb, rb_matrix):
    m = rb_matrix
    assert m.responses.shape == m.success.shape == (3164, 11)
    assert m.responses.dtype == object
    assert np.array_equal(_is_none(m.responses), np.isnan(m.success))
    assert rb.df["response"].notna().all()  # every RouterBench outcome carries its answer
    assert response_counts(m) == {mod: 3164 for mod in m.models}


def test_subset_and_select_models_carry_responses(rb_matrix):
    m = rb_matrix
    idx = np.array([5, 0, 2000])
    s = m.subset(idx)
    assert s.responses.shape == (3, 11) and s.responses[0, 3] == m.responses[5, 3]
    two = m.select_models([GPT4, "claude-v2"])
    assert two.responses.shape == (3164, 2)
    assert list(two.responses[:, 0]) == list(m.responses[:, m.models.index(GPT4)])
    both = m.select_models(["claude-v2"]).subset([7])
    assert both.responses[0, 0] == m.responses[7, m.models.index("claude-v2")]


def test_tables_without_responses_have_none(swebench):
    m = swebench.matrix()
    assert m.responses is None
    assert m.subset([0, 1]).responses is None and m.select_models(m.models[:2]).responses is None
    assert "responses: none" in describe(swebench)


def test_parse_response_edge_cases():
    assert parse_response("['B\\n']") == "B\n"
    assert parse_response("['a', 'b']") == "a\nb"
    assert parse_response(["x", "y"]) == "x\ny"  # the full RouterBench pickle holds real lists
    assert parse_response("plain answer") == "plain answer"
    assert parse_response("['unterminated") == "['unterminated"  # malformed: the raw string, never a crash
    assert parse_response("[1, 2]") == "[1, 2]"  # not a list of strings: the text itself
    assert parse_response("[__import__('os')]") == "[__import__('os')]"  # literal_eval, never eval
    assert parse_response(float("nan")) is None and parse_response(None) is None


def test_routerbench_malformed_and_missing_cells_never_fail_the_load(data_dir, tmp_path):
    raw = pd.read_csv(data_dir / "routerbench" / "arc_challenge_test.csv").head(6)
    col = f"{GPT4}|model_response"
    raw[col] = raw[col].astype(object)
    raw.loc[1, col] = "['broken"
    raw.loc[2, col] = np.nan
    raw.loc[3, col] = "no list here"
    p = tmp_path / "rb.csv"
    raw.to_csv(p, index=False)
    t = routerbench.load_routerbench(p)
    m = t.matrix()
    j = m.models.index(GPT4)
    ids = raw["sample_id"].tolist()
    got = [m.responses[m.prompt_ids.index(i), j] for i in ids[:4]]
    assert got == [parse_response(raw.loc[0, col]), "['broken", None, "no list here"]
    assert got[0] in ("A", "B", "C", "D")
    assert not np.isnan(m.success[m.prompt_ids.index(ids[2]), j])  # an outcome without a response is kept


def test_mmlu_pro_with_responses_fills_the_column(data_dir):
    models = ["DeepSeek-Coder-V2", "Yi-6b-Chat"]  # DeepSeek lacks ~1,700 questions: None where success is NaN
    t = load_outcomes("mmlu-pro", data_dir, models=models, with_responses=True)
    m = t.matrix()
    assert m.responses is not None and m.responses.shape == m.success.shape
    assert np.array_equal(_is_none(m.responses), np.isnan(m.success))
    assert np.isnan(m.success[:, 0]).sum() > 1000
    with zipfile.ZipFile(io.BytesIO((data_dir / "mmlu-pro" / mmlu_pro.zip_name("Yi-6b-Chat")).read_bytes())) as z:
        recs = json.loads(z.read(next(n for n in z.namelist() if n.endswith(".json"))))
    r = next(r for r in recs if isinstance(r, dict) and str(r["question_id"]) in m.prompt_ids)
    text = r.get("model_outputs", r.get("generated_text"))
    assert m.responses[m.prompt_ids.index(str(r["question_id"])), 1] == text and len(text) > 50
    assert t.extras["responses"]["Yi-6b-Chat"][str(r["question_id"])] == text  # kept for older callers
    assert "responses (model output texts" in describe(t)
    plain = load_outcomes("mmlu-pro", data_dir, models=["Yi-6b-Chat"])
    assert plain.matrix().responses is None and plain.df["response"].isna().all()


def _rb_slice(rb, n: int = 30) -> pd.DataFrame:
    """Real RouterBench rows (multi-line code answers with quotes and commas) for 2 models."""
    pids = rb.df.loc[rb.df["category"] == "mbpp", "prompt_id"].unique()[:n // 2].tolist() + \
        rb.df.loc[rb.df["category"] == "arc-challenge", "prompt_id"].unique()[:n // 2].tolist()
    df = rb.df[rb.df["prompt_id"].isin(pids) & rb.df["model"].isin([GPT4, "claude-v2"])]
    return df[["prompt_id", "prompt", "model", "success", "cost_usd", "response"]].reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_long_user_table_response_round_trips(rb, tmp_path, suffix):
    df = _rb_slice(rb)
    df.loc[3, "response"] = pd.NA  # one outcome without a response
    p = tmp_path / f"mine{suffix}"
    if suffix == ".csv":
        df.to_csv(p, index=False)
    elif suffix == ".jsonl":
        df.astype(object).where(df.notna(), None).to_json(p, orient="records", lines=True)
    else:
        df.to_parquet(p)
    t = load_outcomes(str(p))
    assert "response" not in t.extras.get("ignored_columns", [])
    m = t.matrix()
    for _, row in df.iterrows():
        got = m.responses[m.prompt_ids.index(row["prompt_id"]), m.models.index(row["model"])]
        assert got == (None if pd.isna(row["response"]) else row["response"])
    assert sum(response_counts(m).values()) == len(df) - 1
    assert "responses (model output texts" in describe(t)


def test_wide_user_table_reads_response_companions(rb, tmp_path):
    df = _rb_slice(rb, 10)
    wide = df.pivot(index="prompt_id", columns="model", values="success").reset_index()
    wide.columns.name = None
    wide["prompt"] = wide["prompt_id"].map(df.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"])
    resp = df.pivot(index="prompt_id", columns="model", values="response").reindex(wide["prompt_id"])
    wide[f"{GPT4}|response"] = resp[GPT4].to_numpy()  # plain text
    wide["claude-v2|model_response"] = [repr([r]) for r in resp["claude-v2"]]  # RouterBench's list literal
    p = tmp_path / "wide.csv"
    wide.to_csv(p, index=False)
    t = load_outcomes(str(p))
    assert t.extras["format"] == "wide" and not t.extras.get("ignored_columns")
    m = t.matrix()
    for mod in (GPT4, "claude-v2"):
        assert list(m.responses[:, m.models.index(mod)]) == list(resp.loc[m.prompt_ids, mod])


def test_describe_cli_passes_with_responses(capsys):
    assert main(["--dataset", "dcrouter", "--with-responses"]) == 2  # dcrouter's loader has no responses
    assert "with_responses" in capsys.readouterr().err
