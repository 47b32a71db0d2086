"""How training batches split across processes (``accelerate launch --num_processes N``, DDP).

Why this exists: accelerate shards a batch sampler by handing whole batches to the processes in turn and keeps a
group of N batches only when its last one is full. :class:`~aco_bert.model.data.LengthGroupedBatchSampler`
shuffles the batch order, so its one short batch lands anywhere; under N > 1 processes accelerate would then drop
that group (up to N batches of prompts never trained on) and pad the epoch with repeated prompts instead.
:class:`EvenShardBatches` re-cuts the tail instead: the full batches that do not fill a group of N, plus the short
batch, are pooled and split into N near-equal batches. Every prompt is then seen exactly once per epoch (no
padding, nothing dropped) whenever the training set has at least N prompts (a left-over of fewer than N prompts is
pooled with the last group of full batches), and the N per-process batches of each
step together hold the same prompts as one batch of ``N x batch_size`` on one process (the last step's too) when
batches are not length-grouped. Used only when N > 1: the one-process path keeps its sampler untouched.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class EvenShardBatches(Sampler[list[int]]):
    """Batches of ``sampler`` reordered for N processes: full groups of N first, then the pooled tail cut in N.

    ``batch_size`` is None on purpose: accelerate's shard then yields every batch (whatever its size) to its
    process in turn instead of waiting for full ones. ``sampler`` is exposed (and :meth:`set_epoch` forwarded) so
    that the prepared loader's own ``set_epoch`` reaches the wrapped sampler.
    """

    batch_size = None
    drop_last = False

    def __init__(self, sampler, num_processes: int):
        if num_processes < 1:
            raise ValueError(f"num_processes {num_processes}: expected >= 1")
        self.sampler, self.num_processes = sampler, num_processes
        self.full_size = int(sampler.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _cut(self, batches: list[list[int]]) -> list[list[int]]:
        n_proc = self.num_processes
        full = [b for b in batches if len(b) == self.full_size]
        short = [b for b in batches if len(b) != self.full_size]
        keep = len(full) - len(full) % n_proc
        if 0 < (len(full) - keep) * self.full_size + sum(map(len, short)) < n_proc and keep:  # too few left over: take a group too
            keep -= n_proc
        pool = [i for b in full[keep:] + short for i in b]
        if not pool:
            return full[:keep]
        if len(pool) < n_proc:  # fewer prompts than processes in the whole set: repeat some
            pool = (pool * n_proc)[:n_proc]
        n_parts = n_proc * math.ceil(len(pool) / (n_proc * self.full_size))  # each part <= batch_size
        return full[:keep] + [part.tolist() for part in np.array_split(np.asarray(pool), n_parts)]

    def __len__(self) -> int:
        return len(self._cut(list(self.sampler)))  # the count depends on the set's size only, not the epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._cut([list(b) for b in self.sampler]))
