"""Outcome tables larger than memory (aco_bert.data.arrow): a real SWE-bench slice written as a long file gives,
through the chunked, sharded Arrow conversion, exactly the eager table's matrix, texts, errors and training view."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aco_bert.config import load_config
from aco_bert.data import load_outcomes
from aco_bert.data.arrow import ArrowOutcomes, convert
from aco_bert.data.arrow_seq import ArrowTexts, ArrowTokenIds
from aco_bert.data.schema import DataError
from aco_bert.model.data import PromptInputs, load_router_data
from aco_bert.model.tokenization import load_tokenizer
from aco_bert.model.training_args import TrainConfig
from aco_bert.spec import RouterSpec

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "tiny-test.yaml"
CHUNKS = dict(chunk_rows=97, shards=3)  # many chunks and shards on a small file: every cross-chunk path runs


@pytest.fixture(scope="module")
def long_frame(swebench) -> pd.DataFrame:
    """60 real prompts x 24 models, with the per-prompt `difficulty`/`repo` columns, rows shuffled (prompts'
    rows spread over chunks and shards)."""
    df = swebench.df
    keep = df["prompt_id"].drop_duplicates().iloc[:60]
    df = df[df["prompt_id"].isin(keep)].copy()
    for k, v in swebench.extras["prompt_meta"].items():
        df[k] = df["prompt_id"].map(v)
    df["attempt"] = np.arange(len(df))  # varies within a prompt: ignored, and listed, by both loaders
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


def write(df: pd.DataFrame, path: Path) -> str:
    {".parquet": lambda: df.to_parquet(path), ".csv": lambda: df.to_csv(path, index=False),
     ".jsonl": lambda: df.to_json(path, orient="records", lines=True)}[path.suffix]()
    return str(path)


def assert_same_matrix(a, b) -> None:
    assert a.prompt_ids == b.prompt_ids and a.models == b.models
    assert list(a.prompts) == list(b.prompts)
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.cost, b.cost)
    assert a.traces.keys() == b.traces.keys()
    for k in a.traces:
        np.testing.assert_array_equal(a.traces[k], b.traces[k])
    pd.testing.assert_frame_equal(a.meta, b.meta)
    assert (a.responses is None) == (b.responses is None)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_arrow_matrix_equals_eager(tmp_path, long_frame, suffix):
    path = write(long_frame, tmp_path / f"outcomes{suffix}")
    eager = load_outcomes(path)
    lazy = load_outcomes(path, streaming=True, cache_dir=str(tmp_path / "cache"), **CHUNKS)
    assert isinstance(lazy, ArrowOutcomes) and lazy.models == eager.models and lazy.n_prompts == eager.n_prompts
    assert lazy.extras["ignored_columns"] == eager.extras["ignored_columns"] == ["attempt"]
    # the prompt order follows the selected models' first rows, as the eager pivot does
    some = eager.models[5:9]
    for models in (None, some, list(reversed(some))):
        assert_same_matrix(eager.matrix(models), lazy.matrix(models))
    m = lazy.matrix(some)
    assert isinstance(m.prompts, ArrowTexts)
    sub = m.subset([3, 0, 7])
    assert isinstance(sub.prompts, ArrowTexts) and list(sub.prompts) == [m.prompts[3], m.prompts[0], m.prompts[7]]
    assert pickle.loads(pickle.dumps(sub.prompts))[1] == m.prompts[0]  # workers reopen the file, copy nothing
    sel = load_outcomes(path, streaming=True, cache_dir=str(tmp_path / "cache"), models=some, **CHUNKS)
    assert_same_matrix(load_outcomes(path, models=some).matrix(), sel.matrix())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_malformed_rows_give_the_eager_error(tmp_path, long_frame, suffix):
    def both(df: pd.DataFrame, tag: str) -> str:
        path = write(df, tmp_path / f"{tag}{suffix}")
        with pytest.raises(DataError) as eager:
            load_outcomes(path)
        with pytest.raises(DataError) as lazy:
            load_outcomes(path, streaming=True, cache_dir=str(tmp_path / "cache"), **CHUNKS)
        assert str(lazy.value) == str(eager.value) and lazy.value.row == eager.value.row
        return str(lazy.value)

    bad = long_frame.astype({"success": object}).copy()
    bad.loc[1100, "success"] = "yes"
    assert "row 1100" in both(bad, "nonnumeric") and "non-numeric success" in both(bad, "nonnumeric")
    dup = pd.concat([long_frame, long_frame.iloc[[10]]], ignore_index=True)  # the copy lands in another chunk
    assert "duplicate prompt x model" in both(dup, "dup")
    two = long_frame.copy()
    pid = two["prompt_id"].iloc[5]
    late = two.index[two["prompt_id"] == pid][-1]
    two.loc[late, "prompt"] = "another text for the same id"
    assert "has more than one prompt text" in both(two, "texts")


def test_cache_reused_until_the_file_changes(tmp_path, long_frame):
    path = tmp_path / "o.parquet"
    write(long_frame, path)
    cache = tmp_path / "cache"
    a = convert(path, cache_dir=cache, **CHUNKS)
    stamp = (a / "prompts.arrow").stat().st_mtime_ns
    assert convert(path, cache_dir=cache, **CHUNKS) == a and (a / "prompts.arrow").stat().st_mtime_ns == stamp
    fewer = long_frame[long_frame["prompt_id"].isin(long_frame["prompt_id"].unique()[:25])]
    write(fewer.drop(columns=["difficulty", "repo", "attempt"]), path)  # and no extra column at all
    b = convert(path, cache_dir=cache, **CHUNKS)
    assert b != a and ArrowOutcomes(b).n_prompts == 25 and ArrowOutcomes(a).n_prompts == 60
    assert_same_matrix(load_outcomes(path).matrix(), ArrowOutcomes(b).matrix())
    assert not list(cache.glob("*.partial*"))  # work directories are never left behind


def test_streaming_options_refused_clearly(tmp_path, long_frame):
    path = write(long_frame, tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="not supported with streaming"):
        load_outcomes(path, streaming=True, rename={"x": "turns"})
    with pytest.raises(ValueError, match="cost rules"):
        load_outcomes(path, streaming=True, cost={"prices": "litellm"})
    with pytest.raises(ValueError, match="named dataset"):
        load_outcomes("swebench-verified", streaming=True)
    wide = long_frame.pivot(index="prompt_id", columns="model", values="success").reset_index()
    wide["prompt"] = "text"
    with pytest.raises(ValueError, match="wide file"):
        load_outcomes(write(wide, tmp_path / "w.parquet"), streaming=True, cache_dir=str(tmp_path / "c"))


def test_load_router_data_streaming_equals_eager(tmp_path, long_frame, data_dir):
    path = write(long_frame, tmp_path / "o.parquet")
    base = dict(dataset=path, data_dir=str(data_dir), num_threads=1, max_prompts=40)
    eager = load_router_data(load_config(TrainConfig, TINY_YAML, base))
    opts = {"streaming": True, "cache_dir": str(tmp_path / "cache"), **CHUNKS}
    cfg = load_config(TrainConfig, TINY_YAML, {**base, "dataset_options": opts})
    lazy = load_router_data(cfg)
    assert isinstance(lazy.texts, ArrowTexts) and list(lazy.texts) == eager.texts
    table = load_outcomes(path, streaming=True, cache_dir=str(tmp_path / "cache"), **CHUNKS)
    assert (RouterSpec.every_model(table.cost_table(), "x").models  # the no-spec tier order: cheapest first
            == RouterSpec.every_model(load_outcomes(path), "x").models)
    with pytest.raises(TypeError, match="no long frame"):
        table.df
    assert lazy.prompt_ids == eager.prompt_ids and lazy.models == eager.models
    np.testing.assert_array_equal(lazy.targets, eager.targets)
    np.testing.assert_array_equal(lazy.cost, eager.cost)
    assert lazy.aux.keys() == eager.aux.keys() == {"difficulty"} and lazy.aux_labels == eager.aux_labels
    np.testing.assert_array_equal(lazy.aux["difficulty"], eager.aux["difficulty"])
    # tokenisation writes memory-mapped ids equal to the in-memory ones; length grouping reads their offsets
    tok = load_tokenizer(cfg.tokenizer)
    for trunc in (cfg.text_truncation, load_config(TrainConfig, TINY_YAML, {"truncation": "chunked"}).text_truncation):
        ids = trunc.encode_ids(tok, lazy.texts)
        ref = trunc.encode_ids(tok, eager.texts)
        assert isinstance(ids, ArrowTokenIds) and len(ids) == len(ref)
        for got, want in zip(ids, ref):
            if isinstance(want, list):
                assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))
            else:
                assert got.dtype == np.int64 and np.array_equal(got, want)
        np.testing.assert_array_equal(PromptInputs(lazy, ids, 0).lengths, PromptInputs(eager, ref, 0).lengths)
        assert trunc.encode_ids(tok, lazy.texts).path == ids.path  # cached: tokenised once


def test_stack_stage_dataset_ref_reads_the_arrow_matrix(tmp_path, long_frame, data_dir):
    """The stack stage reloads the table through the run's DatasetRef: its options carry streaming."""
    from aco_bert.model.data import run_info

    path = write(long_frame, tmp_path / "o.parquet")
    opts = {"streaming": True, "cache_dir": str(tmp_path / "cache"), **CHUNKS}
    cfg = load_config(TrainConfig, TINY_YAML, dict(dataset=path, data_dir=str(data_dir), dataset_options=opts))
    ref = run_info(cfg, load_router_data(cfg)).dataset
    table = ref.load(spec=cfg.spec)
    assert isinstance(table, ArrowOutcomes)
    models = load_outcomes(path).models[:5]
    assert_same_matrix(load_outcomes(path).matrix(models), table.matrix(models))
