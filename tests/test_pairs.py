"""pair_table on a real RouterBench slice: one row per run with a response, the original prompt recoverable."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.data import OutcomeTable
from aco_bert.verify.pairs import PAIR_OF, original_prompt_id, pair_table


@pytest.fixture(scope="module")
def rb_slice(data_dir) -> OutcomeTable:
    from aco_bert.data import load_outcomes

    t = load_outcomes("routerbench", data_dir=data_dir)
    keep = list(dict.fromkeys(t.df["prompt_id"]))[:40]
    df = t.df[t.df["prompt_id"].isin(keep)].reset_index(drop=True)
    df.loc[df.index[:7], "response"] = None  # runs without a response get no pair
    return OutcomeTable(df, t.name, extras=t.extras)


def test_pair_table_rows_text_and_grouping(rb_slice):
    pairs = pair_table(rb_slice, max_response_chars=50, max_prompt_chars=300)
    src = rb_slice.df[rb_slice.df["response"].notna()]
    assert len(pairs.df) == len(src) == len(rb_slice.df) - 7
    assert pairs.df["prompt"].str.startswith("Response:\n").all()
    assert (pairs.df["model"].to_numpy() == src["model"].to_numpy()).all()
    assert np.array_equal(pairs.df["success"].to_numpy(), src["success"].to_numpy())
    row, orig = pairs.df.iloc[3], src.iloc[3]
    assert row["prompt"].endswith(orig["prompt"][-300:]) and orig["response"][:50] in row["prompt"]
    # the fold grouping key: from the id, and as prompt meta (with the original's split) on the matrix
    back = [original_prompt_id(p, m) for p, m in zip(pairs.df["prompt_id"], pairs.df["model"])]
    assert back == src["prompt_id"].tolist()
    meta = pairs.matrix().meta
    assert meta[PAIR_OF].tolist() == back
    split = rb_slice.extras["prompt_meta"]["split"]
    assert meta["split"].tolist() == [split[p] for p in back]
    assert pairs.df["prompt_id"].is_unique and len(set(back)) == 40


def test_pair_table_models_and_errors(rb_slice):
    some = rb_slice.models[:2]
    pairs = pair_table(rb_slice, models=some)
    assert set(pairs.df["model"]) == set(some)
    with pytest.raises(ValueError, match="not in table"):
        pair_table(rb_slice, models=["no-such-model"])
    with pytest.raises(ValueError, match="no response"):
        pair_table(OutcomeTable(rb_slice.df.drop(columns="response"), "x"))
