"""SWE-bench leaderboard (mini-SWE-agent "bash-only"): per-instance resolved / cost / api_calls per model.

Texts come from ``tasks.jsonl`` (the columns of ``princeton-nlp/SWE-bench_Verified``). Online, the leaderboard is
fetched from its pinned raw URL and the texts from the Hugging Face dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aco_bert.data.io import read_json_source, read_jsonl
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table

LEADERBOARD_URL = (
    "https://raw.githubusercontent.com/SWE-bench/swe-bench.github.io/"
    "f1176b65ae29d14f4f52208b48e3d8cfc972bc17/data/leaderboards.json"
)
HF_DATASET = "princeton-nlp/SWE-bench_Verified"
# Its per-instance labels (51 resolved) disagree with its reported 52.8 %: excluded unless asked for.
EXCLUDED_BY_DEFAULT = ("Claude 3.7 Sonnet (20250219)",)


def read_tasks(tasks: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if str(tasks).startswith("hf:"):
        import datasets

        ds = datasets.load_dataset(tasks[3:], split="test")
        return {r["instance_id"]: dict(r) for r in ds}
    for i, r in read_jsonl(tasks):
        for k in ("instance_id", "problem_statement"):
            if k not in r:
                raise DataError(f"missing field {k!r}", file=str(tasks), row=i)
        out[r["instance_id"]] = r
    return out


def load_swebench(
    leaderboard: str | Path = LEADERBOARD_URL,
    tasks: str | Path = f"hf:{HF_DATASET}",
    *,
    board: str = "bash-only",
    exclude: tuple[str, ...] = EXCLUDED_BY_DEFAULT,
    include_all: bool = False,
) -> OutcomeTable:
    """Canonical table of every model with ``per_instance_details`` on ``board``.

    ``leaderboard``/``tasks`` are local paths or the public sources (URL; ``hf:<dataset>``).
    """
    data = read_json_source(leaderboard)
    boards = {b.get("name"): b for b in data.get("leaderboards", [])}
    if board not in boards:
        raise DataError(f"no leaderboard {board!r}; have {sorted(boards)}", file=str(leaderboard))
    texts = read_tasks(str(tasks))
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for ri, res in enumerate(boards[board]["results"]):
        details = res.get("per_instance_details")
        name = res.get("name")
        if not details:
            skipped["leaderboard entries without per_instance_details"] = skipped.get(
                "leaderboard entries without per_instance_details", 0) + 1
            continue
        if name in exclude and not include_all:
            skipped[f"excluded entries ({name})"] = 1
            continue
        for iid, d in details.items():
            if iid not in texts:
                raise DataError(f"instance {iid!r} of {name!r} has no task text in {tasks}", file=str(leaderboard), row=ri)
            if not isinstance(d, dict) or "resolved" not in d:
                raise DataError(f"instance {iid!r} of {name!r}: no 'resolved' field", file=str(leaderboard), row=ri)
            t = texts[iid]
            rows.append({
                "prompt_id": iid,
                "prompt": t["problem_statement"],
                "model": name,
                "success": float(bool(d["resolved"])) if isinstance(d["resolved"], bool) else d["resolved"],
                "cost_usd": d.get("cost"),
                "api_calls": d.get("api_calls"),
                "source": "swebench-verified",
                "category": t.get("repo"),
                "step_type": None,
            })
    meta = {
        "repo": {k: v.get("repo") for k, v in texts.items()},
        # Human fix-time estimate, annotated after the fact: an auxiliary *training* target, never a feature.
        "difficulty": {k: v.get("difficulty") for k, v in texts.items()},
    }
    return rows_to_table(rows, file=str(leaderboard), name="swebench-verified", skipped=skipped,
                         extras={"prompt_meta": meta})
