"""Named datasets: where each lives under the data dir, its public source, and its adapter.

``load_outcomes("swebench-verified", data_dir=...)`` reads the local copy when present, else the public source.
Anything else is treated as a path to a generic long/wide file (see :mod:`aco_bert.data.adapters.generic`).
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


# name -> loader(data_dir, **options). Adapters for other datasets register here too.
DATASETS: dict[str, Callable[..., OutcomeTable]] = {
    "swebench-verified": _swebench,
}


def load_outcomes(name_or_path: str | Path, data_dir: str | Path | None = None, **kw: Any) -> OutcomeTable:
    name = str(name_or_path)
    if name in DATASETS:
        return DATASETS[name](resolve_data_dir(data_dir), **kw)
    if Path(name).exists():
        from aco_bert.data.adapters import generic

        return generic.load_generic(name, **kw)
    raise ValueError(f"unknown dataset {name!r}: not one of {sorted(DATASETS)} nor an existing path")
