"""Train the multi-head router with accelerate: single run, hold-out test split, or K-fold out-of-fold predictions.

    python -m aco_bert.train --config configs/minilm-cpu.yaml [--output_dir DIR --max_steps N --seed S ...]
    accelerate launch -m aco_bert.train --config configs/distilbert-gpu.yaml

This module holds the three drivers and the verb; the parts live beside it: :mod:`.data` (targets, batching),
:mod:`.fit` (one training run, resumable), :mod:`.state` (the safetensors + JSON resumable state),
:mod:`.embeddings` (frozen-encoder cache), :mod:`.metrics` (validation metrics).

Every run writes ``run.json`` (:class:`aco_bert.artifacts.layout.RunInfo`) and ``train_config.yaml`` first and
``result.json`` when it finishes. K-fold mode writes the files the stacking stage reads (the contract; do not
rename): ``<output_dir>/oof.safetensors`` -- ``logits`` (P, T) float32, ``embeddings`` (P, H) float32 (pooled),
``fold`` (P,) int64, and ``cost`` (P, T) float32 (predicted USD) when cost heads are on;
``<output_dir>/oof_meta.json`` -- ``prompt_ids``, ``models`` (tier order), ``dataset``, ``spec``,
``per_tier_auc``, ``mean_auc``, ``config``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aco_bert.artifacts.jsonio import json_safe, write_json
from aco_bert.artifacts.layout import BEST_DIR, FINAL_DIR, MODEL_WEIGHTS, OOF, OOF_META, RESULT, TRAIN_CONFIG
from aco_bert.config import run_verb, save_config
from aco_bert.model.chunking import kept_tokens
from aco_bert.model.data import PromptInputs, RouterData, carve_val, load_router_data, run_info
from aco_bert.model.embeddings import cached_embeddings
from aco_bert.model.fit import fit, predict
from aco_bert.model.metrics import tier_metrics
from aco_bert.model.tokenization import load_tokenizer, pad_token_id
from aco_bert.model.training_args import TrainConfig

logger = logging.getLogger(__name__)

# Files of the hold-out and k-fold drivers (inside the run dir; the stacking contract is OOF + OOF_META).
TEST_PREDICTIONS = "test_predictions.safetensors"
TEST_META = "test_meta.json"
FOLD_PREDICTIONS = "predictions.safetensors"  # in fold_<k>/
FOLD_RESULT = "fold_result.json"  # in fold_<k>/
FINAL_RUN_DIR = "final_run"  # work dir of the k-fold final fit (its log and resumable state)
FINAL_DONE = "done"  # in final_run/: the final fit finished


@dataclass
class TrainResult:
    output_dir: str
    mode: str  # single | holdout | kfold
    model_dir: str | None
    metrics: dict[str, Any]  # single: validation; holdout: test; kfold: out-of-fold
    global_step: int
    samples_per_second: float
    folds: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    data_notes: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_auc(self) -> float:
        v = self.metrics.get("mean_auc")
        return float("nan") if v is None else float(v)

    @property
    def per_tier_auc(self) -> list[float]:
        return [float("nan") if v is None else float(v) for v in self.metrics.get("per_tier_auc", [])]


def tracker_names(cfg: TrainConfig) -> list[str]:
    """The accelerate trackers of ``report_to`` that are installed (a missing one is a warning, not an error)."""
    if not cfg.with_tracking:
        return []
    import importlib.util

    names = []
    for n in [s.strip() for s in cfg.report_to.split(",") if s.strip()]:
        module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                  "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}.get(n, n)
        if n == "tensorboard" and importlib.util.find_spec("tensorboard") is None \
                and importlib.util.find_spec("tensorboardX") is None:
            logger.warning("report_to=tensorboard but tensorboard is not installed: tracking skipped "
                           "(metrics still go to metrics.jsonl)")
            continue
        if n != "tensorboard" and importlib.util.find_spec(module) is None:
            logger.warning("tracker %r is not installed: skipped", n)
            continue
        names.append(n)
    return names


def has_unused_heads(cfg: TrainConfig) -> bool:
    """A head the loss never reaches (its weight is 0): DDP must then be told to look for unused parameters, or
    it waits forever for their gradients (the error "Expected to have finished reduction in the prior iteration")."""
    return bool((cfg.cost_heads and not cfg.cost_loss_weight) or (cfg.aux_targets and not cfg.aux_loss_weight))


def _make_accelerator(cfg: TrainConfig, out: Path):
    from accelerate import Accelerator, DistributedDataParallelKwargs

    trackers = tracker_names(cfg)
    # the DDP kwargs only matter under `accelerate launch --num_processes N > 1`; one process ignores them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=has_unused_heads(cfg))
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu,
                      gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                      log_with=trackers or None, project_dir=str(out), kwargs_handlers=[ddp])
    if trackers:
        flat = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, (int, float, str, bool))}
        acc.init_trackers(cfg.run_name, config=flat)
    return acc


def _save_predictions(path: Path, pred: dict[str, np.ndarray], idx: np.ndarray) -> None:
    from safetensors.numpy import save_file

    arrays = {"index": idx.astype(np.int64), "logits": pred["logits"][idx].astype(np.float32),
              "embeddings": pred["pooled"][idx].astype(np.float32)}
    if "cost" in pred:
        arrays["cost"] = np.clip(np.expm1(pred["cost"][idx]), 0, None).astype(np.float32)
    save_file(arrays, str(path))


def train(cfg: TrainConfig) -> TrainResult:
    """Train according to ``cfg``: a single run, a hold-out evaluation, or K folds (+ optional final fit)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> TrainResult:
    out = cfg.resolved_output_dir
    if cfg.resume and (out / RESULT).exists():
        logger.info("%s already finished; returning its result", out)
        return TrainResult(**json.loads((out / RESULT).read_text()))
    out.mkdir(parents=True, exist_ok=True)
    accelerator = _make_accelerator(cfg, out)
    if accelerator.is_main_process:
        save_config(cfg, out / TRAIN_CONFIG)
    data = load_router_data(cfg)
    if accelerator.is_main_process:
        run_info(cfg, data).save(out)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.encoder)
    pad_id = pad_token_id(tokenizer)
    t0 = time.perf_counter()
    token_ids = cfg.text_truncation.encode_ids(tokenizer, data.texts)
    logger.info("tokenised %d prompts in %.1fs (mean %.0f tokens kept, %s of %d)", data.n_prompts,
                time.perf_counter() - t0, np.mean([kept_tokens(t) for t in token_ids]), cfg.truncation,
                cfg.max_length)
    embeddings = cached_embeddings(cfg, data, token_ids, pad_id, accelerator) if cfg.freeze_encoder else None
    inputs = PromptInputs(data, token_ids, pad_id, embeddings)

    if cfg.kfold:
        result = _train_kfold(cfg, inputs, out, accelerator)
    elif cfg.holdout:
        result = _train_holdout(cfg, inputs, out, accelerator)
    else:
        train_idx, val_idx = carve_val(np.arange(data.n_prompts), cfg.val_fraction, cfg.seed, 0)
        r = fit(cfg, inputs, train_idx, val_idx, out, out / BEST_DIR, accelerator)
        result = TrainResult(str(out), "single", str(r.best_dir), r.metrics, r.global_step, r.samples_per_second,
                             history=r.history, stopped=r.stopped)
    result.data_notes = data.notes
    if accelerator.is_main_process and not result.stopped:
        write_json(out / RESULT, dataclasses.asdict(result))
    accelerator.wait_for_everyone()
    if accelerator.trackers:
        accelerator.end_training()
    accelerator.free_memory()
    return result


