"""The stacker: one XGBoost model per tier over [out-of-fold head logits, PCA'd embeddings, handcrafted features].

Why stack: the neural heads each see one tier; a second-level model can use every tier's logit together (a prompt
that even the strongest tier's head doubts is hard for all), plus cheap structural features the encoder missed.
Why *out-of-fold* inputs only: a head's logits on its own training prompts are over-confident; a stacker fitted
on them learns to trust the heads far more than it should on new prompts. So the head logits fed in must come
from the neural k-fold mode (each prompt scored by the fold model that did not train on it), and the stacker's
own held-out predictions, which the calibrator is fitted on, come from an inner cross-fit (:func:`cross_fit`).

Artifacts: a directory with ``manifest.json`` (tiers, input layout, PCA mean/components as JSON arrays, XGBoost
params) and one XGBoost model per tier (JSON or UBJ). Inference needs only numpy + xgboost: no torch, no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.decision.trees import FastTrees, TreeEnsemble

FORMAT = "aco_bert.stacker/1"


@dataclass
class StackerConfig:
    pca_dim: int = 16  # embedding dimensions kept (0: no embeddings)
    use_logits: bool = True
    use_embeddings: bool = True
    use_features: bool = True
    logit_mean: bool = True  # add the mean logit over tiers: a shared "difficulty" score trees cannot sum up
    n_rounds: int = 150
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

    def xgb_params(self) -> dict:
        from aco_bert.decision.xgb import tree_params

        # binary:logistic accepts soft labels in [0, 1] (graded outcomes)
        return tree_params(self, "binary:logistic", eval_metric="logloss")


@dataclass
class StackInputs:
    """Per-prompt inputs of the stacker; any part may be None. ``fold`` records the OOF fold of the logits."""

    logits: np.ndarray | None = None  # (P, T) out-of-fold head logits
    embeddings: np.ndarray | None = None  # (P, H) pooled encoder embeddings (out-of-fold when fine-tuned)
    features: np.ndarray | None = None  # (P, F) handcrafted features
    fold: np.ndarray | None = None  # (P,) neural k-fold index each logit came from

    def __post_init__(self) -> None:
        ns = {k: np.asarray(v).shape[0] for k, v in self.parts().items()}
        if not ns:
            raise ValueError("StackInputs needs at least one of logits, embeddings, features")
        if len(set(ns.values())) != 1:
            raise ValueError(f"inputs disagree on the number of prompts: {ns}")
        for k in ("logits", "embeddings", "features"):
            v = getattr(self, k)
            if v is not None:
                v = np.asarray(v, dtype=float)
                if v.ndim != 2:
                    raise ValueError(f"{k} must be 2-D, got {v.shape}")
                setattr(self, k, v)

    def parts(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("logits", self.logits), ("embeddings", self.embeddings),
                                  ("features", self.features), ("fold", self.fold)) if v is not None}

    @property
    def n(self) -> int:
        return next(iter(np.asarray(v).shape[0] for v in self.parts().values()))

    def subset(self, idx: np.ndarray) -> "StackInputs":
        idx = np.asarray(idx)
        return StackInputs(**{k: np.asarray(v)[idx] for k, v in self.parts().items()})


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


def design_matrix(inputs: StackInputs, cfg: StackerConfig, pca: PCA | None) -> np.ndarray:
    """The stacker's (P, F) float32 input: [logits, mean logit, PCA'd embeddings, features] as ``cfg`` switches."""
    cols = []
    if cfg.use_logits and inputs.logits is not None:
        cols.append(inputs.logits)
        if cfg.logit_mean:
            cols.append(inputs.logits.mean(axis=1, keepdims=True))
    if cfg.use_embeddings and pca is not None and inputs.embeddings is not None:
        cols.append(pca.transform(inputs.embeddings))
    if cfg.use_features and inputs.features is not None:
        cols.append(inputs.features)
    if not cols:
        raise ValueError("no stacker inputs left after the config's use_* switches")
    return np.concatenate(cols, axis=1).astype(np.float32)


@dataclass
class Stacker:
    """Fitted per-tier XGBoost models (``None`` for a tier that predicts its base rate) plus the input layout."""

    cfg: StackerConfig
    tiers: list[str]
    boosters: list  # xgboost.Booster | None per tier
    base_rate: list[float]
    pca: PCA | None
    layout: dict  # which parts, and their widths, the design matrix was built from
    n_train: list[int] = field(default_factory=list)
    _trees: FastTrees = field(default_factory=FastTrees, init=False, repr=False, compare=False)

    @classmethod
    def fit(cls, inputs: StackInputs, labels: np.ndarray, cfg: StackerConfig | None = None,
            tiers: Sequence[str] | None = None) -> "Stacker":
        """Fit on out-of-fold inputs; ``labels`` (P, T) in [0, 1], NaN = unknown (masked per tier)."""
        import xgboost as xgb

        cfg = cfg or StackerConfig()
        labels = np.asarray(labels, dtype=float)
        if labels.ndim != 2 or labels.shape[0] != inputs.n:
            raise ValueError(f"labels {labels.shape} do not match {inputs.n} prompts")
        pca = None
        if cfg.use_embeddings and inputs.embeddings is not None and cfg.pca_dim > 0:
            pca = PCA.fit(inputs.embeddings, cfg.pca_dim)
        x = design_matrix(inputs, cfg, pca)
        layout = {
            "logits": int(inputs.logits.shape[1]) if cfg.use_logits and inputs.logits is not None else 0,
            "logit_mean": int(bool(cfg.use_logits and inputs.logits is not None and cfg.logit_mean)),
            "pca": int(pca.components.shape[0]) if pca is not None else 0,
            "embedding_dim": int(inputs.embeddings.shape[1]) if pca is not None else 0,
            "features": int(inputs.features.shape[1]) if cfg.use_features and inputs.features is not None else 0,
        }
        boosters, base, ns = [], [], []
        for t in range(labels.shape[1]):
            ok = ~np.isnan(labels[:, t])
            y = labels[ok, t]
            ns.append(int(ok.sum()))
            base.append(float(y.mean()) if y.size else 0.5)
            if y.size < cfg.min_labels or np.unique(y).size < 2:
                boosters.append(None)
                continue
            d = xgb.DMatrix(x[ok], label=y)
            boosters.append(xgb.train(cfg.xgb_params(), d, num_boost_round=cfg.n_rounds))
        names = list(tiers) if tiers is not None else [str(i) for i in range(labels.shape[1])]
        return cls(cfg, names, boosters, base, pca, layout, ns)

    @property
    def n_tiers(self) -> int:
        return len(self.boosters)

    def predict(self, inputs: StackInputs) -> np.ndarray:
        """Uncalibrated (P, T) P(success); pass through the calibrator before routing.

        The one predict of training, evaluation and the runtime: the trees are evaluated by
        :class:`~aco_bert.decision.trees.FastTrees` (numpy, checked against XGBoost, else ``inplace_predict``)."""
        for part, width in (("logits", self.layout["logits"]), ("features", self.layout["features"])):
            v = getattr(inputs, part)
            if width and (v is None or v.shape[1] != width):
                raise ValueError(f"stacker expects {part} of width {width}, got {None if v is None else v.shape}")
        if self.layout["pca"] and (inputs.embeddings is None or inputs.embeddings.shape[1] != self.layout["embedding_dim"]):
            raise ValueError(f"stacker expects embeddings of width {self.layout['embedding_dim']}")
        x = design_matrix(inputs, self.cfg, self.pca)
        live = [t for t, b in enumerate(self.boosters) if b is not None]
        if live and x.shape[1] != self.boosters[live[0]].num_features():
            raise ValueError(f"stacker expects {self.boosters[live[0]].num_features()} inputs ({self.layout}), "
                             f"got {x.shape[1]}")
        out = np.empty((inputs.n, self.n_tiers))
        if live:
            out[:, live] = self._trees.predict(self.boosters, x)
        for t, b in enumerate(self.boosters):
            if b is None:
                out[:, t] = self.base_rate[t]
        return out

    def fast_trees(self) -> TreeEnsemble | None:
        """The numpy ensemble :meth:`predict` uses (built now if not yet; None: XGBoost's own predict is used)."""
        return self._trees.forest(self.boosters)

    def save(self, path: str | Path) -> Path:
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
        }
        (path / "manifest.json").write_text(json.dumps(manifest))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Stacker":
        from aco_bert.decision.xgb import load_boosters, read_artifact_manifest

        m = read_artifact_manifest(path, FORMAT, "stacker")
        boosters = load_boosters(path, m["models"])
        cfg = StackerConfig(**m["config"])
        pca = PCA.from_dict(m["pca"]) if m.get("pca") else None
        return cls(cfg, list(m["tiers"]), boosters, list(m["base_rate"]), pca, dict(m["layout"]), list(m["n_train"]))


