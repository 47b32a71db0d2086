"""Loading the decision layer's XGBoost artifacts: a folder with ``manifest.json`` + XGBoost JSON/UBJ models.

Stacker, cost model and escalation verifier share this layout, so they share the checks: a missing manifest or a
foreign format is an error naming the file, never a half-loaded model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence


def read_artifact_manifest(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    mf = Path(path) / "manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"{mf}: no {what} manifest")
    m = json.loads(mf.read_text())
    if m.get("format") != fmt:
        raise ValueError(f"{mf}: format {m.get('format')!r} is not {fmt!r}")
    return m


def load_boosters(path: str | Path, names: Sequence[str | None]) -> list[Any]:
    """One ``xgboost.Booster`` per file name (None stays None: a tier without a model)."""
    import xgboost as xgb

    out: list[Any] = []
    for name in names:
        if name is None:
            out.append(None)
            continue
        b = xgb.Booster()
        b.load_model(str(Path(path) / name))
        out.append(b)
    return out
