"""TF-IDF + logistic regression per tier: the simple text baseline every learned router must beat.

Why a baseline at all: on SWE-bench Verified a prompt's text carries little signal about which model will solve it
(our own earlier measurement: mean out-of-fold AUC about 0.54), so an encoder's AUC means something only next to
this one, measured on the same folds with the same masking.

Choices, documented once here:

* One ``TfidfVectorizer`` (word 1-2 grams, sublinear tf) fitted on the *training* texts only, shared by all tiers.
* One ``LogisticRegression`` per tier, fitted on the prompts whose outcome for that tier is known (NaN = unknown,
  never a failure).
* Graded outcomes in [0, 1] are trained as *soft labels*: every prompt appears once as a positive with weight ``y``
  and once as a negative with weight ``1 - y``, which is exactly the cross-entropy with target ``y`` (binary labels
  reduce to the ordinary fit). Thresholding at 0.5 would throw away e.g. a 0.4 partial score.
* AUC needs binary labels: :func:`per_tier_auc` counts ``y >= 0.5`` as a success.
* A tier whose training labels are all one class has nothing to learn: it predicts its training base rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

from aco_bert.data.schema import success_matrix
from aco_bert.data.splits import Fold


@dataclass
class TfidfLRConfig:
    ngram_max: int = 2  # word n-grams 1..ngram_max
    min_df: int = 2
    max_features: int | None = 50000
    sublinear_tf: bool = True
    C: float = 1.0  # inverse L2 strength of each tier's logistic regression
    class_weight: str | None = None  # None or "balanced"
    max_iter: int = 2000
    # newton-cg reaches the same optimum as lbfgs here in 3-4 Newton steps, ~50x faster on 500 x 11k TF-IDF.
    solver: str = "newton-cg"
    seed: int = 0


class TfidfLR:
    """Per-tier success probabilities from TF-IDF features. ``fit(texts, success (P, T))`` then ``predict_proba``."""

    def __init__(self, config: TfidfLRConfig | None = None):
        self.config = config or TfidfLRConfig()
        self.vectorizer_ = None
        self.models_: list = []  # per tier: a fitted LogisticRegression, or None (constant tier)
        self.base_rates_: np.ndarray | None = None
        self.n_train_: np.ndarray | None = None  # prompts with a known outcome, per tier

    def _vectorizer(self, n_docs: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        c = self.config
        # min_df above the number of documents would leave an empty vocabulary on tiny training sets.
        return TfidfVectorizer(ngram_range=(1, c.ngram_max), min_df=min(c.min_df, max(1, n_docs)),
                               max_features=c.max_features, sublinear_tf=c.sublinear_tf, dtype=np.float32)

    def fit(self, texts: Sequence[str], success: np.ndarray) -> "TfidfLR":
        from sklearn.linear_model import LogisticRegression

        texts = list(texts)
        y = success_matrix(success, len(texts))
        if not texts:
            raise ValueError("cannot fit on zero texts")
        self.vectorizer_ = self._vectorizer(len(texts))
        X = self.vectorizer_.fit_transform(texts)
        c = self.config
        self.models_, rates, counts = [], [], []
        for t in range(y.shape[1]):
            known = ~np.isnan(y[:, t])
            yt = y[known, t]
            counts.append(int(known.sum()))
            rate = float(yt.mean()) if yt.size else np.nan
            rates.append(rate)
            pos, neg = yt.sum(), (1 - yt).sum()
            if yt.size == 0 or pos <= 0 or neg <= 0:
                self.models_.append(None)  # one class (or no data): predict the base rate
                continue
            Xt = X[np.flatnonzero(known)]
            Xs = sparse.vstack([Xt, Xt]).tocsr()
            ys = np.r_[np.ones(len(yt)), np.zeros(len(yt))]
            ws = np.r_[yt, 1 - yt]
            keep = ws > 0
            lr = LogisticRegression(C=c.C, class_weight=c.class_weight, max_iter=c.max_iter, solver=c.solver,
                                    random_state=c.seed)
            lr.fit(Xs[keep], ys[keep], sample_weight=ws[keep])
            self.models_.append(lr)
        self.base_rates_ = np.array(rates, dtype=float)
        self.n_train_ = np.array(counts, dtype=int)
        return self

    @property
    def constant_tiers(self) -> list[int]:
        """Tiers that predict their base rate because their training labels had a single class."""
        return [t for t, m in enumerate(self.models_) if m is None]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_tiers) probabilities of success."""
        if self.vectorizer_ is None or self.base_rates_ is None:
            raise RuntimeError("TfidfLR.predict_proba called before fit")
        texts = list(texts)
        X = self.vectorizer_.transform(texts)
        out = np.empty((len(texts), len(self.models_)), dtype=float)
        for t, m in enumerate(self.models_):
            out[:, t] = self.base_rates_[t] if m is None else m.predict_proba(X)[:, list(m.classes_).index(1.0)]
        return out


def check_folds(folds: Sequence[Fold], n: int) -> None:
    """Refuse folds that would leak: a prompt in both train and test of a fold, or in two test folds."""
    seen = np.zeros(n, dtype=bool)
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        for name, idx in (("train", tr), ("test", te)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"fold {f.index}: {name} index out of range for {n} prompts")
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f.index}: {np.intersect1d(tr, te).size} prompts are in both train and test")
        if seen[te].any():
            raise ValueError(f"fold {f.index}: test prompts overlap an earlier fold's test prompts")
        seen[te] = True


def oof_predict(texts: Sequence[str], success: np.ndarray, folds: Sequence[Fold],
                config: TfidfLRConfig | None = None) -> np.ndarray:
    """Out-of-fold probabilities (P, T): each prompt is scored by a model that never saw it (folds from
    :func:`aco_bert.data.splits.kfold`). Prompts in no test fold stay NaN."""
    texts = list(texts)
    y = success_matrix(success, len(texts))
    check_folds(folds, len(texts))
    out = np.full(y.shape, np.nan)
    for f in folds:
        model = TfidfLR(config).fit([texts[i] for i in f.train], y[f.train])
        out[f.test] = model.predict_proba([texts[i] for i in f.test])
    return out
