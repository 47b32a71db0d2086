"""The nested report's cascade: the ex-ante router (or a ladder's cheap tier) runs first, the verifier reads the
run (trace, response, agreement with earlier runs), and the cascade accepts or escalates.

Protocol per outer fold, as every other policy of the report: the verifier is fitted on the outer-train prompts;
the training prompts' scores come from verifiers of an inner cross-fit (:class:`~aco_bert.decision.verifier
.CrossFitScorer`), so every knob (:mod:`aco_bert.decision.cascade_search`: first tier, ladder, accept threshold)
is chosen on honest training replays, then replayed once on the test prompts. Rows:

* ``stacked + cascade [match|savings]``: the report's two selection rules;
* ``stacked + cascade (LTT)``: Learn-then-Test for the frontier's training success minus ``within``, with its
  guarantee (fallback: the frontier alone);
* curve ``stacked + cascade``: one point per training budget (40 budgets from 1 % to 100 % of the frontier's
  training cost, geometric), each the best training success within that budget. Cost counts every call that ran.
* curve ``stacked, budget-selected (no feedback)``: the same selection among the knobs that never escalate
  (accept 0: the ex-ante first pick alone), so the two curves differ only by the execution feedback -- the
  ex-ante sweeps' curves (a hull over a fixed grid's test points) are not chosen per budget.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from aco_bert.decision.cascade_search import (ACCEPT_FIRST, CachedScorer, candidate_chains, knob_grid, ltt_select, points,
                                              replay_knobs, select_budget)
from aco_bert.decision.verifier import CrossFitScorer, Verifier, VerifierConfig, cascade_signals
from aco_bert.evaluation.selection import select_match, select_savings
from aco_bert.policies import RoutingContext
from aco_bert.verify.features import ResponseReader

# training budgets as fractions of the frontier's training cost: geometric from 1 %, so the curve reaches down to
# the cheapest tiers (below its cheapest point a curve scores 0 in AIQ)
BUDGETS = [float(f"{b:.4g}") for b in np.geomspace(0.01, 1.0, 40)]
FIRST_LAMS = (0.03, 0.1, 0.3, 1.0, 10.0)  # Utility lambdas per unit of the training prompts' mean cost
ROWS = ("match", "savings", "ltt")
EXANTE_CURVE = "stacked, budget-selected (no feedback)"


class CascadeStudy:
    """Accumulates the cascade's outer-test outcomes fold by fold (see module docstring)."""

    def __init__(self, m, y: np.ndarray, cost: np.ndarray, traces: dict[str, np.ndarray], x_feat: np.ndarray,
                 min_tier: np.ndarray, models: Sequence[str], vcfg: VerifierConfig, accepts: Sequence[float],
                 first_taus: Sequence[float], within: float, delta: float):
        self.y, self.cost, self.traces, self.x, self.min_tier = y, cost, traces, x_feat, min_tier
        self.models, self.vcfg, self.accepts, self.first_taus = list(models), vcfg, list(accepts), list(first_taus)
        self.within, self.delta = within, delta
        self.signals = cascade_signals(m)
        self.parsed = ResponseReader(vcfg.extractor).parse(m.responses) \
            if "responses" in self.signals and vcfg.use_responses else None
        n, t_n = y.shape
        self.rows = {r: [np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)] for r in ROWS}
        self.curve = [[np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)] for _ in BUDGETS]
        self.curve_exante = [[np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)] for _ in BUDGETS]
        self.q_first = np.full((n, t_n), np.nan)  # verifier score had the tier run first
        self.q_below = np.full((n, t_n), np.nan)  # ... after every cheaper tier ran (agreement with all of them)
        self.knobs: dict[str, list] = {r: [] for r in (*ROWS, "budget")}
        self.ltt: list[dict] = []
        self.n_knobs: list[int] = []

    def _sub(self, idx: np.ndarray):
        return None if self.parsed is None else self.parsed.subset(idx)

    def fold(self, tr: np.ndarray, te: np.ndarray, inner: Sequence, p_tr: np.ndarray, c_tr: np.ndarray,
             p_te: np.ndarray, c_te: np.ndarray, fc: int, s_front: float, target: float, max_cost: float) -> None:
        y, cost, x, vcfg = self.y, self.cost, self.x, self.vcfg
        tr_tr = {k: v[tr] for k, v in self.traces.items()}
        tr_te = {k: v[te] for k, v in self.traces.items()}
        pa_tr, pa_te = self._sub(tr), self._sub(te)
        cfs = CrossFitScorer(y[tr], tr_tr, inner, x[tr], p_tr, vcfg, pa_tr)
        score_tr = CachedScorer(lambda r, t, e: cfs.score_history(r, t, e, tr_tr, x[tr], p_tr, pa_tr))
        v = Verifier.fit(y[tr], tr_tr, x[tr], p_tr, vcfg, tiers=self.models, responses=pa_tr)
        score_te = CachedScorer(lambda r, t, e: v.score_history(r, t, e, tr_te, x[te], p_te, pa_te))
        t_n = y.shape[1]
        ii, tt = np.meshgrid(np.arange(len(te)), np.arange(t_n), indexing="ij")
        ii, tt = ii.ravel(), tt.ravel()
        self.q_first[te] = score_te(ii, tt, [[] for _ in ii]).reshape(len(te), t_n)
        self.q_below[te] = score_te(ii, tt, [list(range(t)) for t in tt]).reshape(len(te), t_n)

        # ex-ante firsts: Threshold taus and a few Utility lambdas (the ex-ante curve's strong middle)
        lams = [float(x) / float(np.nanmean(cost[tr])) for x in FIRST_LAMS]
        knobs = knob_grid(candidate_chains(y[tr], cost[tr], fc), self.accepts, self.first_taus, first_lams=lams,
                          accept_first=ACCEPT_FIRST if self.parsed is not None else (None,))
        self.n_knobs.append(len(knobs))
        ctx_tr = RoutingContext(p_tr, c_tr, self.min_tier[tr])
        ctx_te = RoutingContext(p_te, c_te, self.min_tier[te])
        res_tr = replay_knobs(knobs, ctx_tr, y[tr], cost[tr], score_tr)
        pts = points(res_tr)
        front_cost = float(np.nanmean(cost[tr, fc]))
        chosen = {"match": select_match(pts, target), "savings": select_savings(pts, max_cost)}
        j_ltt, info = ltt_select(knobs, res_tr, s_front - self.within, self.delta)
        self.ltt.append(info)
        budget_j = select_budget(pts, [b * front_cost for b in BUDGETS])
        exante_j = select_budget([p for p in pts if knobs[p[0]].accept == 0.0], [b * front_cost for b in BUDGETS])
        need = set(chosen.values()) | set(budget_j) | set(exante_j) | ({j_ltt} if j_ltt is not None else set())
        res_te = {j: knobs[j].policy().replay(ctx_te, y[te], cost[te], score_te) for j in sorted(need)}

        def put(dst, j):
            if j is None:  # no certified knob: the frontier alone (floors still apply)
                t = np.maximum(fc, self.min_tier[te])
                rows = np.arange(len(te))
                dst[0][te], dst[1][te], dst[2][te] = y[te][rows, t], cost[te][rows, t], 1
                return
            r = res_te[j]
            dst[0][te], dst[1][te], dst[2][te] = r.success, r.cost, [len(x) for x in r.runs]

        for rule, j in chosen.items():
            put(self.rows[rule], j)
            self.knobs[rule].append(knobs[j].to_dict(self.models))
        put(self.rows["ltt"], j_ltt)
        self.knobs["ltt"].append(None if j_ltt is None else knobs[j_ltt].to_dict(self.models))
        for dst, j in zip(self.curve, budget_j):
            put(dst, j)
        for dst, j in zip(self.curve_exante, exante_j):
            put(dst, j)
        self.knobs["budget"].append([knobs[j].to_dict(self.models) for j in budget_j])

    def restrict(self, ev: np.ndarray) -> None:
        """Keep only the evaluated (outer-test) prompts, as the report does for every other array."""
        for d in list(self.rows.values()) + self.curve + self.curve_exante:
            for k in range(3):
                d[k] = d[k][ev]
        self.q_first, self.q_below, self.y = self.q_first[ev], self.q_below[ev], self.y[ev]

    def add_to(self, report, fcost: float, n_fixed: int) -> None:
        """The cascade's rows and curve into the evaluator's report (next to the ex-ante policies)."""
        from aco_bert.evaluation.metrics.core import curve_metrics
        from aco_bert.evaluation.replay import Curve, PolicyResult

        def pr(name, s, c, runs, param=None):
            return PolicyResult.from_outcomes(name, s, c, chosen={"mean_runs": float(np.mean(runs))},
                                              kind="learned", param=param, frontier_cost=fcost)

        labels = {"match": "stacked + cascade [match]", "savings": "stacked + cascade [savings]",
                  "ltt": "stacked + cascade (LTT)"}
        for rule in ROWS:
            report.policies.insert(len(report.policies) - n_fixed, pr(labels[rule], *self.rows[rule]))
        r = report.metrics["range"]
        for name, curve in (("stacked + cascade", self.curve), (EXANTE_CURVE, self.curve_exante)):
            cpts = [pr(f"{name}@budget={b}", *d, param=b) for b, d in zip(BUDGETS, curve)]
            report.curves[name] = Curve(name, cpts, kind="learned")
            if r["strong_success"] > r["weak_success"]:
                report.metrics[name] = curve_metrics(
                    [p.cost_per_task for p in cpts], [p.success for p in cpts],
                    (r["weak_cost"], r["weak_success"]), (r["strong_cost"], r["strong_success"])).to_dict()

    def diagnostics(self) -> dict[str, Any]:
        from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc

        def aucs(q):
            a = per_tier_auc(self.y, q)
            return {"mean": mean_auc(a), "per_tier": [None if not math.isfinite(v) else float(v) for v in a]}

        return {"signals": self.signals, "verifier_auc_first": aucs(self.q_first),
                "verifier_auc_after_cheaper": aucs(self.q_below), "knobs": self.knobs, "ltt": self.ltt,
                "n_knobs": self.n_knobs, "budgets": BUDGETS}