def cross_fit(inputs: StackInputs, labels: np.ndarray, folds: Sequence, cfg: StackerConfig | None = None
              ) -> np.ndarray:
    """Held-out stacker predictions: for each fold, fit on ``fold.train`` rows only and predict ``fold.test``.

    Every returned row comes from a stacker that never saw that prompt (a prompt in no test fold stays NaN).
    """
    labels = np.asarray(labels, dtype=float)
    out = np.full(labels.shape, np.nan)
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f.index}: train and test overlap")
        st = Stacker.fit(inputs.subset(tr), labels[tr], cfg)
        out[te] = st.predict(inputs.subset(te))
    return out


@dataclass
class FittedStack:
    """A stacker fitted on all given prompts plus a calibrator fitted on its inner cross-fit predictions."""

    stacker: Stacker
    calibrator: "IsotonicCalibrator"  # noqa: F821
    inner_oof: np.ndarray  # (P, T) held-out stacker predictions the calibrator was fitted on

    def predict(self, inputs: StackInputs) -> np.ndarray:
        return self.calibrator.transform(self.stacker.predict(inputs))


def fit_stack(inputs: StackInputs, labels: np.ndarray, cfg: StackerConfig | None = None,
              tiers: Sequence[str] | None = None, prompt_ids: Sequence[str] | None = None) -> FittedStack:
    """Inner cross-fit -> isotonic calibrator on those held-out predictions -> final stacker on all prompts."""
    from aco_bert.decision.calibration import IsotonicCalibrator
    from aco_bert.data.splits import kfold

    cfg = cfg or StackerConfig()
    ids = list(prompt_ids) if prompt_ids is not None else inputs.n
    inner = kfold(ids, cfg.inner_k, cfg.seed + 101)
    oof = cross_fit(inputs, labels, inner, cfg)
    cal = IsotonicCalibrator.fit(oof, labels, tiers)
    st = Stacker.fit(inputs, labels, cfg, tiers)
    return FittedStack(st, cal, oof)


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
