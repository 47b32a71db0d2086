"""The one implementation of every routing metric (numpy only).

Both :mod:`aco_bert.evaluation.replay` and the ``evaluate.Metric`` wrappers in this folder call these functions, so a
number in a report and the same number from ``evaluate.load(...)`` can never disagree.

Conventions (multi-model generalisations of RouteLLM / RouterBench):

* A *policy* realises one operating point ``(cost, success)``: mean USD per task and mean realised success.
* *weak* is the cheapest fixed model (lowest mean cost), *strong* the frontier model (best fixed success, or the
  spec's ``frontier``). Their points bound the common cost range ``[c_weak, c_strong]``.
* A *curve* is a set of operating points (a parameter sweep). Randomly mixing two operating points realises every
  point on the segment between them, and a budget need not be spent, so what a curve *achieves* at budget ``c`` is
  its **non-decreasing concave hull** ``Q(c)`` (the upper-left frontier):

  - ``Q(c) = 0`` for ``c`` below the curve's cheapest point (no task is solved within a budget the policy cannot
    meet; matches RouterBench, whose area only counts where the hull exists);
  - linear between hull vertices;
  - flat at the best success for ``c`` above the costliest hull vertex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ONE_POINT = 0.01  # "within 1 pt" of the frontier: an absolute success gap of one percentage point


def _points(cost, success) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(cost, dtype=float).ravel()
    s = np.asarray(success, dtype=float).ravel()
    if c.shape != s.shape:
        raise ValueError(f"cost {c.shape} and success {s.shape} must have the same length")
    keep = np.isfinite(c) & np.isfinite(s)
    if not keep.any():
        raise ValueError("a curve needs at least one point with finite cost and success")
    return c[keep], s[keep]


def upper_hull(cost, success) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (costs ascending, success strictly ascending) of the non-decreasing concave hull of the points.

    First the Pareto front (drop every point some cheaper-or-equal point matches or beats), then the upper convex
    hull of that front (monotone chain), so only points worth mixing remain.
    """
    c, s = _points(cost, success)
    order = np.lexsort((-s, c))  # cost ascending, best success first among equal costs
    front: list[tuple[float, float]] = []
    for i in order:
        if not front or s[i] > front[-1][1]:  # equal costs: the first (best) one wins, the rest fail this test
            front.append((float(c[i]), float(s[i])))
    hull: list[tuple[float, float]] = []
    for p in front:
        # pop the last vertex while it lies on or below the chord from its predecessor to p (keeps the hull concave)
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    hx, hy = np.array([h[0] for h in hull]), np.array([h[1] for h in hull])
    return hx, hy


def hull_value(hx: np.ndarray, hy: np.ndarray, c) -> np.ndarray:
    """``Q(c)``: success achievable at budget ``c`` on the hull ``(hx, hy)`` (see module docstring)."""
    c = np.asarray(c, dtype=float)
    return np.where(c < hx[0], 0.0, np.interp(c, hx, hy))


def aiq(cost, success, c_lo: float, c_hi: float) -> float:
    """AIQ (RouterBench "average improvement in quality"): ``1/(c_hi-c_lo) * integral_{c_lo}^{c_hi} Q(c) dc``.

    Exact (``Q`` is piecewise linear); ``Q`` is 0 below the curve's cheapest point. A single budget
    (``c_lo == c_hi``) returns ``Q(c_lo)``.
    """
    if not c_hi >= c_lo:
        raise ValueError(f"cost range [{c_lo}, {c_hi}] is empty")
    hx, hy = upper_hull(cost, success)
    if c_hi == c_lo:
        return float(hull_value(hx, hy, c_lo))
    start = max(c_lo, hx[0])
    if start >= c_hi:
        return 0.0
    xs = np.unique(np.concatenate([[start, c_hi], hx[(hx > start) & (hx < c_hi)]]))
    ys = np.interp(xs, hx, hy)
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))
    return area / (c_hi - c_lo)


def pgr(success, weak_success: float, strong_success: float) -> np.ndarray | float:
    """Performance gap recovered: ``(s - s_weak) / (s_strong - s_weak)``; 1 = the strong model's success, >1 beats it."""
    gap = strong_success - weak_success
    if gap <= 0:
        raise ValueError(f"PGR needs strong success > weak success (got {strong_success} <= {weak_success})")
    out = (np.asarray(success, dtype=float) - weak_success) / gap
    return float(out) if out.ndim == 0 else out


def apgr(cost, success, weak: tuple[float, float], strong: tuple[float, float]) -> float:
    """APGR: the mean of ``PGR(Q(c))`` over budgets ``c`` uniform in ``[c_weak, c_strong]``.

    RouteLLM averages PGR over the share of calls sent to the strong model; with many models the natural axis is
    cost, so APGR = ``(AIQ over [c_weak, c_strong] - s_weak) / (s_strong - s_weak)`` (PGR is affine in success).
    A router that reaches the strong model's success at the weak model's cost scores 1; mixing weak and strong
    at random scores 0.5; above 1 means beating the strong model on average over the range.
    """
    (cw, sw), (cs, ss) = weak, strong
    return float(pgr(aiq(cost, success, cw, cs), sw, ss))


