"""Running a peer the way the nested report runs every probability source: held-out predictions for the
outer-train prompts (one fit per inner fold) and the outer-test predictions of one fit on all outer-train prompts.

Why both: the report chooses each policy knob on the training prompts' *held-out* probabilities and calibrates
with an isotonic map fitted on them; a peer predicting its own training prompts would look better than it is.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from aco_bert.data.splits import Fold
from aco_bert.evaluation.peers.base import check_success
from aco_bert.evaluation.peers.registry import make_peer


def take(x: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array, or those items of a list of texts."""
    if isinstance(x, np.ndarray):
        return x[idx]
    return [x[int(i)] for i in idx]


def cross_fit(name: str, x: Any, success: np.ndarray, train: np.ndarray, test: np.ndarray,
              inner: Sequence[Fold], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(held-out P for train (len(train), T), P for test (len(test), T))`` of peer ``name``.

    ``x``/``success`` cover all prompts; ``train``/``test`` index them; ``inner`` folds are positions *into*
    ``train``. A training prompt in no inner test fold keeps NaN.
    """
    train, test = np.asarray(train), np.asarray(test)
    y = check_success(success, len(x))
    x_tr, y_tr = take(x, train), y[train]
    oof = np.full(y_tr.shape, np.nan)
    for g in inner:
        peer = make_peer(name, seed).fit(take(x_tr, g.train), y_tr[g.train])
        oof[g.test] = peer.predict(take(x_tr, g.test))
    p_te = make_peer(name, seed).fit(x_tr, y_tr).predict(take(x, test))
    return oof, p_te
