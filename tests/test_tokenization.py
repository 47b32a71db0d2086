"""`Truncation`: the truncation settings checked once, cutting real SWE-bench issue texts exactly as the plain
keyword functions do (which the runtime and the exported model keep calling)."""

from __future__ import annotations

import pytest

from aco_bert.model.tokenization import Truncation, encode_batch, encode_ids, encode_truncated, load_tokenizer
from aco_bert.model.training_args import TrainConfig


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def texts(swebench) -> list[str]:
    prompts = swebench.matrix().prompts
    return sorted(prompts, key=len)[-3:] + list(prompts[:5])  # the longest issue texts and a few ordinary ones


@pytest.mark.parametrize("kw", [dict(max_length=64), dict(max_length=64, tail_tokens=20),
                                dict(max_length=32, strategy="head"), dict(max_length=16, tail_tokens=0)])
def test_truncation_cuts_as_the_functions_do(tok, texts, kw):
    t = Truncation(**kw)
    args = (t.max_length, t.strategy, t.tail_tokens)
    assert [a.tolist() for a in t.encode_ids(tok, texts)] == [a.tolist() for a in encode_ids(tok, texts, *args)]
    assert t.encode_truncated(tok, texts) == encode_truncated(tok, texts, *args)
    b = t.encode_batch(tok, texts, pad_to_multiple_of=8)
    assert b["input_ids"].tolist() == encode_batch(tok, texts, *args, pad_to_multiple_of=8)["input_ids"].tolist()
    assert b["input_ids"].shape[1] == -(-t.max_length // 8) * 8  # the long texts are cut to max_length
    ids, full = t.encode_truncated(tok, texts[:1])
    assert len(ids[0]) == t.max_length < full[0]


@pytest.mark.parametrize("kw, msg", [(dict(strategy="middle"), "truncation 'middle' not in"),
                                     (dict(max_length=4), "max_length 4: expected an integer >= 8"),
                                     (dict(max_length=64.0), "max_length 64.0"),
                                     (dict(max_length=64, tail_tokens=64), r"tail_tokens 64: .*\[0, max_length=64\)"),
                                     (dict(tail_tokens=-1), "tail_tokens -1")])
def test_truncation_rejects_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Truncation(**kw)


def test_train_config_validates_truncation_once():
    cfg = TrainConfig(max_length=128, truncation="head", tail_tokens=10)
    assert cfg.text_truncation == Truncation(128, "head", 10)
    with pytest.raises(ValueError, match="tail_tokens 300"):
        TrainConfig(max_length=256, tail_tokens=300)
    with pytest.raises(ValueError, match="truncation 'tail' not in"):
        TrainConfig(truncation="tail")