def cpt(cost, success, weak: tuple[float, float], strong: tuple[float, float], x: float) -> tuple[float, float]:
    """CPT(x): the smallest budget at which the curve's hull reaches ``s_weak + x * (s_strong - s_weak)``.

    Returns ``(USD per task, fraction of the strong model's cost)``; ``(inf, inf)`` if the curve never gets there.
    """
    (_cw, sw), (cs, ss) = weak, strong
    target = sw + x * (ss - sw)
    hx, hy = upper_hull(cost, success)
    if hy[-1] < target - 1e-12:
        return float("inf"), float("inf")
    if hy[0] >= target - 1e-12:
        c = float(hx[0])
    else:
        j = int(np.argmax(hy >= target - 1e-12))  # first vertex at or above the target; j >= 1
        x0, x1, y0, y1 = hx[j - 1], hx[j], hy[j - 1], hy[j]
        c = float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    return c, (c / cs if cs > 0 else float("inf"))


@dataclass
class CurveMetrics:
    """AIQ/APGR/CPT of one curve over the common range ``[c_weak, c_strong]``."""

    aiq: float
    apgr: float
    cpt_50: float
    cpt_50_frac: float
    cpt_80: float
    cpt_80_frac: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if not np.isfinite(v) else float(v)) for k, v in self.__dict__.items()}


def curve_metrics(cost, success, weak: tuple[float, float], strong: tuple[float, float]) -> CurveMetrics:
    """Every curve metric at once (``weak``/``strong`` are ``(cost, success)`` points)."""
    c50 = cpt(cost, success, weak, strong, 0.5)
    c80 = cpt(cost, success, weak, strong, 0.8)
    return CurveMetrics(
        aiq=aiq(cost, success, weak[0], strong[0]),
        apgr=apgr(cost, success, weak, strong),
        cpt_50=c50[0], cpt_50_frac=c50[1], cpt_80=c80[0], cpt_80_frac=c80[1],
    )


@dataclass
class RoutingSummary:
    """One policy's realised point. Prompts whose chosen model has no outcome are excluded *and counted*."""

    success: float  # mean realised success over prompts with a known outcome
    cost_per_task: float  # mean realised USD over prompts with a known cost
    n: int  # prompts with a known outcome
    n_missing: int  # prompts whose chosen (prompt, model) has no outcome
    n_cost_missing: int  # prompts with a known outcome but no cost

def summarize(success, cost) -> RoutingSummary:
    """Mean success and cost/task of per-prompt realised outcomes (NaN = unknown, never a failure)."""
    s = np.asarray(success, dtype=float).ravel()
    c = np.asarray(cost, dtype=float).ravel()
    if s.shape != c.shape:
        raise ValueError(f"success {s.shape} and cost {c.shape} must have the same length")
    known = ~np.isnan(s)
    known_c = known & ~np.isnan(c)
    return RoutingSummary(
        success=float(s[known].mean()) if known.any() else float("nan"),
        cost_per_task=float(c[known_c].mean()) if known_c.any() else float("nan"),
        n=int(known.sum()),
        n_missing=int((~known).sum()),
        n_cost_missing=int((known & np.isnan(c)).sum()),
    )


def savings(cost_per_task: float, frontier_cost: float) -> float:
    """Savings vs always-frontier: ``1 - cost / cost_frontier`` (0 = same spend, 0.9 = a tenth of it)."""
    if not frontier_cost > 0:
        return float("nan")
    return float(1.0 - cost_per_task / frontier_cost)


def realised(tiers, success, cost) -> tuple[float, float]:
    """(success, cost/task) of routing prompt ``i`` to column ``tiers[i]`` of the (P, T) ``success``/``cost``
    matrices, by the one rule every evaluation uses (:func:`summarize`: a missing outcome is excluded, never a
    failure; cost averages over prompts with a known outcome and a known cost)."""
    tiers = np.asarray(tiers, dtype=int)
    rows = np.arange(len(tiers))
    s = summarize(np.asarray(success, dtype=float)[rows, tiers], np.asarray(cost, dtype=float)[rows, tiers])
    return s.success, s.cost_per_task


def per_tier_auc(success, probs) -> np.ndarray:
    """ROC AUC per tier over prompts with a known outcome and a prediction; success = ``y >= 0.5``.

    The one per-tier AUC of the package (training metrics, baselines, the report, export parity). NaN for a tier
    whose evaluated labels are a single class (AUC is undefined there); sklearn computes each AUC.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(success, dtype=float)
    p = np.asarray(probs, dtype=float)
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"success {y.shape} and probs {p.shape} must be the same (n_prompts, n_tiers) shape")
    out = np.full(y.shape[1], np.nan)
    for t in range(y.shape[1]):
        ok = ~np.isnan(y[:, t]) & ~np.isnan(p[:, t])
        yt = y[ok, t] >= 0.5
        if yt.size and 0 < yt.sum() < yt.size:
            out[t] = roc_auc_score(yt, p[ok, t])
    return out


def mean_auc(aucs) -> float:
    """Mean over the tiers where AUC is defined (NaN if none is)."""
    a = np.asarray(aucs, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
