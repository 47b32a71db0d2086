"""``--evaluate``: score each prompt of a canonical outcome table once and replay the decisions against its outcomes.

Why replay the *scored* output rather than re-route in the evaluator: the report then measures exactly the
decisions the bundle wrote (its policy, floors and cost model), next to always-frontier, the zero router, the
oracle and threshold/utility sweeps over the same probabilities (:mod:`aco_bert.evaluation.replay`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

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


def evaluation_input(cfg: ScoreConfig, models: list[str], spec: Any = None,
                     log: Callable[[str], Any] | None = None) -> tuple[Any, TableSource, Columns]:
    """The outcome table's prompt matrix, and its unique prompts as the source to score (one row per prompt, with
    its step type and domains), fingerprinted by the input file so a changed table starts afresh. A missing cost
    is derived by ``cfg.cost`` or the bundle ``spec``'s tier prices (printed), as every other verb does."""
    from aco_bert.data.costs import apply_cost_rule, cost_lines, require_costs

    table = apply_cost_rule(read_outcome_table(cfg), cfg.cost, spec)
    for line in cost_lines(table):
        (log or print)(f"[score] {line}")
    matrix = table.matrix(models_in_table(table, models, cfg.input))
    require_costs(matrix, list(matrix.models), table.name, table)
    data = {"prompt_id": matrix.prompt_ids, "prompt": matrix.prompts, "step_type": meta_col(matrix, "step_type"),
            "domain": meta_domains(matrix)}
    cols = Columns("prompt", cfg.messages_column, "step_type", "prompt_id", "domain", None)
    if cfg.cascade:
        cols.responses, cols.traces = run_columns(matrix, data, cfg.input)
    src = memory_source(data, fingerprint=open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config,
                                                     format=cfg.input_format).fingerprint + ":evaluate")
    return matrix, src, cols


def run_columns(matrix, data: dict[str, list[Any]], where: str) -> tuple[list[str], list[str]]:
    """``--cascade --evaluate``: add each tier's recorded answer (``response:<tier>``) and run trace
    (``trace:<tier>``: api_calls, cost_usd -- what the verifier reads of a run) to ``data``; their column names."""
    import math

    # a table without answers (SWE-bench) replays a trace-only cascade; a bundle whose verifier reads answers then
    # marks each row "no response for tier ..." (aco_bert.score.cascade.replay_cascade)
    resp, trace = [], []
    for t in range(len(matrix.models)):
        trace.append(f"trace:{t + 1}")
        if matrix.responses is not None:  # none: resp stays [] (a trace-only replay)
            resp.append(f"response:{t + 1}")
            data[resp[-1]] = list(matrix.responses[:, t])
        sig = {"cost_usd": matrix.cost[:, t], **{k: matrix.traces[k][:, t] for k in ("api_calls",)
                                                 if k in matrix.traces}}
        data[trace[-1]] = [{k: float(v[i]) for k, v in sig.items() if math.isfinite(float(v[i]))}
                           for i in range(matrix.n_prompts)]
    return resp, trace


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
    # the complete-case rule (aco_bert.evaluation.metrics.complete_case), applied here so the cascade row below is
    # replayed on the same prompts as every other row
    from aco_bert.evaluation.metrics.complete_case import complete_case

    cc = complete_case(sub.success[:, [sub.models.index(x) for x in models]], list(models),
                       d["min_tier"].to_numpy(int) - 1)
    if not cc.complete:
        idx = np.flatnonzero(cc.keep)
        sub, d = sub.subset(idx), d.iloc[idx]
    probs = d[[f"p:{m}" for m in models]].to_numpy(float)
    cost = d[[f"cost:{m}" for m in models]].to_numpy(float)
    min_tier = d["min_tier"].to_numpy(int) - 1
    ctx = RoutingContext(probs, cost, min_tier=min_tier)
    tiers = d["tier"].to_numpy(int) - 1
    policy = str(d["policy"].iloc[0]) if len(d) else "bundle"
    report = evaluate_policies(sub, list(models), ctx=ctx, decisions={f"router ({policy})": tiers},
                               sweeps=[threshold_sweep("router-threshold"), utility_sweep("router-utility")],
                               min_tier=min_tier, frontier=frontier, dataset=dataset)
    report.notes = notes + ([] if cc.complete else [cc.rule()]) + report.notes
    report.zero_router_rule, report.n_prompts_total = cc.rule(), matrix.n_prompts
    if "cascade_tiers" in d.columns:
        add_cascade_row(report, sub, d, list(models), f"router ({policy}) + cascade")
    return report


def add_cascade_row(report, matrix, scored, models: list[str], name: str) -> None:
    """The replayed cascade next to the ex-ante decision: realised success of the answer it kept, cost of every
    tier that ran (``scored`` aligned with ``matrix``'s prompts). Rows that stopped short are left out, noted."""
    import numpy as np

    from aco_bert.evaluation.replay import PolicyResult

    ok = scored["cascade_error"].isna().to_numpy() & scored["cascade_tier"].notna().to_numpy()
    cols = [matrix.models.index(m) for m in models]
    success = np.full(matrix.n_prompts, np.nan)
    cost = np.full(matrix.n_prompts, np.nan)
    runs = []
    for i, (tiers, final) in enumerate(zip(scored["cascade_tiers"], scored["cascade_tier"])):
        if not ok[i]:
            continue
        tiers = [int(t) for t in tiers]
        runs.append(len(tiers))
        success[i] = matrix.success[i, cols[int(final) - 1]]
        cost[i] = float(sum(matrix.cost[i, cols[t - 1]] for t in tiers))  # NaN when one run's cost is unknown
    keep = np.flatnonzero(ok)
    frontier = next((p for p in report.policies if p.name == "always-frontier"), None)
    row = PolicyResult.from_outcomes(name, success[keep], cost[keep],
                                     chosen={"mean_runs": float(np.mean(runs)) if runs else 0.0}, kind="learned",
                                     frontier_cost=None if frontier is None else frontier.cost_per_task)
    at = next((k + 1 for k, p in enumerate(report.policies) if p.name.startswith("router (")), len(report.policies))
    report.policies.insert(at, row)
    if len(keep) < matrix.n_prompts:
        report.notes.append(f"{name}: {matrix.n_prompts - len(keep)} prompt(s) stopped short of an answer (a tier "
                            "the cascade wanted has no response; see `cascade_error`) and are left out of its row")


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
