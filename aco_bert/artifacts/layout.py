"""The typed contracts between stages: every file a stage writes for the next one, and the records inside them.

    train  -> run dir    run.json (RunInfo), train_config.yaml, result.json, oof.safetensors + oof_meta.json,
                         final/ or best/ (router_config.json + model.safetensors + tokenizer files), state/
    stack  -> stack dir  stack.json (StackInfo), signals/, stacker/, calibrators.json, cost_model/, verifier/,
                         stack_report.json          (default: <run>/stack)
    export -> bundle     manifest.json, router.yaml, model.onnx[, model.int8.onnx], tokenizer/, the stack
                         dir's decision files, model_card.md (names in :mod:`aco_bert.artifacts.bundle`)

Why records instead of names: a later stage must never re-look-up what an earlier stage used (a spec by name, a
dataset by a path relative to some other working directory). :class:`RunInfo` therefore stores the *whole* router
spec and an absolute dataset reference, and :class:`StackInfo` the whole spec and routing the stack stage fitted,
so ``stack --run R`` and ``export --checkpoint R`` need nothing repeated and run from any directory.
Torch-free (the runtime and the server import :mod:`aco_bert.artifacts`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aco_bert.artifacts.jsonio import FormatError, json_safe, read_record, write_json

# --- run dir (aco_bert.train) -----------------------------------------------------------------------------------
RUN_INFO = "run.json"
TRAIN_CONFIG = "train_config.yaml"
RESULT = "result.json"
OOF = "oof.safetensors"
OOF_META = "oof_meta.json"
STATE_DIR = "state"
FINAL_DIR = "final"  # k-fold final fit on every prompt
BEST_DIR = "best"  # single / hold-out run
MODEL_CONFIG = "router_config.json"
MODEL_WEIGHTS = "model.safetensors"
METRICS_LOG = "metrics.jsonl"

# --- stack dir (aco_bert.stack) ---------------------------------------------------------------------------------
STACK_DIR = "stack"
STACK_INFO = "stack.json"
STACK_REPORT = "stack_report.json"
STACKER_DIR = "stacker"
CALIBRATORS = "calibrators.json"
COST_MODEL_DIR = "cost_model"
VERIFIER_DIR = "verifier"
SIGNALS_DIR = "signals"  # one folder per fitted stacker signal (aco_bert.signals)

RUN_FORMAT = "aco_bert.run/1"
STACK_FORMAT = "aco_bert.stack/1"


class ContractError(ValueError):
    """A stage's input directory lacks (or has a malformed) contract file; the message says which and why."""


def _read(path: Path, what: str, fmt: str) -> dict[str, Any]:
    try:
        return read_record(path, fmt, f"{what}; is this the output of that stage?")
    except FormatError as e:
        raise ContractError(str(e)) from e


@dataclass
class DatasetRef:
    """Where an outcome table comes from, resolvable from any working directory.

    ``dataset`` is a registry name (``swebench-verified``) or an absolute path; ``data_dir`` is absolute, or None
    for "``$ACO_BERT_DATA_DIR`` / the public source at load time"; ``options`` are the loader's keyword arguments.
    """

    dataset: str
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, dataset: str | os.PathLike, data_dir: str | os.PathLike | None = None,
             options: dict[str, Any] | None = None) -> "DatasetRef":
        """Registry names stay names; a dataset given as an existing file/folder (relative to the current
        directory, else to ``data_dir``) and ``data_dir`` itself become absolute paths."""
        from aco_bert.data.registry import DATASETS

        ds = str(dataset)
        p = Path(ds).expanduser()
        if ds in DATASETS:
            pass
        elif p.exists():
            ds = str(p.resolve())
        elif data_dir is not None and not p.is_absolute() and (Path(data_dir) / p).exists():
            ds = str((Path(data_dir) / p).resolve())
        dd = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
        return cls(ds, dd, dict(options or {}))

    def load(self, data_dir: str | None = None, **extra: Any):
        """The :class:`~aco_bert.data.schema.OutcomeTable` (``data_dir`` overrides the stored one; ``extra``
        loader options are added to the stored ones, e.g. ``with_responses=True`` for the cascade)."""
        from aco_bert.data.registry import load_outcomes

        return load_outcomes(self.dataset, data_dir=data_dir or self.data_dir, **{**self.options, **extra})

    @property
    def label(self) -> str:
        """A short display name: the registry name, or the file's stem."""
        return Path(self.dataset).stem if os.sep in self.dataset else self.dataset

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetRef":
        return cls(str(d["dataset"]), d.get("data_dir"), dict(d.get("options") or {}))


