"""MLP peer: one small multi-output network over the prompt embedding, a sigmoid per tier.

``P(success_t | x) = sigmoid(w_t . relu(W standardize(x) + c) + b_t)``; the hidden layer is shared by all tiers
(what LLMRouter's MLP router and most "train a classifier on the embedding" baselines do), fitted by
:func:`aco_bert.evaluation.peers.gd.train` (masked loss, early stopping, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aco_bert.evaluation.peers.base import PeerRouter, base_rates, check_features, check_success
from aco_bert.evaluation.peers.gd import GDConfig, Params, sigmoid, standardizer, train
from aco_bert.evaluation.peers.registry import register


@dataclass
class MLPConfig:
    hidden: int = 128
    gd: GDConfig = field(default_factory=GDConfig)


def forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    pre = x @ p["W1"] + p["b1"]
    h = np.maximum(pre, 0.0)
    return h @ p["W2"] + p["b2"], (x, pre, h)


def backward(p: Params, cache: tuple, g: np.ndarray) -> Params:
    x, pre, h = cache
    gh = (g @ p["W2"].T) * (pre > 0)
    return {"W2": h.T @ g, "b2": g.sum(axis=0), "W1": x.T @ gh, "b1": gh.sum(axis=0)}


@register("mlp")
class MLPPeer(PeerRouter):
    """Shared-hidden-layer MLP on standardized embeddings."""

    def __init__(self, seed: int = 0, config: MLPConfig | None = None):
        super().__init__(seed)
        self.config = config or MLPConfig()
        self.params_: Params | None = None

    def fit(self, x, success) -> "MLPPeer":
        x = check_features(x)
        y = check_success(success, len(x))
        self.mu_, self.sd_ = standardizer(x)
        xs = (x - self.mu_) / self.sd_
        rng = np.random.default_rng(self.seed)
        h, t = self.config.hidden, y.shape[1]
        rate = np.clip(base_rates(y), 1e-3, 1 - 1e-3)
        p = {"W1": rng.normal(0, np.sqrt(2.0 / x.shape[1]), (x.shape[1], h)), "b1": np.zeros(h),
             "W2": rng.normal(0, np.sqrt(1.0 / h), (h, t)), "b2": np.log(rate / (1 - rate))}
        p["W2"][:, np.isnan(y).all(axis=0)] = 0.0  # a tier without outcomes gets no gradient: keep it at 0.5
        self.params_ = train(p, forward, backward, xs, y, self.config.gd, rng)
        self.n_tiers_ = t
        return self

    def predict(self, x) -> np.ndarray:
        self.check_fitted()
        x = check_features(x)
        return sigmoid(forward(self.params_, (x - self.mu_) / self.sd_)[0])
