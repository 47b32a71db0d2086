"""Neighbour outcomes as a stacker input: how the k most similar *training* prompts fared on each tier.

Why: a router's heads compress every training outcome into a few weights; the outcomes of the closest training
prompts (same repository, same kind of bug) are a different, local view of difficulty that trees can combine with
the heads. Per tier the block holds the similarity-weighted mean success and mean log cost of the k nearest
training prompts (cosine on the pooled encoder embeddings), each shrunk towards the tier's training mean by
``prior`` pseudo-prompts, so a tier with few known neighbours stays near its base rate and the success logit is
always finite.

Self-exclusion: out of fold (:func:`aco_bert.signals.base.cross_fit`) a prompt's neighbours are the fold's training
prompts, never the prompt itself. The artifact stores the training prompts' normalised embeddings and outcomes
(safetensors). The stored embeddings are the run's out-of-fold pooled embeddings: for a frozen encoder these are
the bundle encoder's own outputs; for a fine-tuned one they come from the fold models (noted, not corrected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aco_bert.signals.base import Signal, SignalData, as_outcomes, logit

EPS = 1e-4  # USD; as the cost model's: keeps log() finite for free calls


@dataclass
class KnnConfig:
    k: int = 20  # neighbours per prompt
    prior: float = 1.0  # pseudo-prompts at the tier's training mean (shrinkage; keeps the logit finite)
    min_weight: float = 1e-3  # a neighbour's weight is max(cosine, min_weight)
    cost: bool = True  # also the neighbours' mean log cost per tier (T more columns)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64; a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def column_means(x: np.ndarray, empty: float) -> np.ndarray:
    """Per-column mean over known (non-NaN) values; ``empty`` for a column with none."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), empty)


class KnnSignal(Signal):
    """Block (P, T) or (P, 2T): [weighted neighbour success per tier, weighted neighbour mean log cost per tier]."""

    name = "knn"
    config_cls = KnnConfig
    needs = ("embeddings",)

    def __init__(self, config: KnnConfig, tiers: Sequence[str], keys: np.ndarray, success: np.ndarray,
                 log_cost: np.ndarray | None):
        super().__init__(config, tiers)
        self.keys = np.asarray(keys, dtype=np.float32)  # (N, H) unit rows
        self.success = np.asarray(success, dtype=np.float64)  # (N, T), NaN = unknown
        self.log_cost = None if log_cost is None else np.asarray(log_cost, dtype=np.float64)
        self._keys64 = self.keys.astype(np.float64)
        self.base_rate = column_means(self.success, 0.5)
        self.base_log_cost = None if self.log_cost is None else column_means(self.log_cost, float(np.log(EPS)))

    @classmethod
    def fit(cls, data: SignalData, success: np.ndarray, cost: np.ndarray | None = None, config: Any = None,
            tiers: Sequence[str] | None = None) -> "KnnSignal":
        cfg = cls.make_config(config)
        if data.embeddings is None:
            raise ValueError("the knn signal needs the prompts' pooled embeddings")
        y = as_outcomes(success, len(data))
        log_cost = None
        if cfg.cost and cost is not None:
            log_cost = np.log(as_outcomes(cost, len(data), "cost") + EPS)
        keys = unit_rows(data.embeddings).astype(np.float32)
        names = list(tiers) if tiers is not None else [str(t) for t in range(y.shape[1])]
        return cls(cfg, names, keys, y, log_cost)

    def neighbours(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices (P, k), cosine similarities (P, k)) of the nearest training prompts, most similar first
        (ties: the lower training index first)."""
        q = unit_rows(embeddings)
        if q.shape[1] != self.keys.shape[1]:
            raise ValueError(f"knn signal expects embeddings of width {self.keys.shape[1]}, got {q.shape[1]}")
        sims = q @ self._keys64.T
        k = min(int(self.config.k), sims.shape[1])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)

    def predict(self, data: SignalData) -> np.ndarray:
        self.check(data)
        idx, sims = self.neighbours(data.embeddings)
        w = np.maximum(sims, self.config.min_weight)[:, :, None]  # (P, k, 1)
        prior = float(self.config.prior)
        cols = [self._weighted(self.success[idx], w, self.base_rate, prior)]
        if self.log_cost is not None:
            cols.append(self._weighted(self.log_cost[idx], w, self.base_log_cost, prior))
        return np.concatenate(cols, axis=1)

    @staticmethod
    def _weighted(vals: np.ndarray, w: np.ndarray, base: np.ndarray, prior: float) -> np.ndarray:
        """Per tier: (sum of w * value over known neighbours + prior * base) / (sum of their w + prior)."""
        ok = ~np.isnan(vals)
        wk = w * ok
        return ((np.where(ok, vals, 0.0) * wk).sum(axis=1) + prior * base) / (wk.sum(axis=1) + prior)

    @property
    def width(self) -> int:
        return len(self.tiers) * (2 if self.log_cost is not None else 1)

    @classmethod
    def scores(cls, block: np.ndarray, n_tiers: int) -> np.ndarray:
        return logit(np.asarray(block, dtype=np.float64)[:, :n_tiers])

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"keys": self.keys, "success": self.success}
        if self.log_cost is not None:
            arrays["log_cost"] = self.log_cost
        return {}, arrays

    @classmethod
    def from_state(cls, config, tiers, state, arrays) -> "KnnSignal":
        return cls(config, tiers, arrays["keys"], arrays["success"], arrays.get("log_cost"))
