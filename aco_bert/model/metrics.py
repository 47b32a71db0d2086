"""Validation metrics of the success heads: per-tier AUC (the package's one AUC), Brier and log-loss.

Used for model selection (early stopping, best epoch) and for the numbers in ``result.json``/``oof_meta.json``.
Only observed cells count: a NaN target is an unknown outcome, not a failure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc


def tier_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Per-tier AUC, Brier and log-loss on observed cells (NaN targets ignored); AUC is NaN for a one-class tier.
    Graded targets count as positive at >= 0.5 for AUC (as :func:`per_tier_auc` does; it ranks the sigmoid, which
    orders prompts as the logits do); Brier/log-loss use them as they are."""
    logits = np.asarray(logits, dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    auc = [float(a) for a in per_tier_auc(targets, p)]
    brier, ll = [], []
    for t in range(targets.shape[1]):
        obs = ~np.isnan(targets[:, t])
        y, pt, z = targets[obs, t], p[obs, t], logits[obs, t]
        brier.append(float(np.mean((pt - y) ** 2)) if obs.sum() else float("nan"))
        # stable BCE on logits: max(z,0) - z*y + log(1+exp(-|z|))
        ll.append(float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))) if obs.sum() else float("nan"))
    return {"per_tier_auc": auc, "mean_auc": mean_auc(auc), "per_tier_brier": brier, "brier": _nanmean(brier),
            "per_tier_logloss": ll, "logloss": _nanmean(ll), "n_observed": int((~np.isnan(targets)).sum())}


def _nanmean(values: list[float]) -> float:
    a = np.asarray(values, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
