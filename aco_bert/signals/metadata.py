"""Spec-declared per-prompt metadata as a stacker input: a one-hot block of columns such as repository, task
category or language.

Why declared in the spec (:attr:`aco_bert.spec.RouterSpec.metadata`): a column is only a fair input if the caller
knows it when the prompt is routed (the repository a task comes from, its category), never a field measured after
the fact (``difficulty``, traces); the spec refuses the known post-hoc names and the runtime takes the declared
columns per request. The vocabulary (values seen at least ``min_count`` times among the training prompts, per
column) is fitted on training prompts only; an unseen or missing value is all zeros in its column's group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aco_bert.signals.base import Signal, SignalData


@dataclass
class MetadataConfig:
    min_count: int = 2  # a value seen fewer times among the training prompts counts as unknown


def metadata_value(v: Any) -> str | None:
    """A metadata cell as the signal compares it: a string, or None for missing (None, NaN, pandas NA, "")."""
    if v is None:
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    s = str(v)
    return s if s.strip() else None


class MetadataSignal(Signal):
    """Block (P, sum of vocabulary sizes): one column per (declared column, training value)."""

    name = "metadata"
    config_cls = MetadataConfig
    needs = ("metadata",)
    label_free = True  # the vocabulary reads no outcome: cross-fitting it once on all prompts leaks nothing

    def __init__(self, config: MetadataConfig, tiers: Sequence[str], vocab: dict[str, list[str]]):
        super().__init__(config, tiers)
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self._index = {k: {val: j for j, val in enumerate(v)} for k, v in self.vocab.items()}

    @property
    def columns(self) -> list[str]:
        return list(self.vocab)

    @classmethod
    def fit(cls, data: SignalData, success: np.ndarray, cost: np.ndarray | None = None, config: Any = None,
            tiers: Sequence[str] | None = None) -> "MetadataSignal":
        cfg = cls.make_config(config)
        if not data.metadata:
            raise ValueError("the metadata signal needs metadata columns (declare them in the spec's `metadata`)")
        vocab = {}
        for col, values in data.metadata.items():
            vals = [metadata_value(v) for v in values]
            uniq, counts = np.unique(np.array([v for v in vals if v is not None], dtype=object).astype(str),
                                     return_counts=True)
            vocab[col] = [str(u) for u, c in zip(uniq, counts) if c >= cfg.min_count]
        n_t = np.asarray(success).shape[1]
        return cls(cfg, list(tiers) if tiers is not None else [str(t) for t in range(n_t)], vocab)

    def predict(self, data: SignalData) -> np.ndarray:
        missing = [c for c in self.vocab if c not in data.metadata]
        out = np.zeros((len(data), self.width))
        if missing and len(data):
            raise ValueError(f"metadata signal needs columns {missing} (have {sorted(data.metadata)})")
        start = 0
        for col, idx in self._index.items():
            for i, v in enumerate(data.metadata.get(col, [])):
                j = idx.get(metadata_value(v))
                if j is not None:
                    out[i, start + j] = 1.0
            start += len(idx)
        return out

    @property
    def width(self) -> int:
        return sum(len(v) for v in self.vocab.values())

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"vocab": self.vocab}, {}

    @classmethod
    def from_state(cls, config, tiers, state, arrays) -> "MetadataSignal":
        return cls(config, tiers, state["vocab"])
