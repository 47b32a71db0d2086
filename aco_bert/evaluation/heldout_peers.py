"""Peer routers on the demo's held-out prompts: fitted and tuned on the training prompts only, replayed in the
router's own table.

Why: a held-out number for the router means little without what a user would otherwise reach for, measured on the
*same* held-out prompts under the *same* protocol. Each peer (``tfidf-lr`` on the texts, ``knn`` on the pooled
embeddings) follows the nested report's recipe for one outer fold (:func:`~.report_sources.peer_source`):
held-out predictions on the training prompts by inner k-fold -> isotonic cross-calibration -> tau chosen on the
training prompts by the "match" rule (:func:`~.selection.select_match`, expected cost = per-tier mean training
cost) -> one fit on all training prompts predicts the held-out ones, calibrated by an isotonic map fitted on the
training prompts' held-out predictions -> ``Threshold(tau)`` under the spec's floors -> replayed
(:mod:`aco_bert.evaluation.replay`). The held-out outcomes are never passed to a fit: their rows are NaN there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from aco_bert.data.splits import kfold
from aco_bert.evaluation.metrics.core import ONE_POINT, curve_metrics, realised, savings
from aco_bert.evaluation.replay import Curve, EvalReport, replay
from aco_bert.evaluation.report_sources import peer_source
from aco_bert.evaluation.selection import TAUS, select_match
from aco_bert.policies import RoutingContext, Threshold

CURVE_TAUS = [float(t) for t in np.linspace(0, 1, 51)]  # the router's threshold sweep grid (replay.threshold_sweep)


@dataclass
class PromptSet:
    """One side of the split, row-aligned: texts, (n, T) outcomes over the spec's tiers (NaN = unknown), 0-based
    floors and (for embedding peers) the pooled embeddings."""

    texts: list[str]
    success: np.ndarray
    cost: np.ndarray
    min_tier: np.ndarray
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        for name in ("success", "cost", "min_tier", "embeddings"):
            a = getattr(self, name)
            if a is not None and len(a) != n:
                raise ValueError(f"PromptSet.{name} has {len(a)} rows for {n} texts")


@dataclass
class HeldoutPeer:
    """A peer's knob (chosen on training prompts), its training operating point and its held-out decisions."""

    name: str
    tau: float
    target: float  # training success the "match" rule asked for
    train_success: float
    train_cost: float
    tiers: np.ndarray  # (n_test,) 0-based held-out decisions at ``tau``
    curve: list[tuple[float, np.ndarray]]  # held-out decisions per tau of CURVE_TAUS
    probs: np.ndarray  # (n_test, T) calibrated held-out P(success)

    @property
    def label(self) -> str:
        return f"{self.name} (threshold, tau chosen on training)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "tau": self.tau, "target": self.target,
                "train_success": self.train_success, "train_cost": self.train_cost}


