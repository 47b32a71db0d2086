"""The reference-policy evaluation of a dataset (what ``aco-bert evaluate`` prints): which models, which floors.

Library half of :mod:`aco_bert.evaluate`: it picks the models (every model, a list, or a spec's tiers with their
floors), derives per-prompt minimum tiers from the spec, and hands the matrix to
:func:`aco_bert.evaluation.replay.evaluate_policies`, the hook learned routers report through as well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aco_bert.data.schema import OutcomeMatrix
from aco_bert.evaluation.metrics.core import ONE_POINT
from aco_bert.evaluation.replay import EvalReport, evaluate_policies, model_order
from aco_bert.spec import RouterSpec

DOMAIN_COLUMNS = ("source", "category", "domain")  # prompt meta columns whose values are a prompt's domains


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


def reference_report(dataset: str, data_dir: str | None = None, spec: str | None = None, models: str = "all",
                     seed: int = 0, within: float = ONE_POINT, clip_success: bool = False,
                     name: str | None = None, cost_metric: str = "usd", dataset_options: dict | None = None,
                     price_provider: str | None = None) -> tuple[EvalReport, list[str]]:
    """Load ``dataset``, pick the models, evaluate the reference policies; returns (report, notes to print).

    ``models``: ``"all"`` (every model of the dataset, cheapest first), ``"spec"`` (the spec's tiers, floors
    applied) or a comma-separated list. A spec given with other models only lends its frontier. ``clip_success``
    (user files only) clips success outside [0, 1] instead of refusing the file. ``name``: the dataset name shown
    in the report (default: the registry name or the path). ``cost_metric``: ``usd`` or ``share`` (see
    :mod:`aco_bert.evaluation.metrics.cost_metric`). ``dataset_options``: loader options (e.g. a ``cost`` rule,
    :mod:`aco_bert.data.costs`; ``price_provider`` joins it); the spec's tier prices derive a missing cost too.
    """
    from aco_bert.data.costs import cost_lines, require_costs, with_price_provider
    from aco_bert.data import load_outcomes
    from aco_bert.data.registry import DATASETS

    kw = {**with_price_provider(dataset_options, price_provider), **({"clip_success": True} if clip_success else {})}
    if name and str(dataset) not in DATASETS:
        kw["name"] = name  # a user file: the generic loader names its table
    rs = RouterSpec.load(spec) if spec else None
    table = load_outcomes(dataset, data_dir=data_dir, spec=rs, **kw)
    notes = [table.report_skipped()] + (["\n".join(cost_lines(table))] if cost_lines(table) else [])
    need_cost = cost_metric == "usd"
    min_tier = None
    frontier = None
    if models == "spec":
        if rs is None:
            raise ValueError("models 'spec' needs a spec")
        chosen = rs.models
        matrix = table.matrix(chosen)
        if need_cost:
            require_costs(matrix, chosen, name or str(dataset), table)
        min_tier = spec_min_tier(rs, matrix)
        frontier = rs.frontier
        notes.append(f"models: the {len(chosen)} tiers of spec {rs.name!r} (floors applied)")
    else:
        chosen = table.models if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
        matrix = table.matrix(chosen)
        if need_cost:
            require_costs(matrix, chosen, name or str(dataset), table)
        chosen = model_order(matrix, chosen)
        if rs is not None:
            if rs.frontier is not None and rs.frontier in chosen:
                frontier = rs.frontier
            if rs.floors or rs.step_type_min:
                notes.append(f"spec {rs.name!r} floors ignored: they name spec tiers; use --models spec")
    report = evaluate_policies(matrix, chosen, min_tier=min_tier, frontier=frontier, seed=seed, within=within,
                               dataset=name or str(dataset), cost_metric=cost_metric)
    return report, notes + report.notes
