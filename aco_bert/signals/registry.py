"""The signal registry: stacker inputs by name. A new signal is one new file (a :class:`Signal` subclass) plus one
line here.

Besides these fitted signals the stacker has built-in inputs it needs no artifact for: ``heads`` (the neural heads'
out-of-fold logits), ``pca`` (PCA'd pooled embeddings, fitted inside the stacker) and ``features`` (the handcrafted
features of :mod:`aco_bert.signals.handcrafted`). :data:`BUILTIN` names them.
"""

from __future__ import annotations

from aco_bert.signals.base import Signal
from aco_bert.signals.knn import KnnSignal
from aco_bert.signals.metadata import MetadataSignal
from aco_bert.signals.tfidf_lr import TfidfLRSignal

SIGNALS: dict[str, type[Signal]] = {c.name: c for c in (TfidfLRSignal, KnnSignal, MetadataSignal)}
BUILTIN = ("heads", "pca", "features")


def get_signal(name: str) -> type[Signal]:
    try:
        return SIGNALS[name]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}; registered: {sorted(SIGNALS)} "
                         f"(built in: {list(BUILTIN)})") from None


def check_names(names: list[str], where: str = "signals") -> None:
    """Refuse an unknown or repeated stacker input name."""
    known = set(BUILTIN) | set(SIGNALS)
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"{where}: unknown input(s) {bad}; known: {list(BUILTIN) + sorted(SIGNALS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: an input is listed twice in {names}")
