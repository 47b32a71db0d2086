"""Seeded K-fold splits by prompt, and the one rule for a seeded prompt subsample.

Splitting is always by prompt: a prompt never appears in both train and test. Thresholds, lambdas and other
policy knobs are chosen on inner folds only, so the outer test fold is never seen by any selection step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # positions into the prompt list
    test: np.ndarray


def kfold(prompt_ids: Sequence[str] | int, k: int = 5, seed: int = 0) -> list[Fold]:
    """Seeded K-fold by prompt. Duplicate prompt ids always land in the same fold."""
    ids = [str(i) for i in range(prompt_ids)] if isinstance(prompt_ids, int) else [str(p) for p in prompt_ids]
    uniq = list(dict.fromkeys(ids))
    if k < 2 or k > len(uniq):
        raise ValueError(f"k={k} folds need 2 <= k <= number of prompts ({len(uniq)})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[j]: pos % k for pos, j in enumerate(order)}
    assign = np.array([fold_of[p] for p in ids])
    return [Fold(f, np.flatnonzero(assign != f), np.flatnonzero(assign == f)) for f in range(k)]


def subsample(n: int, max_prompts: int | None, seed: int = 0) -> np.ndarray:
    """Positions of a seeded random slice of ``n`` prompts, in their original order (all of them when
    ``max_prompts`` is None or >= n). The one rule every stage uses, so ``--max_prompts N`` picks the same prompts in
    ``train``, ``report`` and ``demo``."""
    if max_prompts is None or max_prompts >= n:
        return np.arange(n)
    if max_prompts < 1:
        raise ValueError(f"max_prompts must be >= 1, got {max_prompts}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_prompts])