def _predict_on(cfg: TrainConfig, inputs: PromptInputs, model, idx: np.ndarray, accelerator) -> dict[str, np.ndarray]:
    dl = accelerator.prepare(inputs.eval_loader(cfg, idx))
    return predict(model, dl, accelerator, inputs.data.n_prompts)


def _train_holdout(cfg: TrainConfig, inputs: PromptInputs, out: Path, accelerator) -> TrainResult:
    data = inputs.data
    col, _, value = cfg.holdout.partition("=")
    if col not in data.meta.columns:
        raise ValueError(f"holdout column {col!r} is not a prompt meta column: {list(data.meta.columns)}")
    is_test = (data.meta[col].astype(str) == value).to_numpy()
    if not is_test.any() or is_test.all():
        raise ValueError(f"holdout {cfg.holdout!r} selects {int(is_test.sum())} of {data.n_prompts} prompts")
    test_idx = np.flatnonzero(is_test)
    train_idx, val_idx = carve_val(np.flatnonzero(~is_test), cfg.val_fraction, cfg.seed, 0)
    r = fit(cfg, inputs, train_idx, val_idx, out, out / BEST_DIR, accelerator)
    if r.stopped:
        return TrainResult(str(out), "holdout", None, {}, r.global_step, 0.0, stopped=True)
    pred = _predict_on(cfg, inputs, r.model, test_idx, accelerator)
    metrics = tier_metrics(pred["logits"][test_idx], data.targets[test_idx])
    metrics["val"] = r.metrics
    if accelerator.is_main_process:
        _save_predictions(out / TEST_PREDICTIONS, pred, test_idx)
        write_json(out / TEST_META, {"prompt_ids": [data.prompt_ids[i] for i in test_idx],
                                     "models": data.models, "dataset": data.dataset, "spec": data.spec,
                                     "per_tier_auc": metrics["per_tier_auc"], "mean_auc": metrics["mean_auc"],
                                     "config": dataclasses.asdict(cfg)})
    return TrainResult(str(out), "holdout", str(r.best_dir), metrics, r.global_step, r.samples_per_second,
                       history=r.history)


