"""Whole-prompt (``truncation: chunked``) encoding on real SWE-bench prompts with tiny random models.

What must hold: a prompt becomes windows that cover it from the start (each with its own [CLS] ... [SEP]), a
prompt longer than ``max_chunks`` windows keeps the first ``max_chunks - 1`` and its last tokens; the model's
chunked forward of a one-window prompt is the plain forward, and padding windows or tokens change nothing; the
frozen-mode cache is the forward's pooling and is keyed by the window settings; a chunked model exports to an ONNX
graph with a chunks axis and the torch-free runtime (and the batch scorer on it) gives torch's probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aco_bert.artifacts import bundle as B
from aco_bert.model.chunking import pad_chunks, special_frame, window_spans
from aco_bert.model.modeling import RouterModel, RouterModelConfig
from aco_bert.model.tokenization import Truncation, load_tokenizer
from aco_bert.model.training_args import TrainConfig

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64,
        "max_position_embeddings": 128}
CUT = Truncation(max_length=64, strategy="chunked", max_chunks=4)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def texts(swebench) -> list[str]:
    """Real issue texts sorted by length: the shortest (one window) to the longest (cut to head + tail windows)."""
    m = swebench.matrix(swebench.models[:2])
    return sorted(m.prompts, key=len)


def _model(truncation: str = "chunked", **kw) -> RouterModel:
    torch.manual_seed(0)
    cfg = RouterModelConfig(models=["a", "b", "c"], encoder_config=TINY, tokenizer="minilm", max_length=64,
                            truncation=truncation, max_chunks=4, cost_heads=True, dropout=0.0, **kw)
    return RouterModel(cfg).eval()


def test_window_spans():
    assert window_spans(5, 10, 3) == [(0, 5)]
    assert window_spans(25, 10, 3) == [(0, 10), (10, 20), (20, 25)]
    assert window_spans(30, 10, 3) == [(0, 10), (10, 20), (20, 30)]
    assert window_spans(31, 10, 3) == [(0, 10), (10, 20), (21, 31)]  # the first 2 windows and the last 10 tokens
    assert window_spans(16, 10, 3, overlap=4) == [(0, 10), (6, 16)]  # stride 6
    assert window_spans(23, 10, 3, overlap=4) == [(0, 10), (6, 16), (13, 23)]  # 3 windows cover only 22
    for bad in (dict(budget=0), dict(max_chunks=1), dict(overlap=10)):
        with pytest.raises(ValueError, match="windows need"):
            window_spans(20, **({"budget": 10, "max_chunks": 3, "overlap": 0} | bad))


def test_windows_cover_real_prompts_and_long_ones_keep_head_and_tail(tok, texts):
    cls_sep = special_frame(tok)
    assert cls_sep == ([tok.token_to_id("[CLS]")], [tok.token_to_id("[SEP]")])
    sample = texts[::5]  # 100 prompts, shortest first
    windows, full, kept = CUT.encode_chunks(tok, sample)
    assert len(windows[0]) == 1 and len(windows[-1]) == CUT.max_chunks  # the shortest prompt: 1 window; longest: 4
    assert {len(w) for w in windows} == {1, 2, 3, 4}
    for text, ws, n_full, n_kept in zip(sample, windows, full, kept):
        ids = tok.encode(text).ids  # the whole prompt, Rust tokenizer: the ground truth
        content = ids[1:-1]
        assert n_full == len(ids)
        assert all(w[0] == cls_sep[0][0] and w[-1] == cls_sep[1][0] and len(w) <= 64 for w in ws)
        got = [w[1:-1] for w in ws]
        if n_full <= CUT.max_chunks * 62:  # covered: the windows are the prompt, in order
            assert sum(got, []) == content and n_kept == n_full
        else:  # the first 3 windows of the prompt and its last 62 tokens
            assert sum(got[:-1], []) == content[: 3 * 62] and got[-1] == content[-62:]
            assert n_kept == 4 * 62 + 2 < n_full
    # overlap: consecutive windows share 8 edge tokens (a covered prompt; a cut one: its first 3 windows)
    ov = Truncation(64, "chunked", max_chunks=4, chunk_overlap=8)
    (covered, cut), _, _ = ov.encode_chunks(tok, [texts[60], texts[300]])
    assert len(covered) > 1 and all(a[-9:-1] == b[1:9] for a, b in zip(covered, covered[1:]))
    assert len(cut) == 4 and all(a[-9:-1] == b[1:9] for a, b in zip(cut[:2], cut[1:3]))
    assert cut[-1][1:-1] == tok.encode(texts[300]).ids[-63:-1]


def test_truncation_and_configs_validate_chunk_settings():
    with pytest.raises(ValueError, match="max_chunks 1"):
        Truncation(64, "chunked", max_chunks=1)
    with pytest.raises(ValueError, match="chunk_overlap 40"):
        TrainConfig(truncation="chunked", max_length=64, chunk_overlap=40)
    with pytest.raises(ValueError, match="RouterModelConfig: max_chunks 0"):
        RouterModelConfig(models=["a"], truncation="chunked", max_chunks=0)
    with pytest.raises(ValueError, match="unknown truncation strategy 'chunked'"):
        CUT.encode_truncated(load_tokenizer("minilm"), ["x"])
    assert TrainConfig(truncation="chunked", max_chunks=3).text_truncation == Truncation(256, "chunked", None, 3, 0)


def test_one_window_forward_is_the_plain_forward(tok, texts):
    chunked, plain = _model(), _model("head_tail")
    prompt = texts[0]
    enc2 = plain.config.text_truncation.encode_batch(tok, [prompt])
    enc3 = chunked.config.text_truncation.encode_batch(tok, [prompt])
    assert enc3["input_ids"].shape[:2] == (1, 1) and (enc3["input_ids"][:, 0] == enc2["input_ids"]).all()
    with torch.no_grad():
        a = chunked(**{k: torch.from_numpy(v) for k, v in enc3.items()})
        b = plain(**{k: torch.from_numpy(v) for k, v in enc2.items()})
    for name in ("logits", "pooled", "cost"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_output_is_invariant_to_padding_windows_and_tokens(tok, texts):
    model = _model()
    batch = [texts[0], texts[60], texts[-1]]
    windows = CUT.encode_chunks(tok, batch)[0]
    assert len(windows[0]) == 1 and len(windows[1]) in (2, 3) and len(windows[2]) == 4
    enc = pad_chunks(windows, 0)
    wide = {k: np.zeros((3, 7, 80), dtype=np.int64) for k in enc}  # 3 more padding windows, 16 more padding tokens
    for k in enc:
        wide[k][:, :4, :64] = enc[k]
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in enc.items()})
        out_wide = model(**{k: torch.from_numpy(v) for k, v in wide.items()})
        alone = [model(**{k: torch.from_numpy(v) for k, v in pad_chunks([w], 0).items()}) for w in windows]
    torch.testing.assert_close(out_wide.logits, out.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(out_wide.pooled, out.pooled, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat([a.logits for a in alone]), out.logits, atol=1e-6, rtol=0)
    # the pooled prompt is the token-count-weighted mean of its windows' embeddings
    w = [torch.from_numpy(np.asarray(x))[None] for x in windows[1]]
    with torch.no_grad():
        per = torch.cat([model.encode(x, torch.ones_like(x)) for x in w])
    n = torch.tensor([x.shape[1] for x in w], dtype=per.dtype)
    torch.testing.assert_close(out.pooled[1], (per * n[:, None]).sum(0) / n.sum(), atol=1e-6, rtol=0)


def test_frozen_chunked_training_runs_and_its_cache_is_the_forward(data_dir, tmp_path, tok):
    from safetensors.numpy import load_file

    from aco_bert.model.data import load_router_data, model_config_for
    from aco_bert.model.embeddings import embedding_key
    from aco_bert.testing import train_test_run

    cache = tmp_path / "cache"
    opts = dict(kfold=2, final_fit=False, freeze_encoder=True, truncation="chunked", max_chunks=3, max_prompts=32,
                embedding_cache_dir=str(cache), num_epochs=2, aux_targets=[])
    run = train_test_run(tmp_path / "run", data_dir, **opts)
    oof = load_file(str(run / "oof.safetensors"))
    assert oof["logits"].shape == (32, 5) and np.isfinite(oof["logits"]).all()
    [f] = list(cache.iterdir())
    cfg = TrainConfig(**json.loads((run / "oof_meta.json").read_text())["config"])
    data = load_router_data(cfg)
    assert f.stem == embedding_key(cfg, data.texts)
    other = [embedding_key(TrainConfig(**{**cfg.__dict__, **kw}), data.texts)
             for kw in (dict(max_chunks=4), dict(chunk_overlap=8), dict(truncation="head_tail"))]
    assert len({f.stem, *other}) == 4  # the window settings are part of the key
    emb = load_file(str(f))["embeddings"]
    torch.manual_seed(cfg.seed)
    model = RouterModel(model_config_for(cfg, data)).eval()
    enc = cfg.text_truncation.encode_batch(tok, data.texts[:6])
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).pooled.numpy()
    assert enc["input_ids"].shape[1] > 1
    np.testing.assert_allclose(emb[:6], ref, atol=1e-5)


@pytest.fixture(scope="module")
def chunked_bundle(data_dir, tmp_path_factory) -> Path:
    """A real chunked bundle: the tiny model fine-tuned on 3-window prompts (2 folds + final fit, 48 prompts),
    heads-mode stack, exported with its parity gates (fp32 and int8)."""
    from aco_bert.export.build import ExportConfig, export
    from aco_bert.testing import stack_test_run, train_test_run

    root = tmp_path_factory.mktemp("chunked")
    run = train_test_run(root / "run", data_dir, kfold=2, truncation="chunked", max_chunks=3, max_prompts=48)
    stack = stack_test_run(run, data_dir, root / "stack", mode="heads")
    export(ExportConfig(checkpoint=str(run), out=str(root / "bundle"), stack=str(stack), int8=True,
                        data_dir=str(data_dir), validation_slice=48, threads=1))
    return root / "bundle"


def test_chunked_export_runtime_and_scorer_give_torchs_probabilities(chunked_bundle, texts):
    import onnx

    from aco_bert.export.parity import torch_outputs
    from aco_bert.runtime import Router
    from aco_bert.score import score_texts

    model_yaml = yaml.safe_load((chunked_bundle / B.ROUTER_YAML).read_text())["model"]
    assert (model_yaml["truncation"], model_yaml["max_chunks"], model_yaml["chunk_overlap"]) == ("chunked", 3, 0)
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim]
            for i in onnx.load(str(chunked_bundle / B.MODEL_FP32)).graph.input]
    assert dims == [["batch", "chunks", "sequence"]] * 2
    manifest = json.loads((chunked_bundle / B.MANIFEST).read_text())
    assert manifest["parity"]["passed"] and manifest["encoder"]["fused_ops"]["Attention"] == 2
    model = RouterModel.from_pretrained(Path(manifest["source"]["model_dir"])).eval()
    sample = [texts[0], texts[100], texts[250], texts[-1]] + texts[300:330]
    r = Router.load(chunked_bundle, int8=False, threads=1)
    enc = r.encode(sample)
    assert enc.feed["input_ids"].shape[:2] == (len(sample), 3) and enc.n_chunks[0] == 1
    assert enc.truncated[3] and not enc.truncated[0]
    train_ids = model.config.text_truncation.encode_batch(load_tokenizer(chunked_bundle / B.TOKENIZER_DIR), sample)
    assert (train_ids["input_ids"] == enc.feed["input_ids"]).all()  # the runtime cuts windows as training did
    p_torch = 1 / (1 + np.exp(-torch_outputs(model, enc.feed)["logits"]))
    p_ort = 1 / (1 + np.exp(-r.infer(sample)[1]["logits"]))
    np.testing.assert_allclose(p_ort, p_torch, atol=1e-5)
    dec = r.route_batch(sample)
    assert any(x.startswith("truncated:") and "3 windows of 64" in x for x in dec[3].reasons)
    assert dec[3].n_tokens == 3 * 62 + 2
    r_small = Router.load(chunked_bundle, int8=False, threads=1, max_batch=5)  # batches of similar sizes
    np.testing.assert_allclose([d.probs for d in r_small.route_batch(sample)], [d.probs for d in dec], atol=1e-5)
    r8 = Router.load(chunked_bundle, int8=True, threads=1)  # one prompt per call, cut to its own windows
    p8 = 1 / (1 + np.exp(-r8.infer(sample)[1]["logits"]))
    assert np.abs(p8 - p_torch).max() <= 0.03
    scored = score_texts(r, sample, batch_size=8)
    assert scored["error"].isna().all()
    assert scored["tier"].tolist() == [d.tier for d in dec]
    np.testing.assert_allclose(scored["p_success"].to_numpy(float), [d.probs[d.tier - 1] for d in dec], atol=1e-6)


def test_runtime_refuses_a_bundle_whose_inputs_do_not_match_its_truncation(chunked_bundle, tmp_path):
    import shutil

    from aco_bert.runtime import Router
    from aco_bert.types import BundleError

    bad = tmp_path / "bundle"
    shutil.copytree(chunked_bundle, bad)
    cfg = yaml.safe_load((bad / B.ROUTER_YAML).read_text())
    cfg["model"]["truncation"] = "head_tail"
    (bad / B.ROUTER_YAML).write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(BundleError, match="inputs of rank 2"):
        Router.load(bad, verify=False)
