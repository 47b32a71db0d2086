"""``--evaluate``: score each prompt of a canonical outcome table once and replay the decisions against its outcomes.

Why replay the *scored* output rather than re-route in the evaluator: the report then measures exactly the
decisions the bundle wrote (its policy, floors and cost model), next to always-frontier, the zero router, the
oracle and threshold/utility sweeps over the same probabilities (:mod:`aco_bert.evaluation.replay`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from aco_bert.score.config import ScoreConfig, ScoreSummary
from aco_bert.score.rows import Columns, is_missing
from aco_bert.score.sources import TableSource, memory_source, open_table


def read_outcome_table(cfg: ScoreConfig):
    """The input as a validated canonical outcome table (an outcome table fits in memory: it is what the
    evaluator replays)."""
    import pandas as pd

    from aco_bert.data.schema import CANONICAL_COLUMNS, rows_to_table

    src = open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config, format=cfg.input_format)
    frames = []
    for ch in src.iter_chunks(max(cfg.chunk_size, 8192), list(CANONICAL_COLUMNS)):
        if ch.bad:
            i, why = min(ch.bad.items())
            from aco_bert.data.schema import DataError

            raise DataError(why, file=src.location, row=ch.start + i)
        frames.append(pd.DataFrame(ch.columns))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CANONICAL_COLUMNS))
    present = [c for c in CANONICAL_COLUMNS if src.has_column(c) is not False and df[c].notna().any()]
    return rows_to_table(df[present], file=src.location, name=Path(src.location).stem)


def evaluation_input(cfg: ScoreConfig, models: list[str]) -> tuple[Any, TableSource, Columns]:
    """The outcome table's prompt matrix, and its unique prompts as the source to score (one row per prompt, with
    its step type and domains), fingerprinted by the input file so a changed table starts afresh."""
    table = read_outcome_table(cfg)
    matrix = table.matrix(models_in_table(table, models, cfg.input))
    src = memory_source({"prompt_id": matrix.prompt_ids, "prompt": matrix.prompts,
                         "step_type": meta_col(matrix, "step_type"), "domain": meta_domains(matrix)},
                        fingerprint=open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config,
                                               format=cfg.input_format).fingerprint + ":evaluate")
    return matrix, src, Columns("prompt", cfg.messages_column, "step_type", "prompt_id", "domain", None)


def models_in_table(table, models: list[str], where: str) -> list[str]:
    """``models`` (the bundle's tiers), checked to all have outcomes in the table."""
    have = set(table.models)
    missing = [m for m in models if m not in have]
    if missing:
        from aco_bert.data.schema import DataError

        raise DataError(f"--evaluate: the bundle's tier model(s) {missing} have no outcomes in the input "
                        f"(it has {sorted(have)})", file=where)
    return models


def meta_col(matrix, col: str) -> list[Any]:
    """A prompt-level metadata column as strings, None where absent."""
    if col not in matrix.meta.columns:
        return [None] * matrix.n_prompts
    return [None if is_missing(v) or v is None or str(v) == "<NA>" else str(v) for v in matrix.meta[col].tolist()]


def meta_domains(matrix) -> list[list[str] | None]:
    """A prompt's domains for the spec's floors: its source/category/domain values (as the evaluator reads them)."""
    from aco_bert.evaluation.reference import DOMAIN_COLUMNS

    cols = [c for c in DOMAIN_COLUMNS if c in matrix.meta.columns]
    vals = [meta_col(matrix, c) for c in cols]
    return [[v[i] for v in vals if v[i] is not None] or None for i in range(matrix.n_prompts)]


def evaluate_scored(scored, matrix, models: Sequence[str], *, frontier: str | None = None, dataset: str = ""):
    """Replay the scored decisions (``scored``: the score output for ``matrix``'s prompts, any order) against the
    real outcomes: the bundle's own decisions, threshold/utility sweeps over its probabilities, and the
    reference policies. Rows marked bad are reported and left out (the evaluator needs a decision per prompt)."""
    import numpy as np

    from aco_bert.evaluation.replay import evaluate_policies, threshold_sweep, utility_sweep
    from aco_bert.policies.base import RoutingContext

    df = scored.set_index("prompt_id")
    bad = df["error"].notna()
    keep = [i for i, pid in enumerate(matrix.prompt_ids) if pid in df.index and not bad.get(pid, True)]
    notes = []
    if len(keep) < matrix.n_prompts:
        notes.append(f"{matrix.n_prompts - len(keep)} prompt(s) could not be scored and are left out")
    sub = matrix.subset(np.array(keep, dtype=int))
    d = df.loc[sub.prompt_ids]
    probs = d[[f"p:{m}" for m in models]].to_numpy(float)
    cost = d[[f"cost:{m}" for m in models]].to_numpy(float)
    min_tier = d["min_tier"].to_numpy(int) - 1
    ctx = RoutingContext(probs, cost, min_tier=min_tier)
    tiers = d["tier"].to_numpy(int) - 1
    policy = str(d["policy"].iloc[0]) if len(d) else "bundle"
    report = evaluate_policies(sub, list(models), ctx=ctx, decisions={f"router ({policy})": tiers},
                               sweeps=[threshold_sweep("router-threshold"), utility_sweep("router-utility")],
                               min_tier=min_tier, frontier=frontier, dataset=dataset)
    report.notes = notes + report.notes
    return report


def evaluate_into(summary: ScoreSummary, cfg: ScoreConfig, matrix, router) -> None:
    """Read the finished output back, replay it, write the plot and the JSON report, and attach them to
    ``summary``."""
    import pandas as pd
    import pyarrow.parquet as pq

    out = Path(cfg.output)
    if cfg.format == "jsonl":
        scored = pd.read_json(out, lines=True, dtype={"prompt_id": str})
    else:
        scored = pq.read_table(out).to_pandas()
    models = [t.model for t in router.spec.tiers]
    report = evaluate_scored(scored, matrix, models, frontier=getattr(router.spec, "frontier", None),
                             dataset=Path(cfg.input).name)
    from aco_bert.evaluation.plots import plot_cost_quality

    stem = out.with_suffix("")
    plot = Path(cfg.plot) if cfg.plot else stem.with_name(stem.name + ".cost_quality.png")
    rj = Path(cfg.report_json) if cfg.report_json else stem.with_name(stem.name + ".eval.json")
    plot_cost_quality(report, plot)
    report.save_json(rj)
    summary.evaluation, summary.plot, summary.report_json = report, str(plot), str(rj)
