"""Probability sources of the nested report that are fitted inside each outer fold: the peer routers.

Every source hands the report two things per outer fold (see :mod:`aco_bert.evaluation.report`): training-side
probabilities that are held out *and* cross-fitted-calibrated (what the policy knobs are chosen on) and test-side
probabilities calibrated by an isotonic map fitted on the training prompts' held-out scores. A peer
(:mod:`aco_bert.evaluation.peers`: ``tfidf-lr`` on the texts, ``knn``/``mlp``/``mf`` on embeddings) gets there by
:func:`~aco_bert.evaluation.peers.cross_fit` plus :func:`peer_source`.

Which embeddings: the neural run's pooled ``embeddings`` from ``oof.safetensors``. With a frozen encoder
(``freeze_encoder: true``) they are simply the encoder's embeddings of each prompt, the same for every fold. With a
fine-tuned encoder each prompt's row comes from the fold model that did *not* train on it; the outer-train rows
then come from models that did see the outer-test prompts' outcomes, the same second-order dependence the stacker
(fed the same embeddings and OOF logits) already has. Without a neural run there are no embeddings and the
embedding peers are skipped (a note says so); ``tfidf-lr`` needs only the texts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from aco_bert.data.splits import Fold
from aco_bert.decision.calibration import IsotonicCalibrator


def cross_calibrate(scores: np.ndarray, labels: np.ndarray, folds: Sequence[Fold]) -> np.ndarray:
    """Cross-fitted calibration of held-out scores: each prompt's score mapped by an isotonic fit on the *other*
    folds. Why: the training-side probabilities are what policy knobs are chosen on; calibrated in-sample, the
    step function memorises those prompts' outcomes and every knob looks better than it will be on new prompts."""
    out = np.full(scores.shape, np.nan)
    for f in folds:
        out[f.test] = IsotonicCalibrator.fit(scores[f.train], labels[f.train]).transform(scores[f.test])
    return out


def peer_names(peers: Any) -> list[str]:
    """``--peers`` as a list of registered peer names: a list, a comma-separated string, or None/"" (none)."""
    from aco_bert.evaluation.peers import peer_class

    if peers is None:
        return []
    if isinstance(peers, str):
        peers = [p.strip() for p in peers.split(",")]
    out = [str(p) for p in peers if str(p)]
    for p in out:
        peer_class(p)  # unknown name: ValueError naming the known ones
    return list(dict.fromkeys(out))


def plan_peers(peers: Sequence[str], tfidf: bool, embeddings: np.ndarray | None,
               log: Callable[[str], Any] = print) -> tuple[list[str], list[str]]:
    """(peer sources to run, in order, notes): ``tfidf-lr`` first when ``tfidf``, then ``peers``; an embedding
    peer without embeddings (no neural run, or a run without them) is skipped with a note."""
    from aco_bert.evaluation.peers import peer_class

    names = (["tfidf-lr"] if tfidf else []) + [p for p in peers if not (tfidf and p == "tfidf-lr")]
    bad = None if embeddings is None else np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    run, notes = [], []
    for p in names:
        if peer_class(p).inputs == "embeddings" and (embeddings is None or bad.size):
            why = ("it needs prompt embeddings, i.e. an --oof_run whose oof.safetensors has 'embeddings'"
                   if embeddings is None else f"{bad.size} prompts have NaN embeddings, e.g. row {int(bad[0])}")
            notes.append(f"peer {p!r} skipped: {why}")
            log(f"[router-eval] {notes[-1]}")
            continue
        run.append(p)
    return run, notes


def peer_source(name: str, texts: Sequence[str], embeddings: np.ndarray | None, y: np.ndarray, train: np.ndarray,
                test: np.ndarray, inner: Sequence[Fold], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cross-calibrated held-out P for ``train``, calibrated P for ``test``) of peer ``name`` in one outer fold;
    ``inner`` folds are positions into ``train``."""
    from aco_bert.evaluation.peers import cross_fit, peer_class

    x = list(texts) if peer_class(name).inputs == "texts" else embeddings
    oof, raw_te = cross_fit(name, x, y, train, test, inner, seed)
    y_tr = y[np.asarray(train)]
    cal = IsotonicCalibrator.fit(oof, y_tr)
    return cross_calibrate(oof, y_tr, inner), cal(raw_te)
