"""One training run of the router on a set of prompts: :func:`fit` (train, validate, select, save) and
:func:`predict` (every output of the model for the prompts a loader yields).

The loop has the shape of Hugging Face's ``run_glue_no_trainer.py``: an ``Accelerator`` owns devices, mixed
precision and gradient accumulation; batches are length-grouped and padded per batch; AdamW with linear warmup;
per-epoch validation (per-tier AUC, Brier, log-loss on observed cells) with early stopping; the best model is
saved with ``RouterModel.save_pretrained``. A run killed at any step resumes exactly (:mod:`aco_bert.model.state`):
it skips the batches already seen with ``accelerator.skip_first_batches`` and draws the same dropout masks.
Under N > 1 processes (DDP) each prompt is trained on once per epoch (:mod:`aco_bert.model.sharding`), predictions
are gathered from every process, files are written by the main process only, and logged losses are averaged over
the processes.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from aco_bert.artifacts.jsonio import json_safe
from aco_bert.artifacts.layout import METRICS_LOG, STATE_DIR
from aco_bert.model.data import LengthGroupedBatchSampler, Positions, PromptInputs, model_config_for, model_inputs
from aco_bert.model.lora import add_lora, merge_lora
from aco_bert.model.losses import LossWeights, RouterLoss, balanced_pos_weight
from aco_bert.model.metrics import tier_metrics
from aco_bert.model.modeling import RouterModel
from aco_bert.model.sharding import EvenShardBatches
from aco_bert.model.state import (MetricsLog, TrainerState, batch_seed, latest_state_dir, load_trainable_state,
                                  load_training_state, save_training_state, trainable_state)
from aco_bert.model.training_args import TrainConfig

logger = logging.getLogger(__name__)

BEST_PARAMS = "best_params.safetensors"  # trainable weights of the best epoch so far (removed when the fit ends)


@dataclass
class FitResult:
    best_dir: Path
    metrics: dict[str, Any]  # validation metrics of the selected model ({} without validation)
    history: list[dict[str, Any]]
    global_step: int
    best_epoch: int
    epochs_run: int
    samples_per_second: float
    stopped: bool = False  # stop_after_steps hit: state saved, run not finished
    model: Any = field(default=None, repr=False)  # the prepared model holding the selected weights


def configure_trainable(model: RouterModel, cfg: TrainConfig) -> RouterModel:
    """Apply the training mode to a fresh model: frozen encoder (heads only), partial (``freeze_layers``), LoRA
    adapters on a frozen encoder (``lora_r``), or full fine-tune (none of them). Heads always train."""
    if cfg.freeze_encoder:
        model.freeze_encoder()
    elif cfg.freeze_layers:
        model.freeze_encoder(cfg.freeze_layers)
    elif cfg.lora_r:
        add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    return model


def param_groups(model: RouterModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: encoder vs heads (own learning rates), no weight decay on biases and norms."""
    head_lr = cfg.head_learning_rate or cfg.learning_rate
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("encoder.")
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name
        groups.setdefault((is_head, no_decay), []).append(p)
    return [{"params": ps, "lr": head_lr if is_head else cfg.learning_rate,
             "weight_decay": 0.0 if no_decay else cfg.weight_decay}
            for (is_head, no_decay), ps in sorted(groups.items())]


def mean_across_processes(accelerator, sums: dict[str, float], n: int) -> dict[str, float]:
    """The logged training losses averaged over every process's micro-batches, not the main process's alone (a
    collective: every process calls it at the same step, with the same keys)."""
    keys = list(sums)  # the same insertion order on every process (same code path)
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum").cpu()
    return {k: float(t[i] / t[-1]) for i, k in enumerate(keys)}


