"""What the nested router report evaluates: the router spec, and the outcome matrix of exactly the right prompts.

Why a module of its own: the report must judge a neural run on the prompts that run was trained and scored on.
Subsampling the dataset again here (``--max_prompts``) with a rule of its own drew other prompts than ``train``
did, and the report then failed with "N prompts have no out-of-fold row". So with a run, the prompts (and, when
not given, the spec and the dataset) come from the run's own record, :class:`~aco_bert.artifacts.layout.RunInfo`
(``run.json``; a merged holdout run has only ``oof_meta.json``, whose ``prompt_ids`` serve the same purpose);
without one, :func:`aco_bert.data.splits.subsample` draws the prompts, the same rule ``train`` uses.
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
                     max_prompts: int | None, seed: int, log: Callable[[str], Any] = print) -> ReportData:
    """Resolve spec, dataset and prompts (see the module docstring for the rules).

    ``spec`` (a shipped name or a YAML path) overrides the run's spec; ``dataset`` overrides the run's dataset
    reference. With a run, ``max_prompts`` below the run's prompt count subsamples *within* them (quick runs).
    """
    from aco_bert.data import load_outcomes
    from aco_bert.data.registry import default_spec_name
    from aco_bert.data.splits import subsample

    run_ids, info = run_prompt_ids(oof_run) if oof_run else (None, None)
    if dataset is None and info is not None:
        table, name = info.dataset.load(data_dir), info.dataset.label
    else:
        name = dataset or DEFAULT_DATASET
        table = load_outcomes(name, data_dir=data_dir)
    if spec is not None:
        rs = RouterSpec.load(spec)
    elif info is not None:
        rs = info.router_spec()
    else:
        rs = RouterSpec.load(default_spec_name(name))
    m = table.matrix(rs.models)
    if run_ids is not None:
        n_all = m.n_prompts
        m = restrict_to(m, run_ids, f"neural run {oof_run}")
        log(f"[router-eval] the neural run's {m.n_prompts} prompts (of {n_all} in {name})")
    m = m.subset(subsample(m.n_prompts, max_prompts, seed))
    return ReportData(dataset=name, spec=rs, matrix=m, run=info)
