"""What the nested router report evaluates: the router spec, and the outcome matrix of exactly the right prompts.

Why a module of its own: the report must judge a neural run on the prompts that run was trained and scored on.
Subsampling the dataset again here (``--max_prompts``) with a rule of its own drew other prompts than ``train``
did, and the report then failed with "N prompts have no out-of-fold row". So with a run, the prompts (and, when
not given, the spec and the dataset) come from the run's own record, :class:`~aco_bert.artifacts.layout.RunInfo`
(``run.json``; a merged holdout run has only ``oof_meta.json``, whose ``prompt_ids`` serve the same purpose);
without one, :func:`aco_bert.data.splits.subsample` draws the prompts, the same rule ``train`` uses.

A pooled run (dataset ``pooled`` / ``swebench-pooled``, :mod:`aco_bert.data.pooled`) is judged on one member table
when ``dataset`` names that member (its prefix, dataset or table name): the prompts are the run's prompts of that
member, under the member's own ids; the spec is in the member's names (default: the run's spec restricted to the
member's tiers) and resolves to the run's ``<member>/<model>`` heads; :meth:`ReportData.load_oof` hands the report
the run's out-of-fold rows of those prompts (their folds are the run's folds, so no evaluated prompt's outcome
trained the logits it is scored with) with the member's heads renamed. Everything else the report fits (TF-IDF, the
embedding peers, the stacker) sees only these prompts, exactly as in a report of a run on that table alone.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aco_bert.artifacts.layout import OOF_META, RUN_INFO, RunInfo
from aco_bert.data.schema import OutcomeMatrix
from aco_bert.spec import RouterSpec

DEFAULT_DATASET = "swebench-verified"


@dataclass
class ReportData:
    """The report's inputs, resolved once."""

    dataset: str  # display name (registry name, or the file's stem)
    spec: RouterSpec
    matrix: OutcomeMatrix  # the spec's tiers as columns, the evaluated prompts as rows
    run: RunInfo | None  # the neural run's record, when it has one
    oof_run: str | None = None  # the neural run's dir
    member: str | None = None  # a pooled run judged on one member: the member's prefix
    run_prompt_ids: dict[str, str] | None = None  # member: evaluated prompt id -> the run's prompt id

    def load_oof(self, prompt_ids: list[str]) -> tuple[Any, dict, Any]:
        """:func:`aco_bert.decision.stacker.load_oof` of the neural run for ``prompt_ids`` (the matrix's names).

        For a member of a pooled run: the run's rows of those prompts and the member's heads only, named as in the
        member (``<member>/<model>`` -> ``<model>``), the spec's tiers first (in tier order), then the member's other
        heads in the run's order: the stacker then sees what it sees in a report of a run on that table alone
        (other members' heads would be extra stacker inputs, not the effect of pooled training on the heads).
        ``mean_auc`` is recomputed over the spec's tiers on these prompts (the run's own: ``pooled_mean_auc``).
        """
        from aco_bert.decision.stacker import load_oof
        from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc

        if self.oof_run is None:
            raise ValueError("no neural run to load out-of-fold predictions from")
        if self.member is None:
            return load_oof(self.oof_run, prompt_ids)
        head = self.member + "/"
        run_models = [str(m) for m in json.loads((Path(self.oof_run) / OOF_META).read_text())["models"]]
        mine = [m[len(head):] for m in run_models if m.startswith(head)]
        if not mine:
            raise ValueError(f"{self.oof_run}: no head of member {self.member!r} (heads named {head}<model>)")
        order = [m for m in self.spec.models if m in mine] + [m for m in mine if m not in self.spec.models]
        inputs, meta, cost = load_oof(self.oof_run, [self.run_prompt_ids[p] for p in prompt_ids],
                                      [head + m for m in order])
        auc = float("nan")
        if all(m in mine for m in self.spec.models) and list(prompt_ids) == list(self.matrix.prompt_ids):
            auc = mean_auc(per_tier_auc(self.matrix.success, inputs.logits[:, :len(self.spec.models)]))
        meta = {**meta, "models": order, "prompt_ids": list(prompt_ids), "mean_auc": auc,
                "pooled_mean_auc": meta.get("mean_auc"), "pool_member": self.member}
        return inputs, meta, cost


