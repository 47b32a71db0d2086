"""Single sources of the stacker and its guarantee: the stack never ends below its best single input.

A *single source* is a per-tier success score one input gives on its own: the neural head's out-of-fold logit
(``heads``) or a registered signal whose class defines :meth:`~aco_bert.signals.base.Signal.scores` (TF-IDF-LR
logit, kNN neighbour success). Per tier the stacker picks the best of them by AUC on its training rows, maps it to a
probability with a one-feature logistic fit (:func:`platt`, slope kept >= 0 so the ranking is the source's) and
starts its trees from that logit (XGBoost ``base_margin``). :func:`apply_guarantee` then compares, on the inner
held-out folds, the stack with that source and falls back to the source where the stack is not better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aco_bert.decision.stacker import Stacker, StackInputs

PLATT_L2 = 1.0  # L2 penalty on the slope of the one-feature logistic map (on the standardised source)
BLEND_L2 = 1.0  # L2 penalty on the weights of the blend of all sources (on standardised scores)
BLEND_FOLDS = 5  # folds of the cross-fit that scores the blend against the single sources


def source_scores(inputs: StackInputs, layout: dict, n_tiers: int) -> dict[str, np.ndarray]:
    """Candidate single sources: name -> (P, T) per-tier score (a logit; NaN where the source has no column).

    Each source comes twice: its own tier's score (``heads``, ``tfidf``, ``knn``) and its mean over the tiers
    (``heads_mean``, ...: the stacker's ``logit_mean`` input for the heads). Why the mean: a prompt hard for one
    model is hard for most, and averaging T noisy per-tier scores of one shared difficulty cuts their noise (on
    SWE-bench Verified the heads' mean logit has a higher AUC for most tiers than the tier's own head)."""
    from aco_bert.signals.registry import SIGNALS

    own: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    if layout.get("logits"):
        s = np.full((inputs.n, n_tiers), np.nan)
        for t, h in enumerate(layout.get("head_of_tier") or []):
            if h is not None:
                s[:, t] = inputs.logits[:, h]
        own["heads"] = s
        out["heads_mean"] = np.repeat(inputs.logits.mean(axis=1, keepdims=True), n_tiers, axis=1)
    for name in layout.get("signals", {}):
        sc = SIGNALS[name].scores(inputs.signals[name], n_tiers)
        if sc is not None:
            own[name] = sc
            out[f"{name}_mean"] = np.repeat(sc.mean(axis=1, keepdims=True), n_tiers, axis=1)
    return own | out


def stack_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``y >= 0.5`` over rows where both are known (NaN when one class only)."""
    from aco_bert.evaluation.metrics.core import per_tier_auc

    return float(per_tier_auc(np.asarray(y, float)[:, None], np.asarray(score, float)[:, None])[0])


def logistic_l2(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """Weights (F + 1: the last is the intercept) of an L2-regularised logistic regression on ``x`` (P, F), soft
    labels allowed, by Newton's method; the intercept is not penalised. Why not scikit-learn's: it refuses soft
    labels (graded outcomes), and these problems have at most a dozen columns."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    design = np.column_stack([x, np.ones(len(x))])
    rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    w = np.zeros(design.shape[1])
    w[-1] = np.log(rate / (1 - rate))
    pen = np.full(design.shape[1], float(l2))
    pen[-1] = 1e-9
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) + pen * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def platt(score: np.ndarray, y: np.ndarray, l2: float = PLATT_L2, iters: int = 50) -> tuple[float, float]:
    """(a, b) of P(success) = sigmoid(a * score + b): L2-regularised logistic regression on one feature (soft
    labels allowed) on the standardised score. The slope is kept >= 0 (a source that ranks backwards is no source:
    it becomes the base rate), so the map never reorders the source."""
    s, y = np.asarray(score, float), np.asarray(y, float)
    mu, sd = float(s.mean()), float(s.std())
    sd = sd if sd > 1e-12 else 1.0
    w = logistic_l2(((s - mu) / sd)[:, None], y, l2, iters)
    if w[0] < 0:
        rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        w = np.array([0.0, np.log(rate / (1 - rate))])
    return float(w[0] / sd), float(w[1] - w[0] * mu / sd)


def blend(z: np.ndarray, y: np.ndarray, l2: float = BLEND_L2) -> tuple[np.ndarray, float]:
    """(weights, intercept) on the raw columns of ``z`` (P, F) of an L2 logistic blend fitted on the standardised
    columns (a constant column gets weight 0)."""
    z = np.asarray(z, float)
    mu, sd = z.mean(axis=0), z.std(axis=0)
    live = sd > 1e-12
    w = logistic_l2((z[:, live] - mu[live]) / sd[live], y, l2)
    coef = np.zeros(z.shape[1])
    coef[live] = w[:-1] / sd[live]
    return coef, float(w[-1] - coef @ mu)


def source_logit(src: dict[str, Any], cands: dict[str, np.ndarray], t: int) -> np.ndarray:
    """A chosen source's (P,) logit for tier ``t``: ``a * score + b`` of one candidate, or a blend's
    ``sum(w * score) + b`` over its ``terms``."""
    if "terms" in src:
        return sum(w * cands[name][:, t] for name, w in src["terms"].items()) + src["b"]
    return src["a"] * cands[src["source"]][:, t] + src["b"]


def _blend_cols(cands: dict[str, np.ndarray], t: int, rows: np.ndarray) -> list[str]:
    return [k for k, v in cands.items() if not np.isnan(v[rows, t]).any()]


def cross_fitted_blend_auc(cands: dict[str, np.ndarray], y: np.ndarray, rows: np.ndarray, t: int, k: int,
                           seed: int) -> float:
    """Tier ``t``'s blend AUC on ``rows`` with each row scored by a blend fitted without it (``k`` folds): the
    number the blend is compared with the single sources by (theirs are held-out scores already)."""
    names = _blend_cols(cands, t, rows)
    z = np.column_stack([cands[n][rows, t] for n in names])
    yy = y[rows]
    order = np.random.default_rng(seed).permutation(len(rows))
    out = np.full(len(rows), np.nan)
    for f in range(k):
        te = order[f::k]
        tr = np.setdiff1d(order, te)
        if np.unique(yy[tr] >= 0.5).size < 2:
            return float("nan")
        w, b = blend(z[tr], yy[tr])
        out[te] = z[te] @ w + b
    return stack_auc(yy, out)


def choose_sources(cands: dict[str, np.ndarray], labels: np.ndarray, min_labels: int = 1, scope: str = "global",
                   with_blend: bool = False, seed: int = 0) -> list[dict[str, Any] | None]:
    """Per tier the source to start from: ``{source, auc, a, b}`` (one candidate and its Platt map), ``{source:
    "blend", auc, terms, b}`` (``with_blend``: see :func:`choose_blend`) or None.

    ``scope="global"``: the candidate with the best mean AUC over the tiers it covers, for every tier it covers
    (a tier it does not cover takes its own best). ``"tier"``: each tier's own best. Why global by default: with a
    few hundred labels per tier and AUCs near 0.55, a per-tier argmax over six candidates mostly picks noise (on
    SWE-bench Verified it lost ~0.01 AUC out of fold against one choice for all tiers). Ties: the first listed."""
    if scope not in ("global", "tier"):
        raise ValueError(f"source scope must be 'global' or 'tier', got {scope!r}")
    labels = np.asarray(labels, dtype=float)
    n_t = labels.shape[1]
    names = list(cands)
    table = np.full((len(names), n_t), np.nan)
    for t in range(n_t):
        ok = ~np.isnan(labels[:, t])
        if ok.sum() < min_labels:
            continue
        for j, name in enumerate(names):
            sc = cands[name][ok, t]
            if not np.isnan(sc).any():
                table[j, t] = stack_auc(labels[ok, t], sc)
    overall = None
    if scope == "global" and names and np.isfinite(table).any():
        means = np.array([np.nanmean(r) if np.isfinite(r).any() else -np.inf for r in table])
        overall = int(np.argmax(means))
    out: list[dict[str, Any] | None] = []
    for t in range(n_t):
        col = table[:, t]
        if not np.isfinite(col).any():
            out.append(None)
            continue
        j = overall if overall is not None and np.isfinite(col[overall]) else int(np.nanargmax(col))
        ok = ~np.isnan(labels[:, t])
        a, b = platt(cands[names[j]][ok, t], labels[ok, t])
        out.append({"source": names[j], "auc": float(col[j]), "a": a, "b": b})
    return choose_blend(cands, labels, out, min_labels, scope, seed) if with_blend else out


def choose_blend(cands: dict[str, np.ndarray], labels: np.ndarray, single: list[dict[str, Any] | None],
                 min_labels: int, scope: str, seed: int) -> list[dict[str, Any] | None]:
    """Replace the single sources by an L2 logistic blend of all candidates (:func:`blend`) where its cross-fitted
    AUC is higher: over the tiers' mean (``scope="global"``, all tiers or none) or per tier.

    Why: the heads, TF-IDF and kNN err differently, and a blend of their held-out scores ranks better than the
    best of them on most shared datasets (on BFCL a single choice, TF-IDF or the heads depending on the fold,
    left the stack 0.006 AUC below the TF-IDF peer). The blend is judged by its own cross-fitted AUC, never by its
    in-sample fit, so it only wins where it generalises."""
    labels = np.asarray(labels, dtype=float)
    gain: dict[int, tuple[float, float]] = {}
    for t, src in enumerate(single):
        ok = np.flatnonzero(~np.isnan(labels[:, t]))
        if src is None or len(ok) < max(min_labels, 2 * BLEND_FOLDS) or len(_blend_cols(cands, t, ok)) < 2:
            continue
        a = cross_fitted_blend_auc(cands, labels[:, t], ok, t, BLEND_FOLDS, seed + t)
        if np.isfinite(a):
            gain[t] = (a, src["auc"])
    if scope == "global":
        better = bool(gain) and np.mean([g[0] for g in gain.values()]) > np.mean([g[1] for g in gain.values()])
        use = set(gain) if better else set()
    else:
        use = {t for t, (a, b) in gain.items() if a > b}
    out = list(single)
    for t in sorted(use):
        ok = np.flatnonzero(~np.isnan(labels[:, t]))
        names = _blend_cols(cands, t, ok)
        w, b = blend(np.column_stack([cands[n][ok, t] for n in names]), labels[ok, t])
        out[t] = {"source": "blend", "auc": gain[t][0], "terms": {n: float(c) for n, c in zip(names, w) if c != 0},
                  "b": b}
    return out


def apply_guarantee(st: Stacker, inputs: StackInputs, labels: np.ndarray, oof: np.ndarray,
                    source_oof: np.ndarray) -> np.ndarray:
    """Per stacked tier: keep the stack only if its inner held-out AUC beats (by more than ``guarantee_tol``) both
    the source's held-out AUC under the same cross-fit (``source_oof``: each inner fold's own source choice and
    Platt map: the fair comparison) and the final source's AUC on the same rows (its input column is out of fold
    already, and the Platt map is monotone: the number the report shows for the source). Otherwise the tier falls
    back to the source (:meth:`Stacker.fall_back`) and its held-out predictions become the final source's Platt
    probabilities, exactly what the runtime computes (a blend: the inner folds' held-out blend probabilities,
    since the final blend was fitted on these rows). Returns the updated held-out predictions; each comparison is
    recorded in ``st.guarantee``."""
    from aco_bert.decision.calibration import sigmoid

    oof = np.array(oof, dtype=float)
    labels = np.asarray(labels, dtype=float)
    margins = st.source_margins(inputs)
    tol = st.cfg.guarantee_tol
    for t in range(st.n_tiers):
        src = st.sources[t]
        if st.modes[t] != "stack" or src is None:
            continue
        ok = ~np.isnan(labels[:, t]) & ~np.isnan(oof[:, t])
        a_stack = stack_auc(labels[ok, t], oof[ok, t])
        a_cross = stack_auc(labels[ok, t], source_oof[ok, t])
        # a blend's final fit saw these rows (its AUC here is in sample): it is judged, and falls back, by the
        # inner folds' own held-out source predictions only
        is_blend = "terms" in src
        a_src = float("nan") if is_blend else stack_auc(labels[ok, t], margins[ok, t])
        rivals = [a for a in (a_cross, a_src) if np.isfinite(a)]
        keep = bool(np.isfinite(a_stack) and all(a_stack > a + tol for a in rivals))
        st.guarantee[t] = {"stack_auc": a_stack, "source_cross_fit_auc": a_cross, "source_auc": a_src,
                           "source": src["source"], "kept": keep}
        if not keep:
            st.fall_back(t)
            oof[:, t] = source_oof[:, t] if is_blend else sigmoid(margins[:, t])
    return oof
