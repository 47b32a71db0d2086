"""Train the multi-head router with accelerate: single run, hold-out test split, or K-fold out-of-fold predictions.

    python -m aco_bert.train --config configs/minilm-cpu.yaml [--output_dir DIR --max_steps N --seed S ...]
    accelerate launch -m aco_bert.train --config configs/distilbert-gpu.yaml

The loop has the shape of Hugging Face's ``run_glue_no_trainer.py``: an ``Accelerator`` owns devices, mixed
precision and gradient accumulation; batches are length-grouped and padded per batch; AdamW with linear warmup;
per-epoch validation (per-tier AUC, Brier, log-loss on observed cells) with early stopping; the best model is
saved with ``RouterModel.save_pretrained``.

Resumable state (``<work>/state/step_N``) is written as safetensors + JSON (model, AdamW moments, scheduler,
trainer counters), not with ``accelerator.save_state``, whose optimizer/RNG files are pickles (a house rule forbids
pickle artifacts). Dropout randomness is re-seeded from (seed, epoch, batch) at every batch, so a resumed run (it
skips the batches already seen with ``accelerator.skip_first_batches``) draws exactly what an uninterrupted one
would, and ends with the same weights.

K-fold mode writes the files the stacking stage reads (the contract; do not rename):
``<output_dir>/oof.safetensors`` -- ``logits`` (P, T) float32, ``embeddings`` (P, H) float32 (pooled), ``fold`` (P,)
int64, and ``cost`` (P, T) float32 (predicted USD) when cost heads are on; ``<output_dir>/oof_meta.json`` --
``prompt_ids``, ``models`` (tier order), ``dataset``, ``spec``, ``per_tier_auc``, ``mean_auc``, ``config``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from aco_bert.config import load_config, parse_overrides
from aco_bert.artifacts.jsonio import json_safe, write_json
from aco_bert.artifacts.layout import DatasetRef, RunInfo
from aco_bert.model.losses import IGNORE_INDEX, LossWeights, RouterLoss, balanced_pos_weight
from aco_bert.model.modeling import RouterModel, RouterModelConfig
from aco_bert.model.tokenization import encode_ids, load_tokenizer, pad_ids, pad_token_id
from aco_bert.model.training_args import TrainConfig

logger = logging.getLogger("aco_bert.model.trainer")

OOF_FILE = "oof.safetensors"
OOF_META_FILE = "oof_meta.json"
RESULT_FILE = "result.json"
STATE_DIR = "state"


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RouterData:
    """The training view of a dataset: texts, per-tier targets (NaN = unknown), costs and auxiliary labels."""

    dataset: str
    spec: str | None
    prompt_ids: list[str]
    texts: list[str]
    models: list[str]
    targets: np.ndarray  # (P, T) float32, NaN where the outcome is missing
    cost: np.ndarray  # (P, T) float32 USD, NaN where missing
    aux: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (P,) int64, IGNORE_INDEX where missing
    aux_labels: dict[str, list[str]] = field(default_factory=dict)
    meta: Any = None  # pandas DataFrame, one row per prompt
    notes: dict[str, Any] = field(default_factory=dict)
    router_spec: dict[str, Any] = field(default_factory=dict)  # the whole spec (RouterSpec.to_dict()), for RunInfo

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)


def _default_tier_order(table) -> list[str]:
    """Without a spec: every model, cheapest first by mean observed cost (models without any cost go last)."""
    df = table.df
    mean_cost = df.groupby("model", sort=False)["cost_usd"].mean()
    models = table.models
    return sorted(models, key=lambda m: (np.isnan(mean_cost.get(m, np.nan)), mean_cost.get(m, np.inf)))


def load_router_data(cfg: TrainConfig) -> RouterData:
    """Load the outcome table, restrict it to the spec's tiers (in tier order) and build the targets."""
    from aco_bert.data.registry import load_outcomes
    from aco_bert.data.splits import subsample
    from aco_bert.spec import RouterSpec, Tier

    table = load_outcomes(cfg.dataset, data_dir=cfg.data_dir, **cfg.dataset_options)
    if cfg.spec:
        spec = RouterSpec.load(cfg.spec)
        models, spec_name = spec.models, spec.name
    else:
        models, spec_name = _default_tier_order(table), None
        spec = RouterSpec(name=cfg.run_name, tiers=[Tier(model=m) for m in models], dataset=str(cfg.dataset),
                          description="every model of the dataset, cheapest first by mean cost")
    m = table.matrix(models)
    idx = np.arange(m.n_prompts)
    if cfg.max_prompts is not None and cfg.max_prompts < m.n_prompts:
        idx = subsample(m.n_prompts, cfg.max_prompts, cfg.seed)
        m = m.subset(idx)
    targets = m.success.astype(np.float32)
    aux, aux_labels = {}, {}
    for name in cfg.aux_targets:
        if name not in m.meta.columns:
            raise ValueError(f"aux target {name!r} is not a prompt meta column of {cfg.dataset!r}: {list(m.meta.columns)}")
        col = m.meta[name]
        labels = sorted({str(v) for v in col.dropna()})
        if len(labels) < 2:
            raise ValueError(f"aux target {name!r} has {len(labels)} distinct value(s); a classifier needs >= 2")
        code = {v: i for i, v in enumerate(labels)}
        aux[name] = np.array([code[str(v)] if v is not None and v == v else IGNORE_INDEX for v in col], dtype=np.int64)
        aux_labels[name] = labels
    unobserved = int(np.isnan(targets).all(1).sum())
    notes = {"n_prompts": m.n_prompts, "prompts_without_any_outcome": unobserved,
             "observed_cells": int((~np.isnan(targets)).sum()), "skipped_by_adapter": dict(table.skipped)}
    if unobserved:
        logger.warning("%d prompts have no outcome for any tier: they add nothing to the loss but still get predictions",
                       unobserved)
    return RouterData(dataset=str(cfg.dataset), spec=spec_name, prompt_ids=list(m.prompt_ids), texts=list(m.prompts),
                      models=list(models), targets=targets, cost=m.cost.astype(np.float32), aux=aux,
                      aux_labels=aux_labels, meta=m.meta, notes=notes, router_spec=spec.to_dict())


