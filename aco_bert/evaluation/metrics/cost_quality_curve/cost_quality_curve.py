"""Cost-quality curve metrics of a router: AIQ, APGR, CPT(50%), CPT(80%) over the weak..strong cost range.

Loaded by path (offline): ``evaluate.load(aco_bert.evaluation.metrics.metric_path("cost_quality_curve"))``. The arithmetic is
:func:`aco_bert.evaluation.metrics.core.curve_metrics` -- the same function :mod:`aco_bert.evaluation.replay` uses.
"""

import datasets
import evaluate

from aco_bert.evaluation.metrics.core import curve_metrics, upper_hull

_DESCRIPTION = """
Each input row is one operating point (mean cost/task in USD, mean success) of a routing policy, e.g. one value of
a threshold or lambda sweep. Mixing points at random realises every segment between them and a budget need not be
spent, so the curve achieves Q(c) = its non-decreasing concave hull (0 below its cheapest point). Over the common
range [weak_cost, strong_cost] (weak = cheapest fixed model, strong = frontier model):
aiq = mean of Q(c) over c uniform in the range (RouterBench AIQ);
apgr = (aiq - weak_success) / (strong_success - weak_success) (mean performance gap recovered, RouteLLM APGR over cost);
cpt_50 / cpt_80 = the smallest budget with Q(c) >= weak + 0.5 / 0.8 * (strong - weak), also as a fraction of
strong_cost (cpt_50_frac / cpt_80_frac); None when never reached.
"""

_KWARGS_DESCRIPTION = """
Args:
    cost (list of float): cost/task of each operating point.
    success (list of float): success of each operating point.
    weak_cost, weak_success (float): the cheapest fixed model's point.
    strong_cost, strong_success (float): the frontier model's point.
Returns:
    dict with aiq, apgr, cpt_50, cpt_50_frac, cpt_80, cpt_80_frac, hull_cost, hull_success.
Examples:
    >>> m = evaluate.load(aco_bert.evaluation.metrics.metric_path("cost_quality_curve"))
    >>> m.compute(cost=[0.0, 1.0], success=[0.5, 1.0], weak_cost=0.0, weak_success=0.5,
    ...           strong_cost=1.0, strong_success=1.0)["aiq"]
    0.75
"""

_CITATION = """
Hu et al. RouterBench: A Benchmark for Multi-LLM Routing System (2024) -- AIQ.
Ong et al. RouteLLM: Learning to Route LLMs with Preference Data (2024) -- APGR, CPT.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CostQualityCurve(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"cost": datasets.Value("float64"), "success": datasets.Value("float64")}),
        )

    def _compute(self, cost, success, weak_cost, weak_success, strong_cost, strong_success):
        weak, strong = (weak_cost, weak_success), (strong_cost, strong_success)
        out = curve_metrics(cost, success, weak, strong).to_dict()
        hx, hy = upper_hull(cost, success)
        out["hull_cost"], out["hull_success"] = hx.tolist(), hy.tolist()
        return out
