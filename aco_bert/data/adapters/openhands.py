"""OpenHands Index: per-instance resolved and USD cost of 43 agent+model systems on SWE-bench Verified / SWT-bench.

Source: GitHub ``OpenHands/openhands-index-results`` at :data:`COMMIT` (local copy: ``<data_dir>/openhands-index``;
online: :data:`RAW_BASE` + path). Layout: ``results/<model>/`` (the OpenHands agent) and
``alternative_agents/<agent>/<model>/``, each with ``metadata.json`` (agent, list prices per 1M tokens) and
``instance_results/{swe-bench,swt-bench}.json`` = ``{instance_id: {"resolved": true|false|null, "cost": USD|null}}``.
Model names: ``<model>`` for OpenHands runs, ``<agent>/<model>`` for the others (``acp-codex/GPT-5.4``).

Prompts: the SWE-bench Verified problem statement of each instance (``swebench-verified/tasks.jsonl``, read with the
swebench adapter's :func:`~aco_bert.data.adapters.swebench.read_tasks`), prompt id = instance id, category = repo,
source ``swebench-verified``: the very prompts, ids and meta of the ``swebench-verified`` table, which is why
:func:`aco_bert.data.pooled.pool_tables` can put both in one table (dataset ``swebench-pooled``). ``benchmark="swt-bench"`` (write a test
that reproduces the issue) uses the same statements and ids for a different task (source ``swt-bench``): never pool
it with a SWE-bench table.

Missing is never failure: ``resolved: null`` (the archive exposes no outcome) leaves that cell missing, counted in
``skipped``. Cost is the run's own per-instance USD, nothing is derived. ``null`` and exactly ``0`` are unknown (NaN),
never free: ``alternative_agents/acp-codex/*`` report 0 on every instance (not metered), and other systems have
scattered zeros (GLM-5: 95 of its 500, 66 of them resolved, while its smallest non-zero cost is $0.26). Unknown costs
are counted per model in ``extras["cost_unknown"]`` with the reason in ``extras["cost_unknown_reason"]``. A system
without the benchmark's sidecar (``results/Minimax-2.7``, a duplicate of ``MiniMax-M2.7``) is skipped and counted.
Errors name the sidecar file and, as the row, the instance id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aco_bert.data.adapters.swebench import HF_DATASET, read_tasks
from aco_bert.data.io import SourceNotFound, read_json_source
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table

COMMIT = "3015ac612e7196f428e6e8a3948965d32d9a3331"
RAW_BASE = f"https://raw.githubusercontent.com/OpenHands/openhands-index-results/{COMMIT}"
BENCHMARKS = {"swe-bench": "swebench-verified", "swt-bench": "swt-bench"}  # benchmark -> prompt source
# Every system folder at COMMIT (raw URLs cannot list a folder); a local copy is listed instead.
SYSTEM_DIRS = tuple(f"results/{m}" for m in (
    "DeepSeek-V3.2-Reasoner", "DeepSeek-V4-Pro", "GLM-4.7", "GLM-5", "GLM-5.1", "GPT-5.2", "GPT-5.2-Codex", "GPT-5.4",
    "GPT-5.5", "Gemini-3-Flash", "Gemini-3-Pro", "Gemini-3.1-Pro", "Gemini-3.5-Flash", "Kimi-K2-Thinking", "Kimi-K2.5",
    "Kimi-K2.6", "MiniMax-M2.1", "MiniMax-M2.5", "MiniMax-M2.7", "MiniMax-M3", "Minimax-2.7", "Nemotron-3-Nano",
    "Nemotron-3-Super", "Qwen3-Coder-480B", "Qwen3-Coder-Next", "Qwen3.5-Flash", "Qwen3.6-Plus",
    "Trinity-Large-Thinking", "claude-fable-5", "claude-opus-4-5", "claude-opus-4-6", "claude-opus-4-7",
    "claude-opus-4-8", "claude-sonnet-4-5", "claude-sonnet-4-6",
)) + tuple(f"alternative_agents/{a}" for a in (
    "acp-claude/claude-opus-4-6", "acp-claude/claude-opus-4-7", "acp-claude/claude-sonnet-4-5", "acp-codex/GPT-5.4",
    "acp-codex/GPT-5.5", "acp-gemini/Gemini-3-Flash", "acp-gemini/Gemini-3.1-Pro",
    "openhands_subagents/claude-opus-4-6", "openhands_subagents/claude-sonnet-4-5",
))


def model_name(system_dir: str) -> str:
    """``results/GPT-5.4`` -> ``GPT-5.4``; ``alternative_agents/acp-codex/GPT-5.4`` -> ``acp-codex/GPT-5.4``."""
    parts = system_dir.strip("/").split("/")
    return "/".join(parts[1:])


def list_systems(root: str | Path) -> list[str]:
    """System folders under ``root`` (a local copy), else the pinned :data:`SYSTEM_DIRS` (a URL base)."""
    if str(root).startswith(("http://", "https://")):
        return list(SYSTEM_DIRS)
    base = Path(root)
    if not (base / "results").is_dir():
        raise DataError("not an openhands-index-results copy (no results/ folder)", file=str(base))
    found = [f"results/{p.name}" for p in sorted((base / "results").iterdir()) if p.is_dir()]
    alt = base / "alternative_agents"
    if alt.is_dir():
        found += [f"alternative_agents/{a.name}/{p.name}" for a in sorted(alt.iterdir()) if a.is_dir()
                  for p in sorted(a.iterdir()) if p.is_dir()]
    return found


def _read_optional(root: str | Path, rel: str) -> Any | None:
    """A JSON file under ``root`` (path or URL base), or None when it does not exist (HTTP 404 online)."""
    src = f"{str(root).rstrip('/')}/{rel}" if str(root).startswith(("http://", "https://")) else Path(root) / rel
    if isinstance(src, Path) and not src.exists():
        return None
    try:
        return read_json_source(src)
    except SourceNotFound:
        return None


def _cost(v: Any, file: str, iid: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"cost {v!r} is not a number or null", file=file, row=iid)
    if v < 0:
        raise DataError(f"negative cost {v!r}", file=file, row=iid)
    return float(v)


def load_openhands(
    root: str | Path = RAW_BASE,
    tasks: str | Path = f"hf:{HF_DATASET}",
    *,
    benchmark: str = "swe-bench",
    models: list[str] | None = None,
) -> OutcomeTable:
    """Canonical table of every system with an ``instance_results/<benchmark>.json`` sidecar.

    ``root``: a local copy of the repository or its raw URL base (:data:`RAW_BASE`); ``tasks``: the task file (path or
    ``hf:<dataset>``). ``models`` keeps only those model names (see :func:`model_name`).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}, got {benchmark!r}")
    texts = read_tasks(str(tasks))
    systems = list_systems(root)
    if models is not None:
        absent = sorted(set(models) - {model_name(s) for s in systems})
        if absent:
            raise DataError(f"models not in {root}: {absent}", file=str(root))
        systems = [s for s in systems if model_name(s) in set(models)]
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    cost_unknown: dict[str, int] = {}
    reasons: dict[str, str] = {}
    list_prices: dict[str, list[float | None]] = {}
    agents: dict[str, str | None] = {}
    rel = f"instance_results/{benchmark}.json"
    for sysdir in systems:
        name = model_name(sysdir)
        file = f"{str(root).rstrip('/')}/{sysdir}/{rel}"
        data = _read_optional(root, f"{sysdir}/{rel}")
        if data is None:
            k = f"systems without {rel}"
            skipped[k] = skipped.get(k, 0) + 1
            continue
        if not isinstance(data, dict):
            raise DataError(f"expected an object instance_id -> outcome, got {type(data).__name__}", file=file)
        meta = _read_optional(root, f"{sysdir}/metadata.json") or {}
        agents[name] = meta.get("agent_name") if isinstance(meta, dict) else None
        if isinstance(meta, dict):
            list_prices[name] = [meta.get("input_price"), meta.get("output_price")]
        n_null = n_zero = n_none = 0
        for iid, d in data.items():
            if iid not in texts:
                raise DataError(f"instance {iid!r} has no task text in {tasks}", file=file, row=iid)
            if not isinstance(d, dict) or "resolved" not in d:
                raise DataError("outcome is not an object with a 'resolved' field", file=file, row=iid)
            res = d["resolved"]
            if res is not None and not isinstance(res, bool):
                raise DataError(f"resolved {res!r} is not true, false or null", file=file, row=iid)
            cost = _cost(d.get("cost"), file, iid)
            if res is None:
                n_null += 1
                continue
            if cost is None:
                n_none += 1
            elif cost == 0.0:
                n_zero += 1
                cost = None
            t = texts[iid]
            rows.append({
                "prompt_id": iid,
                "prompt": t["problem_statement"],
                "model": name,
                "success": float(res),
                "cost_usd": cost,
                "source": BENCHMARKS[benchmark],
                "category": t.get("repo"),
                "step_type": None,
            })
        if n_null:
            k = "outcomes with resolved null (no outcome in the archive; left missing)"
            skipped[k] = skipped.get(k, 0) + n_null
        if n_zero or n_none:
            cost_unknown[name] = n_zero + n_none
            why = [f"not metered: cost 0 on {n_zero}"] if n_zero else []
            reasons[name] = ", ".join(why + ([f"cost null on {n_none}"] if n_none else []))
    if not rows:
        raise DataError(f"no system has {rel}", file=str(root))
    extras: dict[str, Any] = {
        "prompt_meta": {
            "repo": {k: v.get("repo") for k, v in texts.items()},
            # Human fix-time estimate, annotated after the fact: an auxiliary *training* target, never a feature.
            "difficulty": {k: v.get("difficulty") for k, v in texts.items()},
        },
        "benchmark": benchmark,
        "cost_unknown": cost_unknown,
        "cost_unknown_reason": reasons,
        "list_prices_per_1m": list_prices,  # metadata.json input_price / output_price (USD per 1M tokens)
        "agents": agents,
        "cost_note": "cost_usd = the run's own per-instance USD; NaN where null or 0 (not metered)",
    }
    name = "openhands-index" if benchmark == "swe-bench" else f"openhands-index-{benchmark}"
    return rows_to_table(rows, file=str(root), name=name, skipped=skipped, extras=extras)
