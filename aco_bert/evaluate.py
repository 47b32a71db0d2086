"""``aco-bert evaluate`` / ``python -m aco_bert.evaluate``: replay the reference routing policies on a dataset's
real outcomes.

Prints a markdown table (Policy | Success | Cost/Task | Savings vs frontier) and the curve metrics, and writes the
JSON report / PNG plot on request. Thin verb over :func:`aco_bert.evaluation.reference.reference_report`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from aco_bert.config import run_verb
from aco_bert.evaluation.metrics.core import ONE_POINT
from aco_bert.evaluation.reference import reference_report

__all__ = ["EvaluateConfig", "evaluate", "main"]

PROG = "aco-bert evaluate"


@dataclass
class EvaluateConfig:
    dataset: str  # registered dataset name or a path load_outcomes accepts
    data_dir: str | None = None  # local data root (default $ACO_BERT_DATA_DIR, else online)
    spec: str | None = None  # router spec name or YAML path (frontier, tiers, floors)
    models: str = "all"  # 'all' (every model of the dataset), 'spec' (the spec's tiers and floors), or a comma list
    json: str | None = None  # write the JSON report here
    plot: str | None = None  # write the cost-quality PNG here
    log_x: bool = False  # log-scale cost axis in the plot
    seed: int = 0  # seed of the random policy
    within: float = ONE_POINT  # zero-router: cheapest fixed model within this absolute success gap of the frontier
    clip_success: bool = False  # user files: clip success outside [0, 1] (counted) instead of refusing the file
    name: str | None = None  # dataset name shown in the report and JSON (default: the registry name or the path)
    cost_metric: str = "usd"  # 'usd' (realised cost) or 'share' (RouteLLM's strong-call share: frontier 1, others 0)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {cost: {prices: litellm}}
    price_provider: str | None = None  # cost from tokens: LiteLLM provider choosing between keys of different prices

    def __post_init__(self) -> None:
        if self.models == "spec" and not self.spec:
            raise ValueError("--models spec needs --spec")
        from aco_bert.evaluation.metrics.cost_metric import check_cost_metric

        check_cost_metric(self.cost_metric)


def evaluate(cfg: EvaluateConfig) -> int:
    """Evaluate, print the tables and notes, write the requested files."""
    report, notes = reference_report(cfg.dataset, cfg.data_dir, cfg.spec, cfg.models, cfg.seed, cfg.within,
                                     cfg.clip_success, name=cfg.name, cost_metric=cfg.cost_metric,
                                     dataset_options=cfg.dataset_options, price_provider=cfg.price_provider)
    metric = "" if cfg.cost_metric == "usd" else ", cost = strong-call share (frontier 1, others 0)"
    print(f"## {report.dataset}: {report.n_prompts} prompts, {len(report.models)} models{metric}\n")
    print(report.markdown())
    for n in notes:
        print(f"\nnote: {n}")
    if cfg.json:
        report.save_json(cfg.json)
        print(f"\nwrote {cfg.json}")
    if cfg.plot:
        from aco_bert.evaluation.plots import plot_cost_quality

        plot_cost_quality(report, cfg.plot, log_x=cfg.log_x)
        print(f"wrote {cfg.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_verb(evaluate, EvaluateConfig, argv, prog=PROG,
                    description="replay the reference routing policies on a dataset's real outcomes",
                    config_file=False)


if __name__ == "__main__":
    sys.exit(main())
