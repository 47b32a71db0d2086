"""Frozen-encoder mode: embed every prompt once, cache the pooled embeddings, train the heads on them.

The cache is keyed by a hash of everything that changes an embedding (encoder, its depth and random-init config +
seed, tokenizer, pooling, truncation and, when chunked, the window settings) and of the texts, so a second run, or
every fold of a k-fold run, reuses it. Windowed prompts (``truncation: chunked``) are embedded window by window in
length-sorted batches (no padding windows to encode), then pooled per prompt by the model's own
:meth:`~aco_bert.model.modeling.RouterModel.pool_chunks`, the step its forward runs on B x C x L inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from aco_bert.model.data import RouterData, model_config_for
from aco_bert.model.modeling import RouterModel
from aco_bert.model.chunking import is_chunked
from aco_bert.model.tokenization import CHUNKED, pad_ids
from aco_bert.model.training_args import TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "checkpoints/.cache/embeddings"


def embedding_key(cfg: TrainConfig, texts: list[str]) -> str:
    """24 hex digits naming the cache file of (encoder settings, texts)."""
    h = hashlib.sha256()
    depth = {"encoder_layers": cfg.encoder_layers} if cfg.encoder_layers is not None else {}  # old keys stay valid
    if cfg.truncation == CHUNKED:
        depth |= {"max_chunks": cfg.max_chunks, "chunk_overlap": cfg.chunk_overlap}
    h.update(json.dumps({**depth, "encoder": cfg.encoder, "encoder_config": cfg.encoder_config,
                         "tokenizer": cfg.tokenizer,
                         "pooling": cfg.pooling, "max_length": cfg.max_length, "truncation": cfg.truncation,
                         "tail_tokens": cfg.tail_tokens, "seed": cfg.seed if cfg.encoder_config else None},
                        sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


@torch.no_grad()
def embed_prompts(model: RouterModel, token_ids: list, pad_id: int, batch_size: int = 32,
                  device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """Pooled embeddings (P, H) of the encoder in eval mode, in length-sorted batches; windowed prompts (a list
    of window id arrays each) pooled over their windows (see the module docstring)."""
    if is_chunked(token_ids):
        return embed_windows(model, token_ids, pad_id, batch_size, device, progress)
    from tqdm.auto import tqdm

    model.eval().to(device)
    lengths = np.array([len(t) for t in token_ids])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(token_ids), model.hidden_size), dtype=np.float32)
    for s in tqdm(range(0, len(order), batch_size), desc="embed", disable=not progress):
        b = order[s: s + batch_size]
        enc = pad_ids([token_ids[i] for i in b], pad_id)
        pooled = model.encode(torch.from_numpy(enc["input_ids"]).to(device),
                              torch.from_numpy(enc["attention_mask"]).to(device))
        out[b] = pooled.float().cpu().numpy()
    return out


@torch.no_grad()
def embed_windows(model: RouterModel, token_ids: list[list[np.ndarray]], pad_id: int, batch_size: int = 32,
                  device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """(P, H): every window of every prompt embedded as one sequence (:func:`embed_prompts`), then each prompt's
    windows pooled by :meth:`RouterModel.pool_chunks` (token-count weights), as the forward pools B x C x L."""
    windows = [w for p in token_ids for w in p]
    flat = torch.from_numpy(embed_prompts(model, windows, pad_id, batch_size, device, progress))
    n_chunks = max(len(p) for p in token_ids)
    pooled = torch.zeros((len(token_ids), n_chunks, flat.shape[1]), dtype=flat.dtype)
    n_tokens = torch.zeros((len(token_ids), n_chunks), dtype=torch.int64)
    k = 0
    for i, p in enumerate(token_ids):
        pooled[i, : len(p)] = flat[k: k + len(p)]
        n_tokens[i, : len(p)] = torch.tensor([len(w) for w in p])
        k += len(p)
    return model.pool_chunks(pooled, n_tokens).numpy()


def cached_embeddings(cfg: TrainConfig, data: RouterData, token_ids: list, pad_id: int,
                      accelerator) -> np.ndarray:
    """Embed every prompt once; cached as safetensors keyed by :func:`embedding_key`."""
    from safetensors.numpy import load_file, save_file

    cache = Path(cfg.embedding_cache_dir or DEFAULT_CACHE_DIR)
    path = cache / f"{embedding_key(cfg, data.texts)}.safetensors"
    if accelerator.is_main_process and not path.exists():
        torch.manual_seed(cfg.seed)  # random-init encoders (encoder_config) are reproducible from the seed
        model = RouterModel(model_config_for(cfg, data))
        t0 = time.perf_counter()
        emb = embed_prompts(model, token_ids, pad_id, cfg.eval_batch_size, accelerator.device,
                            progress=cfg.progress_bar)
        windows = f" ({sum(map(len, token_ids))} windows)" if is_chunked(token_ids) else ""
        logger.info("embedded %d prompts%s in %.1fs -> %s", len(emb), windows, time.perf_counter() - t0, path)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"embeddings": emb}, str(tmp), metadata={"encoder": cfg.encoder, "n": str(len(emb))})
        tmp.replace(path)
    accelerator.wait_for_everyone()
    emb = load_file(str(path))["embeddings"]
    if emb.shape[0] != data.n_prompts:
        raise ValueError(f"embedding cache {path} has {emb.shape[0]} rows for {data.n_prompts} prompts")
    return emb
