"""Per-tier isotonic calibration, and the numbers that say whether probabilities can be trusted (ECE, Brier).

Why isotonic: the routing policies compare P(success) against a threshold tau and against cost, so the scores must
mean what they say ("0.8" succeeds 80 % of the time). Isotonic regression fixes any monotone distortion of a score
without assuming a shape. It is fitted on *held-out* predictions only (predictions the upstream model did not
train on), else it learns the model's over-confidence on its own training data.

The fitted map is stored as plain JSON arrays (the isotonic thresholds) and applied with ``np.interp``, which is
exactly what scikit-learn's ``IsotonicRegression.predict`` computes with ``out_of_bounds="clip"``; so the torch-free
runtime needs neither scikit-learn nor pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.artifacts.jsonio import write_json

FORMAT = "aco_bert.isotonic/1"


def sigmoid(x) -> np.ndarray:
    """The heads' probability before calibration, float64: the one sigmoid the stack stage (fitting the
    calibrators), the export's parity check and the runtime's heads mode all apply to the ``logits`` output."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class IsotonicCalibrator:
    """One monotone map per tier: ``p = interp(score, x[t], y[t])`` (clipped at both ends)."""

    x: list[np.ndarray]
    y: list[np.ndarray]
    tiers: list[str] = field(default_factory=list)
    n_fit: list[int] = field(default_factory=list)  # labelled held-out predictions each tier was fitted on
    _table: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, tiers: Sequence[str] | None = None,
            min_count: int = 10) -> "IsotonicCalibrator":
        """Fit on held-out ``scores`` (P, T) against ``labels`` (P, T) in [0, 1]; NaN labels are masked per tier.

        A tier with fewer than ``min_count`` labels, or a single label value, gets a constant map at its mean
        label (or 0.5 with no labels): an isotonic fit on almost nothing would be noise.
        """
        from sklearn.isotonic import IsotonicRegression

        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels, dtype=float)
        if scores.ndim != 2 or scores.shape != labels.shape:
            raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (P, T)")
        xs, ys, ns = [], [], []
        for t in range(scores.shape[1]):
            ok = ~np.isnan(labels[:, t]) & np.isfinite(scores[:, t])
            s, l = scores[ok, t], labels[ok, t]
            ns.append(int(ok.sum()))
            if ok.sum() < min_count or np.unique(l).size < 2:
                xs.append(np.array([0.0]))
                ys.append(np.array([float(l.mean()) if l.size else 0.5]))
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, l)
            xs.append(np.asarray(iso.X_thresholds_, dtype=float))
            ys.append(np.asarray(iso.y_thresholds_, dtype=float))
        names = list(tiers) if tiers is not None else [str(i) for i in range(scores.shape[1])]
        if len(names) != scores.shape[1]:
            raise ValueError(f"{len(names)} tier names for {scores.shape[1]} tiers")
        return cls(xs, ys, names, ns)

    @property
    def n_tiers(self) -> int:
        return len(self.x)

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated (P, T) probabilities from raw (P, T) scores."""
        scores = np.asarray(scores, dtype=float)
        if scores.ndim != 2 or scores.shape[1] != self.n_tiers:
            raise ValueError(f"expected (P, {self.n_tiers}) scores, got {scores.shape}")
        table = self._packed()
        if table is not None and scores.size * table[0].shape[1] <= _PACKED_MAX and np.isfinite(scores).all():
            return _interp_packed(scores, *table)
        out = np.empty_like(scores)
        for t in range(self.n_tiers):
            out[:, t] = np.interp(scores[:, t], self.x[t], self.y[t])
        return out

    def _packed(self) -> tuple | None:
        """All tiers' maps as padded (T, L) arrays for :func:`_interp_packed`, or None when a map is outside what
        it reproduces exactly (not strictly increasing, not finite). Rebuilt if ``x``/``y`` were replaced."""
        key = (tuple(map(id, self.x)), tuple(map(id, self.y)))
        if self._table is not None and self._table[0] == key:
            return self._table[1]
        self._table = (key, _pack(self.x, self.y))
        return self._table[1]

    __call__ = transform

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "tiers": list(self.tiers),
            "n_fit": list(self.n_fit),
            "x": [a.tolist() for a in self.x],
            "y": [a.tolist() for a in self.y],
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibrator") -> "IsotonicCalibrator":
        if d.get("format") != FORMAT:
            raise ValueError(f"{where}: format {d.get('format')!r} is not {FORMAT!r}")
        x = [np.asarray(a, dtype=float) for a in d["x"]]
        y = [np.asarray(a, dtype=float) for a in d["y"]]
        for t, (a, b) in enumerate(zip(x, y)):
            if a.shape != b.shape or a.size == 0 or (np.diff(a) < 0).any():
                raise ValueError(f"{where}: tier {t} thresholds must be non-empty, equal length, x sorted")
        return cls(x, y, list(d.get("tiers", [])), list(d.get("n_fit", [])))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "IsotonicCalibrator":
        return cls.from_dict(json.loads(Path(path).read_text()), where=str(path))


_PACKED_MAX = 1 << 20  # scores x thresholds compared at once; bigger batches use np.interp tier by tier


def _pack(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple | None:
    """Tables for :func:`_interp_packed`, or None when a map is outside what it reproduces exactly.

    Row t has one segment per position ``k = #(x[t] <= s)``: k = 0 (below the first threshold) and k = len
    (at or above the last) are flat segments at the first/last value; 1 <= k < len is numpy's segment k - 1, with
    numpy's slope ``(y[j+1] - y[j]) / (x[j+1] - x[j])``. Thresholds are padded with +inf (never <= a finite score).
    Required: x strictly increasing and finite, y finite and never -0.0, every slope finite."""
    if not len(xs):
        return None
    width = max(len(a) for a in xs) + 1
    thr = np.full((len(xs), width - 1), np.inf)
    x0 = np.zeros((len(xs), width))
    y0 = np.zeros((len(xs), width))
    slope = np.zeros((len(xs), width))
    for t, (a, b) in enumerate(zip(xs, ys)):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        n = len(a)
        if n == 0 or a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()) \
                or (np.diff(a) <= 0).any() or np.signbit(b).any():
            return None
        sl = (b[1:] - b[:-1]) / (a[1:] - a[:-1])
        if not np.isfinite(sl).all():
            return None
        thr[t, :n] = a
        x0[t, 0], y0[t, 0] = a[0], b[0]
        x0[t, 1:n], y0[t, 1:n], slope[t, 1:n] = a[:-1], b[:-1], sl
        x0[t, n:], y0[t, n:] = a[-1], b[-1]
    off = np.arange(len(xs))[None, :] * width
    return thr, x0.ravel(), y0.ravel(), slope.ravel(), off


def _interp_packed(scores: np.ndarray, thr: np.ndarray, x0: np.ndarray, y0: np.ndarray, slope: np.ndarray,
                   off: np.ndarray) -> np.ndarray:
    """``np.interp(scores[:, t], x[t], y[t])`` for every tier at once, bit for bit (finite scores; maps accepted by
    :func:`_pack`). numpy computes ``slope * (s - x[j]) + y[j]`` inside a segment and returns ``y[j]`` on a threshold,
    ``y[0]`` below and ``y[-1]`` above; here every case is that same expression (on a threshold and on the flat
    end segments the product is a zero, and ``y + 0 == y`` for y != -0.0). A test checks it against np.interp."""
    k = (thr[None, :, :] <= scores[:, :, None]).sum(axis=2) + off
    return slope.take(k) * (scores - x0.take(k)) + y0.take(k)


# --- metrics ---------------------------------------------------------------------------------------------------
