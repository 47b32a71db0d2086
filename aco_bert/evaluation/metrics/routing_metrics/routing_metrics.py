"""Routing metrics of one policy's realised per-prompt outcomes: success, cost/task, savings vs frontier, PGR.

Loaded by path (offline): ``evaluate.load(aco_bert.evaluation.metrics.metric_path("routing_metrics"))``. The arithmetic is
:func:`aco_bert.evaluation.metrics.core.summarize` -- the same function :func:`aco_bert.evaluation.replay.replay` uses.
"""

import datasets
import evaluate

from aco_bert.evaluation.metrics.core import pgr, savings, summarize

_DESCRIPTION = """
Per-prompt realised outcomes of the tier a routing policy chose (success in [0, 1], USD cost) summarised as:
success = mean success over prompts with a known outcome (NaN = unknown, excluded and counted in n_missing);
cost_per_task = mean USD over prompts with a known outcome and cost;
savings_vs_frontier = 1 - cost_per_task / frontier_cost (frontier = always the best fixed model);
cost_fraction_of_frontier = cost_per_task / frontier_cost;
pgr = (success - weak_success) / (frontier_success - weak_success), weak = the cheapest fixed model.
"""

_KWARGS_DESCRIPTION = """
Args:
    success (list of float): realised success of the chosen model on each prompt (NaN = no outcome).
    cost (list of float): realised USD cost of the chosen model on each prompt.
    frontier_cost (float, optional): cost/task of always-frontier; enables savings_vs_frontier.
    frontier_success (float, optional): success of always-frontier; with weak_success enables pgr.
    weak_success (float, optional): success of the cheapest fixed model.
Returns:
    dict with success, cost_per_task, n, n_missing, n_cost_missing and, when the references are given,
    savings_vs_frontier, cost_fraction_of_frontier, pgr.
Examples:
    >>> m = evaluate.load(aco_bert.evaluation.metrics.metric_path("routing_metrics"))
    >>> r = m.compute(success=[1, 0, 1, 1], cost=[0.1, 0.1, 0.5, 0.1], frontier_cost=0.5)
    >>> round(r["savings_vs_frontier"], 6)
    0.6
"""

_CITATION = """
Ong et al. RouteLLM: Learning to Route LLMs with Preference Data (2024) -- PGR.
Hu et al. RouterBench: A Benchmark for Multi-LLM Routing System (2024).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RoutingMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"success": datasets.Value("float64"), "cost": datasets.Value("float64")}),
        )

    def _compute(self, success, cost, frontier_cost=None, frontier_success=None, weak_success=None):
        s = summarize([float("nan") if v is None else v for v in success],
                      [float("nan") if v is None else v for v in cost])
        out = {"success": s.success, "cost_per_task": s.cost_per_task, "n": s.n, "n_missing": s.n_missing,
               "n_cost_missing": s.n_cost_missing}
        if frontier_cost is not None:
            out["savings_vs_frontier"] = savings(s.cost_per_task, frontier_cost)
            out["cost_fraction_of_frontier"] = s.cost_per_task / frontier_cost if frontier_cost > 0 else float("nan")
        if frontier_success is not None and weak_success is not None:
            out["pgr"] = pgr(s.success, weak_success, frontier_success)
        return out
