"""The cascade's verifier: P(a tier's run succeeded | prompt features, the run's trace, its response, the answers
of the tiers that ran before it, the router's prior).

Why: before a run, the router only has the prompt text (weak signal on SWE-bench); *after* a run it also has how
the run went. An agent that burns many API calls or dollars on a task has usually failed at it. A verifier over
[prompt features, the run's trace signals (``api_calls``, cost, tier), the router's prior P(success) for that
tier] gives P(this run succeeded); the cascade (:class:`aco_bert.policies.cascade.Cascade`) accepts the answer
when that is high enough, else escalates to the next tier the router picks above the current one.

Where the data carry the models' *responses* (RouterBench, MMLU-Pro), the verifier also reads them
(:mod:`aco_bert.verify.features`: answer extracted, hedging, refusal, format validity, repetition, logprobs) and
how the run's answer agrees with the earlier runs' answers. Agreement depends on which tiers ran before, so the
training rows are every observed run once with no history plus ``history_samples`` copies with a random set of
other tiers' answers revealed (sizes 1..``max_history``): one model then scores a run after any cascade history.

The verifier is one XGBoost model pooled over tiers (the tier is an input; per-tier trace statistics normalise
the signals), stored as XGBoost JSON + a JSON manifest. Trained and tuned with nested CV on the real SWE-bench
traces (each model's own per-instance api_calls and cost), so the outer test prompts are never seen.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.decision.trees import FastTrees, TreeEnsemble
from aco_bert.verify.features import ResponseReader

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
    use_responses: bool = True  # read response texts when the data carry them (else trace-only)
    extractor: str = "auto"  # answer extractor (aco_bert.verify.extractors: auto, choice, number, code, text)
    history_samples: int = 2  # training copies per run with a random set of earlier runs' answers revealed
    max_history: int = 2  # at most this many earlier runs revealed per training copy
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


def cascade_signals(m) -> list[str]:
    """Which post-run signals a matrix offers the verifier (response texts, api_calls traces)."""
    out = []
    if getattr(m, "responses", None) is not None:
        out.append("responses")
    calls = m.traces.get("api_calls")
    if calls is not None and np.isfinite(calls).any():
        out.append("api_calls")
    return out


@dataclass
class Verifier:
    """P(tier t's run succeeded | prompt features, its trace, prior[, its response, agreement with earlier runs])."""

    cfg: VerifierConfig
    tiers: list[str]
    stats: dict  # per tier mean/std of log signals on the training runs, and "strength" (training success rate)
    booster: object  # xgboost.Booster
    n_features: int
    n_train: int = 0
    responses: bool = False  # trained with the response blocks (then predict needs them, NaN when a run has none)
    _trees: FastTrees = field(default_factory=FastTrees, init=False, repr=False, compare=False)

    @cached_property
    def reader(self) -> ResponseReader:
        """Built once: ``escalate`` reads every request's answer with it (the hot path)."""
        return ResponseReader(self.cfg.extractor)

    @property
    def strength(self) -> np.ndarray:
        return np.asarray(self.stats.get("strength", [0.5] * len(self.tiers)), float)

    # --- design ----------------------------------------------------------------------------------------------
    @staticmethod
    def _logs(traces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.log(np.asarray(traces[k], float) + (1.0 if k == "api_calls" else EPS)) for k in TRACE_SIGNALS}

    def _rows(self, tier: np.ndarray, logs: dict[str, np.ndarray], prior: np.ndarray | None,
              feats: np.ndarray | None, own: np.ndarray | None = None, history: np.ndarray | None = None
              ) -> np.ndarray:
        """Design rows for runs (one per element of ``tier``); ``logs`` values are per-run 1-D arrays."""
        from aco_bert.verify.features import N_HISTORY, N_OWN

        t_n, n = len(self.tiers), len(tier)
        cols = [np.eye(t_n)[tier]]
        for k in TRACE_SIGNALS:
            mu, sd = np.asarray(self.stats[k]["mean"])[tier], np.asarray(self.stats[k]["std"])[tier]
            cols += [logs[k][:, None], ((logs[k] - mu) / sd)[:, None]]
        if self.cfg.use_prior:
            cols.append((np.full(n, np.nan) if prior is None else prior)[:, None])
        if self.cfg.use_prompt_features:
            if feats is None:
                raise ValueError("verifier was trained with prompt features; pass them")
            cols.append(feats)
        if self.responses:
            cols.append(np.full((n, N_OWN), np.nan) if own is None else np.asarray(own, float).reshape(n, N_OWN))
            hist = np.full((n, N_HISTORY), np.nan) if history is None else np.asarray(history, float)
            cols.append(hist.reshape(n, N_HISTORY))
        return np.concatenate(cols, axis=1).astype(np.float32)

    @classmethod
    def fit(cls, success: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
            prior: np.ndarray | None = None, cfg: VerifierConfig | None = None,
            tiers: Sequence[str] | None = None, responses=None) -> "Verifier":
        """Fit on every observed (prompt, tier) run of the given (training) prompts. Arrays are (P, T);
        ``responses`` -- (P, T) texts (None where a run has none), or those texts already read
        (:class:`~aco_bert.verify.features.ParsedResponses`) -- switch the response blocks on."""
        from aco_bert.verify.features import ParsedResponses

        import xgboost as xgb

        cfg = cfg or VerifierConfig()
        success = np.asarray(success, float)
        p_n, t_n = success.shape
        logs = cls._logs(traces)
        stats: dict = {}
        for k in TRACE_SIGNALS:
            mu = np.array([np.nanmean(logs[k][:, t]) if (~np.isnan(logs[k][:, t])).any() else 0.0 for t in range(t_n)])
            sd = np.array([np.nanstd(logs[k][:, t]) if (~np.isnan(logs[k][:, t])).sum() > 1 else 1.0 for t in range(t_n)])
            stats[k] = {"mean": mu.tolist(), "std": np.where(sd > 1e-9, sd, 1.0).tolist()}
        obs = ~np.isnan(success)
        stats["strength"] = [float(np.nanmean(success[:, t])) if obs[:, t].any() else 0.5 for t in range(t_n)]
        names = list(tiers) if tiers is not None else [str(i) for i in range(t_n)]
        if not cfg.use_prompt_features:
            features = None
        parsed = responses
        if cfg.use_responses and responses is not None and not isinstance(responses, ParsedResponses):
            parsed = ResponseReader(cfg.extractor).parse(responses)
        use_resp = bool(cfg.use_responses and parsed is not None and parsed.present.any())
        v = cls(cfg, names, stats, None, 0, responses=use_resp)
        ii, tt = np.nonzero(obs)
        own = hist = None
        if use_resp:
            ii, tt, hist = v._sample_histories(ii, tt, parsed, np.random.default_rng(cfg.seed))
            own = parsed.own[ii, tt]
        x = v._rows(tt, {k: logs[k][ii, tt] for k in TRACE_SIGNALS},
                    None if prior is None else np.asarray(prior, float)[ii, tt],
                    None if features is None else np.asarray(features, float)[ii], own, hist)
        v.booster = xgb.train(cfg.xgb_params(), xgb.DMatrix(x, label=success[ii, tt]), num_boost_round=cfg.n_rounds)
        v.n_features = x.shape[1]
        v.n_train = len(ii)
        return v

    def _sample_histories(self, ii: np.ndarray, tt: np.ndarray, parsed, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training rows: each run with no history, plus ``history_samples`` copies with 1..``max_history``
        random other tiers of the same prompt (those with a response) revealed."""
        reader, st = self.reader, self.strength
        from aco_bert.verify.features import N_HISTORY

        first = [reader.history(parsed.answers[i, t], []) for i, t in zip(ii, tt)]
        rows_i, rows_t, blocks = [ii], [tt], [np.stack(first) if first else np.zeros((0, N_HISTORY))]
        for _ in range(self.cfg.history_samples):
            hi, ht, hb = [], [], []
            for i, t in zip(ii, tt):
                others = np.flatnonzero(parsed.present[i])
                others = others[others != t]
                if not len(others):
                    continue
                k = int(rng.integers(1, min(self.cfg.max_history, len(others)) + 1))
                pick = rng.choice(others, size=k, replace=False)
                hi.append(i)
                ht.append(t)
                hb.append(reader.history(parsed.answers[i, t], [(parsed.answers[i, s], st[s]) for s in pick]))
            if hi:
                rows_i.append(np.asarray(hi))
                rows_t.append(np.asarray(ht))
                blocks.append(np.stack(hb))
        return np.concatenate(rows_i), np.concatenate(rows_t), np.concatenate(blocks)

    def design_matrix(self, tier: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                      prior: np.ndarray | None = None, own: np.ndarray | None = None,
                      history: np.ndarray | None = None) -> np.ndarray:
        """(N, n_features) float32 rows of individual runs, the inputs :meth:`predict_runs` evaluates."""
        tier = np.asarray(tier, dtype=int)
        logs = self._logs({k: np.asarray(traces[k], float).reshape(-1) for k in TRACE_SIGNALS})
        x = self._rows(tier, logs, None if prior is None else np.asarray(prior, float).reshape(-1),
                       None if features is None or not self.cfg.use_prompt_features else np.asarray(features, float),
                       own, history)
        if x.shape[1] != self.n_features:
            raise ValueError(f"verifier expects {self.n_features} inputs, got {x.shape[1]}")
        return x

    def predict_runs(self, tier: np.ndarray, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                     prior: np.ndarray | None = None, own: np.ndarray | None = None,
                     history: np.ndarray | None = None) -> np.ndarray:
        """P(success) of individual runs: ``tier`` (N,), ``traces[k]`` (N,), ``features`` (N, F), ``prior`` (N,),
        ``own``/``history`` (N, ·) response blocks (:mod:`aco_bert.verify.features`; None = no response known).

        The one predict of training, evaluation and the runtime's ``escalate``: the trees are evaluated by
        :class:`~aco_bert.decision.trees.FastTrees` (numpy, checked against XGBoost, else ``inplace_predict``)."""
        return self._trees.predict([self.booster], self.design_matrix(tier, traces, features, prior, own, history))[:, 0]

    def fast_trees(self) -> TreeEnsemble | None:
        """The numpy ensemble :meth:`predict_runs` uses (built now if not yet; None: XGBoost's own predict)."""
        return self._trees.forest([self.booster])

    def predict_all(self, traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                    prior: np.ndarray | None = None, parsed=None) -> np.ndarray:
        """(P, T): P(success | trace[, response]) had each tier run *first* on each prompt (offline replay)."""
        p_n, t_n = np.asarray(traces["cost"]).shape
        ii, tt = np.meshgrid(np.arange(p_n), np.arange(t_n), indexing="ij")
        return self.score_history(ii.ravel(), tt.ravel(), [[] for _ in range(ii.size)], traces, features, prior,
                                  parsed).reshape(p_n, t_n)

    def score_history(self, rows: np.ndarray, tier: np.ndarray, earlier: Sequence[Sequence[int]],
                      traces: dict[str, np.ndarray], features: np.ndarray | None = None,
                      prior: np.ndarray | None = None, parsed=None) -> np.ndarray:
        """P(success) of the run of ``tier[j]`` on prompt ``rows[j]`` after the runs ``earlier[j]`` (tiers) on
        it: the cascade replay's scorer. ``traces``/``prior`` (P, T), ``features`` (P, F), ``parsed`` the
        prompts' :class:`~aco_bert.verify.features.ParsedResponses` (needed when trained with responses)."""
        rows, tier = np.asarray(rows, dtype=int), np.asarray(tier, dtype=int)
        own = hist = None
        if self.responses:
            if parsed is None:
                raise ValueError("verifier was trained with responses; pass the parsed responses")
            reader, st = self.reader, self.strength
            own = parsed.own[rows, tier]
            hist = np.stack([reader.history(parsed.answers[i, t], [(parsed.answers[i, s], st[s]) for s in e
                                                                   if parsed.present[i, s]])
                             for i, t, e in zip(rows, tier, earlier)]) if len(rows) else None
        return self.predict_runs(tier, {k: np.asarray(traces[k], float)[rows, tier] for k in TRACE_SIGNALS},
                                 None if features is None else np.asarray(features, float)[rows],
                                 None if prior is None else np.asarray(prior, float)[rows, tier], own, hist)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        name = f"verifier.{self.cfg.fmt}"
        self.booster.save_model(str(path / name))
        write_json(path / "manifest.json", {
            "format": FORMAT, "tiers": self.tiers, "config": asdict(self.cfg), "stats": self.stats,
            "model": name, "n_features": self.n_features, "n_train": self.n_train, "signals": list(TRACE_SIGNALS),
            "responses": self.responses})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Verifier":
        from aco_bert.decision.xgb import load_boosters, read_artifact_manifest

        m = read_artifact_manifest(path, FORMAT, "verifier")
        (b,) = load_boosters(path, [m["model"]])
        known = {f.name for f in dataclasses.fields(VerifierConfig)}
        return cls(VerifierConfig(**{k: v for k, v in m["config"].items() if k in known}), list(m["tiers"]),
                   m["stats"], b, int(m["n_features"]), int(m.get("n_train", 0)), bool(m.get("responses", False)))


class CrossFitScorer:
    """Held-out verifier scores for prompts of a training set: each prompt scored by the verifier of the fold
    that did not see it (the cascade's knobs are then chosen on honest scores)."""

    def __init__(self, success: np.ndarray, traces: dict[str, np.ndarray], folds: Sequence,
                 features: np.ndarray | None = None, prior: np.ndarray | None = None,
                 cfg: VerifierConfig | None = None, responses: np.ndarray | None = None):
        success = np.asarray(success, float)
        self.owner = np.full(len(success), -1)
        self.models: list[Verifier] = []
        sub = lambda a, i: None if a is None else np.asarray(a)[i]  # noqa: E731
        for j, f in enumerate(folds):
            tr = np.asarray(f.train)
            resp = None if responses is None else (responses.subset(tr) if hasattr(responses, "subset")
                                                   else np.asarray(responses, dtype=object)[tr])
            self.models.append(Verifier.fit(success[tr], {k: traces[k][tr] for k in TRACE_SIGNALS},
                                            sub(features, tr), sub(prior, tr), cfg, responses=resp))
            self.owner[np.asarray(f.test)] = j

    def score_history(self, rows, tier, earlier, traces, features=None, prior=None, parsed=None) -> np.ndarray:
        rows, tier = np.asarray(rows, dtype=int), np.asarray(tier, dtype=int)
        out = np.full(len(rows), np.nan)
        for j, v in enumerate(self.models):
            sel = np.flatnonzero(self.owner[rows] == j)
            if len(sel):
                out[sel] = v.score_history(rows[sel], tier[sel], [earlier[k] for k in sel], traces, features, prior,
                                           parsed)
        return out

    def predict_all(self, traces, features=None, prior=None, parsed=None) -> np.ndarray:
        p_n, t_n = np.asarray(traces["cost"]).shape
        ii, tt = np.meshgrid(np.arange(p_n), np.arange(t_n), indexing="ij")
        return self.score_history(ii.ravel(), tt.ravel(), [[] for _ in range(ii.size)], traces, features, prior,
                                  parsed).reshape(p_n, t_n)


def cross_fit_verifier(success: np.ndarray, traces: dict[str, np.ndarray], folds: Sequence,
                       features: np.ndarray | None = None, prior: np.ndarray | None = None,
                       cfg: VerifierConfig | None = None, responses: np.ndarray | None = None,
                       parsed=None) -> np.ndarray:
    """(P, T) held-out first-run verifier scores: each prompt's runs scored by a verifier not trained on it."""
    from aco_bert.verify.features import ResponseReader

    if parsed is None and responses is not None and (cfg or VerifierConfig()).use_responses:
        parsed = ResponseReader((cfg or VerifierConfig()).extractor).parse(responses)
    sc = CrossFitScorer(success, traces, folds, features, prior, cfg, parsed)
    return sc.predict_all(traces, features, prior, parsed)
