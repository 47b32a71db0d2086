"""Named datasets: where each lives under the data dir, its public source, and its adapter.

``load_outcomes("swebench-verified", data_dir=...)`` reads the local copy when present, else the public source.
Named datasets: ``swebench-verified``, ``routerbench`` (``split=train|test|all``), ``bfcl`` (local copy only),
``dcrouter`` (``split=train|test|all``), ``openhands-index`` (``benchmark=swe-bench|swt-bench``), ``swebench-pooled``
(bash-only + OpenHands Index on the same 500 tasks), ``mmlu-pro`` (``with_responses=True`` keeps output texts),
``pooled`` (``tables=[...]``: several tables as one, see :mod:`aco_bert.data.pooled`).
Anything else is treated as a path to a generic long/wide file (see :mod:`aco_bert.data.adapters.generic`).
:func:`default_spec_name` names each dataset's shipped router spec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from aco_bert.data.schema import OutcomeTable

DATA_DIR_ENV = "ACO_BERT_DATA_DIR"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """``data_dir`` argument, else ``$ACO_BERT_DATA_DIR``, else None (use public sources)."""
    d = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(d) if d else None


def _swebench(data_dir: Path | None, **kw: Any) -> OutcomeTable:
    from aco_bert.data.adapters import swebench

    if data_dir is not None and (data_dir / "swebench-verified").exists():
        base = data_dir / "swebench-verified"
        return swebench.load_swebench(base / "leaderboards.json", base / "tasks.jsonl", **kw)
    return swebench.load_swebench(**kw)


def _routerbench(data_dir: Path | None, split: str = "all", **kw: Any) -> OutcomeTable:
    """RouterDC's RouterBench re-cut (local copy, else the pinned RouterDC URLs)."""
    from aco_bert.data.adapters import routerbench

    local = data_dir / "routerbench" if data_dir is not None else None
    src = local if local is not None and local.exists() else None
    return routerbench.load_routerbench(src, split=split, **kw)


def _bfcl(data_dir: Path | None, **kw: Any) -> OutcomeTable:
    """BFCL v2: needs the flattened local copy (outcomes.csv is derived; see adapters/bfcl.py)."""
    from aco_bert.data.adapters import bfcl
    from aco_bert.data.prices import LITELLM_RELPATH, PriceTable

    base = data_dir / "bfcl-v2" if data_dir is not None else None
    if base is None or not (base / "outcomes.csv").exists():
        raise FileNotFoundError(
            "bfcl needs the flattened local copy <data_dir>/bfcl-v2/{outcomes.csv,questions.jsonl} (set "
            f"${DATA_DIR_ENV} or --data-dir); outcomes.csv is derived from {bfcl.RESULTS_REPO} as described in the "
            "shared data README, and deriving it online is not implemented")
    if "prices" not in kw:
        local_prices = data_dir / LITELLM_RELPATH
        kw["prices"] = PriceTable.from_litellm(local_prices if local_prices.exists() else None)
    return bfcl.load_bfcl(base / "outcomes.csv", base / "questions.jsonl", **kw)


def _dcrouter(data_dir: Path | None, split: str = "all", **kw: Any) -> OutcomeTable:
    """LLMRouter's DC-router split (local copy, else the pinned LLMRouter URLs)."""
    from aco_bert.data.adapters import scores_json

    local = data_dir / "dcrouter" if data_dir is not None else None
    src = local if local is not None and local.exists() else None
    return scores_json.load_dcrouter(src, split=split, **kw)


def _openhands(data_dir: Path | None, **kw: Any) -> OutcomeTable:
    """OpenHands Index (``benchmark=swe-bench|swt-bench``): local copy, else the pinned raw URLs + HF task texts."""
    from aco_bert.data.adapters import openhands, swebench

    root = data_dir / "openhands-index" if data_dir is not None else None
    tasks = data_dir / "swebench-verified" / "tasks.jsonl" if data_dir is not None else None
    return openhands.load_openhands(root if root is not None and root.exists() else openhands.RAW_BASE,
                                    tasks if tasks is not None and tasks.exists() else f"hf:{swebench.HF_DATASET}",
                                    **kw)


def _swebench_pooled(data_dir: Path | None, **kw: Any) -> OutcomeTable:
    """SWE-bench Verified bash-only (``bash-only/<model>``) + OpenHands Index (``openhands-index/<model>``): the
    ``pooled`` dataset of those two members over their shared prompt ids (the same 500 instances)."""
    from aco_bert.data.pooled import load_pooled

    if kw.get("benchmark", "swe-bench") != "swe-bench":
        raise ValueError("swebench-pooled pools SWE-bench outcomes only (benchmark=swe-bench)")
    members = [{"dataset": "swebench-verified", "prefix": "bash-only"}, {"dataset": "openhands-index", "options": kw}]
    return load_pooled(data_dir, members, shared_prompts=True, name="swebench-pooled")


