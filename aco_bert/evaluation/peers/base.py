"""What a peer reference router is: ``fit(x_train, success_train) -> self``, ``predict(x) -> (n, T) P(success)``.

Why peers at all: a learned router is only worth its complexity if it beats what a user would otherwise reach for
(nearest neighbours, a small MLP, RouteLLM's matrix factorisation, TF-IDF + LR) on the *same* prompts, folds and
features. A peer is fitted on outer-train prompts only and its probabilities go through exactly the report's
calibration, curve and selection code, so its numbers are comparable with the neural router's.

Conventions shared by every peer: ``success`` is (n, T) in [0, 1] with NaN = outcome unknown (masked out of every
fit, never a failure); graded outcomes are soft labels; a tier without any known outcome predicts 0.5. ``inputs``
says what ``x`` is: ``"embeddings"`` (an (n, H) float array) or ``"texts"`` (a list of prompt strings).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from aco_bert.data.schema import success_matrix as check_success  # noqa: F401  (the peers' name for it)


def check_features(x: Any, what: str = "x") -> np.ndarray:
    """``x`` as a finite (n, H) float array; a clear error naming the first bad row otherwise."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n_prompts, n_features) array, got shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if bad.size:
        raise ValueError(f"{what}: {bad.size} rows with NaN/inf features, e.g. row {int(bad[0])}")
    return a


def base_rates(y: np.ndarray) -> np.ndarray:
    """Per-tier mean of the known outcomes (0.5 for a tier with none)."""
    known = ~np.isnan(y)
    tot = np.where(known, y, 0.0).sum(axis=0)
    cnt = known.sum(axis=0)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.5)


class PeerRouter(ABC):
    """A reference router: one ``fit`` on training prompts, one ``predict`` of per-tier P(success)."""

    name: ClassVar[str] = "peer"  # set by ``@register``
    inputs: ClassVar[str] = "embeddings"  # what fit/predict take: "embeddings" (n, H) floats, or "texts"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.n_tiers_: int | None = None

    @abstractmethod
    def fit(self, x: Any, success: np.ndarray) -> "PeerRouter":
        """Fit on training prompts ``x`` and their (n, T) outcomes (NaN = unknown); returns self."""

    @abstractmethod
    def predict(self, x: Any) -> np.ndarray:
        """(n, T) P(success) of each tier for prompts ``x``."""

    def check_fitted(self) -> None:
        if self.n_tiers_ is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
