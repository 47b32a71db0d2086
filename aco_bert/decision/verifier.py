"""The cascade's verifier: P(a tier's run succeeded | prompt features, the run's trace, the router's prior).

Why: before a run, the router only has the prompt text (weak signal on SWE-bench); *after* a run it also has how
the run went. An agent that burns many API calls or dollars on a task has usually failed at it. A verifier over
[prompt features, the run's trace signals (``api_calls``, cost, tier), the router's prior P(success) for that
tier] gives P(this run succeeded); the cascade (:class:`aco_bert.policies.cascade.Cascade`) accepts the answer
when that is high enough, else escalates to the next tier the router picks above the current one.

The verifier is one XGBoost model pooled over tiers (the tier is an input; per-tier trace statistics normalise
the signals), stored as XGBoost JSON + a JSON manifest. Trained and tuned with nested CV on the real SWE-bench
traces (each model's own per-instance api_calls and cost), so the outer test prompts are never seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.decision.trees import FastTrees, TreeEnsemble

FORMAT = "aco_bert.verifier/1"
EPS = 1e-4
TRACE_SIGNALS = ("api_calls", "cost")


@dataclass
class VerifierConfig:
    n_rounds: int = 200
    max_depth: int = 3
    eta: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 5.0
    reg_lambda: float = 5.0
    use_prompt_features: bool = True
    use_prior: bool = True  # the router's prior P(success) of the tier that ran
    seed: int = 0
    nthread: int = 1
    fmt: str = "json"

    def xgb_params(self) -> dict:
        from aco_bert.decision.xgb import tree_params

        return tree_params(self, "binary:logistic", eval_metric="logloss")


def trace_arrays(matrix) -> dict[str, np.ndarray]:
    """The trace signals of an :class:`~aco_bert.data.schema.OutcomeMatrix` as (P, T) arrays (NaN = unknown)."""
    out = {"cost": np.asarray(matrix.cost, float)}
    calls = matrix.traces.get("api_calls")
    out["api_calls"] = np.full(out["cost"].shape, np.nan) if calls is None else np.asarray(calls, float)
    return out


@dataclass
class Verifier:
    """P(tier t's run succeeded | prompt features, its trace, prior)."""

    cfg: VerifierConfig
    tiers: list[str]
    stats: dict  # per tier mean/std of log signals on the training runs
    booster: object  # xgboost.Booster
    n_features: int
    n_train: int = 0
    _trees: FastTrees = field(default_factory=FastTrees, init=False, repr=False, compare=False)

    # --- design ----------------------------------------------------------------------------------------------
    @staticmethod
    def _logs(traces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.log(np.asarray(traces[k], float) + (1.0 if k == "api_calls" else EPS)) for k in TRACE_SIGNALS}

    def _rows(self, tier: np.ndarray, logs: dict[str, np.ndarray], prior: np.ndarray | None,
              feats: np.ndarray | None) -> np.ndarray:
        """Design rows for runs (one per element of ``tier``); ``logs`` values are per-run 1-D arrays."""
        t_n = len(self.tiers)
        cols = [np.eye(t_n)[tier]]
        for k in TRACE_SIGNALS:
            mu, sd = np.asarray(self.stats[k]["mean"])[tier], np.asarray(self.stats[k]["std"])[tier]
            cols += [logs[k][:, None], ((logs[k] - mu) / sd)[:, None]]
        if self.cfg.use_prior:
            cols.append((np.full(len(tier), np.nan) if prior is None else prior)[:, None])
        if self.cfg.use_prompt_features:
            if feats is None:
                raise ValueError("verifier was trained with prompt features; pass them")
            cols.append(feats)
        return np.concatenate(cols, axis=1).astype(np.float32)

    @classmethod
    def fit(cls, success: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
            prior: np.ndarray | None = None, cfg: VerifierConfig | None = None,
            tiers: Sequence[str] | None = None) -> "Verifier":
        """Fit on every observed (prompt, tier) run of the given (training) prompts. Arrays are (P, T)."""
        import xgboost as xgb

        cfg = cfg or VerifierConfig()
        success = np.asarray(success, float)
        p_n, t_n = success.shape
        logs = cls._logs(traces)
        stats = {}
        for k in TRACE_SIGNALS:
            mu = np.array([np.nanmean(logs[k][:, t]) if (~np.isnan(logs[k][:, t])).any() else 0.0 for t in range(t_n)])
            sd = np.array([np.nanstd(logs[k][:, t]) if (~np.isnan(logs[k][:, t])).sum() > 1 else 1.0 for t in range(t_n)])
            stats[k] = {"mean": mu.tolist(), "std": np.where(sd > 1e-9, sd, 1.0).tolist()}
        names = list(tiers) if tiers is not None else [str(i) for i in range(t_n)]
        if not cfg.use_prompt_features:
            features = None
        v = cls(cfg, names, stats, None, 0)
        ii, tt = np.nonzero(~np.isnan(success))
        x = v._rows(tt, {k: logs[k][ii, tt] for k in TRACE_SIGNALS},
                    None if prior is None else np.asarray(prior, float)[ii, tt],
                    None if features is None else np.asarray(features, float)[ii])
        v.booster = xgb.train(cfg.xgb_params(), xgb.DMatrix(x, label=success[ii, tt]), num_boost_round=cfg.n_rounds)
        v.n_features = x.shape[1]
        v.n_train = len(ii)
        return v

    def design_matrix(self, tier: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                      prior: np.ndarray | None = None) -> np.ndarray:
        """(N, n_features) float32 rows of individual runs, the inputs :meth:`predict_runs` evaluates."""
        tier = np.asarray(tier, dtype=int)
        logs = self._logs({k: np.asarray(traces[k], float).reshape(-1) for k in TRACE_SIGNALS})
        x = self._rows(tier, logs, None if prior is None else np.asarray(prior, float).reshape(-1),
                       None if features is None or not self.cfg.use_prompt_features else np.asarray(features, float))
        if x.shape[1] != self.n_features:
            raise ValueError(f"verifier expects {self.n_features} inputs, got {x.shape[1]}")
        return x

    def predict_runs(self, tier: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                     prior: np.ndarray | None = None) -> np.ndarray:
        """P(success) of individual runs: ``tier`` (N,), ``traces[k]`` (N,), ``features`` (N, F), ``prior`` (N,).

        The one predict of training, evaluation and the runtime's ``escalate``: the trees are evaluated by
        :class:`~aco_bert.decision.trees.FastTrees` (numpy, checked against XGBoost, else ``inplace_predict``)."""
        return self._trees.predict([self.booster], self.design_matrix(tier, traces, features, prior))[:, 0]

    def fast_trees(self) -> TreeEnsemble | None:
        """The numpy ensemble :meth:`predict_runs` uses (built now if not yet; None: XGBoost's own predict)."""
        return self._trees.forest([self.booster])

    def predict_all(self, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                    prior: np.ndarray | None = None) -> np.ndarray:
        """(P, T): P(success | trace) had each tier run on each prompt (for offline replay)."""
        p_n, t_n = np.asarray(traces["cost"]).shape
        ii, tt = np.meshgrid(np.arange(p_n), np.arange(t_n), indexing="ij")
        ii, tt = ii.ravel(), tt.ravel()
        q = self.predict_runs(tt, {k: np.asarray(traces[k], float)[ii, tt] for k in TRACE_SIGNALS},
                              None if features is None else np.asarray(features, float)[ii],
                              None if prior is None else np.asarray(prior, float)[ii, tt])
        return q.reshape(p_n, t_n)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        name = f"verifier.{self.cfg.fmt}"
        self.booster.save_model(str(path / name))
        write_json(path / "manifest.json", {
            "format": FORMAT, "tiers": self.tiers, "config": asdict(self.cfg), "stats": self.stats,
            "model": name, "n_features": self.n_features, "n_train": self.n_train, "signals": list(TRACE_SIGNALS)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Verifier":
        from aco_bert.decision.xgb import load_boosters, read_artifact_manifest

        m = read_artifact_manifest(path, FORMAT, "verifier")
        (b,) = load_boosters(path, [m["model"]])
        return cls(VerifierConfig(**m["config"]), list(m["tiers"]), m["stats"], b, int(m["n_features"]),
                   int(m.get("n_train", 0)))


def cross_fit_verifier(success: np.ndarray, traces: dict[str, np.ndarray], folds: Sequence,
                       features: np.ndarray | None = None, prior: np.ndarray | None = None,
                       cfg: VerifierConfig | None = None) -> np.ndarray:
    """(P, T) held-out verifier scores: each prompt's runs scored by a verifier not trained on that prompt."""
    success = np.asarray(success, float)
    out = np.full(success.shape, np.nan)
    sub = lambda a, i: None if a is None else np.asarray(a)[i]  # noqa: E731
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        v = Verifier.fit(success[tr], {k: traces[k][tr] for k in TRACE_SIGNALS}, sub(features, tr), sub(prior, tr), cfg)
        out[te] = v.predict_all({k: traces[k][te] for k in TRACE_SIGNALS}, sub(features, te), sub(prior, te))
    return out
