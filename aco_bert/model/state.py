"""Resumable training state, written as safetensors + JSON (never pickle): ``<work_dir>/state/step_N``.

Not ``accelerator.save_state``: its optimizer and RNG files are pickles, which a house rule forbids. A state holds
the trainable weights, the AdamW moments, the scheduler, the AMP scaler and the trainer's counters; dropout
randomness is re-seeded from (seed, epoch, batch) at every batch (:func:`batch_seed`), so nothing else is needed
for a resumed run to end with the weights of an uninterrupted one. :class:`MetricsLog` keeps ``metrics.jsonl``
in step with the state: a resumed run first drops the records written after the state it resumes from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aco_bert.artifacts.jsonio import json_safe, write_json
from aco_bert.artifacts.layout import STATE_DIR


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: int = 0  # epoch in progress (or the next one, when step_in_epoch == 0)
    step_in_epoch: int = 0  # optimizer steps done inside `epoch`
    best_metric: float | None = None
    best_epoch: int = 0  # 1-based epoch of the best validation score (0: none yet)
    best_step: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    train_samples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    log_records: int | None = None  # metrics.jsonl records written when this state was saved


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changes. Frozen ones are rebuilt from the config (pretrained or seeded weights),
    so a frozen-encoder checkpoint holds the heads only."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, path: Path) -> None:
    """Copy :func:`trainable_state` weights saved at ``path`` into ``model`` (same names required)."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys():
        raise ValueError(f"{path}: trainable parameters differ from this model's "
                         f"(missing {sorted(params.keys() - saved.keys())[:5]}, extra {sorted(saved.keys() - params.keys())[:5]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n].to(p.device, p.dtype))


def _save_optimizer(optimizer, directory: Path) -> None:
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(directory / "optimizer.safetensors"))
    write_json(directory / "optimizer.json", {"param_groups": sd["param_groups"], "scalars": scalars})


def _load_optimizer(optimizer, directory: Path) -> None:
    from safetensors.torch import load_file

    meta = json.loads((directory / "optimizer.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(load_file(str(directory / "optimizer.safetensors")).items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = meta["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(accelerator, model, optimizer, scheduler, state: TrainerState, work_dir: Path,
                        keep: int = 1) -> Path:
    """Write ``<work_dir>/state/step_N`` (weights, AdamW moments, scheduler, counters); keep the newest ``keep``."""
    from safetensors.torch import save_file

    root = work_dir / STATE_DIR
    final = root / f"step_{state.global_step:08d}"
    if accelerator.is_main_process:
        tmp = root / f".tmp_step_{state.global_step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "model.safetensors"))
        _save_optimizer(optimizer, tmp)
        write_json(tmp / "scheduler.json", scheduler.state_dict())
        if accelerator.scaler is not None:
            write_json(tmp / "scaler.json", accelerator.scaler.state_dict())
        write_json(tmp / "trainer_state.json", dataclasses.asdict(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # a kill mid-write leaves a .tmp folder, never a half-written step folder
        for old in sorted(root.glob("step_*"))[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def latest_state_dir(work_dir: Path) -> Path | None:
    steps = sorted((work_dir / STATE_DIR).glob("step_*"))
    return steps[-1] if steps else None


def load_training_state(accelerator, model, optimizer, scheduler, directory: Path) -> TrainerState:
    """Restore what :func:`save_training_state` wrote into the (prepared) model, optimizer and scheduler."""
    load_trainable_state(accelerator.unwrap_model(model), directory / "model.safetensors")
    _load_optimizer(optimizer, directory)
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text()))
    if accelerator.scaler is not None and (directory / "scaler.json").exists():
        accelerator.scaler.load_state_dict(json.loads((directory / "scaler.json").read_text()))
    raw = json.loads((directory / "trainer_state.json").read_text())
    return TrainerState(**raw)


def batch_seed(seed: int, epoch: int, micro: int, process: int) -> int:
    """The torch seed of one micro-batch: dropout draws depend on where a batch is, not on what ran before."""
    return int(np.random.SeedSequence([seed, epoch, micro, process]).generate_state(1)[0])


class MetricsLog:
    """``metrics.jsonl`` of one fit, one JSON record per line, counted so that a training state can say how many
    records it has seen.

    Why: a resumed run replays the steps after its state, and appending their records again would log those steps
    twice. :meth:`start` therefore keeps exactly the records written before the state (by count; by ``step`` for
    a state that predates the count), and a fresh run starts an empty log.
    """

    def __init__(self, path: Path, tag: str = "", enabled: bool = True):
        self.path, self.tag, self.enabled = path, tag, enabled
        self.n_records = 0

    def start(self, resumed: TrainerState | None) -> None:
        """Empty the log (fresh run), or cut it back to what it held when ``resumed`` was saved."""
        if not self.enabled:
            return
        lines: list[str] = []
        if resumed is not None and self.path.exists():
            lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            if resumed.log_records is not None:
                lines = lines[: resumed.log_records]
            else:
                lines = [ln for ln in lines if json.loads(ln).get("step", 0) <= resumed.global_step]
        if lines or self.path.exists():
            self.path.write_text("".join(ln + "\n" for ln in lines))
        self.n_records = len(lines)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(json_safe({"tag": self.tag, **record})) + "\n")
        self.n_records += 1

    def scalars(self, record: dict[str, Any]) -> dict[str, float]:
        """The finite numbers of ``record``, tag-prefixed: what the accelerate trackers get."""
        return {f"{self.tag}{k}": v for k, v in record.items() if isinstance(v, (int, float)) and math.isfinite(v)}
