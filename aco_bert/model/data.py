"""The training view of a dataset and how it is batched: targets per tier, length-grouped batches, collation.

Everything here is a function of (config, data, seed, epoch) only, which is what lets a resumed run skip exactly
the batches it has already seen (:mod:`aco_bert.model.fit`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from aco_bert.artifacts.layout import DatasetRef, RunInfo
from aco_bert.data.arrow import ArrowOutcomes
from aco_bert.data.arrow_seq import ArrowTexts, ArrowTokenIds
from aco_bert.model.losses import IGNORE_INDEX
from aco_bert.model.modeling import RouterModelConfig
from aco_bert.model.chunking import pad_prompts, padded_size
from aco_bert.model.training_args import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class RouterData:
    """The training view of a dataset: texts, per-tier targets (NaN = unknown), costs and auxiliary labels.

    ``texts`` is a list, or with ``dataset_options: {streaming: true}`` a lazy
    :class:`~aco_bert.data.arrow_seq.ArrowTexts` over the memory-mapped Arrow column (len, ``[i]``, iteration):
    tokenisation writes its ids beside it and training only indexes, so memory does not grow with the table."""

    dataset: str
    spec: str | None
    prompt_ids: list[str]
    texts: Sequence[str]
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


def load_router_data(cfg: TrainConfig) -> RouterData:
    """Load the outcome table, restrict it to the spec's tiers (in tier order) and build the targets."""
    from aco_bert.data.registry import load_outcomes
    from aco_bert.data.splits import subsample
    from aco_bert.spec import RouterSpec

    given = RouterSpec.load(cfg.spec) if cfg.spec else None
    # the spec's tier prices derive a missing cost_usd from tokens (aco_bert.data.costs), as in evaluate/report
    table = load_outcomes(cfg.dataset, data_dir=cfg.data_dir, spec=given, **cfg.dataset_options)
    from aco_bert.data.costs import cost_lines

    for line in cost_lines(table):
        logger.info(line)
    if given is not None:
        spec = given
        models, spec_name = spec.models, spec.name
    else:
        ranked = table.cost_table() if isinstance(table, ArrowOutcomes) else table  # streaming: no long frame
        spec = RouterSpec.every_model(ranked, cfg.run_name, str(cfg.dataset))
        models, spec_name = spec.models, None
    m = table.matrix(models)  # streaming: an ArrowMatrix whose prompts stay lazy through subset
    if cfg.max_prompts is not None and cfg.max_prompts < m.n_prompts:
        m = m.subset(subsample(m.n_prompts, cfg.max_prompts, cfg.seed))
    texts = m.prompts if isinstance(m.prompts, ArrowTexts) else list(m.prompts)
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
    return RouterData(dataset=str(cfg.dataset), spec=spec_name, prompt_ids=list(m.prompt_ids), texts=texts,
                      models=list(models), targets=targets, cost=m.cost.astype(np.float32), aux=aux,
                      aux_labels=aux_labels, meta=m.meta, notes=notes, router_spec=spec.to_dict())


def run_info(cfg: TrainConfig, data: RouterData) -> RunInfo:
    """The run's contract for later stages: the whole spec and an absolute dataset reference (any directory)."""
    mode = "kfold" if cfg.kfold else "holdout" if cfg.holdout else "single"
    return RunInfo(dataset=DatasetRef.make(cfg.dataset, cfg.data_dir, cfg.dataset_options), spec=data.router_spec,
                   models=list(data.models), prompt_ids=list(data.prompt_ids), mode=mode, kfold=int(cfg.kfold),
                   max_prompts=cfg.max_prompts, seed=int(cfg.seed))


def model_config_for(cfg: TrainConfig, data: RouterData) -> RouterModelConfig:
    """The saved model's config: heads sized from the data (tiers, aux classes), everything else from ``cfg``."""
    return RouterModelConfig(
        models=data.models, encoder=cfg.encoder, encoder_config=cfg.encoder_config, tokenizer=cfg.tokenizer,
        encoder_layers=cfg.encoder_layers, pooling=cfg.pooling, normalize=cfg.normalize, dropout=cfg.dropout,
        success_rank=cfg.success_rank,
        cost_heads=cfg.cost_heads,
        aux_heads={k: len(v) for k, v in data.aux_labels.items()}, aux_labels=data.aux_labels,
        max_length=cfg.max_length, truncation=cfg.truncation, tail_tokens=cfg.tail_tokens, max_chunks=cfg.max_chunks,
        chunk_overlap=cfg.chunk_overlap,
        attn_implementation=cfg.attn_implementation, spec=data.spec, dataset=data.dataset)