def _write_oof(cfg: TrainConfig, data: RouterData, out: Path, arrays: dict[str, np.ndarray],
               metrics: dict[str, Any]) -> None:
    """The stacking contract: ``oof.safetensors`` + ``oof_meta.json`` (see the module docstring)."""
    from safetensors.numpy import save_file

    save_file(arrays, str(out / OOF), metadata={"dataset": data.dataset, "spec": str(data.spec)})
    write_json(out / OOF_META, {
        "prompt_ids": data.prompt_ids, "models": data.models, "dataset": data.dataset, "spec": data.spec,
        "per_tier_auc": metrics["per_tier_auc"], "mean_auc": metrics["mean_auc"],
        "config": dataclasses.asdict(cfg), "n_folds": cfg.kfold, "cost_units": "usd",
        "per_tier_brier": metrics["per_tier_brier"], "per_tier_logloss": metrics["per_tier_logloss"]})


def _train_kfold(cfg: TrainConfig, inputs: PromptInputs, out: Path, accelerator) -> TrainResult:
    from safetensors.numpy import load_file

    from aco_bert.data.splits import kfold

    data = inputs.data
    folds = kfold(data.prompt_ids, cfg.kfold, cfg.seed if cfg.fold_seed is None else cfg.fold_seed)
    P, T = data.n_prompts, len(data.models)
    oof_logits = np.full((P, T), np.nan, dtype=np.float32)
    oof_fold = np.full(P, -1, dtype=np.int64)
    oof_emb: np.ndarray | None = None
    oof_cost = np.full((P, T), np.nan, dtype=np.float32) if cfg.cost_heads else None
    summaries, best_epochs, sps, steps = [], [], [], 0
    for f in folds:
        fdir = out / f"fold_{f.index}"
        pred_path = fdir / FOLD_PREDICTIONS
        if not (cfg.resume and pred_path.exists()):
            train_idx, val_idx = carve_val(f.train, cfg.val_fraction, cfg.seed, 1 + f.index)
            r = fit(cfg, inputs, train_idx, val_idx, fdir, fdir / BEST_DIR, accelerator, tag=f"fold{f.index}/")
            if r.stopped:
                return TrainResult(str(out), "kfold", None, {}, steps + r.global_step, 0.0, folds=summaries,
                                   stopped=True)
            pred = _predict_on(cfg, inputs, r.model, f.test, accelerator)
            fm = tier_metrics(pred["logits"][f.test], data.targets[f.test])
            if accelerator.is_main_process:
                _save_predictions(pred_path, pred, f.test)
                write_json(fdir / FOLD_RESULT, {
                    "fold": f.index, "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(f.test),
                    "best_epoch": r.best_epoch, "epochs_run": r.epochs_run, "global_step": r.global_step,
                    "samples_per_second": r.samples_per_second, "val": r.metrics, "test": fm})
                if not cfg.save_fold_models:
                    shutil.rmtree(fdir / BEST_DIR, ignore_errors=True)
            accelerator.wait_for_everyone()
            accelerator.free_memory()
        fr = json.loads((fdir / FOLD_RESULT).read_text())
        saved = load_file(str(pred_path))
        idx = saved["index"]
        if not np.array_equal(np.sort(idx), np.sort(f.test)):
            raise ValueError(f"{pred_path} does not hold fold {f.index}'s test prompts (stale output_dir?)")
        oof_logits[idx] = saved["logits"]
        oof_fold[idx] = f.index
        if oof_emb is None:
            oof_emb = np.full((P, saved["embeddings"].shape[1]), np.nan, dtype=np.float32)
        oof_emb[idx] = saved["embeddings"]
        if oof_cost is not None and "cost" in saved:
            oof_cost[idx] = saved["cost"]
        summaries.append({k: fr[k] for k in ("fold", "n_train", "n_val", "n_test", "best_epoch", "epochs_run",
                                             "global_step", "samples_per_second")}
                         | {"test_mean_auc": fr["test"]["mean_auc"]})
        best_epochs.append(fr["best_epoch"])
        sps.append(fr["samples_per_second"] or float("nan"))
        steps += fr["global_step"]
    if (oof_fold < 0).any():
        raise AssertionError("k-fold left prompts without an out-of-fold prediction")
    metrics = tier_metrics(oof_logits, data.targets)
    if accelerator.is_main_process:
        arrays = {"logits": oof_logits, "embeddings": oof_emb, "fold": oof_fold}
        if oof_cost is not None:
            arrays["cost"] = oof_cost
        _write_oof(cfg, data, out, arrays, metrics)
    accelerator.wait_for_everyone()
    model_dir = None
    if cfg.final_fit:
        # All prompts, no validation: train for the typical best epoch of the folds (when they selected one).
        used_val = cfg.val_fraction > 0 and any(b > 0 for b in best_epochs)
        epochs = max(1, int(round(float(np.median(best_epochs))))) if used_val else None
        final_dir, run_dir = out / FINAL_DIR, out / FINAL_RUN_DIR
        if not (cfg.resume and (final_dir / MODEL_WEIGHTS).exists() and (run_dir / FINAL_DONE).exists()):
            r = fit(cfg, inputs, np.arange(P), np.array([], dtype=np.int64), run_dir, final_dir, accelerator,
                    num_epochs=epochs, max_steps=None if epochs else cfg.max_steps, tag="final/")
            if r.stopped:
                return TrainResult(str(out), "kfold", None, metrics, steps + r.global_step, 0.0, folds=summaries,
                                   stopped=True)
            steps += r.global_step
            if accelerator.is_main_process:
                (run_dir / FINAL_DONE).write_text(json.dumps({"epochs": r.epochs_run, "steps": r.global_step}))
        model_dir = str(final_dir)
    return TrainResult(str(out), "kfold", model_dir, metrics, steps, float(np.nanmean(sps)) if sps else float("nan"),
                       folds=summaries)


# --- the verb ---------------------------------------------------------------------------------------------------
PROG = "python -m aco_bert.train"
DESCRIPTION = ("Train the multi-head router: a single run, a hold-out test split (--holdout column=value) or K "
               "folds of out-of-fold predictions (--kfold K). Also `accelerate launch -m aco_bert.train ...`. "
               "Every flag is a TrainConfig field; flags override the --config YAML.")


def _run(cfg: TrainConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(cfg)
    summary = {"output_dir": result.output_dir, "mode": result.mode, "model_dir": result.model_dir,
               "mean_auc": result.mean_auc, "per_tier_auc": result.per_tier_auc, "global_step": result.global_step,
               "samples_per_second": result.samples_per_second, "stopped": result.stopped}
    from accelerate import PartialState

    if PartialState().is_main_process:  # one summary line per run, not one per process
        print(json.dumps(json_safe(summary)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``--config FILE.yaml`` plus any ``--<TrainConfig field> value``; prints a one-line JSON summary. A bad
    command line or config is one line on stderr and exit code 2; ``--help`` lists every field."""
    return run_verb(_run, TrainConfig, argv, PROG, DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