def fit_heldout_peer(name: str, train: PromptSet, test: PromptSet, *, frontier: int | None = None,
                     k_inner: int = 5, seed: int = 0, within: float = ONE_POINT, margin: float = 0.0,
                     taus: Sequence[float] = TAUS) -> HeldoutPeer:
    """Peer ``name`` fitted, calibrated and tuned on ``train`` only, deciding ``test``.

    ``frontier``: the frontier tier's column (default: the best training success, ties to the cheaper); the tau
    target is its training success ``- within + margin``. ``test.success``/``test.cost`` are never read."""
    n_tr, n_te = len(train.texts), len(test.texts)
    y_tr, c_tr = np.asarray(train.success, float), np.asarray(train.cost, float)
    n_t = y_tr.shape[1]
    # the held-out outcomes are unknown to every fit: NaN rows (peer_source reads only the training rows anyway)
    y = np.vstack([y_tr, np.full((n_te, n_t), np.nan)])
    emb = None
    if train.embeddings is not None and test.embeddings is not None:
        emb = np.vstack([np.asarray(train.embeddings, float), np.asarray(test.embeddings, float)])
    tr, te = np.arange(n_tr), np.arange(n_tr, n_tr + n_te)
    inner = kfold([str(i) for i in range(n_tr)], min(k_inner, n_tr), seed + 1)
    p_tr, p_te = peer_source(name, list(train.texts) + list(test.texts), emb, y, tr, te, inner, seed)

    mean_c = np.nanmean(c_tr, axis=0)
    ctx_tr = RoutingContext(p_tr, np.tile(mean_c, (n_tr, 1)), np.asarray(train.min_tier, int))
    ctx_te = RoutingContext(p_te, np.tile(mean_c, (n_te, 1)), np.asarray(test.min_tier, int))
    if frontier is None:
        s, c = np.nanmean(y_tr, axis=0), np.nanmean(c_tr, axis=0)
        frontier = int(min(range(n_t), key=lambda t: (-s[t], c[t])))
    target = float(np.nanmean(y_tr[:, frontier])) - within + margin
    points = [(float(t), *realised(Threshold(float(t)).decide(ctx_tr), y_tr, c_tr)) for t in taus]
    tau = float(select_match(points, target))
    s_tr, cost_tr = next((s, c) for t, s, c in points if t == tau)
    return HeldoutPeer(name=name, tau=tau, target=target, train_success=s_tr, train_cost=cost_tr,
                       tiers=Threshold(tau).decide(ctx_te).astype(int),
                       curve=[(t, Threshold(t).decide(ctx_te).astype(int)) for t in CURVE_TAUS], probs=p_te)


def add_to_report(report: EvalReport, matrix, min_tier: np.ndarray, peers: Sequence[HeldoutPeer]) -> EvalReport:
    """Replay each peer's held-out decisions on ``matrix`` (the report's prompts, in its order) and add its row
    (after the router's), its threshold curve and that curve's metrics to ``report`` (in place; returned)."""
    fc = report.get("always-frontier").cost_per_task
    rows, r = [], report.metrics.get("range")
    for p in peers:
        res = replay(matrix, p.tiers, report.models, name=p.label, min_tier=min_tier, kind="learned",
                     param=p.tau, frontier_cost=fc)
        rows.append(res)
        cname = f"{p.name}-threshold"
        pts = [replay(matrix, t, report.models, name=f"{cname}@{v:.6g}", min_tier=min_tier, kind="learned",
                      param=v, frontier_cost=fc) for v, t in p.curve]
        report.curves[cname] = Curve(cname, pts)
        if r is not None and any(k != "range" for k in report.metrics):  # the report computed curve metrics
            c = report.curves[cname]
            report.metrics[cname] = curve_metrics(c.cost, c.success, (r["weak_cost"], r["weak_success"]),
                                                  (r["strong_cost"], r["strong_success"])).to_dict()
        report.notes.append(f"{p.label}: tau {p.tau:g} chosen on the training prompts' cross-calibrated held-out "
                            f"predictions (training success {100 * p.train_success:.1f} % >= target "
                            f"{100 * p.target:.1f} %, cost/task ${p.train_cost:.4f})" if p.train_success >= p.target - 1e-12 else
                            f"{p.label}: tau {p.tau:g} (no tau reached the training target "
                            f"{100 * p.target:.1f} %: best training success {100 * p.train_success:.1f} %)")
    last = max((i for i, q in enumerate(report.policies) if q.kind == "learned"), default=len(report.policies) - 1)
    report.policies[last + 1:last + 1] = rows
    for q in rows:
        q.savings_vs_frontier = savings(q.cost_per_task, fc)
    return report


def heldout_matrix(scored, test_file: str, models: Sequence[str]):
    """The held-out matrix exactly as :func:`aco_bert.score.report.evaluate_scored` replays it (prompts scored
    without error, in the table's order) and their 0-based floors as the bundle applied them."""
    from aco_bert.data import load_outcomes

    m = load_outcomes(str(test_file)).matrix(list(models))
    df = scored.set_index("prompt_id")
    bad = df["error"].notna()
    keep = [i for i, pid in enumerate(m.prompt_ids) if pid in df.index and not bad.get(pid, True)]
    sub = m.subset(np.array(keep, dtype=int))
    return sub, df.loc[sub.prompt_ids, "min_tier"].to_numpy(int) - 1


