"""kNN peer: the k most cosine-similar training prompts vote, weighted by similarity, per tier.

``P(success_t | x) = sum_j w_j y_jt / sum_j w_j`` over the ``k`` nearest training prompts ``j`` whose outcome for
tier ``t`` is known, ``w_j = max(cos(x, x_j), 0)``; no known neighbour (or zero weight) -> the tier's training base
rate. This is LLMRouter's kNN router, with masking. ``k`` is chosen *inside* ``fit`` from a small grid by
leave-one-out on the training prompts (each prompt predicted by its neighbours other than itself, masked Brier
score): exact inner cross-validation for a lazy learner, and it never looks at the prompts ``predict`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from aco_bert.evaluation.peers.base import PeerRouter, base_rates, check_features, check_success
from aco_bert.evaluation.peers.registry import register


@dataclass
class KnnConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50, 100)  # candidate neighbourhood sizes (capped at n_train - 1)
    center: bool = True  # subtract the training mean before the cosine (removes the embedding's common direction)
    chunk: int = 1024  # query rows per similarity block (bounds memory at chunk x n_train)


def _unit(x: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(nrm > 1e-12, nrm, 1.0)


@register("knn")
class KnnPeer(PeerRouter):
    """Cosine kNN with similarity weights; ``k_`` is the leave-one-out choice."""

    def __init__(self, seed: int = 0, config: KnnConfig | None = None):
        super().__init__(seed)
        self.config = config or KnnConfig()
        self.k_: int | None = None
        self.loo_brier_: dict[int, float] = {}

    def _neighbours(self, q: np.ndarray, k: int, exclude_self: bool) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Per query block: (rows, neighbour indices (b, k) most similar first, their similarities)."""
        c = self.config.chunk
        for s in range(0, len(q), c):
            sim = q[s:s + c] @ self.x_.T
            if exclude_self:
                sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            part = np.take_along_axis(sim, idx, axis=1)
            order = np.argsort(-part, axis=1, kind="stable")
            yield slice(s, s + sim.shape[0]), np.take_along_axis(idx, order, axis=1), \
                np.take_along_axis(part, order, axis=1)

    def _vote(self, idx: np.ndarray, sim: np.ndarray, k: int) -> np.ndarray:
        """(b, T) similarity-weighted success of the first ``k`` neighbours; base rate where no weight."""
        w = np.maximum(sim[:, :k], 0.0)[:, :, None]  # (b, k, 1)
        yk, known = self.y_[idx[:, :k]], self.known_[idx[:, :k]]  # (b, k, T)
        num = (w * np.where(known, yk, 0.0)).sum(axis=1)
        den = (w * known).sum(axis=1)
        return np.where(den > 1e-12, num / np.maximum(den, 1e-12), self.base_)

    def fit(self, x, success) -> "KnnPeer":
        x = check_features(x)
        y = check_success(success, len(x))
        if len(x) < 2:
            raise ValueError("kNN needs at least 2 training prompts")
        self.mu_ = x.mean(axis=0) if self.config.center else np.zeros(x.shape[1])
        self.x_ = _unit(x - self.mu_)
        self.y_, self.known_, self.base_ = y, ~np.isnan(y), base_rates(y)
        ks = sorted({min(k, len(x) - 1) for k in self.config.ks})
        err = {k: 0.0 for k in ks}
        cnt = max(int(self.known_.sum()), 1)
        for rows, idx, sim in self._neighbours(self.x_, ks[-1], exclude_self=True):
            for k in ks:
                d = np.where(self.known_[rows], self._vote(idx, sim, k) - np.nan_to_num(y[rows]), 0.0)
                err[k] += float((d * d).sum())
        self.loo_brier_ = {k: e / cnt for k, e in err.items()}
        self.k_ = min(ks, key=lambda k: (self.loo_brier_[k], k))
        self.n_tiers_ = y.shape[1]
        return self

    def predict(self, x) -> np.ndarray:
        self.check_fitted()
        q = _unit(check_features(x) - self.mu_)
        out = np.empty((len(q), self.n_tiers_))
        for rows, idx, sim in self._neighbours(q, self.k_, exclude_self=False):
            out[rows] = self._vote(idx, sim, self.k_)
        return out