def _spec_from(d: dict[str, Any], where: str):
    from aco_bert.spec import RouterSpec

    try:
        return RouterSpec.from_dict(d, where=where)
    except (TypeError, ValueError) as e:
        raise ContractError(f"{where}: invalid router spec: {e}") from e


@dataclass
class RunInfo:
    """What a training run was trained on: written first by ``train``, read by ``stack``, ``export``, ``report``.

    ``spec`` is the whole router spec (a spec given by path is not lost); ``models`` the head order (= the spec's
    tiers); ``prompt_ids`` the prompts the run saw, in the run's order (after ``max_prompts``), so later stages
    select exactly the same prompts.
    """

    dataset: DatasetRef
    spec: dict[str, Any]
    models: list[str]
    prompt_ids: list[str]
    mode: str = "single"  # single | holdout | kfold
    kfold: int = 0
    max_prompts: int | None = None
    seed: int = 0
    format: str = RUN_FORMAT

    def router_spec(self):
        return _spec_from(self.spec, f"{RUN_INFO}:spec")

    def save(self, run_dir: str | Path) -> Path:
        p = Path(run_dir) / RUN_INFO
        write_json(p, json_safe(asdict(self)))
        return p

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunInfo":
        d = _read(Path(run_dir) / RUN_INFO, "written by `python -m aco_bert.train`", RUN_FORMAT)
        try:
            return cls(dataset=DatasetRef.from_dict(d["dataset"]), spec=dict(d["spec"]), models=list(d["models"]),
                       prompt_ids=[str(p) for p in d["prompt_ids"]], mode=d.get("mode", "single"),
                       kfold=int(d.get("kfold", 0)), max_prompts=d.get("max_prompts"), seed=int(d.get("seed", 0)))
        except (KeyError, TypeError) as e:
            raise ContractError(f"{Path(run_dir) / RUN_INFO}: missing or malformed field {e}") from e


@dataclass
class StackInfo:
    """What the stack stage fitted, for whom: read by ``export`` (which fits nothing itself).

    ``mode``: ``stacked`` (XGBoost stacker over heads + features + embeddings) or ``heads`` (the heads' sigmoid,
    isotonic-calibrated on the out-of-fold logits). ``spec`` is the whole spec the decision layer routes among
    (it may be a subset of the heads' tiers); ``routing`` the chosen policy and knobs, as
    :class:`aco_bert.policies.RoutingConfig` writes them.
    """

    run: str  # absolute path of the run dir
    mode: str
    spec: dict[str, Any]
    dataset: DatasetRef
    routing: dict[str, Any]
    head_models: list[str]
    prompt_ids: list[str]
    format: str = STACK_FORMAT

    def router_spec(self):
        return _spec_from(self.spec, f"{STACK_INFO}:spec")

    def save(self, stack_dir: str | Path) -> Path:
        p = Path(stack_dir) / STACK_INFO
        write_json(p, json_safe(asdict(self)))
        return p

    @classmethod
    def load(cls, stack_dir: str | Path) -> "StackInfo":
        d = _read(Path(stack_dir) / STACK_INFO, "written by `python -m aco_bert.stack`", STACK_FORMAT)
        try:
            return cls(run=str(d["run"]), mode=str(d["mode"]), spec=dict(d["spec"]),
                       dataset=DatasetRef.from_dict(d["dataset"]), routing=dict(d["routing"]),
                       head_models=list(d["head_models"]), prompt_ids=[str(p) for p in d["prompt_ids"]])
        except (KeyError, TypeError) as e:
            raise ContractError(f"{Path(stack_dir) / STACK_INFO}: missing or malformed field {e}") from e


def model_dir(run_or_model: str | Path) -> Path:
    """The saved model inside a run: the folder itself, else ``final/`` (k-fold final fit), else ``best/``."""
    p = Path(run_or_model)
    for cand in (p, p / FINAL_DIR, p / BEST_DIR):
        if (cand / MODEL_CONFIG).exists() and (cand / MODEL_WEIGHTS).exists():
            return cand
    raise ContractError(f"{p}: no saved router ({MODEL_CONFIG} + {MODEL_WEIGHTS}) in it, its {FINAL_DIR}/ or "
                        f"{BEST_DIR}/")


def run_dir_of(model_path: Path) -> Path:
    """The run dir a saved model belongs to (its parent for ``final/`` and ``best/``)."""
    return model_path.parent if model_path.name in (FINAL_DIR, BEST_DIR) else model_path
