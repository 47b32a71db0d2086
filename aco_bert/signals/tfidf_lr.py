"""TF-IDF + logistic regression as a stacker input: one success logit per tier from the prompt's words.

Why: on most datasets this baseline (:class:`aco_bert.evaluation.tfidf.TfidfLR`, whose fit is used unchanged)
matches frozen-encoder heads, and it errs differently (exact identifiers, error names, file paths), so it is both
a candidate best single source and a complement to the heads.

What is stored is only what predicting needs: the vocabulary (JSON, in column order), the idf weights and each
tier's coefficients and intercept (safetensors, float32). :meth:`TfidfLRSignal.predict` rebuilds a
``TfidfVectorizer`` from them -- right after ``fit`` as after ``load`` -- so the stage, the bundle and the runtime
compute the same numbers. A tier whose training labels are one class predicts the logit of its base rate.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from aco_bert.evaluation.tfidf import TfidfLR, TfidfLRConfig
from aco_bert.signals.base import Signal, SignalData, as_outcomes, logit


class TfidfLRSignal(Signal):
    """Block (P, T): per-tier logit of P(success) from TF-IDF word n-grams."""

    name = "tfidf"
    config_cls = TfidfLRConfig

    def __init__(self, config: TfidfLRConfig, tiers: Sequence[str], vocabulary: list[str], idf: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray):
        super().__init__(config, tiers)
        self.vocabulary, self.idf = list(vocabulary), np.asarray(idf, dtype=np.float32)
        self.coef = np.asarray(coef, dtype=np.float32)  # (T, V)
        self.intercept = np.asarray(intercept, dtype=np.float64)  # (T,)
        self._weights = self.coef.T.astype(np.float64)  # (V, T): the product in float64, once
        self._vectorizer = None

    @classmethod
    def fit(cls, data: SignalData, success: np.ndarray, cost: np.ndarray | None = None, config: Any = None,
            tiers: Sequence[str] | None = None) -> "TfidfLRSignal":
        cfg = cls.make_config(config)
        y = as_outcomes(success, len(data))
        model = TfidfLR(cfg).fit(data.texts, y)
        vec = model.vectorizer_
        vocab = vec.get_feature_names_out().tolist()
        coef = np.zeros((y.shape[1], len(vocab)), dtype=np.float32)
        intercept = np.zeros(y.shape[1])
        for t, lr in enumerate(model.models_):
            if lr is None:
                intercept[t] = float(logit(np.nan_to_num(model.base_rates_[t], nan=0.5)))
                continue
            if list(lr.classes_) != [0.0, 1.0]:
                raise ValueError(f"tier {t}: logistic regression classes {list(lr.classes_)} are not [0, 1]")
            coef[t] = lr.coef_[0]
            intercept[t] = float(lr.intercept_[0])
        names = list(tiers) if tiers is not None else [str(t) for t in range(y.shape[1])]
        return cls(cfg, names, vocab, vec.idf_, coef, intercept)

    def vectorizer(self):
        """The ``TfidfVectorizer`` of the fitted vocabulary and idf (built once)."""
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            c = self.config
            v = TfidfVectorizer(ngram_range=(1, c.ngram_max), sublinear_tf=c.sublinear_tf, dtype=np.float32,
                                vocabulary=self.vocabulary)
            v.idf_ = self.idf
            self._vectorizer = v
        return self._vectorizer

    def predict(self, data: SignalData) -> np.ndarray:
        x = self.vectorizer().transform(list(data.texts))
        return np.asarray(x @ self._weights, dtype=np.float64) + self.intercept

    @property
    def width(self) -> int:
        return len(self.tiers)

    @classmethod
    def scores(cls, block: np.ndarray, n_tiers: int) -> np.ndarray:
        return np.asarray(block, dtype=np.float64)[:, :n_tiers]

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"vocabulary": self.vocabulary}, {"idf": self.idf, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_state(cls, config, tiers, state, arrays) -> "TfidfLRSignal":
        return cls(config, tiers, state["vocabulary"], arrays["idf"], arrays["coef"], arrays["intercept"])