def carve_val(train_idx: np.ndarray, frac: float, seed: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded validation prompts taken from the training prompts only (never from a test fold)."""
    if frac <= 0 or len(train_idx) < 4:
        return np.sort(train_idx), np.array([], dtype=np.int64)
    rng = np.random.default_rng([seed, salt])
    perm = rng.permutation(train_idx)
    n_val = max(1, int(round(frac * len(train_idx))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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


class Positions(Dataset):
    """A dataset of global prompt indices: the collator looks everything else up, so workers copy nothing big."""

    def __init__(self, idx: np.ndarray):
        self.idx = np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> int:
        return int(self.idx[i])


class RouterCollator:
    """Builds a batch from global prompt indices: padded ids (or cached embeddings), targets, costs, aux labels.
    Windowed prompts (``truncation: chunked``, a list of windows each) pad to B x C x L: the batch's most windows
    and its longest window."""

    def __init__(self, data: RouterData, token_ids: list | None, pad_id: int,
                 embeddings: np.ndarray | None = None, pad_to_multiple_of: int | None = None):
        self.data, self.token_ids, self.pad_id = data, token_ids, pad_id
        self.embeddings, self.pad_to_multiple_of = embeddings, pad_to_multiple_of

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        batch: dict[str, torch.Tensor] = {"index": torch.from_numpy(idx)}
        if self.embeddings is not None:
            batch["pooled"] = torch.from_numpy(self.embeddings[idx])
        else:
            enc = pad_prompts([self.token_ids[i] for i in idx], self.pad_id, self.pad_to_multiple_of)
            batch["input_ids"] = torch.from_numpy(enc["input_ids"])
            batch["attention_mask"] = torch.from_numpy(enc["attention_mask"])
        batch["targets"] = torch.from_numpy(self.data.targets[idx])
        batch["cost"] = torch.from_numpy(self.data.cost[idx])
        for name, labels in self.data.aux.items():
            batch[f"aux_{name}"] = torch.from_numpy(labels[idx])
        return batch


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The forward-pass arguments of a collated batch: cached pooled embeddings, or token ids + mask."""
    if "pooled" in batch:
        return {"pooled": batch["pooled"]}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@dataclass
class PromptInputs:
    """What every loader of one run batches from: the data and its tokenised prompts (or, with a frozen encoder,
    their cached pooled embeddings)."""

    data: RouterData
    token_ids: Sequence | None  # per prompt: an id array, or (chunked) a list of window id arrays
    pad_id: int
    embeddings: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        """(P,) padded sizes (tokens; windows x longest window when chunked); all ones with cached embeddings
        (nothing to group by)."""
        if self.embeddings is not None:
            return np.ones(self.data.n_prompts)
        if isinstance(self.token_ids, ArrowTokenIds):  # memory-mapped ids: from the offsets, no per-prompt arrays
            return self.token_ids.padded_sizes()
        return np.array([padded_size(t) for t in self.token_ids])  # type: ignore[union-attr]

    def collator(self, cfg: TrainConfig) -> RouterCollator:
        return RouterCollator(self.data, None if self.embeddings is not None else self.token_ids, self.pad_id,
                              self.embeddings, cfg.pad_to_multiple_of)

    def eval_loader(self, cfg: TrainConfig, idx: np.ndarray) -> DataLoader:
        """Prompts ``idx`` in length-sorted batches of ``eval_batch_size`` (not yet prepared by accelerate)."""
        sampler = LengthGroupedBatchSampler(self.lengths[idx], cfg.eval_batch_size, False)
        return DataLoader(Positions(idx), batch_sampler=sampler, collate_fn=self.collator(cfg),
                          num_workers=cfg.num_workers)
