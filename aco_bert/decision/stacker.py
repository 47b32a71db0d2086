"""The stacker: one XGBoost model per tier over [out-of-fold head logits, PCA'd embeddings, handcrafted features,
fitted signals (TF-IDF-LR logits, neighbour outcomes, spec-declared metadata)], started from its best single input.

Why stack: each neural head sees one tier; a second-level model reads every tier's logit together, plus cheap features.
Why *out-of-fold* inputs only: a head's logits on its own training prompts are over-confident, so a stacker fitted
on them over-trusts the heads. The head logits come from the neural k-fold mode, the signal blocks from the stack
stage's cross-fit (:func:`aco_bert.signals.base.cross_fit`), the stacker's own held-out predictions (the
calibrator's input) from an inner cross-fit (:func:`cross_fit`).

Why a *guarantee*: trees over many weak inputs can end up below their best input (SWE-bench: stacked AUC 0.515 vs
the heads' 0.561). So per tier the stacker first picks its best single source (heads logit, TF-IDF-LR logit,
kNN success, by AUC on its training rows), maps it with a one-feature logistic fit (Platt) and uses that logit as
XGBoost's ``base_margin``: the trees only learn a correction. Then :func:`fit_stack` compares the stack's inner
held-out AUC with that source's: a tier whose stack is not better falls back to the source alone (``modes``).

Artifacts: a directory with ``manifest.json`` (tiers, input layout, PCA mean/components as JSON arrays, XGBoost
params, per-tier source + mode + guarantee record) and one XGBoost model per stacked tier (JSON or UBJ); inference
needs numpy + xgboost only (no torch, no pickle); manifests written before the signals existed load as they were.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.decision.calibration import sigmoid
from aco_bert.decision.trees import FastTrees, TreeEnsemble
from aco_bert.signals.sources import apply_guarantee, choose_sources, source_logit, source_scores

FORMAT = "aco_bert.stacker/1"
LEGACY_SIGNALS = ("heads", "pca", "features")  # what the stacker read before fitted signals existed
DEFAULT_SIGNALS = ("heads", "pca", "features", "tfidf", "knn", "metadata")


@dataclass
class StackerConfig:
    # stacker inputs in design-matrix order: built in (heads, pca, features) and registered signals (tfidf, knn,
    # metadata); an input that is not given to fit() is left out (and recorded so in the layout)
    signals: list[str] = field(default_factory=lambda: list(DEFAULT_SIGNALS))
    base_margin: bool = True  # each tier's trees start from its best single source's Platt logit
    guarantee: bool = True  # fit_stack: a tier whose stack is not better on inner folds uses its best source alone
    guarantee_tol: float = 0.0  # the stack must beat the source's inner held-out AUC by more than this
    source_scope: str = "global"  # "global": one single source for all tiers (best mean AUC); "tier": per tier
    source_blend: bool = True  # also try an L2 logistic blend of all single sources (wins on cross-fitted AUC)
    pca_dim: int = 16  # embedding dimensions kept (0: no embeddings)
    use_logits: bool = True  # legacy switches: False drops heads / pca / features even when listed in signals
    use_embeddings: bool = True
    use_features: bool = True
    logit_mean: bool = True  # add the mean logit over tiers: a shared "difficulty" score trees cannot sum up
    n_rounds: int = 150  # boosting rounds of a tier without a base margin
    margin_rounds: int = 20  # rounds of a tier started from its source: a small correction (more overfit, measured)
    max_depth: int = 2
    eta: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 3.0
    reg_lambda: float = 5.0
    inner_k: int = 5  # inner cross-fit folds giving the held-out predictions the calibrator is fitted on
    min_labels: int = 20  # fewer labelled prompts (or one class) -> the tier predicts its base rate
    seed: int = 0
    nthread: int = 2
    fmt: str = "json"  # "json" or "ubj"

    def __post_init__(self) -> None:
        from aco_bert.signals.registry import check_names

        self.signals = list(self.signals)
        check_names(self.signals, "stacker signals")
        if self.source_scope not in ("global", "tier"):
            raise ValueError(f"source_scope must be 'global' or 'tier', got {self.source_scope!r}")

    def xgb_params(self) -> dict:
        from aco_bert.decision.xgb import tree_params

        # binary:logistic accepts soft labels in [0, 1] (graded outcomes)
        return tree_params(self, "binary:logistic", eval_metric="logloss")

    def uses(self, name: str) -> bool:
        """Whether input ``name`` is on (listed in ``signals`` and not switched off by a legacy ``use_*``)."""
        legacy = {"heads": self.use_logits, "pca": self.use_embeddings, "features": self.use_features}
        return name in self.signals and legacy.get(name, True)


@dataclass
class StackInputs:
    """Per-prompt inputs of the stacker; any part may be None. ``fold`` records the OOF fold of the logits;
    ``signals`` holds the fitted signals' out-of-fold blocks by name."""

    logits: np.ndarray | None = None  # (P, T) out-of-fold head logits
    embeddings: np.ndarray | None = None  # (P, H) pooled encoder embeddings (out-of-fold when fine-tuned)
    features: np.ndarray | None = None  # (P, F) handcrafted features
    fold: np.ndarray | None = None  # (P,) neural k-fold index each logit came from
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (P, width) block

    def __post_init__(self) -> None:
        self.signals = {k: np.asarray(v, dtype=float) for k, v in (self.signals or {}).items()}
        ns = {k: np.asarray(v).shape[0] for k, v in self.parts().items()}
        ns.update({f"signals[{k}]": v.shape[0] for k, v in self.signals.items()})
        if not ns:
            raise ValueError("StackInputs needs at least one of logits, embeddings, features, signals")
        if len(set(ns.values())) != 1:
            raise ValueError(f"inputs disagree on the number of prompts: {ns}")
        for k in ("logits", "embeddings", "features"):
            v = getattr(self, k)
            if v is not None:
                v = np.asarray(v, dtype=float)
                if v.ndim != 2:
                    raise ValueError(f"{k} must be 2-D, got {v.shape}")
                setattr(self, k, v)
        for k, v in self.signals.items():
            if v.ndim != 2:
                raise ValueError(f"signal block {k!r} must be 2-D, got {v.shape}")

    def parts(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("logits", self.logits), ("embeddings", self.embeddings),
                                  ("features", self.features), ("fold", self.fold)) if v is not None}

    @property
    def n(self) -> int:
        arrays = list(self.parts().values()) + list(self.signals.values())
        return int(np.asarray(arrays[0]).shape[0])

    def subset(self, idx: np.ndarray) -> "StackInputs":
        idx = np.asarray(idx)
        return StackInputs(**{k: np.asarray(v)[idx] for k, v in self.parts().items()},
                           signals={k: v[idx] for k, v in self.signals.items()})


