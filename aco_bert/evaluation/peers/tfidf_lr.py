"""TF-IDF + LR as a peer: :class:`aco_bert.evaluation.tfidf.TfidfLR` behind the :class:`~.base.PeerRouter`
interface, so the report cross-fits and calibrates it by the same code as every other peer (same numbers as
:func:`aco_bert.evaluation.tfidf.oof_predict`: one TfidfLR fit per inner fold). Its inputs are the prompt texts."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aco_bert.evaluation.peers.base import PeerRouter
from aco_bert.evaluation.peers.registry import register
from aco_bert.evaluation.tfidf import TfidfLR, TfidfLRConfig


@register("tfidf-lr")
class TfidfLRPeer(PeerRouter):
    """Per-tier logistic regression on word 1-2 gram TF-IDF of the prompt text."""

    inputs = "texts"

    def __init__(self, seed: int = 0, config: TfidfLRConfig | None = None):
        super().__init__(seed)
        self.config = config or TfidfLRConfig()
        self.model_: TfidfLR | None = None

    def fit(self, x: Sequence[str], success: np.ndarray) -> "TfidfLRPeer":
        self.model_ = TfidfLR(self.config).fit(list(x), success)
        self.n_tiers_ = len(self.model_.models_)
        return self

    def predict(self, x: Sequence[str]) -> np.ndarray:
        self.check_fitted()
        return self.model_.predict_proba(list(x))
