"""Calibration diagnostics: reliability bins, ECE, Brier, a per-tier report and the reliability plot.

Evaluation, not runtime: the calibrator itself (:class:`aco_bert.decision.calibration.IsotonicCalibrator`) is what a
bundle ships; these measure how well any probabilities (raw heads, stacked, calibrated) match outcomes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _bins(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Bin index per prediction: ``uniform`` = equal-width on [0, 1], ``quantile`` = equal-mass."""
    if strategy == "uniform":
        return np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    if strategy == "quantile":
        order = np.argsort(p, kind="stable")
        b = np.empty(p.size, dtype=int)
        b[order] = (np.arange(p.size) * n_bins) // max(p.size, 1)
        return b
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10, strategy: str = "uniform") -> dict:
    """Reliability-diagram data for one tier: per non-empty bin, mean prediction, mean outcome, count."""
    p, y = np.asarray(probs, float).ravel(), np.asarray(labels, float).ravel()
    ok = ~np.isnan(y) & ~np.isnan(p)
    p, y = p[ok], y[ok]
    b = _bins(p, n_bins, strategy)
    conf, acc, cnt = [], [], []
    for k in range(n_bins):
        m = b == k
        if m.any():
            conf.append(float(p[m].mean()))
            acc.append(float(y[m].mean()))
            cnt.append(int(m.sum()))
    return {"mean_pred": conf, "frac_pos": acc, "count": cnt, "strategy": strategy, "n_bins": n_bins}


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10, strategy: str = "uniform") -> float:
    """Expected calibration error: count-weighted mean |mean prediction - mean outcome| over bins (NaN masked)."""
    r = reliability(probs, labels, n_bins, strategy)
    n = sum(r["count"])
    if n == 0:
        return float("nan")
    return float(sum(c * abs(a - b) for a, b, c in zip(r["mean_pred"], r["frac_pos"], r["count"])) / n)


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of probabilities against outcomes (NaN labels masked)."""
    p, y = np.asarray(probs, float).ravel(), np.asarray(labels, float).ravel()
    ok = ~np.isnan(y)
    return float(np.mean((p[ok] - y[ok]) ** 2)) if ok.any() else float("nan")


def calibration_report(probs: np.ndarray, labels: np.ndarray, tiers: Sequence[str] | None = None,
                       n_bins: int = 10) -> list[dict]:
    """Per-tier ECE (equal-width and equal-mass), Brier, and the Brier of predicting the base rate (reference)."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    names = list(tiers) if tiers is not None else [str(i) for i in range(probs.shape[1])]
    out = []
    for t, name in enumerate(names):
        y = labels[:, t]
        ok = ~np.isnan(y)
        base = float(np.mean((y[ok] - y[ok].mean()) ** 2)) if ok.any() else float("nan")
        out.append({
            "tier": name,
            "n": int(ok.sum()),
            "ece": ece(probs[:, t], y, n_bins, "uniform"),
            "ece_mass": ece(probs[:, t], y, n_bins, "quantile"),
            "brier": brier(probs[:, t], y),
            "brier_base_rate": base,
        })
    return out


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: str | Path, tiers: Sequence[str] | None = None,
                     n_bins: int = 10, strategy: str = "quantile", max_tiers: int = 12,
                     title: str = "Reliability") -> Path:
    """Reliability diagrams (one panel per tier, up to ``max_tiers``) written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    names = list(tiers) if tiers is not None else [str(i) for i in range(probs.shape[1])]
    n = min(len(names), max_tiers)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for t in range(rows * cols):
        ax = axes[t // cols][t % cols]
        if t >= n:
            ax.axis("off")
            continue
        r = reliability(probs[:, t], labels[:, t], n_bins, strategy)
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.plot(r["mean_pred"], r["frac_pos"], marker="o", ms=3)
        e = ece(probs[:, t], labels[:, t], n_bins, strategy)
        ax.set_title(f"{names[t][:28]}\nECE {e:.3f}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
