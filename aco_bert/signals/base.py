"""A fitted signal: training prompts -> a per-prompt feature block the stacker reads, the same at routing time.

Why a common base: every signal has to be usable three times with *one* ``fit`` and *one* ``predict`` -- out of
fold in the stack stage (:func:`cross_fit`: each prompt's block comes from a signal fitted without it, so the
stacker never learns to trust a signal's in-sample confidence), refitted on all prompts for the bundle, and in the
torch-free runtime on new prompts. A signal reads only what exists at routing time (:class:`SignalData`: the prompt
text, the encoder's pooled embedding, spec-declared metadata columns), never outcomes of the prompt itself.

Artifacts: a directory with ``manifest.json`` (format, signal name, config, tiers, JSON state) and, when the signal
has arrays, ``arrays.safetensors``. No pickle.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

FORMAT = "aco_bert.signal/1"
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"


@dataclass
class SignalData:
    """What a signal may read about a batch of prompts (all of it available when a prompt is routed).

    ``metadata``: spec-declared column -> one value per prompt (str, or None = unknown)."""

    texts: list[str]
    embeddings: np.ndarray | None = None  # (P, H) pooled encoder embeddings
    metadata: dict[str, list[str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        n = len(self.texts)
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings)
            if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
                raise ValueError(f"embeddings {self.embeddings.shape} do not match {n} prompts")
        for k, v in self.metadata.items():
            if len(v) != n:
                raise ValueError(f"metadata column {k!r} has {len(v)} values for {n} prompts")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "SignalData":
        idx = np.asarray(idx, dtype=int)
        return SignalData([self.texts[i] for i in idx], None if self.embeddings is None else self.embeddings[idx],
                          {k: [v[i] for i in idx] for k, v in self.metadata.items()})


class Signal(ABC):
    """A fitted signal. Subclasses set ``name`` and ``config_cls`` and implement ``fit``, ``predict``,
    ``to_state``/``from_state``; ``scores`` when the block carries a per-tier success logit (a candidate single
    source for the stacker's base margin and guarantee)."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    needs: ClassVar[tuple[str, ...]] = ("texts",)  # which SignalData fields must be present
    # reads no outcome (e.g. a one-hot vocabulary): cross_fit fits it once on all prompts -- nothing can leak, and
    # its columns stay those of the refit the bundle ships
    label_free: ClassVar[bool] = False

    def __init__(self, config: Any, tiers: Sequence[str]):
        self.config, self.tiers = config, list(tiers)

    # --- the one fit and the one predict ----------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def fit(cls, data: SignalData, success: np.ndarray, cost: np.ndarray | None = None, config: Any = None,
            tiers: Sequence[str] | None = None) -> "Signal":
        """Fit on training prompts; ``success`` (P, T) in [0, 1] and ``cost`` (P, T) USD, NaN = unknown."""

    @abstractmethod
    def predict(self, data: SignalData) -> np.ndarray:
        """(P, width) float64 block for ``data``'s prompts."""

    @property
    @abstractmethod
    def width(self) -> int:
        """Columns of :meth:`predict`'s block."""

    @classmethod
    def scores(cls, block: np.ndarray, n_tiers: int) -> np.ndarray | None:
        """(P, T) per-tier success score (a logit) read off the block, or None: not a single source."""
        return None

    # --- artifacts ----------------------------------------------------------------------------------------------
    @abstractmethod
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able state, named arrays) that :meth:`from_state` rebuilds the fitted signal from."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: Any, tiers: list[str], state: dict[str, Any], arrays: dict[str, np.ndarray]
                   ) -> "Signal":
        """The fitted signal of :meth:`to_state`."""

    @classmethod
    def make_config(cls, config: Any = None) -> Any:
        """``config`` as this signal's config dataclass (None: the defaults; a dict: its fields)."""
        if config is None:
            return cls.config_cls()
        if isinstance(config, dict):
            from aco_bert.config import from_dict

            return from_dict(cls.config_cls, config, where=f"signal {cls.name!r} config")
        if not isinstance(config, cls.config_cls):
            raise TypeError(f"signal {cls.name!r} needs a {cls.config_cls.__name__}, got {type(config).__name__}")
        return config

    def check(self, data: SignalData) -> None:
        """Refuse a batch that lacks an input this signal reads (a clear error instead of a shape mismatch)."""
        if "embeddings" in self.needs and data.embeddings is None:
            raise ValueError(f"signal {self.name!r} needs the prompts' pooled embeddings")

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        from aco_bert.artifacts.jsonio import write_json

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state, arrays = self.to_state()
        if arrays:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / ARRAYS))
        write_json(path / MANIFEST, {"format": FORMAT, "signal": self.name, "config": dataclasses.asdict(self.config),
                                     "tiers": self.tiers, "state": state, "arrays": sorted(arrays)}, indent=None)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Signal":
        """Load a saved signal of this class (on the base class: of the class its manifest names)."""
        from aco_bert.artifacts.jsonio import read_record

        path = Path(path)
        m = read_record(path / MANIFEST, FORMAT, "a signal directory written by Signal.save")
        if cls is Signal or getattr(cls, "name", None) is None:
            from aco_bert.signals.registry import get_signal

            return get_signal(m["signal"]).load(path)
        if m.get("signal") != cls.name:
            raise ValueError(f"{path / MANIFEST}: signal {m.get('signal')!r} is not {cls.name!r}")
        arrays: dict[str, np.ndarray] = {}
        if m.get("arrays"):
            from safetensors.numpy import load_file

            arrays = load_file(str(path / ARRAYS))
            missing = [a for a in m["arrays"] if a not in arrays]
            if missing:
                raise ValueError(f"{path / ARRAYS}: missing arrays {missing}")
        return cls.from_state(cls.make_config(m["config"]), list(m["tiers"]), m["state"], arrays)


def as_outcomes(success: np.ndarray, n: int, what: str = "success") -> np.ndarray:
    """``success`` (or ``cost``) as a (n, T) float array; a clear error when the shape does not fit."""
    y = np.asarray(success, dtype=float)
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{what} must be (n_prompts, n_tiers) with n_prompts = {n}; got shape {y.shape}")
    return y


def cross_fit(cls: type[Signal], data: SignalData, success: np.ndarray, cost: np.ndarray | None, folds: Sequence,
              config: Any = None, tiers: Sequence[str] | None = None) -> np.ndarray:
    """Out-of-fold blocks: each fold's test prompts scored by a signal fitted on that fold's train prompts only
    (rows in no test fold stay NaN). The same ``fit``/``predict`` as the refit the bundle ships. A
    ``label_free`` signal is fitted once on all prompts (it reads no outcome)."""
    success = as_outcomes(success, len(data))
    if cls.label_free:
        return cls.fit(data, success, cost, config, tiers).predict(data)
    out: np.ndarray | None = None
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f.index}: train and test overlap")
        sig = cls.fit(data.subset(tr), success[tr], None if cost is None else np.asarray(cost, float)[tr], config,
                      tiers)
        block = sig.predict(data.subset(te))
        if out is None:
            out = np.full((len(data), block.shape[1]), np.nan)
        if block.shape[1] != out.shape[1]:
            raise ValueError(f"signal {cls.name!r}: fold {f.index} gives {block.shape[1]} columns, an earlier fold "
                             f"{out.shape[1]} (a signal's width must not depend on its training prompts)")
        out[te] = block
    if out is None:
        raise ValueError("cross_fit needs at least one fold")
    return out


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)

