"""Expected USD cost per tier for a prompt: a per-tier mean baseline, and a per-tier regression on prompt inputs.

Why a regression: an agent's cost on a task is dominated by how long it works on it, and long, messy issues make
every model work longer; the utility and budget policies trade P(success) against this number, so a prompt-level
estimate is worth having whenever it beats the tier mean on held-out prompts (:func:`evaluate_cost` measures
exactly that, by MAE and by mean absolute log error).

Model: XGBoost per tier on ``log(cost + eps)`` over [handcrafted features, PCA'd embeddings, the neural cost
heads' out-of-fold outputs when present], back-transformed with Duan's smearing factor so the prediction
estimates a mean rather than a median. Stored as XGBoost JSON/UBJ + a JSON manifest (no pickle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.decision.stacker import PCA
from aco_bert.decision.trees import FastTrees, TreeEnsemble

FORMAT = "aco_bert.cost_model/1"  # a file-format version, not a module path
EPS = 1e-4  # USD; keeps log() finite for free (locally served) calls


@dataclass
class CostModelConfig:
    method: str = "xgb"  # "mean" (per-tier mean) or "xgb"
    pca_dim: int = 8
    n_rounds: int = 200
    max_depth: int = 3
    eta: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 3.0
    reg_lambda: float = 5.0
    min_rows: int = 20  # fewer observed costs -> the tier falls back to its mean
    seed: int = 0
    nthread: int = 2
    fmt: str = "json"

    def xgb_params(self) -> dict:
        from aco_bert.decision.xgb import tree_params

        return tree_params(self, "reg:squarederror")


def design_matrix(features: np.ndarray | None, embeddings: np.ndarray | None, heads: np.ndarray | None,
                  pca: PCA | None) -> np.ndarray | None:
    """The cost model's (P, F) float32 input: [features, PCA'd embeddings, cost heads], the parts given."""
    cols = [np.asarray(features, float)] if features is not None else []
    if pca is not None and embeddings is not None:
        cols.append(pca.transform(embeddings))
    if heads is not None:
        cols.append(np.asarray(heads, float))
    return np.concatenate(cols, axis=1).astype(np.float32) if cols else None


@dataclass
class CostModel:
    cfg: CostModelConfig
    tiers: list[str]
    mean: np.ndarray  # (T,) per-tier mean cost on the training prompts
    boosters: list  # xgboost.Booster | None per tier
    smear: np.ndarray  # (T,) Duan smearing factors
    pca: PCA | None = None
    layout: dict = field(default_factory=dict)
    _trees: FastTrees = field(default_factory=FastTrees, init=False, repr=False, compare=False)

    @classmethod
    def fit(cls, cost: np.ndarray, features: np.ndarray | None = None, embeddings: np.ndarray | None = None,
            heads: np.ndarray | None = None, cfg: CostModelConfig | None = None,
            tiers: Sequence[str] | None = None) -> "CostModel":
        """Fit per tier on observed costs (NaN = unknown, masked). ``method="mean"`` needs no inputs."""
        cfg = cfg or CostModelConfig()
        cost = np.asarray(cost, float)
        t_n = cost.shape[1]
        names = list(tiers) if tiers is not None else [str(i) for i in range(t_n)]
        with np.errstate(invalid="ignore"):
            mean = np.array([np.nanmean(cost[:, t]) if (~np.isnan(cost[:, t])).any() else np.nan for t in range(t_n)])
        if np.isnan(mean).any():
            bad = [names[t] for t in np.flatnonzero(np.isnan(mean))]
            raise ValueError(f"no observed cost for tier(s) {bad}: give them a price-based cost first")
        boosters: list = [None] * t_n
        smear = np.ones(t_n)
        pca = None
        if cfg.method not in ("mean", "xgb"):
            raise ValueError(f"cost model method must be 'mean' or 'xgb', got {cfg.method!r}")
        layout = {"features": 0, "pca": 0, "embedding_dim": 0, "heads": 0}
        if cfg.method == "xgb":
            import xgboost as xgb

            if embeddings is not None and cfg.pca_dim > 0:
                pca = PCA.fit(embeddings, cfg.pca_dim)
            x = design_matrix(features, embeddings, heads, pca)
            if x is None:
                raise ValueError("cost model method 'xgb' needs features, embeddings or heads")
            layout = {"features": 0 if features is None else int(np.shape(features)[1]),
                      "pca": 0 if pca is None else int(pca.components.shape[0]),
                      "embedding_dim": 0 if pca is None else int(np.shape(embeddings)[1]),
                      "heads": 0 if heads is None else int(np.shape(heads)[1])}
            for t in range(t_n):
                ok = ~np.isnan(cost[:, t])
                if ok.sum() < cfg.min_rows:
                    continue
                y = np.log(cost[ok, t] + EPS)
                b = xgb.train(cfg.xgb_params(), xgb.DMatrix(x[ok], label=y), num_boost_round=cfg.n_rounds)
                boosters[t] = b
                smear[t] = float(np.mean(np.exp(y - b.predict(xgb.DMatrix(x[ok])))))
        return cls(cfg, names, mean, boosters, smear, pca, layout)

    def predict(self, n: int | None = None, features: np.ndarray | None = None,
                embeddings: np.ndarray | None = None, heads: np.ndarray | None = None) -> np.ndarray:
        """(P, T) expected USD. With method "mean" only ``n`` (or any input, for its length) is needed.

        The one predict of training, evaluation and the runtime: the trees are evaluated by
        :class:`~aco_bert.decision.trees.FastTrees` (numpy, checked against XGBoost, else ``inplace_predict``)."""
        live = [t for t, b in enumerate(self.boosters) if b is not None]
        x = design_matrix(features, embeddings, heads, self.pca) if live else None
        if n is None:
            for a in (features, embeddings, heads):
                if a is not None:
                    n = int(np.shape(a)[0])
                    break
        if n is None:
            raise ValueError("predict needs n or an input array")
        out = np.tile(self.mean, (n, 1)).astype(float)
        if not live:
            return out
        want = self.layout["features"] + self.layout["pca"] + self.layout["heads"]
        if x is None or x.shape[1] != want:
            raise ValueError(f"cost model expects {want} input columns ({self.layout}), "
                             f"got {None if x is None else x.shape[1]}")
        pred = self._trees.predict(self.boosters, x)
        # all tiers in one expression: elementwise, so the same numbers as tier by tier
        out[:, live] = np.maximum(np.exp(pred) * self.smear[live] - EPS, 0.0)
        return out

    def fast_trees(self) -> TreeEnsemble | None:
        """The numpy ensemble :meth:`predict` uses (built now if not yet; None: XGBoost's own predict is used)."""
        return self._trees.forest(self.boosters)

    def save(self, path: str | Path) -> Path:
        from aco_bert.decision.xgb import save_boosters

        path = Path(path)
        files = save_boosters(path, self.boosters, "cost", self.cfg.fmt)
        write_json(path / "manifest.json", {
            "format": FORMAT, "tiers": self.tiers, "config": asdict(self.cfg), "mean": self.mean.tolist(),
            "smear": self.smear.tolist(), "models": files, "layout": self.layout,
            "pca": self.pca.to_dict() if self.pca is not None else None, "eps": EPS,
        })
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CostModel":
        from aco_bert.decision.xgb import load_boosters, read_artifact_manifest

        m = read_artifact_manifest(path, FORMAT, "cost-model")
        boosters = load_boosters(path, m["models"])
        return cls(CostModelConfig(**m["config"]), list(m["tiers"]), np.asarray(m["mean"], float), boosters,
                   np.asarray(m["smear"], float), PCA.from_dict(m["pca"]) if m.get("pca") else None,
                   dict(m["layout"]))


def cost_errors(pred: np.ndarray, true: np.ndarray) -> dict:
    """MAE (USD) and mean absolute log error, per tier and overall, over observed costs."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ok = ~np.isnan(true)
    ae = np.where(ok, np.abs(pred - true), np.nan)
    le = np.where(ok, np.abs(np.log(pred + EPS) - np.log(np.where(ok, true, 0) + EPS)), np.nan)
    return {"mae": float(np.nanmean(ae)), "log_error": float(np.nanmean(le)),
            "mae_per_tier": np.nanmean(ae, axis=0).tolist(), "log_error_per_tier": np.nanmean(le, axis=0).tolist()}


def cross_fit_cost(cost: np.ndarray, folds: Sequence, features: np.ndarray | None = None,
                   embeddings: np.ndarray | None = None, heads: np.ndarray | None = None,
                   cfg: CostModelConfig | None = None) -> np.ndarray:
    """(P, T) held-out expected cost: each fold's test rows predicted by a :class:`CostModel` fitted on its train
    rows (fold positions index these arrays; rows in no test fold stay NaN). The one cross-fit the stack stage,
    the nested report and :func:`evaluate_cost` use to choose knobs and to score the regression."""
    cfg = cfg or CostModelConfig()
    cost = np.asarray(cost, float)
    sub = lambda a, i: None if a is None else np.asarray(a)[i]  # noqa: E731
    held = np.full(cost.shape, np.nan)
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        m = CostModel.fit(cost[tr], sub(features, tr), sub(embeddings, tr), sub(heads, tr), cfg)
        held[te] = m.predict(len(te), sub(features, te), sub(embeddings, te), sub(heads, te))
    return held


def evaluate_cost(cost: np.ndarray, folds: Sequence, features: np.ndarray | None = None,
                  embeddings: np.ndarray | None = None, heads: np.ndarray | None = None,
                  cfg: CostModelConfig | None = None) -> dict:
    """Held-out error of the regression vs the per-tier mean baseline (and vs raw cost heads, when given).

    ``heads`` are the neural cost heads' out-of-fold outputs, read as log(cost); they are scored on their own
    (``heads``) and used as inputs of the regression.
    """
    cfg = cfg or CostModelConfig()
    cost = np.asarray(cost, float)
    pred_mean = cross_fit_cost(cost, folds, cfg=CostModelConfig(method="mean"))
    pred_model = cross_fit_cost(cost, folds, features, embeddings, heads, cfg)
    out = {"mean": cost_errors(pred_mean, cost), cfg.method: cost_errors(pred_model, cost),
           "oof_pred": pred_model}
    if heads is not None:
        out["heads"] = cost_errors(np.exp(np.asarray(heads, float)), cost)
    return out
