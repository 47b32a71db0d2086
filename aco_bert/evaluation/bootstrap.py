"""Paired bootstrap intervals for AIQ differences: is a router's lead over the zero-router hull (or a peer) real?

Why: on 500 SWE-bench tasks an AIQ gap of +0.01 is within what resampling the tasks moves, and a table of point
estimates cannot say so. Each resample draws the evaluated prompts with replacement and recomputes, on the *same*
draw, every curve's points (mean realised success and cost of each knob's pooled outer-test decisions), the
fixed-model hull and the AIQ range (cheapest -> frontier model), so the differences are paired. The decisions
themselves stay fixed: this measures how much the evaluation set moves the number, not the training randomness.
Missing outcomes are excluded from the means, as in :func:`aco_bert.evaluation.metrics.core.summarize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from aco_bert.evaluation.metrics.core import aiq

HULL = "zero-router"


@dataclass
class BootstrapConfig:
    n_boot: int = 1000  # resamples (0: no intervals)
    level: float = 0.95  # two-sided percentile interval
    seed: int = 0


def _realised(y: np.ndarray, cost: np.ndarray, tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(tiers))
    return y[rows, tiers], cost[rows, tiers]


def aiq_bootstrap(success: np.ndarray, cost: np.ndarray, curves: Mapping[str, Sequence[np.ndarray]],
                  min_tier: np.ndarray, weak: int, strong: int, pairs: Sequence[tuple[str, str]] = (),
                  cfg: BootstrapConfig | None = None) -> dict[str, dict]:
    """``{"<curve> - zero-router" | "<a> - <b>": {"diff", "lo", "hi", "p_le_0"}}`` for every curve (its tier
    vectors, one per knob, over the evaluated prompts) against the hull of the fixed models (each raised to
    ``min_tier``), and for each ``(a, b)`` of ``pairs``. ``weak`` / ``strong``: the column of the cheapest and of
    the frontier model (the AIQ range, recomputed per resample). ``diff`` is the full-sample difference (the
    report's own AIQs), ``p_le_0`` the share of resamples where the difference is <= 0."""
    cfg = cfg or BootstrapConfig()
    y, c = np.asarray(success, float), np.asarray(cost, float)
    n, n_t = y.shape
    names = list(curves)
    vecs = [np.maximum(np.full(n, t), min_tier) for t in range(n_t)]  # the fixed models first
    spans = {HULL: range(0, n_t)}
    for name in names:
        start = len(vecs)
        vecs += [np.asarray(v, dtype=int) for v in curves[name]]
        spans[name] = range(start, len(vecs))
    s_cols, c_cols = zip(*(_realised(y, c, v) for v in vecs))
    s_mat, c_mat = np.column_stack(s_cols), np.column_stack(c_cols)
    s_ok, c_ok = ~np.isnan(s_mat), ~np.isnan(c_mat)
    s_val, c_val = np.where(s_ok, s_mat, 0.0), np.where(c_ok, c_mat, 0.0)
    rng = np.random.default_rng(cfg.seed)
    weights = [np.ones((1, n))] + ([rng.multinomial(n, np.full(n, 1.0 / n), size=cfg.n_boot).astype(float)]
                                   if cfg.n_boot else [])
    w = np.vstack(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_mean = (w @ s_val) / (w @ s_ok)
        c_mean = (w @ c_val) / (w @ c_ok)
    wanted = [(nm, HULL) for nm in names] + [tuple(p) for p in pairs]
    need = sorted({x for p in wanted for x in p})
    vals = {k: np.full(len(w), np.nan) for k in need}
    for b in range(len(w)):
        lo_c, hi_c = c_mean[b, weak], c_mean[b, strong]
        if not hi_c > lo_c:
            continue
        for k in need:
            cols = list(spans[k])
            try:
                vals[k][b] = aiq(c_mean[b, cols], s_mean[b, cols], lo_c, hi_c)
            except ValueError:  # no finite point on this draw
                pass
    alpha = (1 - cfg.level) / 2
    out = {}
    for a, b in wanted:
        d = vals[a] - vals[b]
        boot = d[1:][np.isfinite(d[1:])]
        lo, hi = (np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan))
        out[f"{a} - {b}"] = {"diff": float(d[0]), "lo": float(lo), "hi": float(hi),
                             "p_le_0": float((boot <= 0).mean()) if boot.size else None, "n_boot": int(boot.size)}
    return out
