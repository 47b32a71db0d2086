"""Loading the decision layer's XGBoost artifacts: a folder with ``manifest.json`` + XGBoost JSON/UBJ models.

Stacker, cost model and escalation verifier share this layout, so they share the checks: a missing manifest or a
foreign format is an error naming the file, never a half-loaded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def read_artifact_manifest(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """The folder's ``manifest.json`` (format checked by :func:`aco_bert.artifacts.jsonio.read_record`)."""
    from aco_bert.artifacts.jsonio import read_record

    mf = Path(path) / "manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"{mf}: no {what} manifest")
    return read_record(mf, fmt)


def tree_params(cfg: Any, objective: str, **extra: Any) -> dict[str, Any]:
    """``xgb.train`` parameters from a config with the shared tree fields (max_depth, eta, subsample,
    colsample_bytree, min_child_weight, reg_lambda, seed, nthread): the stacker, cost model and cascade verifier
    differ only in objective and defaults."""
    return {"objective": objective, **extra, "max_depth": cfg.max_depth, "eta": cfg.eta, "subsample": cfg.subsample,
            "colsample_bytree": cfg.colsample_bytree, "min_child_weight": cfg.min_child_weight,
            "lambda": cfg.reg_lambda, "seed": cfg.seed, "nthread": cfg.nthread, "verbosity": 0}


def load_boosters(path: str | Path, names: Sequence[str | None]) -> list[Any]:
    """One ``xgboost.Booster`` per file name (None stays None: a tier without a model). xgboost is imported only
    when there is a file: its import pulls in scikit-learn, ~2 s of every scoring worker's start-up, which a
    mean-cost model (no boosters) does not need."""
    out: list[Any] = []
    for name in names:
        if name is None:
            out.append(None)
            continue
        import xgboost as xgb

        b = xgb.Booster()
        b.load_model(str(Path(path) / name))
        out.append(b)
    return out


def save_boosters(path: str | Path, boosters: Sequence[Any], prefix: str, fmt: str) -> list[str | None]:
    """Save ``<prefix>_<tier>.<fmt>`` per booster into ``path`` (created); returns the names for the manifest."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names: list[str | None] = []
    for t, b in enumerate(boosters):
        if b is None:
            names.append(None)
            continue
        name = f"{prefix}_{t:02d}.{fmt}"
        b.save_model(str(path / name))
        names.append(name)
    return names
