"""Whole-prompt encoding: a prompt becomes up to ``max_chunks`` windows of ``max_length`` tokens (no torch).

Why: head+tail truncation reads 256 of a SWE-bench issue's ~900 tokens; the windows read all of it (up to
``max_chunks`` windows), and the model pools over them (:meth:`aco_bert.model.modeling.RouterModel.pool_chunks`).
Training, the frozen-embedding cache, the exporter and the torch-free runtime all cut windows here, so a prompt is
windowed the same way everywhere.

Each window is a sequence of its own: the tokenizer's special tokens ([CLS] ... [SEP]) around ``budget`` =
``max_length - n_special`` content tokens, consecutive windows sharing ``overlap`` tokens (stride = budget -
overlap). A prompt longer than ``max_chunks`` windows keeps the first ``max_chunks - 1`` windows and one window
holding its last ``budget`` tokens: head+tail over windows, for the same reason head+tail truncation keeps the
tail (the traceback or the expected output is usually at the end). Only the first ``(max_chunks - 2) * stride +
2 * budget`` content tokens and the last ``budget`` are ever tokenised (:func:`encode_truncated`'s exact fast path
with ``tail_tokens = budget``), so a 100k-token prompt costs what an 8-window one does.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

_FRAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """(prefix, suffix) special-token ids the tokenizer puts around one sequence, e.g. ([CLS], [SEP])."""
    try:
        return _FRAMES[tokenizer]
    except (KeyError, TypeError):
        pass
    e = tokenizer.encode("a", add_special_tokens=True)
    content = [i for i, m in enumerate(e.special_tokens_mask) if not m]
    if not content:
        raise ValueError("the tokenizer encodes 'a' as special tokens only: cannot find its sequence frame")
    frame = list(e.ids[: content[0]]), list(e.ids[content[-1] + 1:])
    try:
        _FRAMES[tokenizer] = frame
    except TypeError:  # not weak-referenceable: recomputed next time
        pass
    return frame


def window_spans(n_content: int, budget: int, max_chunks: int, overlap: int = 0) -> list[tuple[int, int]]:
    """[start, end) content-token spans of the windows of a prompt with ``n_content`` content tokens.

    Windows from the start with stride ``budget - overlap`` while ``max_chunks`` of them cover the prompt; a longer
    prompt: the first ``max_chunks - 1`` windows and the last ``budget`` tokens (see the module docstring)."""
    if budget < 1 or max_chunks < 2 or not 0 <= overlap < budget:
        raise ValueError(f"windows need budget >= 1, max_chunks >= 2 and 0 <= overlap < budget; got "
                         f"budget={budget}, max_chunks={max_chunks}, overlap={overlap}")
    stride = budget - overlap
    if n_content <= budget:
        return [(0, n_content)]
    if n_content <= (max_chunks - 1) * stride + budget:
        n = -(-(n_content - budget) // stride) + 1
        return [(i * stride, min(i * stride + budget, n_content)) for i in range(n)]
    return [(i * stride, i * stride + budget) for i in range(max_chunks - 1)] + [(n_content - budget, n_content)]


def encode_chunks(tokenizer, texts: Sequence[str], max_length: int, max_chunks: int, overlap: int = 0
                  ) -> tuple[list[list[list[int]]], list[int], list[int]]:
    """Per text: its windows (each with its own special tokens, at most ``max_length`` ids), the full token count
    before any cut, and the number of distinct tokens the windows keep (special tokens counted once: equal to the
    full count unless the prompt was cut)."""
    prefix, suffix = special_frame(tokenizer)
    n_special = len(prefix) + len(suffix)
    budget = max_length - n_special
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text next to {n_special} special tokens")
    from aco_bert.model.tokenization import encode_truncated  # tokenization imports this module

    window_spans(0, budget, max_chunks, overlap)  # validates the settings even for an empty batch
    head = (max_chunks - 2) * (budget - overlap) + budget  # content tokens of the first max_chunks - 1 windows
    seqs, full = encode_truncated(tokenizer, texts, n_special + head + budget, "head_tail", budget)
    windows, kept = [], []
    for seq, n_full in zip(seqs, full):
        content = seq[len(prefix): len(seq) - len(suffix)]
        spans = window_spans(n_full - n_special, budget, max_chunks, overlap)
        if len(content) < n_full - n_special:  # cut to head + tail: the last span indexes the tail from the end
            spans = spans[:-1] + [(len(content) - budget, len(content))]
        windows.append([prefix + content[a:b] + suffix for a, b in spans])
        kept.append(len(content) + n_special)
    return windows, full, kept


def pad_chunks(prompts: Sequence[Sequence[Sequence[int]]], pad_id: int = 0, pad_to_multiple_of: int | None = None
               ) -> dict[str, np.ndarray]:
    """Pad windows to the batch's most windows and its longest window -> ``input_ids``/``attention_mask`` (int64,
    B x C x L); a padding window is all ``pad_id`` with an all-zero mask (the model gives it weight 0)."""
    if len(prompts) == 0:
        raise ValueError("empty batch")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a prompt without any window")
    n_chunks = max(len(p) for p in prompts)
    length = max(len(w) for p in prompts for w in p)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(prompts), n_chunks, length), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), n_chunks, length), dtype=np.int64)
    for i, p in enumerate(prompts):
        for j, w in enumerate(p):
            ids[i, j, : len(w)] = w
            mask[i, j, : len(w)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def is_chunked(token_ids: Sequence) -> bool:
    """Whether tokenised prompts are windowed (a list of windows per prompt) rather than one id array each."""
    first = token_ids[0] if len(token_ids) else None
    return isinstance(first, (list, tuple)) and len(first) > 0 and hasattr(first[0], "__len__")


def pad_prompts(token_ids: Sequence, pad_id: int = 0, pad_to_multiple_of: int | None = None) -> dict[str, np.ndarray]:
    """:func:`pad_chunks` for windowed prompts (B x C x L), else :func:`aco_bert.model.tokenization.pad_ids`."""
    from aco_bert.model.tokenization import pad_ids

    if is_chunked(token_ids):
        return pad_chunks(token_ids, pad_id, pad_to_multiple_of)
    return pad_ids(token_ids, pad_id, pad_to_multiple_of)


def kept_tokens(prompt) -> int:
    """Tokens a prompt keeps after truncation: the sum over its windows (or its length)."""
    if isinstance(prompt, (list, tuple)):
        return sum(len(w) for w in prompt)
    return len(prompt)


def padded_size(prompt) -> int:
    """Token positions a prompt fills once padded: windows x longest window (or its length), for length grouping."""
    if isinstance(prompt, (list, tuple)):
        return len(prompt) * max(len(w) for w in prompt)
    return len(prompt)