def run_info(cfg: TrainConfig, data: RouterData) -> RunInfo:
    """The run's contract for later stages: the whole spec and an absolute dataset reference (any directory)."""
    mode = "kfold" if cfg.kfold else "holdout" if cfg.holdout else "single"
    return RunInfo(dataset=DatasetRef.make(cfg.dataset, cfg.data_dir, cfg.dataset_options), spec=data.router_spec,
                   models=list(data.models), prompt_ids=list(data.prompt_ids), mode=mode, kfold=int(cfg.kfold),
                   max_prompts=cfg.max_prompts, seed=int(cfg.seed))


def model_config_for(cfg: TrainConfig, data: RouterData) -> RouterModelConfig:
    return RouterModelConfig(
        models=data.models, encoder=cfg.encoder, encoder_config=cfg.encoder_config, tokenizer=cfg.tokenizer,
        encoder_layers=cfg.encoder_layers, pooling=cfg.pooling, normalize=cfg.normalize, dropout=cfg.dropout,
        success_rank=cfg.success_rank,
        cost_heads=cfg.cost_heads,
        aux_heads={k: len(v) for k, v in data.aux_labels.items()}, aux_labels=data.aux_labels,
        max_length=cfg.max_length, truncation=cfg.truncation, tail_tokens=cfg.tail_tokens,
        attn_implementation=cfg.attn_implementation, spec=data.spec, dataset=data.dataset)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar-length prompts (less padding), reshuffled per epoch from (seed, epoch) alone.

    Shuffle, cut into mega-batches of ``batch_size * mega_batch_mult``, sort each by length, split into batches,
    shuffle the batch order. Deterministic given the epoch, which is what lets a resumed run skip exactly the
    batches it has already seen. Without shuffle the whole set is sorted by length (fast evaluation).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, group: bool = True,
                 mega_batch_mult: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed, self.group = batch_size, shuffle, seed, group
        self.mega = batch_size * mega_batch_mult
        self.drop_last = False
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group:
            chunk = self.mega if self.shuffle else max(n, 1)  # a multiple of batch_size: no batch straddles two
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")]
                                    for c in (order[i: i + chunk] for i in range(0, n, chunk))]) if n else order
        batches = [order[i: i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.shuffle and self.group:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)


class _Positions(Dataset):
    def __init__(self, idx: np.ndarray):
        self.idx = np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> int:
        return int(self.idx[i])


class RouterCollator:
    """Builds a batch from global prompt indices: padded ids (or cached embeddings), targets, costs, aux labels."""

    def __init__(self, data: RouterData, token_ids: list[np.ndarray] | None, pad_id: int,
                 embeddings: np.ndarray | None = None, pad_to_multiple_of: int | None = None):
        self.data, self.token_ids, self.pad_id = data, token_ids, pad_id
        self.embeddings, self.pad_to_multiple_of = embeddings, pad_to_multiple_of

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        batch: dict[str, torch.Tensor] = {"index": torch.from_numpy(idx)}
        if self.embeddings is not None:
            batch["pooled"] = torch.from_numpy(self.embeddings[idx])
        else:
            enc = pad_ids([self.token_ids[i] for i in idx], self.pad_id, self.pad_to_multiple_of)
            batch["input_ids"] = torch.from_numpy(enc["input_ids"])
            batch["attention_mask"] = torch.from_numpy(enc["attention_mask"])
        batch["targets"] = torch.from_numpy(self.data.targets[idx])
        batch["cost"] = torch.from_numpy(self.data.cost[idx])
        for name, labels in self.data.aux.items():
            batch[f"aux_{name}"] = torch.from_numpy(labels[idx])
        return batch


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "pooled" in batch:
        return {"pooled": batch["pooled"]}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------
def tier_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Per-tier AUC, Brier and log-loss on observed cells (NaN targets ignored); AUC is NaN for a one-class tier.
    Graded targets count as positive at >= 0.5 for AUC; Brier/log-loss use them as they are."""
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    auc, brier, ll = [], [], []
    for t in range(targets.shape[1]):
        obs = ~np.isnan(targets[:, t])
        y, pt, z = targets[obs, t], p[obs, t], logits[obs, t]
        yb = (y >= 0.5).astype(int)
        auc.append(float(roc_auc_score(yb, pt)) if obs.sum() and 0 < yb.sum() < len(yb) else float("nan"))
        brier.append(float(np.mean((pt - y) ** 2)) if obs.sum() else float("nan"))
        # stable BCE on logits: max(z,0) - z*y + log(1+exp(-|z|))
        ll.append(float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))) if obs.sum() else float("nan"))

    def nanmean(v: list[float]) -> float:
        a = np.asarray(v, dtype=float)
        return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")

    return {"per_tier_auc": auc, "mean_auc": nanmean(auc), "per_tier_brier": brier, "brier": nanmean(brier),
            "per_tier_logloss": ll, "logloss": nanmean(ll), "n_observed": int((~np.isnan(targets)).sum())}




# ---------------------------------------------------------------------------------------------------------------
# Resumable state: safetensors + JSON
# ---------------------------------------------------------------------------------------------------------------
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
        save_file(_trainable_state(accelerator.unwrap_model(model)), str(tmp / "model.safetensors"))
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


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changes. Frozen ones are rebuilt from the config (pretrained or seeded weights),
    so a frozen-encoder checkpoint holds the heads only."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys():
        raise ValueError(f"{path}: trainable parameters differ from this model's "
                         f"(missing {sorted(params.keys() - saved.keys())[:5]}, extra {sorted(saved.keys() - params.keys())[:5]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n].to(p.device, p.dtype))


def latest_state_dir(work_dir: Path) -> Path | None:
    steps = sorted((work_dir / STATE_DIR).glob("step_*"))
    return steps[-1] if steps else None


def load_training_state(accelerator, model, optimizer, scheduler, directory: Path) -> TrainerState:
    _load_trainable_state(accelerator.unwrap_model(model), directory / "model.safetensors")
    _load_optimizer(optimizer, directory)
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text()))
    if accelerator.scaler is not None and (directory / "scaler.json").exists():
        accelerator.scaler.load_state_dict(json.loads((directory / "scaler.json").read_text()))
    raw = json.loads((directory / "trainer_state.json").read_text())
    return TrainerState(**raw)


def _batch_seed(seed: int, epoch: int, micro: int, process: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, micro, process]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------------------------
# Frozen-encoder embeddings (cached)
# ---------------------------------------------------------------------------------------------------------------
def _embedding_key(cfg: TrainConfig, texts: list[str]) -> str:
    h = hashlib.sha256()
    depth = {"encoder_layers": cfg.encoder_layers} if cfg.encoder_layers is not None else {}  # old keys stay valid
    h.update(json.dumps({**depth, "encoder": cfg.encoder, "encoder_config": cfg.encoder_config,
                         "tokenizer": cfg.tokenizer,
                         "pooling": cfg.pooling, "max_length": cfg.max_length, "truncation": cfg.truncation,
                         "tail_tokens": cfg.tail_tokens, "seed": cfg.seed if cfg.encoder_config else None},
                        sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


@torch.no_grad()
def embed_prompts(model: RouterModel, token_ids: list[np.ndarray], pad_id: int, batch_size: int = 32,
                  device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """Pooled embeddings (P, H) of the encoder in eval mode, in length-sorted batches."""
    from tqdm.auto import tqdm

    model.eval().to(device)
    lengths = np.array([len(t) for t in token_ids])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(token_ids), model.hidden_size), dtype=np.float32)
    for s in tqdm(range(0, len(order), batch_size), desc="embed", disable=not progress):
        b = order[s: s + batch_size]
        enc = pad_ids([token_ids[i] for i in b], pad_id)
        pooled = model.encode(torch.from_numpy(enc["input_ids"]).to(device),
                              torch.from_numpy(enc["attention_mask"]).to(device))
        out[b] = pooled.float().cpu().numpy()
    return out


def cached_embeddings(cfg: TrainConfig, data: RouterData, token_ids: list[np.ndarray], pad_id: int,
                      accelerator) -> np.ndarray:
    """Embed every prompt once; cached as safetensors keyed by a hash of encoder + texts + max_length."""
    from safetensors.numpy import load_file, save_file

    cache = Path(cfg.embedding_cache_dir or "checkpoints/.cache/embeddings")
    path = cache / f"{_embedding_key(cfg, data.texts)}.safetensors"
    if accelerator.is_main_process and not path.exists():
        torch.manual_seed(cfg.seed)  # random-init encoders (encoder_config) are reproducible from the seed
        model = RouterModel(model_config_for(cfg, data))
        t0 = time.perf_counter()
        emb = embed_prompts(model, token_ids, pad_id, cfg.eval_batch_size, accelerator.device,
                            progress=cfg.progress_bar)
        logger.info("embedded %d prompts in %.1fs -> %s", len(emb), time.perf_counter() - t0, path)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"embeddings": emb}, str(tmp), metadata={"encoder": cfg.encoder, "n": str(len(emb))})
        tmp.replace(path)
    accelerator.wait_for_everyone()
    emb = load_file(str(path))["embeddings"]
    if emb.shape[0] != data.n_prompts:
        raise ValueError(f"embedding cache {path} has {emb.shape[0]} rows for {data.n_prompts} prompts")
    return emb


# ---------------------------------------------------------------------------------------------------------------
# One training run
# ---------------------------------------------------------------------------------------------------------------
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


def _param_groups(model: RouterModel, cfg: TrainConfig) -> list[dict[str, Any]]:
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


@torch.no_grad()
def predict(model, dataloader, accelerator, n_total: int) -> dict[str, np.ndarray]:
    """Predictions for every index the dataloader yields: logits, pooled, cost (log1p USD), keyed by position
    in ``index``; gathered across processes (duplicates from even batching collapse onto the same index)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"index": [], "logits": [], "pooled": [], "cost": []}
    for batch in dataloader:
        out = model(**_model_inputs(batch))
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


