"""Router model, losses and tokenisation: tiny random DistilBERT, real SWE-bench texts where text matters."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from aco_bert.model.losses import (IGNORE_INDEX, LossWeights, RouterLoss, aux_cross_entropy, balanced_pos_weight,
                             masked_bce_with_logits, masked_log_cost_mse)
from aco_bert.model.modeling import RouterModel, RouterModelConfig
from aco_bert.model.tokenization import encode_batch, encode_ids, load_tokenizer, pad_token_id, truncate_ids

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64,
        "max_position_embeddings": 128}


def tiny_config(**kw) -> RouterModelConfig:
    base = dict(models=["m1", "m2", "m3", "m4"], encoder="tiny", encoder_config=TINY, tokenizer="minilm",
                max_length=64, cost_heads=True, aux_heads={"difficulty": 4}, dropout=0.0)
    base.update(kw)
    return RouterModelConfig(**base)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def texts(swebench):
    m = swebench.matrix()
    return m.prompts[:6]


def test_tokenization_module_imports_without_torch():
    code = ("import sys, aco_bert.model.tokenization as t; tok = t.load_tokenizer('minilm'); "
            "b = t.encode_batch(tok, ['hello world'], 16); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules); "
            "print(b['input_ids'].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 4)"


def test_head_tail_keeps_cls_head_tail_sep(tok, texts):
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    long_text = max(texts, key=len)
    full = tok.encode(long_text).ids
    assert len(full) > 64, "need a prompt longer than max_length"
    ids = encode_ids(tok, [long_text], 64, "head_tail", tail_tokens=16)[0].tolist()
    assert len(ids) == 64 and ids[0] == cls and ids[-1] == sep
    content = full[1:-1]
    assert ids[1:47] == content[:46]  # 64 - 2 specials - 16 tail
    assert ids[47:63] == content[-16:]
    head = encode_ids(tok, [long_text], 64, "head")[0].tolist()
    assert head[:63] == full[:63] and head[-1] == sep
    # short prompts are untouched by either strategy
    assert encode_ids(tok, ["fix the bug"], 64)[0].tolist() == tok.encode("fix the bug").ids


def test_truncate_ids_edge_cases():
    assert truncate_ids([1, 5, 6, 7, 2], [1, 0, 0, 0, 1], 4, "head_tail", tail_tokens=1) == [1, 5, 7, 2]
    assert truncate_ids([1, 5, 6, 7, 2], [1, 0, 0, 0, 1], 4, "head_tail", tail_tokens=0) == [1, 5, 6, 2]
    with pytest.raises(ValueError, match="no room"):
        truncate_ids([1, 5, 6, 2], [1, 0, 0, 1], 2)
    with pytest.raises(ValueError, match="unknown truncation"):
        truncate_ids([1, 5, 6, 2], [1, 0, 0, 1], 3, "middle")


def test_encode_batch_pads_dynamically(tok, texts):
    short = encode_batch(tok, ["a b", "a b c d e"], max_length=64)
    assert short["input_ids"].shape == (2, 7) and short["input_ids"].dtype == np.int64
    assert short["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]
    assert short["input_ids"][0, 4:].tolist() == [pad_token_id(tok)] * 3
    batch = encode_batch(tok, texts, max_length=64, pad_to_multiple_of=8)
    assert batch["input_ids"].shape == (len(texts), 64)
    # a tokenizer that truncates on its own is reset, so the tail survives
    tok2 = load_tokenizer("minilm")
    tok2.enable_truncation(32)
    assert encode_batch(tok2, texts[:1], 64)["input_ids"].tolist() == encode_batch(tok, texts[:1], 64)["input_ids"].tolist()


def test_forward_shapes_and_the_one_forward_path(tok, texts):
    torch.manual_seed(0)
    model = RouterModel(tiny_config()).eval()
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    out = model(**b)
    assert out.logits.shape == (len(texts), 4) and out.pooled.shape == (len(texts), 32)
    assert out.cost.shape == (len(texts), 4) and out.aux["difficulty"].shape == (len(texts), 4)
    assert not hasattr(model, "export_forward")  # one forward: export and parity call forward/heads too
    split = model.heads(model.encode(b["input_ids"], b["attention_mask"]))
    for k in ("logits", "pooled", "cost"):
        assert torch.equal(getattr(split, k), getattr(out, k)), k
    # heads on precomputed pooled embeddings (frozen-encoder training) give the same logits
    assert torch.equal(model(pooled=out.pooled).logits, out.logits)
    # mean pooling ignores padding: a prompt alone equals the same prompt in a padded batch
    alone = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts[:1], 64).items()}
    torch.testing.assert_close(model(**alone).logits[0], out.logits[0], atol=1e-5, rtol=1e-5)
    cls = RouterModel(tiny_config(pooling="cls")).eval()
    cls.load_state_dict(model.state_dict())
    assert torch.equal(cls(**b).pooled, model.encoder(**b).last_hidden_state[:, 0])


def test_save_load_identical_outputs_and_no_pickle(tmp_path, tok, texts):
    torch.manual_seed(1)
    model = RouterModel(tiny_config(attn_implementation="eager")).eval()
    with torch.no_grad():
        model.success_head.bias.add_(torch.arange(4.0))  # make sure trained-looking weights round-trip
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    before = model(**b)
    model.save_pretrained(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    for f in ("model.safetensors", "router_config.json", "config.json", "tokenizer.json"):
        assert f in files
    assert not [f for f in files if f.endswith((".bin", ".pkl", ".pt", ".pth"))]
    loaded = RouterModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    after = loaded(**b)
    for k in ("logits", "pooled", "cost"):
        assert torch.equal(getattr(before, k), getattr(after, k)), k
    assert torch.equal(before.aux["difficulty"], after.aux["difficulty"])
    # the saved tokenizer encodes exactly like the source one
    assert encode_batch(load_tokenizer(tmp_path / "m"), texts, 64)["input_ids"].tolist() == b["input_ids"].tolist()
    # attention kernel chosen at load time (eager for ONNX export), same numbers
    sdpa = RouterModel.from_pretrained(tmp_path / "m", attn_implementation="sdpa")
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(**b).logits, before.logits, atol=1e-5, rtol=1e-5)
    sdpa.set_attn_implementation("eager")
    assert sdpa.encoder.config._attn_implementation == "eager"


def test_from_pretrained_refuses_non_router_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="router_config.json"):
        RouterModel.from_pretrained(tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="pooling"):
        tiny_config(pooling="max")
    with pytest.raises(ValueError, match="no tier"):
        tiny_config(models=[])
    with pytest.raises(ValueError, match="model_type"):
        RouterModel(tiny_config(encoder_config={"dim": 32}))


def test_masked_tier_gets_exactly_zero_gradient(tok, texts):
    torch.manual_seed(2)
    model = RouterModel(tiny_config(cost_heads=False, aux_heads={}))
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    targets = torch.tensor(np.random.default_rng(0).integers(0, 2, (len(texts), 4)), dtype=torch.float32)
    targets[:, 2] = float("nan")  # tier 3 unknown for every prompt
    targets[0, 0] = float("nan")  # one more unknown cell
    loss = masked_bce_with_logits(model(**b).logits, targets)
    assert torch.isfinite(loss)
    loss.backward()
    g = model.success_head.weight.grad
    assert torch.count_nonzero(g[2]) == 0 and model.success_head.bias.grad[2] == 0
    assert torch.count_nonzero(g[0]) > 0 and torch.count_nonzero(g[3]) > 0
    # a missing outcome is not a failure: the loss equals the mean over observed cells only
    with torch.no_grad():
        logits = model(**b).logits
        obs = ~torch.isnan(targets)
        ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[obs], targets[obs])
        as_failure = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets, nan=0.0))
    torch.testing.assert_close(masked_bce_with_logits(logits, targets), ref)
    assert not torch.isclose(ref, as_failure)


def test_loss_parts():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    soft = torch.tensor([[0.25, float("nan")], [1.0, 0.0]])
    p = torch.sigmoid(logits)
    expect = -(0.25 * torch.log(p[0, 0]) + 0.75 * torch.log(1 - p[0, 0]) + torch.log(p[1, 0]) + torch.log(1 - p[1, 1])) / 3
    torch.testing.assert_close(masked_bce_with_logits(logits, soft), expect)
    pw = masked_bce_with_logits(logits, soft, pos_weight=torch.tensor([3.0, 1.0]))
    assert pw > masked_bce_with_logits(logits, soft)
    # every cell unknown -> zero loss (not NaN) and zero gradient
    z = torch.zeros(2, 2, requires_grad=True)
    none = masked_bce_with_logits(z, torch.full((2, 2), float("nan")))
    none.backward()
    assert none.item() == 0 and torch.count_nonzero(z.grad) == 0
    cost = masked_log_cost_mse(torch.tensor([[0.0, 1.0]]), torch.tensor([[float("nan"), np.e - 1]]))
    torch.testing.assert_close(cost, torch.tensor(0.0))
    assert aux_cross_entropy(torch.zeros(2, 3), torch.tensor([IGNORE_INDEX, IGNORE_INDEX])).item() == 0
    torch.testing.assert_close(aux_cross_entropy(torch.zeros(2, 3), torch.tensor([1, IGNORE_INDEX])),
                               torch.log(torch.tensor(3.0)))
    np.testing.assert_allclose(balanced_pos_weight(np.array([[1, 0], [0, 0], [0, np.nan], [0, 1]], dtype=float)),
                               [3.0, 2.0])


def test_router_loss_weights():
    class Out:
        logits = torch.zeros(2, 2)
        cost = torch.zeros(2, 2)
        aux = {"d": torch.zeros(2, 3)}

    batch = {"targets": torch.tensor([[1.0, 0.0], [0.0, float("nan")]]), "cost": torch.full((2, 2), np.e - 1),
             "aux_d": torch.tensor([0, 2])}
    total, parts = RouterLoss(LossWeights(success=1.0, cost=0.5, aux=0.25))(Out(), batch)
    assert set(parts) == {"success", "cost", "aux_d"}
    expect = parts["success"] + 0.5 * parts["cost"] + 0.25 * parts["aux_d"]
    assert abs(total.item() - expect) < 1e-6 and abs(parts["cost"] - 1.0) < 1e-6
    total0, parts0 = RouterLoss(LossWeights(cost=0.0, aux=0.0))(Out(), batch)
    assert set(parts0) == {"success"}


def test_partial_freeze():
    model = RouterModel(tiny_config())
    model.freeze_encoder(1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.embeddings.") for n in frozen)
    assert any(".layer.0." in n for n in frozen) and not any(".layer.1." in n for n in frozen)
    assert all(p.requires_grad for p in model.head_parameters())
    model.freeze_encoder()
    assert all(not p.requires_grad for p in model.encoder.parameters())


def test_low_rank_normalised_head(tmp_path, tok, texts):
    torch.manual_seed(3)
    model = RouterModel(tiny_config(success_rank=2, normalize=True, cost_heads=False, aux_heads={}))
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    out = model(**b)
    assert out.logits.shape == (len(texts), 4)
    assert not torch.allclose(out.pooled.norm(dim=-1), torch.ones(len(texts)))  # `pooled` stays the raw embedding
    scaled = model(pooled=out.pooled * 7.0).logits  # the heads see the L2-normalised embedding
    torch.testing.assert_close(scaled, out.logits)
    targets = torch.ones(len(texts), 4)
    targets[:, 1] = float("nan")
    masked_bce_with_logits(out.logits, targets).backward()
    up = model.success_head[1]
    assert torch.count_nonzero(up.weight.grad[1]) == 0 and up.bias.grad[1] == 0
    assert torch.count_nonzero(up.weight.grad[0]) > 0
    model.eval().save_pretrained(tmp_path / "r")
    again = RouterModel.from_pretrained(tmp_path / "r")
    assert torch.equal(again(**b).logits, model(**b).logits)
    with pytest.raises(ValueError, match="success_rank"):
        tiny_config(success_rank=0)


def test_encoder_layers_keeps_the_first_layers_of_a_pretrained_encoder(tmp_path, tok, texts):
    """MiniLM cut to 2 layers: the kept layers carry the pretrained weights, the pooled output equals the full
    model's layer-2 hidden states, and the cut survives save/load (what export and the runtime rebuild)."""
    full = RouterModel(RouterModelConfig(models=["a", "b"], encoder="minilm", dropout=0.0)).eval()
    cut = RouterModel(RouterModelConfig(models=["a", "b"], encoder="minilm", encoder_layers=2, dropout=0.0)).eval()
    assert full.encoder.config.num_hidden_layers == 6 and len(full.encoder.encoder.layer) == 6
    assert cut.encoder.config.num_hidden_layers == 2 and len(cut.encoder.encoder.layer) == 2
    for name, p in cut.encoder.state_dict().items():
        assert torch.equal(p, full.encoder.state_dict()[name]), name
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    with torch.no_grad():
        h2 = full.encoder(**b, output_hidden_states=True).hidden_states[2]
        m = b["attention_mask"].unsqueeze(-1).float()
        torch.testing.assert_close(cut(**b).pooled, (h2 * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)
    cut.save_pretrained(tmp_path / "m")
    loaded = RouterModel.from_pretrained(tmp_path / "m")
    assert loaded.config.encoder_layers == 2 and len(loaded.encoder.encoder.layer) == 2
    with torch.no_grad():
        assert torch.equal(loaded(**b).pooled, cut(**b).pooled)


def test_encoder_layers_validation_and_random_encoders():
    with pytest.raises(ValueError, match="encoder_layers must be >= 1"):
        tiny_config(encoder_layers=0)
    with pytest.raises(ValueError, match="encoder_layers 7 > the 6 layers"):
        RouterModel(RouterModelConfig(models=["a"], encoder="minilm", encoder_layers=7))
    one = RouterModel(tiny_config(encoder_layers=1))  # DistilBERT's n_layers through the same attribute
    assert one.encoder.config.n_layers == 1 and len(one.encoder.transformer.layer) == 1


def test_every_head_reads_the_normalised_embedding(tok, texts):
    """``normalize: true``: success, cost and aux heads all see the L2-normalised pooled embedding (scaling the
    embedding changes none of them), while ``pooled`` stays raw -- the input the exported graph must match."""
    torch.manual_seed(4)
    model = RouterModel(tiny_config(normalize=True)).eval()
    b = {k: torch.from_numpy(v) for k, v in encode_batch(tok, texts, 64).items()}
    with torch.no_grad():
        out = model(**b)
        scaled = model(pooled=out.pooled * 5.0)
        unit = torch.nn.functional.normalize(out.pooled, dim=-1)
        torch.testing.assert_close(out.cost, model.cost_head(unit))
        assert not torch.allclose(out.cost, model.cost_head(out.pooled), atol=1e-4)
    for k in ("logits", "cost"):
        torch.testing.assert_close(getattr(scaled, k), getattr(out, k))
    torch.testing.assert_close(scaled.aux["difficulty"], out.aux["difficulty"])
