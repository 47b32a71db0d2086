"""LoRA fine-tuning (aco_bert.model.lora) on tiny random DistilBERT and BERT encoders: only adapters and heads
train, the loss falls on a real SWE-bench slice, and the merged model is a plain RouterModel that reloads without
peft and gives the in-memory model's outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_t

from aco_bert.config import load_config
from aco_bert.model.fit import configure_trainable
from aco_bert.model.lora import add_lora, has_lora, lora_target_modules, merge_lora
from aco_bert.model.modeling import RouterModel, RouterModelConfig
from aco_bert.model.trainer import train
from aco_bert.model.training_args import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "tiny-test.yaml"
TINY = {
    "distilbert": {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 2, "n_heads": 2,
                   "hidden_dim": 64, "max_position_embeddings": 128},
    "bert": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128},
}
ENCODERS = list(TINY)
def tiny_router(kind: str, seed: int = 0) -> RouterModel:
    torch.manual_seed(seed)
    return RouterModel(RouterModelConfig(models=["a", "b", "c"], encoder=f"tiny-{kind}", tokenizer="minilm",
                                         encoder_config=dict(TINY[kind]), cost_heads=True, max_length=64))


def tokens(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 29000, (6, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[3:, 14:] = 0  # padded rows: the pooling mask matters
    return ids, mask


@pytest.mark.parametrize("kind", ENCODERS)
def test_lora_trains_only_adapters_and_heads(kind):
    model = configure_trainable(tiny_router(kind), TrainConfig(lora_r=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    heads = {n for n, _ in model.named_parameters() if not n.startswith("encoder.")}
    assert trainable == lora | heads and heads  # every head trains, no encoder weight of its own does
    n_lora = sum(p.numel() for n, p in model.named_parameters() if n in lora)
    assert n_lora == 2 * 3 * (4 * 32 + 32 * 4)  # 2 blocks x q/k/v x (A: r x H, B: H x r)
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora}
    assert names == ({"q_lin", "k_lin", "v_lin"} if kind == "distilbert" else {"query", "key", "value"})
    # a wider target list still never adapts the pooler the router does not run (BERT's pooler.dense)
    targets = lora_target_modules(tiny_router(kind).encoder, ["dense", "out_lin", "lin1", "query", "q_lin"])
    assert targets and not any(t.startswith("pooler") for t in targets)


@pytest.mark.parametrize("kind", ENCODERS)
def test_merged_model_is_a_plain_router_that_reloads_without_peft(kind, tmp_path, monkeypatch):
    model = tiny_router(kind)
    base_keys = set(model.state_dict())
    add_lora(model, r=4, alpha=8)
    with torch.no_grad():  # trained-looking adapters: B starts at zero, which would make merging trivial
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.2)
    model.eval()
    ids, mask = tokens()
    with torch.no_grad():
        with_lora = model(ids, mask)
        base_only = tiny_router(kind).eval()(ids, mask)
    assert (with_lora.logits - base_only.logits).abs().max() > 1e-3  # the adapters change the function
    assert merge_lora(model) == 6 and not has_lora(model) and merge_lora(model) == 0
    assert set(model.state_dict()) == base_keys  # exactly a fresh RouterModel's parameters
    with torch.no_grad():
        merged = model(ids, mask)
    torch.testing.assert_close(merged.logits, with_lora.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(merged.pooled, with_lora.pooled, atol=1e-5, rtol=0)
    out = model.save_pretrained(tmp_path / "router")
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now fails: loading must not need it
    with pytest.raises(ImportError):
        import peft  # noqa: F401
    loaded = RouterModel.from_pretrained(out)
    with torch.no_grad():
        again = loaded(ids, mask)
    torch.testing.assert_close(again.logits, merged.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.cost, merged.cost, atol=1e-5, rtol=0)


def cfg_for(tmp: Path, data_dir: Path, spec: str, **kw) -> TrainConfig:
    base = dict(data_dir=str(data_dir), spec=spec, output_dir=str(tmp / "run"), num_threads=1, max_prompts=40,
                embedding_cache_dir=str(tmp / "cache"), lora_r=4)
    base.update(kw)
    return load_config(TrainConfig, TINY_YAML, base)


@pytest.mark.parametrize("kind", ENCODERS)
def test_lora_fit_loss_falls_and_only_adapted_weights_move(kind, tmp_path, data_dir, spec_path):
    cfg = cfg_for(tmp_path, data_dir, spec_path, encoder=f"tiny-{kind}", encoder_config=TINY[kind], max_steps=30,
                  logging_steps=1, val_fraction=0.0, dropout=0.0, learning_rate=1e-2, head_learning_rate=3e-3,
                  warmup_ratio=0.0, batch_size=8)
    r = train(cfg)
    assert r.mode == "single" and r.global_step == 30
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    log = [x for x in log if "train_success" in x]
    first, last = np.mean([x["train_loss"] for x in log[:5]]), np.mean([x["train_loss"] for x in log[-5:]])
    assert last < first - 0.01, (first, last)
    saved = load_t(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert not any("lora" in k or "base_layer" in k for k in saved)
    loaded = RouterModel.from_pretrained(tmp_path / "run" / "best")
    torch.manual_seed(cfg.seed)  # fit built its model right after seeding: the encoder's starting weights
    start = RouterModel(loaded.config).state_dict()
    adapted = ("q_lin", "k_lin", "v_lin", "query", "key", "value")
    moved = {k for k in saved if k.startswith("encoder.") and not torch.equal(saved[k], start[k])}
    assert moved and all(k.rsplit(".", 2)[-2] in adapted and k.endswith(".weight") for k in moved), sorted(moved)


def test_lora_kfold_predictions_come_from_the_saved_merged_models(tmp_path, data_dir, spec_path):
    from aco_bert.model.data import load_router_data
    from aco_bert.model.embeddings import embed_prompts
    from aco_bert.model.tokenization import load_tokenizer, pad_token_id

    cfg = cfg_for(tmp_path, data_dir, spec_path, kfold=2, max_steps=4, val_fraction=0.25, save_fold_models=True,
                  max_prompts=24, learning_rate=1e-2, num_epochs=1)
    train(cfg)
    oof = load_file(str(tmp_path / "run" / "oof.safetensors"))
    data = load_router_data(cfg)
    tok = load_tokenizer(cfg.tokenizer or cfg.encoder)
    ids = cfg.text_truncation.encode_ids(tok, data.texts)
    for f in range(2):
        test = np.flatnonzero(oof["fold"] == f)
        model = RouterModel.from_pretrained(tmp_path / "run" / f"fold_{f}" / "best")
        pooled = embed_prompts(model, [ids[i] for i in test], pad_token_id(tok))
        np.testing.assert_allclose(pooled, oof["embeddings"][test], atol=1e-5, rtol=0)
        with torch.no_grad():
            logits = model.heads(torch.from_numpy(pooled)).logits.numpy()
        np.testing.assert_allclose(logits, oof["logits"][test], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw, msg", [
    (dict(lora_r=4, freeze_encoder=True), "cannot be combined with freeze_encoder"),
    (dict(lora_r=4, freeze_layers=1), "freeze_layers"),
    (dict(lora_r=-1), "lora_r -1"),
    (dict(lora_r=4, lora_dropout=1.0), "lora_dropout"),
    (dict(lora_r=4, lora_alpha=0.0), "lora_alpha"),
])
def test_bad_lora_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_lora_targets_that_match_nothing_are_a_clear_error():
    with pytest.raises(ValueError, match=r"match no Linear layer of DistilBertModel.*q_lin"):
        add_lora(tiny_router("distilbert"), r=4, targets=["query"])


def test_bench_config_builds_one_train_config_per_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_finetune", REPO / "scripts" / "bench_finetune.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfgs = bench.mode_configs(REPO / bench.DEFAULT_CONFIG, ["batch_size=8", "lora.lora_r=4"], tmp_path, threads=1)
    assert list(cfgs) == ["frozen", "partial", "lora", "full"]
    assert cfgs["frozen"].freeze_encoder and cfgs["frozen"].batch_size == 32  # a mode's own key beats --set KEY
    assert cfgs["partial"].freeze_layers == 2 and cfgs["lora"].lora_r == 4 and cfgs["full"].batch_size == 8
    assert {(c.kfold, c.seed, c.max_length, c.encoder_layers, c.num_threads) for c in cfgs.values()} == {(5, 0, 128, 3, 1)}
    assert len({c.output_dir for c in cfgs.values()}) == 4
    with pytest.raises(SystemExit, match="no mode 'nope'"):
        bench.mode_configs(REPO / bench.DEFAULT_CONFIG, ["nope.lora_r=2"], tmp_path)


def test_killed_lora_run_resumes_to_the_same_merged_model(tmp_path, data_dir, spec_path):
    common = dict(max_steps=6, save_steps=2, val_fraction=0.0, batch_size=4, max_prompts=24, logging_steps=1,
                  lora_dropout=0.1, learning_rate=1e-2)  # the state holds adapters + heads; dropout masks replayed
    train(cfg_for(tmp_path / "a", data_dir, spec_path, **common))
    killed = train(cfg_for(tmp_path / "b", data_dir, spec_path, stop_after_steps=3, **common))
    state = next((tmp_path / "b" / "run" / "state").iterdir())
    keys = load_t(str(state / "model.safetensors")).keys()
    assert any(".lora_A." in k for k in keys) and not any(k.endswith("q_lin.base_layer.weight") for k in keys)
    assert killed.stopped
    train(cfg_for(tmp_path / "b", data_dir, spec_path, resume=True, **common))
    wa = load_t(str(tmp_path / "a" / "run" / "best" / "model.safetensors"))
    wb = load_t(str(tmp_path / "b" / "run" / "best" / "model.safetensors"))
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