def run_prompt_ids(run_dir: str | Path) -> tuple[list[str], RunInfo | None]:
    """The prompts a neural run saw, in its order: from ``run.json``, else from ``oof_meta.json``."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_INFO).is_file():
        info = RunInfo.load(run_dir)
        return list(info.prompt_ids), info
    meta = run_dir / OOF_META
    if not meta.is_file():
        raise FileNotFoundError(f"{run_dir}: neither {RUN_INFO} nor {OOF_META}; is this a neural k-fold run?")
    ids = json.loads(meta.read_text()).get("prompt_ids")
    if not isinstance(ids, list):
        raise ValueError(f"{meta}: no prompt_ids list")
    return [str(p) for p in ids], None


def restrict_to(matrix: OutcomeMatrix, prompt_ids: list[str], where: str) -> OutcomeMatrix:
    """The rows of ``prompt_ids`` in that order (a repeated id takes the matrix's rows of that id in turn)."""
    rows: dict[str, deque[int]] = defaultdict(deque)
    for i, p in enumerate(matrix.prompt_ids):
        rows[str(p)].append(i)
    missing = [p for p in dict.fromkeys(prompt_ids) if not rows.get(p)]
    if missing:
        raise ValueError(f"{where}: {len(missing)} of its {len(prompt_ids)} prompts are not in the outcome data, "
                         f"e.g. {missing[:3]}; was the run trained on another dataset?")
    idx = []
    for p in prompt_ids:
        q = rows[p]
        if not q:
            raise ValueError(f"{where}: prompt {p!r} appears more often than in the outcome data")
        idx.append(q.popleft())
    return matrix.subset(idx)


def load_report_data(dataset: str | None, spec: str | None, data_dir: str | None, oof_run: str | None,
                     max_prompts: int | None, seed: int, log: Callable[[str], Any] = print,
                     options: dict[str, Any] | None = None) -> ReportData:
    """Resolve spec, dataset and prompts (see the module docstring for the rules).

    ``spec`` (a shipped name or a YAML path) overrides the run's spec; ``dataset`` overrides the run's dataset
    reference. With a run, ``max_prompts`` below the run's prompt count subsamples *within* them (quick runs).
    ``options`` are extra loader keyword arguments (e.g. ``with_responses=True``).
    """
    options = dict(options or {})
    from aco_bert.data import load_outcomes
    from aco_bert.data.costs import cost_lines
    from aco_bert.data.registry import DEFAULT_SPECS, POOLED_DATASETS, default_spec_name
    from aco_bert.data.splits import subsample

    run_ids, info = run_prompt_ids(oof_run) if oof_run else (None, None)
    if dataset is not None and info is not None and is_pool_member(info, dataset):
        return member_report_data(dataset, spec, data_dir, oof_run, run_ids, info, max_prompts, seed, log)
    from_run = info is not None and (dataset is None or (dataset in POOLED_DATASETS and dataset == info.dataset.dataset))
    name = info.dataset.label if from_run else dataset or DEFAULT_DATASET
    if spec is not None:
        rs = RouterSpec.load(spec)
    elif info is not None:
        rs = info.router_spec()
    elif name in DEFAULT_SPECS:
        rs = RouterSpec.load(default_spec_name(name))
    else:
        rs = None  # a user file without --spec: every model, cheapest first (as train does), after its costs
    # the spec goes to the loader: its tier prices derive a missing cost (aco_bert.data.costs), printed below
    if from_run:
        table = info.dataset.load(data_dir, spec=rs, **options)  # a pool needs the run's options
    else:
        table = load_outcomes(name, data_dir=data_dir, spec=rs, **options)
    if rs is None:
        rs = RouterSpec.every_model(table, Path(name).stem, name)
        log(f"[router-eval] no --spec: every model of {name}, cheapest first by mean cost: {rs.models}")
    for line in cost_lines(table):
        log(f"[router-eval] {line}")
    m = table.matrix(rs.models)
    if run_ids is not None:
        n_all = m.n_prompts
        m = restrict_to(m, run_ids, f"neural run {oof_run}")
        log(f"[router-eval] the neural run's {m.n_prompts} prompts (of {n_all} in {name})")
    m = m.subset(subsample(m.n_prompts, max_prompts, seed))
    return ReportData(dataset=name, spec=rs, matrix=m, run=info, oof_run=None if oof_run is None else str(oof_run))


def is_pool_member(info: RunInfo, dataset: str) -> bool:
    """Whether ``dataset`` asks for one member of the run's pooled dataset (not the whole pool)."""
    from aco_bert.data.registry import POOLED_DATASETS

    return info.dataset.dataset in POOLED_DATASETS and dataset not in (info.dataset.dataset, info.dataset.label)


def member_report_data(dataset: str, spec: str | None, data_dir: str | None, oof_run: str, run_ids: list[str],
                       info: RunInfo, max_prompts: int | None, seed: int, log: Callable[[str], Any] = print
                       ) -> ReportData:
    """A pooled run judged on its member ``dataset`` (see the module docstring)."""
    from aco_bert.data.pooled import member_spec, member_table, pool_info, pooled_prompt_id, resolve_member
    from aco_bert.data.splits import subsample

    pooled = info.dataset.load(data_dir)
    prefix = resolve_member(pooled, dataset)
    table = member_table(pooled, prefix)
    rs = RouterSpec.load(spec) if spec is not None else member_spec(info.router_spec(), prefix)
    to_run = {p: pooled_prompt_id(pooled, prefix, p) for p in dict.fromkeys(table.df["prompt_id"].astype(str))}
    from_run = {v: k for k, v in to_run.items()}
    mine = [from_run[p] for p in run_ids if p in from_run]
    if not mine:
        raise ValueError(f"neural run {oof_run}: none of its {len(run_ids)} prompts is a prompt of member {prefix!r}")
    m = table.matrix(rs.models)
    have = set(m.prompt_ids)
    kept = [p for p in mine if p in have]
    m = restrict_to(m, kept, f"neural run {oof_run}")
    log(f"[router-eval] member {prefix!r} of the pooled run {info.dataset.label}: {m.n_prompts} of the run's "
        f"{len(run_ids)} prompts" + (f" ({len(mine) - len(kept)} without an outcome of the spec's tiers left out)"
                                     if len(kept) < len(mine) else ""))
    m = m.subset(subsample(m.n_prompts, max_prompts, seed))
    name = str(pool_info(pooled)["members"][prefix].get("dataset") or table.name)
    return ReportData(dataset=name, spec=rs, matrix=m, run=info, oof_run=str(oof_run), member=prefix,
                      run_prompt_ids={p: to_run[p] for p in m.prompt_ids})