def _pooled(data_dir: Path | None, tables: Any = None, shared_prompts: bool = False, name: str = "pooled",
            member_folds: dict[str, int] | None = None) -> OutcomeTable:
    """Several tables as one (``tables=[routerbench, {dataset: mmlu-pro, max_prompts: 3000}]``; names in
    :mod:`aco_bert.data.pooled`): union of prompts and models, NaN where a model did not run a prompt;
    ``member_folds={k: 5, seed: 0}``: each member's prompts keep the k-fold folds of a run on that member alone."""
    from aco_bert.data.pooled import load_pooled

    return load_pooled(data_dir, tables, shared_prompts=shared_prompts, name=name, member_folds=member_folds)


def _mmlu_pro(data_dir: Path | None, **kw: Any) -> OutcomeTable:
    """MMLU-Pro 5-shot CoT outputs (local zips, else the pinned raw URLs); cost estimated (see adapters/mmlu_pro.py)."""
    from aco_bert.data.adapters import mmlu_pro
    from aco_bert.data.prices import LITELLM_RELPATH, PriceTable

    local = data_dir / "mmlu-pro" if data_dir is not None else None
    if "prices" not in kw:
        lp = data_dir / LITELLM_RELPATH if data_dir is not None else None
        kw["prices"] = PriceTable.from_litellm(lp if lp is not None and lp.exists() else None)
    return mmlu_pro.load_mmlu_pro(local if local is not None and local.exists() else mmlu_pro.RAW_BASE, **kw)


# name -> loader(data_dir, **options). Adapters for other datasets register here too.
DATASETS: dict[str, Callable[..., OutcomeTable]] = {
    "swebench-verified": _swebench,
    "routerbench": _routerbench,
    "bfcl": _bfcl,
    "dcrouter": _dcrouter,
    "openhands-index": _openhands,
    "swebench-pooled": _swebench_pooled,
    "pooled": _pooled,
    "mmlu-pro": _mmlu_pro,
}

# datasets whose tables are pools of member tables (aco_bert.data.pooled): a report can judge a run on one member
POOLED_DATASETS = ("pooled", "swebench-pooled")

# dataset -> the shipped router spec (aco_bert/specs/<name>.yaml) used when none is given.
DEFAULT_SPECS: dict[str, str] = {
    "swebench-verified": "swebench-verified-5tier",
    "routerbench": "routerbench",
    "bfcl": "bfcl",
    "dcrouter": "dcrouter",
    "openhands-index": "openhands-index",
    "mmlu-pro": "mmlu-pro",
}


def default_spec_name(dataset: str) -> str:
    """Name of the shipped router spec for ``dataset`` (load it with ``RouterSpec.load``)."""
    if dataset not in DEFAULT_SPECS:
        raise KeyError(f"no default router spec for dataset {dataset!r}; known: {sorted(DEFAULT_SPECS)}")
    return DEFAULT_SPECS[dataset]


def load_outcomes(name_or_path: str | Path, data_dir: str | Path | None = None, *, cost: Any = None,
                  spec: Any = None, **kw: Any) -> OutcomeTable:
    """The table of a named dataset or a generic file; ``kw`` are the loader's options.

    ``cost``: a :class:`~aco_bert.data.costs.CostRule` (or its dict, ``--dataset_options "{cost: {...}}"``) that
    fills a missing ``cost_usd`` from tokens or turns; ``spec``: the verb's router spec (a RouterSpec, a name or a
    path), whose tier prices the rule uses and which, without a rule, derives the cost of models that have tokens
    but no cost at all. What was derived is in ``extras["derived_cost"]`` (see :mod:`aco_bert.data.costs`).
    ``streaming=True`` (``--dataset_options "{streaming: true}"``): a long file is converted once into a cached,
    memory-mapped Arrow dataset and an :class:`~aco_bert.data.arrow.ArrowOutcomes` is returned (see there).
    """
    from aco_bert.data.costs import CostRule, apply_cost_rule

    name = str(name_or_path)
    if kw.pop("streaming", False):  # a long file larger than memory: a memory-mapped Arrow dataset (data/arrow.py)
        from aco_bert.data.arrow import load_streaming

        return load_streaming(name, cost=cost, **kw)  # type: ignore[return-value]
    rule = CostRule.make(cost)
    if name in DATASETS:
        table = DATASETS[name](resolve_data_dir(data_dir), **kw)
    elif Path(name).exists():
        from aco_bert.data.adapters import generic

        if rule is not None and rule.turns_column != "turns":
            kw["rename"] = {rule.turns_column: "turns"}
        table = generic.load_generic(name, **kw)
    else:
        raise ValueError(f"unknown dataset {name!r}: not one of {sorted(DATASETS)} nor an existing path")
    return apply_cost_rule(table, rule, spec, data_dir=resolve_data_dir(data_dir))