@torch.no_grad()
def predict(model, dataloader, accelerator, n_total: int) -> dict[str, np.ndarray]:
    """Predictions for every index the dataloader yields: logits, pooled, cost (log1p USD), keyed by position
    in ``index``; gathered across processes (duplicates from even batching collapse onto the same index)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"index": [], "logits": [], "pooled": [], "cost": []}
    for batch in dataloader:
        out = model(**model_inputs(batch))
        tensors = {"index": batch["index"], "logits": out.logits.float(), "pooled": out.pooled.float()}
        if out.cost is not None:
            tensors["cost"] = out.cost.float()
        if accelerator.num_processes > 1:
            tensors["index"] = accelerator.pad_across_processes(tensors["index"], dim=0, pad_index=-1)
            tensors = {k: (v if k == "index" else accelerator.pad_across_processes(v, dim=0)) for k, v in tensors.items()}
            tensors = {k: accelerator.gather(v) for k, v in tensors.items()}
        for k, v in tensors.items():
            parts[k].append(v.cpu().numpy())
    index = np.concatenate(parts["index"])
    keep = index >= 0
    res = {"seen": np.zeros(n_total, dtype=bool)}
    res["seen"][index[keep]] = True
    for k in ("logits", "pooled", "cost"):
        if parts[k]:
            arr = np.concatenate(parts[k])[keep]
            full = np.full((n_total, arr.shape[1]), np.nan, dtype=np.float32)
            full[index[keep]] = arr
            res[k] = full
    model.train()
    return res


def fit(cfg: TrainConfig, inputs: PromptInputs, train_idx: np.ndarray, val_idx: np.ndarray, work_dir: Path,
        best_dir: Path, accelerator, num_epochs: int | None = None, max_steps: int | None = None,
        tag: str = "") -> FitResult:
    """Train on ``train_idx``; validate on ``val_idx`` each epoch; save the best (or last) model to ``best_dir``."""
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    data = inputs.data
    work_dir.mkdir(parents=True, exist_ok=True)
    num_epochs = cfg.num_epochs if num_epochs is None else num_epochs
    max_steps = cfg.max_steps if max_steps is None else max_steps
    torch.manual_seed(cfg.seed)
    model = configure_trainable(RouterModel(model_config_for(cfg, data)), cfg)

    sampler = LengthGroupedBatchSampler(inputs.lengths[train_idx], cfg.batch_size, shuffle=True, seed=cfg.seed,
                                        group=cfg.length_grouping and inputs.embeddings is None)
    # N > 1 processes: every prompt once per epoch, none dropped or repeated by accelerate's sharding (.sharding)
    batches = EvenShardBatches(sampler, accelerator.num_processes) if accelerator.num_processes > 1 else sampler
    train_dl = DataLoader(Positions(train_idx), batch_sampler=batches, collate_fn=inputs.collator(cfg),
                          num_workers=cfg.num_workers)
    val_dl = inputs.eval_loader(cfg, val_idx) if len(val_idx) else None

    pw = None
    if cfg.pos_weight == "balanced":
        pw = balanced_pos_weight(data.targets[train_idx])
    elif cfg.pos_weight is not None:
        pw = np.full(len(data.models), float(cfg.pos_weight), dtype=np.float32)
    loss_fn = RouterLoss(LossWeights(cfg.success_loss_weight, cfg.cost_loss_weight, cfg.aux_loss_weight), pw,
                         cfg.label_smoothing)

    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.learning_rate)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    if val_dl is not None:
        val_dl = accelerator.prepare(val_dl)
    steps_per_epoch = math.ceil(len(train_dl) / cfg.gradient_accumulation_steps)
    if max_steps is None:
        max_steps = num_epochs * steps_per_epoch
    else:
        num_epochs = math.ceil(max_steps / steps_per_epoch)
    # run_glue_no_trainer: the prepared scheduler steps once per process per optimizer step.
    scheduler = get_scheduler("linear", optimizer,
                              num_warmup_steps=int(cfg.warmup_ratio * max_steps) * accelerator.num_processes,
                              num_training_steps=max_steps * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)
    plan = {"max_steps": max_steps, "num_epochs": num_epochs, "steps_per_epoch": steps_per_epoch,
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "num_processes": accelerator.num_processes}

    main = accelerator.is_main_process
    best_params = work_dir / BEST_PARAMS
    state, resumed = TrainerState(plan=plan), None
    if cfg.resume and (sd := latest_state_dir(work_dir)) is not None:
        state = resumed = load_training_state(accelerator, model, optimizer, scheduler, sd)
        if state.plan != plan:
            raise ValueError(f"cannot resume from {sd}: it was planned as {state.plan}, this run as {plan} "
                             "(resume with the same config, data and number of processes)")
        logger.info("%sresumed from %s at step %d (epoch %d, step %d in epoch)", tag, sd, state.global_step,
                    state.epoch, state.step_in_epoch)
    elif not cfg.resume:
        shutil.rmtree(work_dir / STATE_DIR, ignore_errors=True)
        best_params.unlink(missing_ok=True)
    accelerator.wait_for_everyone()  # every process has read (or cleared) the old state before any writes anew
    metrics_log = MetricsLog(work_dir / METRICS_LOG, tag, enabled=main)
    metrics_log.start(resumed)
    higher_better = cfg.metric_for_best == "mean_auc"

    def log(record: dict[str, Any]) -> None:
        metrics_log.write(record)
        if accelerator.trackers:
            accelerator.log(metrics_log.scalars(record), step=state.global_step)

    def checkpoint() -> None:
        state.log_records = metrics_log.n_records
        save_training_state(accelerator, model, optimizer, scheduler, state, work_dir, cfg.save_total_limit)

    def save_best() -> None:
        if main:
            from safetensors.torch import save_file

            tmp = best_params.with_suffix(".tmp")
            save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp))
            tmp.replace(best_params)
        accelerator.wait_for_everyone()

    bar = tqdm(total=max_steps, initial=state.global_step, desc=f"train {tag}".strip(),
               disable=not (cfg.progress_bar and accelerator.is_local_main_process), dynamic_ncols=True)
    running: dict[str, float] = {}
    n_running = 0
    stop = state.global_step >= max_steps
    model.train()
    for epoch in range(state.epoch, num_epochs):
        if stop:
            break
        # The prepared loader re-sets its sampler's epoch from its own counter on every iter(): set both, before
        # skip_first_batches copies that counter into the skipping loader.
        sampler.set_epoch(epoch)
        train_dl.set_epoch(epoch)
        skip = state.step_in_epoch * cfg.gradient_accumulation_steps
        dl = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        micro = skip
        t0 = time.perf_counter()
        for batch in dl:
            torch.manual_seed(batch_seed(cfg.seed, epoch, micro, accelerator.process_index))
            with accelerator.accumulate(model):
                out = model(**model_inputs(batch))
                loss, parts = loss_fn(out, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            micro += 1
            state.train_samples += len(batch["index"]) * accelerator.num_processes
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                running[k] = running.get(k, 0.0) + v
            n_running += 1
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            state.step_in_epoch += 1
            bar.update(1)
            if cfg.logging_steps and state.global_step % cfg.logging_steps == 0:
                avg = {k: v / n_running for k, v in running.items()} if accelerator.num_processes == 1 \
                    else mean_across_processes(accelerator, running, n_running)
                bar.set_postfix(loss=f"{avg['loss']:.4f}")
                log({"step": state.global_step, "epoch": epoch, "lr": scheduler.get_last_lr()[-1],
                     **{f"train_{k}": v for k, v in avg.items()}})
                running, n_running = {}, 0
            if state.global_step >= max_steps:
                stop = True
                dl.end()  # leaving mid-iteration: unregister the loader from accelerate's gradient state
                break
            if cfg.save_steps and state.global_step % cfg.save_steps == 0:
                state.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
            if cfg.stop_after_steps is not None and state.global_step >= cfg.stop_after_steps:
                state.train_seconds += time.perf_counter() - t0
                if not (cfg.save_steps and state.global_step % cfg.save_steps == 0):
                    checkpoint()
                bar.close()
                dl.end()
                logger.info("%sstopped after step %d (stop_after_steps); resume with --resume", tag, state.global_step)
                return FitResult(best_dir, {}, state.history, state.global_step, state.best_epoch, epoch, 0.0, True)
        state.train_seconds += time.perf_counter() - t0
        # ---- end of epoch (or of training): validate, select, maybe stop early
        state.epoch, state.step_in_epoch = epoch + 1, 0
        record: dict[str, Any] = {"epoch": epoch + 1, "step": state.global_step}
        if val_dl is not None and (cfg.eval_every_epoch or stop or epoch + 1 == num_epochs):
            pred = predict(model, val_dl, accelerator, data.n_prompts)
            m = tier_metrics(pred["logits"][val_idx], data.targets[val_idx])
            record.update({"val_mean_auc": m["mean_auc"], "val_brier": m["brier"], "val_logloss": m["logloss"],
                           "val_per_tier_auc": m["per_tier_auc"]})
            score = m["mean_auc"] if higher_better else m["logloss"]
            better = state.best_metric is None or (math.isfinite(score) and (
                score > state.best_metric if higher_better else score < state.best_metric))
            if better:
                state.best_metric, state.best_epoch, state.best_step, state.bad_epochs = score, epoch + 1, state.global_step, 0
                save_best()
            else:
                state.bad_epochs += 1
            record["best_epoch"] = state.best_epoch
            if cfg.early_stopping_patience is not None and state.bad_epochs >= cfg.early_stopping_patience:
                logger.info("%searly stopping after epoch %d (best epoch %d)", tag, epoch + 1, state.best_epoch)
                stop = True
        state.history.append(json_safe(record))
        log({k: v for k, v in record.items() if not isinstance(v, list)})
        if not cfg.save_steps and not stop and epoch + 1 < num_epochs:
            checkpoint()
    bar.close()

    if val_dl is None:  # nothing to select on: the last model is the model
        state.best_epoch, state.best_step = state.epoch, state.global_step
    else:
        load_trainable_state(accelerator.unwrap_model(model), best_params)
        accelerator.wait_for_everyone()  # every process has read best_params before the main one deletes it
    # LoRA: fold the adapters into the weights, so the saved model and every prediction made from it (validation
    # below, the caller's test/OOF predictions) come from the same plain RouterModel that from_pretrained rebuilds.
    merge_lora(accelerator.unwrap_model(model))
    if main:
        accelerator.unwrap_model(model).save_pretrained(best_dir)
        best_params.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    metrics: dict[str, Any] = {}
    if val_dl is not None:
        pred = predict(model, val_dl, accelerator, data.n_prompts)
        metrics = tier_metrics(pred["logits"][val_idx], data.targets[val_idx])
    sps = state.train_samples / state.train_seconds if state.train_seconds > 0 else float("nan")
    shutil.rmtree(work_dir / STATE_DIR, ignore_errors=True)  # finished: the resumable state has done its job
    return FitResult(best_dir, metrics, state.history, state.global_step, state.best_epoch, state.epoch, sps,
                     model=model)
