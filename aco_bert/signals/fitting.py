"""Fitting the stacker's signals: which of them a run can use, their out-of-fold blocks and their refits.

Why one module: the stack stage (which ships the refits in the bundle) and the nested router report (which must
judge *that* stacker, signals included, on prompts it never saw) need exactly the same blocks. The report used to
stack only the head logits, embeddings and features, so its "stacked" row could end below the TF-IDF or kNN peer
it was shown next to -- while the shipped stacker had those signals as inputs and as candidate single sources.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from aco_bert.signals.base import Signal, SignalData, cross_fit
from aco_bert.signals.metadata import metadata_value


def signal_data(m, spec, embeddings) -> SignalData:
    """What the signals may read about the prompts of ``m`` (an OutcomeMatrix): texts, pooled embeddings, the
    spec's metadata columns (a declared column the dataset lacks is an error naming both)."""
    missing = [c for c in spec.metadata if c not in m.meta.columns]
    if missing:
        raise ValueError(f"spec {spec.name!r} declares metadata {missing}, the dataset has only "
                         f"{[c for c in m.meta.columns if c != 'prompt_id']}")
    meta = {c: [metadata_value(v) for v in m.meta[c].tolist()] for c in spec.metadata}
    return SignalData(m.prompts, embeddings, meta)


def usable_signals(names: Sequence[str], data: SignalData, options: dict[str, dict] | None = None,
                   log: Callable[[str], Any] = print) -> dict[str, tuple[type[Signal], Any]]:
    """The registered signals among ``names`` whose inputs ``data`` has: name -> (class, config). A signal that
    needs embeddings (or declared metadata) the run lacks is skipped with a note; options for an unknown signal
    are an error."""
    from aco_bert.signals.registry import SIGNALS

    options = dict(options or {})
    unknown = sorted(set(options) - set(SIGNALS))
    if unknown:
        raise ValueError(f"signal_options for unknown signal(s) {unknown}; registered: {sorted(SIGNALS)}")
    out = {}
    for name in [s for s in names if s in SIGNALS]:
        cls = SIGNALS[name]
        if ("embeddings" in cls.needs and data.embeddings is None) or ("metadata" in cls.needs and not data.metadata):
            log(f"[signals] {name!r} skipped: the run has no {'/'.join(cls.needs)} for it")
            continue
        out[name] = (cls, cls.make_config(options.get(name)))
    return out


def cross_fit_blocks(signals: dict[str, tuple[type[Signal], Any]], data: SignalData, success: np.ndarray,
                     cost: np.ndarray | None, folds: Sequence, tiers: Sequence[str]) -> dict[str, np.ndarray]:
    """Each signal's out-of-fold block over ``folds`` (:func:`aco_bert.signals.base.cross_fit`): the stacker's
    training inputs."""
    return {name: cross_fit(cls, data, success, cost, folds, conf, tiers) for name, (cls, conf) in signals.items()}


def fit_all(signals: dict[str, tuple[type[Signal], Any]], data: SignalData, success: np.ndarray,
            cost: np.ndarray | None, tiers: Sequence[str]) -> dict[str, Signal]:
    """Each signal refitted on all of ``data``'s prompts (what a bundle ships, or what scores a test fold)."""
    return {name: cls.fit(data, success, cost, conf, tiers) for name, (cls, conf) in signals.items()}


def fold_blocks(signals: dict[str, tuple[type[Signal], Any]], data: SignalData, success: np.ndarray,
                cost: np.ndarray | None, train: np.ndarray, test: np.ndarray, inner: Sequence,
                tiers: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One outer fold of a nested evaluation: (training rows' blocks cross-fitted over ``inner`` -- folds indexing
    the training rows --, test rows' blocks from signals fitted on all training rows). Neither side ever sees a
    test prompt's outcome."""
    train, test = np.asarray(train), np.asarray(test)
    d_tr = data.subset(train)
    y_tr = np.asarray(success, float)[train]
    c_tr = None if cost is None else np.asarray(cost, float)[train]
    blocks_tr = cross_fit_blocks(signals, d_tr, y_tr, c_tr, inner, tiers)
    d_te = data.subset(test)
    blocks_te = {name: sig.predict(d_te) for name, sig in fit_all(signals, d_tr, y_tr, c_tr, tiers).items()}
    return blocks_tr, blocks_te
