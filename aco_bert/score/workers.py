"""Scoring chunks in worker processes (``--workers N``), each loading the bundle once.

Why processes, not threads: at short prompts ONNX Runtime's per-op thread hand-offs cost more than they save, so
N single-threaded processes outrun one N-threaded one. Results cannot depend on N: each chunk is scored alone
(:func:`aco_bert.score.chunk.score_chunk`); parts are saved as they finish and assembled in chunk order.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator

from aco_bert.procs import die_with_parent
from aco_bert.score.chunk import score_chunk
from aco_bert.score.config import ScoreConfig
from aco_bert.score.rows import ChunkResult, Columns
from aco_bert.score.sources import Chunk

_WORKER_ROUTER: Any = None  # the router of this worker process, loaded once by worker_init


def worker_init(loader: Callable[..., Any], bundle: str, int8: bool | None, threads: int | None) -> None:
    """Pool initializer: end with the parent (no orphans after its ``kill -9``), then load this process's router."""
    global _WORKER_ROUTER
    die_with_parent()
    _WORKER_ROUTER = loader(bundle, int8, threads)


def worker_score(chunk: Chunk, cols: Columns, batch_size: int) -> ChunkResult:
    return score_chunk(_WORKER_ROUTER, chunk, cols, batch_size)


def run_workers(cfg: ScoreConfig, loader: Callable[..., Any], chunks: Iterator[Chunk], cols: Columns,
                save: Callable[[ChunkResult], None]) -> None:
    """Score chunks in ``cfg.workers`` processes with at most 2 chunks per worker in flight (bounded memory)."""
    import multiprocessing as mp

    window = 2 * cfg.workers
    # N processes each with ONNX Runtime's default (all cores) would oversubscribe: share the cores out.
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
    ctx = mp.get_context("spawn")  # no fork of a process holding ONNX Runtime threads
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=worker_init,
                             initargs=(loader, cfg.bundle, cfg.int8, threads)) as ex:
        pending: set[Future] = set()
        try:
            for ch in chunks:
                pending.add(ex.submit(worker_score, ch, cols, cfg.batch_size))
                while len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        save(f.result())
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    save(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