def _tracker_names(cfg: TrainConfig) -> list[str]:
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


def fit(cfg: TrainConfig, data: RouterData, train_idx: np.ndarray, val_idx: np.ndarray, work_dir: Path,
        best_dir: Path, accelerator, token_ids: list[np.ndarray] | None, pad_id: int,
        embeddings: np.ndarray | None = None, num_epochs: int | None = None, max_steps: int | None = None,
        tag: str = "") -> FitResult:
    """Train on ``train_idx``; validate on ``val_idx`` each epoch; save the best (or last) model to ``best_dir``."""
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    work_dir.mkdir(parents=True, exist_ok=True)
    num_epochs = cfg.num_epochs if num_epochs is None else num_epochs
    max_steps = cfg.max_steps if max_steps is None else max_steps
    torch.manual_seed(cfg.seed)
    model = RouterModel(model_config_for(cfg, data))
    if cfg.freeze_encoder:
        model.freeze_encoder()
    elif cfg.freeze_layers:
        model.freeze_encoder(cfg.freeze_layers)

    lengths = np.ones(data.n_prompts) if embeddings is not None else np.array([len(t) for t in token_ids])
    collate = RouterCollator(data, None if embeddings is not None else token_ids, pad_id, embeddings,
                             cfg.pad_to_multiple_of)
    sampler = LengthGroupedBatchSampler(lengths[train_idx], cfg.batch_size, shuffle=True, seed=cfg.seed,
                                        group=cfg.length_grouping and embeddings is None)
    train_dl = DataLoader(_Positions(train_idx), batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers)
    val_dl = None
    if len(val_idx):
        val_sampler = LengthGroupedBatchSampler(lengths[val_idx], cfg.eval_batch_size, shuffle=False)
        val_dl = DataLoader(_Positions(val_idx), batch_sampler=val_sampler, collate_fn=collate, num_workers=cfg.num_workers)

    pw = None
    if cfg.pos_weight == "balanced":
        pw = balanced_pos_weight(data.targets[train_idx])
    elif cfg.pos_weight is not None:
        pw = np.full(len(data.models), float(cfg.pos_weight), dtype=np.float32)
    loss_fn = RouterLoss(LossWeights(cfg.success_loss_weight, cfg.cost_loss_weight, cfg.aux_loss_weight), pw,
                         cfg.label_smoothing)

    optimizer = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.learning_rate)
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

    state = TrainerState(plan=plan)
    if cfg.resume and (sd := latest_state_dir(work_dir)) is not None:
        state = load_training_state(accelerator, model, optimizer, scheduler, sd)
        if state.plan != plan:
            raise ValueError(f"cannot resume from {sd}: it was planned as {state.plan}, this run as {plan} "
                             "(resume with the same config, data and number of processes)")
        logger.info("%sresumed from %s at step %d (epoch %d, step %d in epoch)", tag, sd, state.global_step,
                    state.epoch, state.step_in_epoch)
    elif not cfg.resume:
        shutil.rmtree(work_dir / STATE_DIR, ignore_errors=True)
        (work_dir / "best_params.safetensors").unlink(missing_ok=True)

    log_path = work_dir / "metrics.jsonl"
    higher_better = cfg.metric_for_best == "mean_auc"
    main = accelerator.is_main_process

    def log(record: dict[str, Any]) -> None:
        if main:
            with open(log_path, "a") as f:
                f.write(json.dumps(json_safe({"tag": tag, **record})) + "\n")
        scalars = {f"{tag}{k}": v for k, v in record.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if accelerator.trackers:
            accelerator.log(scalars, step=state.global_step)

    best_params = work_dir / "best_params.safetensors"  # trainable weights of the best epoch so far

    def save_best() -> None:
        if main:
            from safetensors.torch import save_file

            tmp = best_params.with_suffix(".tmp")
            save_file(_trainable_state(accelerator.unwrap_model(model)), str(tmp))
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
            torch.manual_seed(_batch_seed(cfg.seed, epoch, micro, accelerator.process_index))
            with accelerator.accumulate(model):
                out = model(**_model_inputs(batch))
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
                avg = {k: v / n_running for k, v in running.items()}
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
                save_training_state(accelerator, model, optimizer, scheduler, state, work_dir, cfg.save_total_limit)
            if cfg.stop_after_steps is not None and state.global_step >= cfg.stop_after_steps:
                state.train_seconds += time.perf_counter() - t0
                if not (cfg.save_steps and state.global_step % cfg.save_steps == 0):
                    save_training_state(accelerator, model, optimizer, scheduler, state, work_dir, cfg.save_total_limit)
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
            save_training_state(accelerator, model, optimizer, scheduler, state, work_dir, cfg.save_total_limit)
    bar.close()

    if val_dl is None:  # nothing to select on: the last model is the model
        state.best_epoch, state.best_step = state.epoch, state.global_step
    else:
        _load_trainable_state(accelerator.unwrap_model(model), best_params)
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


# ---------------------------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------------------------
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


def _carve_val(train_idx: np.ndarray, frac: float, seed: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded validation prompts taken from the training prompts only (never from a test fold)."""
    if frac <= 0 or len(train_idx) < 4:
        return np.sort(train_idx), np.array([], dtype=np.int64)
    rng = np.random.default_rng([seed, salt])
    perm = rng.permutation(train_idx)
    n_val = max(1, int(round(frac * len(train_idx))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _make_accelerator(cfg: TrainConfig, out: Path):
    from accelerate import Accelerator

    trackers = _tracker_names(cfg)
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu,
                      gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                      log_with=trackers or None, project_dir=str(out))
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
    if cfg.resume and (out / RESULT_FILE).exists():
        logger.info("%s already finished; returning its result", out)
        return TrainResult(**json.loads((out / RESULT_FILE).read_text()))
    out.mkdir(parents=True, exist_ok=True)
    accelerator = _make_accelerator(cfg, out)
    if accelerator.is_main_process:
        from aco_bert.config import save_config

        save_config(cfg, out / "train_config.yaml")
    data = load_router_data(cfg)
    if accelerator.is_main_process:
        run_info(cfg, data).save(out)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.encoder)
    pad_id = pad_token_id(tokenizer)
    t0 = time.perf_counter()
    token_ids = encode_ids(tokenizer, data.texts, cfg.max_length, cfg.truncation, cfg.tail_tokens)
    logger.info("tokenised %d prompts in %.1fs (mean %.0f tokens after truncation to %d)", data.n_prompts,
                time.perf_counter() - t0, np.mean([len(t) for t in token_ids]), cfg.max_length)
    embeddings = cached_embeddings(cfg, data, token_ids, pad_id, accelerator) if cfg.freeze_encoder else None
    common = dict(accelerator=accelerator, token_ids=token_ids, pad_id=pad_id, embeddings=embeddings)

    if cfg.kfold:
        result = _train_kfold(cfg, data, out, **common)
    elif cfg.holdout:
        result = _train_holdout(cfg, data, out, **common)
    else:
        train_idx, val_idx = _carve_val(np.arange(data.n_prompts), cfg.val_fraction, cfg.seed, 0)
        r = fit(cfg, data, train_idx, val_idx, out, out / "best", **common)
        result = TrainResult(str(out), "single", str(r.best_dir), r.metrics, r.global_step, r.samples_per_second,
                             history=r.history, stopped=r.stopped)
    result.data_notes = data.notes
    if accelerator.is_main_process and not result.stopped:
        write_json(out / RESULT_FILE, dataclasses.asdict(result))
    accelerator.wait_for_everyone()
    if accelerator.trackers:
        accelerator.end_training()
    accelerator.free_memory()
    return result


def _train_holdout(cfg: TrainConfig, data: RouterData, out: Path, accelerator, **common) -> TrainResult:
    col, _, value = cfg.holdout.partition("=")
    if col not in data.meta.columns:
        raise ValueError(f"holdout column {col!r} is not a prompt meta column: {list(data.meta.columns)}")
    is_test = (data.meta[col].astype(str) == value).to_numpy()
    if not is_test.any() or is_test.all():
        raise ValueError(f"holdout {cfg.holdout!r} selects {int(is_test.sum())} of {data.n_prompts} prompts")
    test_idx = np.flatnonzero(is_test)
    train_idx, val_idx = _carve_val(np.flatnonzero(~is_test), cfg.val_fraction, cfg.seed, 0)
    r = fit(cfg, data, train_idx, val_idx, out, out / "best", accelerator=accelerator, **common)
    if r.stopped:
        return TrainResult(str(out), "holdout", None, {}, r.global_step, 0.0, stopped=True)
    pred = predict(r.model, _eval_loader(cfg, data, test_idx, accelerator, **common), accelerator, data.n_prompts)
    metrics = tier_metrics(pred["logits"][test_idx], data.targets[test_idx])
    metrics["val"] = r.metrics
    if accelerator.is_main_process:
        _save_predictions(out / "test_predictions.safetensors", pred, test_idx)
        write_json(out / "test_meta.json", {"prompt_ids": [data.prompt_ids[i] for i in test_idx],
                                             "models": data.models, "dataset": data.dataset, "spec": data.spec,
                                             "per_tier_auc": metrics["per_tier_auc"], "mean_auc": metrics["mean_auc"],
                                             "config": dataclasses.asdict(cfg)})
    return TrainResult(str(out), "holdout", str(r.best_dir), metrics, r.global_step, r.samples_per_second,
                       history=r.history)


def _eval_loader(cfg: TrainConfig, data: RouterData, idx: np.ndarray, accelerator, token_ids, pad_id, embeddings):
    lengths = np.ones(data.n_prompts) if embeddings is not None else np.array([len(t) for t in token_ids])
    collate = RouterCollator(data, None if embeddings is not None else token_ids, pad_id, embeddings,
                             cfg.pad_to_multiple_of)
    dl = DataLoader(_Positions(idx), batch_sampler=LengthGroupedBatchSampler(lengths[idx], cfg.eval_batch_size, False),
                    collate_fn=collate, num_workers=cfg.num_workers)
    return accelerator.prepare(dl)


def _train_kfold(cfg: TrainConfig, data: RouterData, out: Path, accelerator, **common) -> TrainResult:
    from safetensors.numpy import load_file, save_file

    from aco_bert.data.splits import kfold

    folds = kfold(data.prompt_ids, cfg.kfold, cfg.seed if cfg.fold_seed is None else cfg.fold_seed)
    P, T = data.n_prompts, len(data.models)
    oof_logits = np.full((P, T), np.nan, dtype=np.float32)
    oof_fold = np.full(P, -1, dtype=np.int64)
    oof_emb: np.ndarray | None = None
    oof_cost = np.full((P, T), np.nan, dtype=np.float32) if cfg.cost_heads else None
    summaries, best_epochs, sps, steps = [], [], [], 0
    for f in folds:
        fdir = out / f"fold_{f.index}"
        pred_path = fdir / "predictions.safetensors"
        if not (cfg.resume and pred_path.exists()):
            train_idx, val_idx = _carve_val(f.train, cfg.val_fraction, cfg.seed, 1 + f.index)
            r = fit(cfg, data, train_idx, val_idx, fdir, fdir / "best", accelerator=accelerator,
                    tag=f"fold{f.index}/", **common)
            if r.stopped:
                return TrainResult(str(out), "kfold", None, {}, steps + r.global_step, 0.0, folds=summaries,
                                   stopped=True)
            pred = predict(r.model, _eval_loader(cfg, data, f.test, accelerator, **common), accelerator, P)
            fm = tier_metrics(pred["logits"][f.test], data.targets[f.test])
            if accelerator.is_main_process:
                _save_predictions(pred_path, pred, f.test)
                write_json(fdir / "fold_result.json", {
                    "fold": f.index, "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(f.test),
                    "best_epoch": r.best_epoch, "epochs_run": r.epochs_run, "global_step": r.global_step,
                    "samples_per_second": r.samples_per_second, "val": r.metrics, "test": fm})
                if not cfg.save_fold_models:
                    shutil.rmtree(fdir / "best", ignore_errors=True)
            accelerator.wait_for_everyone()
            accelerator.free_memory()
        fr = json.loads((fdir / "fold_result.json").read_text())
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
        save_file(arrays, str(out / OOF_FILE), metadata={"dataset": data.dataset, "spec": str(data.spec)})
        write_json(out / OOF_META_FILE, {
            "prompt_ids": data.prompt_ids, "models": data.models, "dataset": data.dataset, "spec": data.spec,
            "per_tier_auc": metrics["per_tier_auc"], "mean_auc": metrics["mean_auc"],
            "config": dataclasses.asdict(cfg), "n_folds": cfg.kfold, "cost_units": "usd",
            "per_tier_brier": metrics["per_tier_brier"], "per_tier_logloss": metrics["per_tier_logloss"]})
    accelerator.wait_for_everyone()
    model_dir = None
    if cfg.final_fit:
        # All prompts, no validation: train for the typical best epoch of the folds (when they selected one).
        used_val = cfg.val_fraction > 0 and any(b > 0 for b in best_epochs)
        epochs = max(1, int(round(float(np.median(best_epochs))))) if used_val else None
        final_dir = out / "final"
        if not (cfg.resume and (final_dir / "model.safetensors").exists() and (out / "final_run" / "done").exists()):
            r = fit(cfg, data, np.arange(P), np.array([], dtype=np.int64), out / "final_run", final_dir,
                    accelerator=accelerator, num_epochs=epochs, max_steps=None if epochs else cfg.max_steps,
                    tag="final/", **common)
            if r.stopped:
                return TrainResult(str(out), "kfold", None, metrics, steps + r.global_step, 0.0, folds=summaries,
                                   stopped=True)
            steps += r.global_step
            if accelerator.is_main_process:
                (out / "final_run" / "done").write_text(json.dumps({"epochs": r.epochs_run, "steps": r.global_step}))
        model_dir = str(final_dir)
    return TrainResult(str(out), "kfold", model_dir, metrics, steps, float(np.nanmean(sps)) if sps else float("nan"),
                       folds=summaries)


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
USAGE = """usage: python -m aco_bert.train --config CONFIG.yaml [--key value ...]
       accelerate launch -m aco_bert.train --config CONFIG.yaml [--key value ...]

Every TrainConfig field is a --key (e.g. --output_dir, --max_steps, --seed, --kfold, --resume, --freeze_encoder).
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        print("fields:", ", ".join(f.name for f in dataclasses.fields(TrainConfig)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = parse_overrides(argv)
    config_path = overrides.pop("config", None)
    cfg = load_config(TrainConfig, config_path, overrides)
    result = train(cfg)
    summary = {"output_dir": result.output_dir, "mode": result.mode, "model_dir": result.model_dir,
               "mean_auc": result.mean_auc, "per_tier_auc": result.per_tier_auc, "global_step": result.global_step,
               "samples_per_second": result.samples_per_second, "stopped": result.stopped}
    print(json.dumps(json_safe(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