def demo_peers(run_dir: str, bundle_dir: str, train_file: str, test_file: str, scored, report: EvalReport, *,
               peers: Sequence[str] = ("tfidf-lr", "knn"), k_inner: int = 5, seed: int = 0,
               log: Callable[[str], Any] = print) -> dict[str, Any]:
    """The demo's hook: fit ``peers`` on the run's training prompts, add their held-out rows to ``report``.

    kNN's training embeddings are the run's out-of-fold ``embeddings`` (the encoder's own with a frozen encoder);
    the held-out ones are the bundle's fp32 ONNX ``pooled`` output. Their agreement on two training prompts is
    measured and returned (``embedding_check``), so a mismatch between the two is visible, not assumed away."""
    from aco_bert.artifacts.layout import RunInfo
    from aco_bert.data import load_outcomes
    from aco_bert.decision.stacker import load_oof
    from aco_bert.policies import floors_for
    from aco_bert.runtime import Router

    router = Router.load(bundle_dir, int8=False, verify=False)  # the scorer verified this bundle moments ago
    spec, models = router.spec, list(report.models)
    ri = RunInfo.load(run_dir)
    m_tr = load_outcomes(str(train_file)).matrix(models)
    pos = {p: i for i, p in enumerate(m_tr.prompt_ids)}
    m_tr = m_tr.subset([pos[p] for p in ri.prompt_ids])  # the run's prompts, in the run's order
    steps = m_tr.meta["step_type"].tolist() if "step_type" in m_tr.meta.columns else None
    steps = None if steps is None else [s if isinstance(s, str) else None for s in steps]
    sub, te_floor = heldout_matrix(scored, test_file, models)
    need_emb = "knn" in peers
    emb_tr = emb_te = None
    check: dict[str, Any] = {}
    if need_emb:
        emb_tr = load_oof(run_dir, m_tr.prompt_ids)[0].embeddings
        if emb_tr is None:
            raise ValueError(f"{run_dir}: oof.safetensors has no 'embeddings'; the kNN peer needs them "
                             "(drop 'knn' from the peers)")
        emb_te = router.infer(sub.prompts)[1]["pooled"].astype(float)
        probe = router.infer(m_tr.prompts[:2])[1]["pooled"].astype(float)
        ref = np.asarray(emb_tr[:2], float)
        cos = (probe * ref).sum(1) / (np.linalg.norm(probe, axis=1) * np.linalg.norm(ref, axis=1))
        check = {"prompts": m_tr.prompt_ids[:2], "max_abs_diff": float(np.abs(probe - ref).max()),
                 "min_cosine": float(cos.min())}
        log(f"[demo] kNN embeddings: bundle fp32 ONNX pooled vs run OOF embeddings on 2 training prompts: "
            f"max |diff| {check['max_abs_diff']:.2e}, min cosine {check['min_cosine']:.6f}")
    train = PromptSet(m_tr.prompts, m_tr.success, m_tr.cost, floors_for(spec, m_tr.prompts, steps).min_tier,
                      emb_tr)
    test = PromptSet(sub.prompts, sub.success * np.nan, sub.cost * np.nan, te_floor, emb_te)
    frontier = models.index(spec.frontier) if getattr(spec, "frontier", None) in models else None
    fitted = [fit_heldout_peer(p, train, test, frontier=frontier, k_inner=k_inner, seed=seed)
              for p in peers]
    for p in fitted:
        log(f"[demo] peer {p.name}: tau {p.tau:g} chosen on {len(train.texts)} training prompts "
            f"(training success {100 * p.train_success:.1f} %, target {100 * p.target:.1f} %)")
    add_to_report(report, sub, te_floor, fitted)
    return {"peers": [p.to_dict() for p in fitted], "embedding_check": check}