@dataclass
class PCA:
    """Mean + top principal directions, fitted by SVD; stored as JSON arrays."""

    mean: np.ndarray
    components: np.ndarray  # (k, H)

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> "PCA":
        x = np.asarray(x, dtype=float)
        mean = x.mean(axis=0)
        k = int(min(k, x.shape[0] - 1, x.shape[1]))
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:k]
        # Deterministic sign: the largest-magnitude loading of each component is positive.
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        return cls(mean, comps * signs[:, None])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.mean) @ self.components.T

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "PCA":
        return cls(np.asarray(d["mean"], float), np.asarray(d["components"], float).reshape(-1, len(d["mean"])))


def standardize_by_fold(logits: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Z-score each tier's logits within each neural fold (label-free).

    Why: out-of-fold logits come from K different fold models whose logit scales differ (one fold may stop after
    an epoch with logits near 0, another spread them over +-2); pooled raw, the fold, not the prompt, would drive
    every downstream split. The runtime equivalent is standardising the final model's logits by its statistics
    on the training prompts.
    """
    logits = np.asarray(logits, dtype=float)
    out = np.empty_like(logits)
    for k in np.unique(fold):
        m = fold == k
        mu, sd = logits[m].mean(axis=0), logits[m].std(axis=0)
        out[m] = (logits[m] - mu) / np.where(sd > 1e-12, sd, 1.0)
    return out


def make_layout(inputs: StackInputs, cfg: StackerConfig, pca: PCA | None, n_tiers: int,
                tiers: Sequence[str] | None = None, head_tiers: Sequence[str] | None = None) -> dict:
    """Which inputs (and widths) the design matrix is built from, and which head logit belongs to which tier."""
    use_heads = cfg.uses("heads") and inputs.logits is not None
    head_of_tier: list[int | None] = [None] * n_tiers
    if use_heads:
        h = int(inputs.logits.shape[1])
        if head_tiers is not None and tiers is not None:
            head_of_tier = [list(head_tiers).index(m) if m in head_tiers else None for m in tiers]
        elif h == n_tiers:
            head_of_tier = list(range(n_tiers))
    return {
        "logits": int(inputs.logits.shape[1]) if use_heads else 0,
        "logit_mean": int(bool(use_heads and cfg.logit_mean)),
        "pca": int(pca.components.shape[0]) if pca is not None else 0,
        "embedding_dim": int(inputs.embeddings.shape[1]) if pca is not None else 0,
        "features": int(inputs.features.shape[1]) if cfg.uses("features") and inputs.features is not None else 0,
        "signals": {k: int(inputs.signals[k].shape[1]) for k in cfg.signals
                    if k in inputs.signals and cfg.uses(k) and k not in ("heads", "pca", "features")},
        "head_of_tier": head_of_tier,
    }


def design_matrix(inputs: StackInputs, layout: dict | StackerConfig, pca: PCA | None) -> np.ndarray:
    """The stacker's (P, F) float32 input: [logits, mean logit, PCA'd embeddings, features, signal blocks] as
    ``layout`` (:func:`make_layout`; or a config: the parts it switches on that ``inputs`` has) lists them."""
    if isinstance(layout, StackerConfig):
        layout = make_layout(inputs, layout, pca, 0)
    cols = []
    if layout.get("logits"):
        cols.append(inputs.logits)
        if layout.get("logit_mean"):
            cols.append(inputs.logits.mean(axis=1, keepdims=True))
    if layout.get("pca") and pca is not None:
        cols.append(pca.transform(inputs.embeddings))
    if layout.get("features"):
        cols.append(inputs.features)
    for name in layout.get("signals", {}):
        cols.append(inputs.signals[name])
    if not cols:
        raise ValueError("no stacker inputs left after the config's signals / use_* switches")
    return np.concatenate(cols, axis=1).astype(np.float32)


@dataclass
class Stacker:
    """Fitted per-tier XGBoost models plus the input layout. Per tier ``modes[t]``: ``stack`` (trees, started from
    ``sources[t]``'s logit when ``sources[t]["margin"]``), ``source`` (the best single source alone: the guarantee's
    fallback) or ``base_rate`` (too few labels)."""

    cfg: StackerConfig
    tiers: list[str]
    boosters: list  # xgboost.Booster | None per tier
    base_rate: list[float]
    pca: PCA | None
    layout: dict  # which parts, and their widths, the design matrix was built from
    n_train: list[int] = field(default_factory=list)
    sources: list = field(default_factory=list)  # per tier: {source, auc, a, b, margin} or None
    modes: list = field(default_factory=list)  # per tier: "stack" | "source" | "base_rate"
    guarantee: list = field(default_factory=list)  # per tier: fit_stack's inner-fold comparison (or None)
    _trees: FastTrees = field(default_factory=FastTrees, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = len(self.boosters)
        self.sources = list(self.sources) or [None] * t
        self.modes = list(self.modes) or ["base_rate" if b is None else "stack" for b in self.boosters]
        self.guarantee = list(self.guarantee) or [None] * t

    @classmethod
    def fit(cls, inputs: StackInputs, labels: np.ndarray, cfg: StackerConfig | None = None,
            tiers: Sequence[str] | None = None, head_tiers: Sequence[str] | None = None) -> "Stacker":
        """Fit on out-of-fold inputs; ``labels`` (P, T) in [0, 1], NaN = unknown (masked per tier).
        ``head_tiers``: the models of the logit columns, when they are not ``tiers`` (the spec's)."""
        import xgboost as xgb

        cfg = cfg or StackerConfig()
        labels = np.asarray(labels, dtype=float)
        if labels.ndim != 2 or labels.shape[0] != inputs.n:
            raise ValueError(f"labels {labels.shape} do not match {inputs.n} prompts")
        n_t = labels.shape[1]
        pca = None
        if cfg.uses("pca") and inputs.embeddings is not None and cfg.pca_dim > 0:
            pca = PCA.fit(inputs.embeddings, cfg.pca_dim)
        layout = make_layout(inputs, cfg, pca, n_t, tiers, head_tiers)
        x = design_matrix(inputs, layout, pca)
        cands = source_scores(inputs, layout, n_t) if (cfg.base_margin or cfg.guarantee) else {}
        chosen = (choose_sources(cands, labels, cfg.min_labels, cfg.source_scope, cfg.source_blend, cfg.seed)
                  if cands else [None] * n_t)
        fitted, base, ns = [], [], []  # per tier: (booster, source, mode)
        for t in range(n_t):
            ok = ~np.isnan(labels[:, t])
            y = labels[ok, t]
            ns.append(int(ok.sum()))
            base.append(float(y.mean()) if y.size else 0.5)
            if y.size < cfg.min_labels or np.unique(y).size < 2:
                fitted.append((None, None, "base_rate"))
                continue
            src, params, margin = chosen[t], cfg.xgb_params(), None
            if src is not None and cfg.base_margin:
                margin = source_logit(src, cands, t)[ok]
                params["base_score"] = 0.5  # margin 0: the prediction is sigmoid(base_margin + trees)
            if src is not None:
                src["margin"] = margin is not None
            d = xgb.DMatrix(x[ok], label=y, base_margin=margin)
            rounds = cfg.margin_rounds if margin is not None else cfg.n_rounds
            fitted.append((xgb.train(params, d, num_boost_round=rounds), src, "stack"))
        boosters, sources, modes = (list(c) for c in zip(*fitted)) if fitted else ([], [], [])
        names = list(tiers) if tiers is not None else [str(i) for i in range(n_t)]
        return cls(cfg, names, boosters, base, pca, layout, ns, sources, modes)

    @property
    def n_tiers(self) -> int:
        return len(self.boosters)

    def check_inputs(self, inputs: StackInputs) -> None:
        lay = self.layout
        for part, width in (("logits", lay["logits"]), ("features", lay["features"])):
            v = getattr(inputs, part)
            if width and (v is None or v.shape[1] != width):
                raise ValueError(f"stacker expects {part} of width {width}, got {None if v is None else v.shape}")
        if lay["pca"] and (inputs.embeddings is None or inputs.embeddings.shape[1] != lay["embedding_dim"]):
            raise ValueError(f"stacker expects embeddings of width {lay['embedding_dim']}")
        for name, width in lay.get("signals", {}).items():
            v = inputs.signals.get(name)
            if v is None or v.shape[1] != width:
                raise ValueError(f"stacker expects signal {name!r} of width {width}, got "
                                 f"{None if v is None else v.shape}")

    def source_margins(self, inputs: StackInputs) -> np.ndarray:
        """(P, T) Platt logit of each tier's single source (NaN for a tier without one)."""
        out = np.full((inputs.n, self.n_tiers), np.nan)
        need = [t for t, s in enumerate(self.sources) if s is not None]
        if need:
            cands = source_scores(inputs, self.layout, self.n_tiers)
            for t in need:
                s = self.sources[t]
                out[:, t] = source_logit(s, cands, t)
        return out

    def predict(self, inputs: StackInputs) -> np.ndarray:
        """Uncalibrated (P, T) P(success); pass through the calibrator before routing.

        The one predict of training, evaluation and the runtime: the trees are evaluated by
        :class:`~aco_bert.decision.trees.FastTrees` (numpy, checked against XGBoost, else ``inplace_predict``)."""
        self.check_inputs(inputs)
        x = design_matrix(inputs, self.layout, self.pca)
        live = [t for t, b in enumerate(self.boosters) if b is not None]
        if live and x.shape[1] != self.boosters[live[0]].num_features():
            raise ValueError(f"stacker expects {self.boosters[live[0]].num_features()} inputs ({self.layout}), "
                             f"got {x.shape[1]}")
        out = np.empty((inputs.n, self.n_tiers))
        with_margin = [t for t in live if (self.sources[t] or {}).get("margin")]
        bm = self.source_margins(inputs) if with_margin or "source" in self.modes else None
        if live and not with_margin:
            out[:, live] = self._trees.predict(self.boosters, x)
        elif live:
            m = self.tree_margins(x)
            m += np.nan_to_num(bm[:, live]) * np.isin(live, with_margin)
            out[:, live] = sigmoid(m)
        for t, b in enumerate(self.boosters):
            if b is None:
                out[:, t] = sigmoid(bm[:, t]) if self.modes[t] == "source" else self.base_rate[t]
        return out

    def tree_margins(self, x: np.ndarray) -> np.ndarray:
        """(P, K) raw tree margins of the K live boosters (numpy trees, else XGBoost's ``inplace_predict``)."""
        te = self._trees.forest(self.boosters)
        if te is not None:
            return te.margins(x)
        return np.stack([b.inplace_predict(x, predict_type="margin") for b in self.boosters if b is not None],
                        axis=1).astype(np.float64)

    def fall_back(self, t: int) -> None:
        """Tier ``t`` uses its single source alone from now on (the guarantee's fallback)."""
        if self.sources[t] is None:
            raise ValueError(f"tier {self.tiers[t]!r} has no single source to fall back to")
        self.boosters[t] = None
        self.modes[t] = "source"

    def fast_trees(self) -> TreeEnsemble | None:
        """The numpy ensemble :meth:`predict` uses (built now if not yet; None: XGBoost's own predict is used)."""
        return self._trees.forest(self.boosters)

    def save(self, path: str | Path) -> Path:
        from aco_bert.artifacts.jsonio import json_safe
        from aco_bert.decision.xgb import save_boosters

        path = Path(path)
        files = save_boosters(path, self.boosters, "tier", self.cfg.fmt)
        manifest = {
            "format": FORMAT,
            "tiers": self.tiers,
            "config": asdict(self.cfg),
            "layout": self.layout,
            "base_rate": self.base_rate,
            "n_train": self.n_train,
            "models": files,
            "pca": self.pca.to_dict() if self.pca is not None else None,
            "sources": self.sources, "modes": self.modes, "guarantee": self.guarantee,
        }
        (path / "manifest.json").write_text(json.dumps(json_safe(manifest)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Stacker":
        from aco_bert.decision.xgb import load_boosters, read_artifact_manifest

        m = read_artifact_manifest(path, FORMAT, "stacker")
        boosters = load_boosters(path, m["models"])
        conf = dict(m["config"])
        if "signals" not in conf:  # written before fitted signals and the guarantee existed
            conf.update(signals=list(LEGACY_SIGNALS), base_margin=False, guarantee=False)
        cfg = StackerConfig(**conf)
        pca = PCA.from_dict(m["pca"]) if m.get("pca") else None
        layout = {"signals": {}, "head_of_tier": [None] * len(boosters)} | dict(m["layout"])
        return cls(cfg, list(m["tiers"]), boosters, list(m["base_rate"]), pca, layout, list(m["n_train"]),
                   list(m.get("sources") or []), list(m.get("modes") or []), list(m.get("guarantee") or []))


def cross_fit(inputs: StackInputs, labels: np.ndarray, folds: Sequence, cfg: StackerConfig | None = None,
              tiers: Sequence[str] | None = None, head_tiers: Sequence[str] | None = None,
              sources_out: np.ndarray | None = None) -> np.ndarray:
    """Held-out stacker predictions: for each fold, fit on ``fold.train`` rows only and predict ``fold.test``.

    Every returned row comes from a stacker that never saw that prompt (a prompt in no test fold stays NaN); each
    fold's stacker also picks its single sources and Platt maps on its own training rows, and when
    ``sources_out`` (P, T) is given it receives those sources' held-out Platt probabilities.
    """
    labels = np.asarray(labels, dtype=float)
    out = np.full(labels.shape, np.nan)
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f.index}: train and test overlap")
        st = Stacker.fit(inputs.subset(tr), labels[tr], cfg, tiers, head_tiers)
        out[te] = st.predict(inputs.subset(te))
        if sources_out is not None:
            sources_out[te] = sigmoid(st.source_margins(inputs.subset(te)))
    return out


@dataclass
class FittedStack:
    """A stacker fitted on all given prompts plus a calibrator fitted on its inner cross-fit predictions."""

    stacker: Stacker
    calibrator: "IsotonicCalibrator"  # noqa: F821
    inner_oof: np.ndarray  # (P, T) held-out predictions the calibrator was fitted on (after the guarantee)
    stacked_oof: np.ndarray | None = None  # (P, T) the stack's own held-out predictions (before the guarantee)

    def predict(self, inputs: StackInputs) -> np.ndarray:
        return self.calibrator.transform(self.stacker.predict(inputs))


def fit_stack(inputs: StackInputs, labels: np.ndarray, cfg: StackerConfig | None = None,
              tiers: Sequence[str] | None = None, prompt_ids: Sequence[str] | None = None,
              head_tiers: Sequence[str] | None = None) -> FittedStack:
    """Inner cross-fit -> final stacker on all prompts -> the guarantee (:func:`apply_guarantee`, when
    ``cfg.guarantee``) -> isotonic calibrator on the resulting held-out predictions."""
    from aco_bert.decision.calibration import IsotonicCalibrator
    from aco_bert.data.splits import kfold

    cfg = cfg or StackerConfig()
    ids = list(prompt_ids) if prompt_ids is not None else inputs.n
    inner = kfold(ids, cfg.inner_k, cfg.seed + 101)
    source_oof = np.full(np.shape(labels), np.nan)
    stacked = cross_fit(inputs, labels, inner, cfg, tiers, head_tiers, source_oof)
    st = Stacker.fit(inputs, labels, cfg, tiers, head_tiers)
    oof = apply_guarantee(st, inputs, labels, stacked, source_oof) if cfg.guarantee else stacked
    cal = IsotonicCalibrator.fit(oof, labels, tiers)
    return FittedStack(st, cal, oof, stacked)


# --- reading the neural k-fold output ----------------------------------------------------------------------------


def load_oof(run_dir: str | Path, prompt_ids: Sequence[str] | None = None, models: Sequence[str] | None = None
             ) -> tuple[StackInputs, dict, np.ndarray | None]:
    """Read ``oof.safetensors`` + ``oof_meta.json`` of a neural k-fold run, aligned to ``prompt_ids``/``models``.

    Returns (inputs, meta, cost-head outputs or None). Every requested prompt must be present (an OOF file that
    misses prompts would silently shrink the evaluation); columns are reordered to ``models`` when given.
    """
    from safetensors.numpy import load_file

    run_dir = Path(run_dir)
    tf, mf = run_dir / "oof.safetensors", run_dir / "oof_meta.json"
    for f in (tf, mf):
        if not f.exists():
            raise FileNotFoundError(f"{f}: not found (run the neural k-fold mode first)")
    tens = load_file(str(tf))
    meta = json.loads(mf.read_text())
    for k in ("logits", "fold"):
        if k not in tens:
            raise ValueError(f"{tf}: no tensor {k!r}; have {sorted(tens)}")
    pids = [str(p) for p in meta["prompt_ids"]]
    if len(pids) != tens["logits"].shape[0]:
        raise ValueError(f"{mf}: {len(pids)} prompt_ids but {tens['logits'].shape[0]} logit rows")
    rows = np.arange(len(pids))
    if prompt_ids is not None:
        pos = {p: i for i, p in enumerate(pids)}
        missing = [p for p in prompt_ids if str(p) not in pos]
        if missing:
            raise ValueError(f"{tf}: {len(missing)} prompts have no out-of-fold row, e.g. {missing[:3]}")
        rows = np.array([pos[str(p)] for p in prompt_ids])
    cols = np.arange(tens["logits"].shape[1])
    if models is not None:
        have = list(meta["models"])
        missing = [m for m in models if m not in have]
        if missing:
            raise ValueError(f"{mf}: models {missing} not in the run's tiers {have}")
        cols = np.array([have.index(m) for m in models])
    fold = tens["fold"].astype(np.int64)[rows]
    if (fold < 0).any():
        raise ValueError(f"{tf}: some prompts have no fold (never held out)")
    inputs = StackInputs(
        logits=tens["logits"][rows][:, cols].astype(float),
        embeddings=tens["embeddings"][rows].astype(float) if "embeddings" in tens else None,
        fold=fold,
    )
    cost = tens["cost"][rows][:, cols].astype(float) if "cost" in tens else None
    return inputs, meta, cost
