"""Cascade with execution feedback: run a tier, judge from its trace whether it succeeded, accept or escalate.

Why: before a run, the router only has the prompt text (weak signal on SWE-bench); *after* a run it also has how
the run went. An agent that burns many API calls or dollars on a task has usually failed at it. A verifier over
[prompt features, the run's trace signals (``api_calls``, cost, tier), the router's prior P(success) for that
tier] gives P(this run succeeded); the cascade accepts the answer when that is high enough, else escalates to the
next tier the router picks above the current one. The bill counts *every* tier that ran.

The verifier is one XGBoost model pooled over tiers (the tier is an input; per-tier trace statistics normalise
the signals), stored as XGBoost JSON + a JSON manifest. Trained and tuned with nested CV on the real SWE-bench
traces (each model's own per-instance api_calls and cost), so the outer test prompts are never seen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.policies.base import Policy, RoutingContext

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

    def predict_runs(self, tier: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                     prior: np.ndarray | None = None) -> np.ndarray:
        """P(success) of individual runs: ``tier`` (N,), ``traces[k]`` (N,), ``features`` (N, F), ``prior`` (N,)."""
        import xgboost as xgb

        tier = np.asarray(tier, dtype=int)
        logs = self._logs({k: np.asarray(traces[k], float).reshape(-1) for k in TRACE_SIGNALS})
        x = self._rows(tier, logs, None if prior is None else np.asarray(prior, float).reshape(-1),
                       None if features is None or not self.cfg.use_prompt_features else np.asarray(features, float))
        if x.shape[1] != self.n_features:
            raise ValueError(f"verifier expects {self.n_features} inputs, got {x.shape[1]}")
        return self.booster.predict(xgb.DMatrix(x))

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
        (path / "manifest.json").write_text(json.dumps({
            "format": FORMAT, "tiers": self.tiers, "config": asdict(self.cfg), "stats": self.stats,
            "model": name, "n_features": self.n_features, "n_train": self.n_train, "signals": list(TRACE_SIGNALS)}))
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


# --- the cascade -----------------------------------------------------------------------------------------------


@dataclass
class CascadeResult:
    success: np.ndarray  # (P,) outcome of the accepted run
    cost: np.ndarray  # (P,) sum of the cost of every run
    runs: list[list[int]]  # tiers run per prompt, in order
    final: np.ndarray  # (P,) accepted tier

    def summary(self) -> dict:
        return {"success": float(self.success.mean()), "cost_per_task": float(self.cost.mean()),
                "mean_runs": float(np.mean([len(r) for r in self.runs])),
                "escalated": float(np.mean([len(r) > 1 for r in self.runs]))}


def _with_min(ctx: RoutingContext, min_tier: np.ndarray) -> RoutingContext:
    return RoutingContext(ctx.probs, ctx.exp_cost, np.maximum(ctx.min_tier, min_tier), ctx.budget)


@dataclass
class Cascade:
    """``first`` picks the first tier; after each run, accept if the verifier's score >= ``accept``, else
    ``escalate`` picks among tiers strictly above the one that ran (floors still apply). ``max_runs`` caps it."""

    first: Policy
    escalate: Policy
    accept: float
    max_runs: int = 2
    name: str = "cascade"

    def replay(self, ctx: RoutingContext, success: np.ndarray, cost: np.ndarray, scores: np.ndarray
               ) -> CascadeResult:
        """Offline replay on real outcomes. ``scores`` (P, T) = verifier P(success | that tier's real trace)."""
        success, cost, scores = (np.asarray(a, float) for a in (success, cost, scores))
        p_n, t_n = ctx.shape
        rows = np.arange(p_n)
        cur = self.first.decide(ctx)
        runs = [[int(t)] for t in cur]
        total = np.nan_to_num(cost[rows, cur])
        active = np.ones(p_n, dtype=bool)
        for _ in range(self.max_runs - 1):
            q = scores[rows, cur]
            esc = active & (q < self.accept) & (cur < t_n - 1)
            if not esc.any():
                break
            nxt = self.escalate.decide(_with_min(ctx, np.minimum(cur + 1, t_n - 1)))
            cur = np.where(esc, nxt, cur)
            total = total + np.where(esc, np.nan_to_num(cost[rows, cur]), 0.0)
            for i in np.flatnonzero(esc):
                runs[i].append(int(cur[i]))
            active = esc
        return CascadeResult(np.nan_to_num(success[rows, cur]), total, runs, cur)

    def step(self, ctx: RoutingContext, tier_run: int, score: float, tier_names: Sequence[str] | None = None):
        """Runtime decision for ONE prompt (ctx of one row) after ``tier_run`` (0-based) ran and was scored."""
        from aco_bert.types import Escalation

        accept = bool(score >= self.accept) or tier_run >= ctx.shape[1] - 1
        nxt = None if accept else int(self.escalate.decide(_with_min(ctx, np.array([tier_run + 1])))[0])
        reasons = [f"verifier P(success)={score:.3f} {'>=' if score >= self.accept else '<'} accept {self.accept:.3f}"]
        return Escalation(accept=accept, p_success=float(score), tier_run=tier_run + 1,
                          next_tier=None if nxt is None else nxt + 1,
                          next_model=None if nxt is None or tier_names is None else tier_names[nxt], reasons=reasons)
