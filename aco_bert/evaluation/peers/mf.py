"""Matrix-factorisation peer, RouteLLM-style: a learned embedding per model, a projection of the prompt.

RouteLLM's MF router scores a (prompt, model) pair as ``w . (v_model * W x)`` (elementwise product of the model's
embedding and the projected prompt embedding); folding ``w`` into ``v`` gives the form used here, one score per
tier with its own bias: ``P(success_t | x) = sigmoid(v_t . W standardize(x) + b_t)``. RouteLLM trains on pairwise
preferences between two models; here every tier has its own observed success, so the loss is the masked
per-(prompt, tier) cross-entropy (:func:`aco_bert.evaluation.peers.gd.train`, seeded, early stopping). The factor
dimension ``dim`` bounds the rank of the prompt-to-tier map; the L2 penalty on both factors acts as a low-rank
(nuclear-norm-like) prior that tiers share directions of difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aco_bert.evaluation.peers.base import PeerRouter, base_rates, check_features, check_success
from aco_bert.evaluation.peers.gd import GDConfig, Params, sigmoid, standardizer, train
from aco_bert.evaluation.peers.registry import register


@dataclass
class MFConfig:
    dim: int = 16  # model-embedding / projected-prompt dimension
    gd: GDConfig = field(default_factory=GDConfig)


def forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    z = x @ p["W"]
    return z @ p["V"].T + p["b"], (x, z)


def backward(p: Params, cache: tuple, g: np.ndarray) -> Params:
    x, z = cache
    return {"V": g.T @ z, "b": g.sum(axis=0), "W": x.T @ (g @ p["V"])}


@register("mf")
class MFPeer(PeerRouter):
    """``sigmoid(v_t . W x + b_t)``: model embeddings ``V`` (T, dim), prompt projection ``W`` (H, dim)."""

    def __init__(self, seed: int = 0, config: MFConfig | None = None):
        super().__init__(seed)
        self.config = config or MFConfig()
        self.params_: Params | None = None

    def fit(self, x, success) -> "MFPeer":
        x = check_features(x)
        y = check_success(success, len(x))
        self.mu_, self.sd_ = standardizer(x)
        rng = np.random.default_rng(self.seed)
        d, t = self.config.dim, y.shape[1]
        rate = np.clip(base_rates(y), 1e-3, 1 - 1e-3)
        p = {"W": rng.normal(0, np.sqrt(1.0 / x.shape[1]), (x.shape[1], d)),
             "V": rng.normal(0, np.sqrt(1.0 / d), (t, d)), "b": np.log(rate / (1 - rate))}
        p["V"][np.isnan(y).all(axis=0)] = 0.0  # a tier without outcomes gets no gradient: keep it at 0.5
        self.params_ = train(p, forward, backward, (x - self.mu_) / self.sd_, y, self.config.gd, rng)
        self.n_tiers_ = t
        return self

    @property
    def model_embeddings(self) -> np.ndarray:
        """(T, dim) learned tier embeddings ``v_t``."""
        self.check_fitted()
        return self.params_["V"]

    def predict(self, x) -> np.ndarray:
        self.check_fitted()
        x = check_features(x)
        return sigmoid(forward(self.params_, (x - self.mu_) / self.sd_)[0])
