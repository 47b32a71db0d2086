"""`python -m aco_bert.evaluate`: replay the reference routing policies on a dataset's real outcomes.

Prints a markdown table (Policy | Success | Cost/Task | Savings vs frontier) and the curve metrics, and writes
the JSON report / PNG plot on request. Thin wrapper over :func:`aco_bert.evaluation.replay.evaluate_policies`, which is
also the hook learned routers use to add their policies to the same table.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import pandas as pd

from aco_bert.data import load_outcomes
from aco_bert.data.schema import OutcomeMatrix
from aco_bert.evaluation.metrics.core import ONE_POINT
from aco_bert.evaluation.replay import EvalReport, evaluate_policies, model_order
from aco_bert.spec import RouterSpec

DOMAIN_COLUMNS = ("source", "category", "domain")


def spec_min_tier(spec: RouterSpec, matrix: OutcomeMatrix) -> np.ndarray:
    """0-based minimum tier per prompt from the spec's floors (a prompt's domains = its source/category/domain
    meta values) and step-type minimums (its ``step_type``)."""
    meta = matrix.meta
    cols = [c for c in DOMAIN_COLUMNS if c in meta.columns]
    out = np.zeros(matrix.n_prompts, dtype=int)
    for i in range(matrix.n_prompts):
        row = meta.iloc[i]
        domains = [str(row[c]) for c in cols if not pd.isna(row[c])]
        st = row["step_type"] if "step_type" in meta.columns and not pd.isna(row["step_type"]) else None
        out[i] = spec.min_tier(domains, None if st is None else str(st)) - 1
    return out


def run(dataset: str, data_dir: str | None = None, spec: str | None = None, models: str = "all",
        seed: int = 0, within: float = ONE_POINT) -> tuple[EvalReport, list[str]]:
    """Load ``dataset``, pick the models, evaluate the reference policies; returns (report, notes to print)."""
    table = load_outcomes(dataset, data_dir=data_dir)
    notes = [table.report_skipped()]
    rs = RouterSpec.load(spec) if spec else None
    min_tier = None
    frontier = None
    if models == "spec":
        if rs is None:
            raise SystemExit("--models spec needs --spec")
        chosen = rs.models
        matrix = table.matrix(chosen)
        min_tier = spec_min_tier(rs, matrix)
        frontier = rs.frontier
        notes.append(f"models: the {len(chosen)} tiers of spec {rs.name!r} (floors applied)")
    else:
        chosen = table.models if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
        matrix = table.matrix(chosen)
        chosen = model_order(matrix, chosen)
        if rs is not None:
            if rs.frontier is not None and rs.frontier in chosen:
                frontier = rs.frontier
            if rs.floors or rs.step_type_min:
                notes.append(f"spec {rs.name!r} floors ignored: they name spec tiers; use --models spec")
    report = evaluate_policies(matrix, chosen, min_tier=min_tier, frontier=frontier, seed=seed, within=within,
                               dataset=str(dataset))
    return report, notes + report.notes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aco_bert.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="registered dataset name or a path load_outcomes accepts")
    ap.add_argument("--data-dir", default=None, help="local data root (default $ACO_BERT_DATA_DIR, else online)")
    ap.add_argument("--spec", default=None, help="router spec name or YAML path (frontier, tiers, floors)")
    ap.add_argument("--models", default="all",
                    help="'all' (every model of the dataset, default), 'spec' (the spec's tiers and floors), "
                         "or a comma-separated list")
    ap.add_argument("--json", default=None, help="write the JSON report here")
    ap.add_argument("--plot", default=None, help="write the cost-quality PNG here")
    ap.add_argument("--log-x", action="store_true", help="log-scale cost axis in the plot")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    ap.add_argument("--within", type=float, default=ONE_POINT,
                    help="zero-router: cheapest fixed model within this absolute success gap of the frontier")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    report, notes = run(a.dataset, a.data_dir, a.spec, a.models, a.seed, a.within)
    print(f"## {report.dataset}: {report.n_prompts} prompts, {len(report.models)} models\n")
    print(report.markdown())
    for n in notes:
        print(f"\nnote: {n}")
    if a.json:
        report.save_json(a.json)
        print(f"\nwrote {a.json}")
    if a.plot:
        from aco_bert.evaluation.plots import plot_cost_quality

        plot_cost_quality(report, a.plot, log_x=a.log_x)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
