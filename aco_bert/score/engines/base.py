"""The engine contract: score the chunks a run still needs and hand each result to ``job.save`` in the driver.

Why so narrow: chunk ``k`` must be rows ``[k*C, (k+1)*C)`` scored by :func:`aco_bert.score.chunk.score_chunk`
whatever the engine (that is what makes a local, a worker-process and a Ray run write the same bytes), and the
resume bookkeeping must see every saved chunk. So the scorer keeps both, and an engine only moves the work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from aco_bert.score.config import ScoreConfig
from aco_bert.score.rows import ChunkResult, Columns
from aco_bert.score.sources import Chunk, TableSource


class EveryChunk:
    """A ``skip`` set holding every chunk index: :meth:`TableSource.iter_chunks` then only counts rows."""

    def __contains__(self, index: object) -> bool:
        return True


class ChunksOutside:
    """A ``skip`` set holding every chunk index except ``keep`` (a worker reads only its own chunks)."""

    def __init__(self, keep: Iterable[int]):
        self.keep = frozenset(keep)

    def __contains__(self, index: object) -> bool:
        return index not in self.keep


class EngineUnavailable(ValueError):
    """The engine cannot run here (its optional dependency is missing, the cluster is unreachable)."""


@dataclass
class ScoreJob:
    """What the scorer hands an engine for one run.

    ``chunks(read)`` yields the chunks still to score in input order (resumed ones are accounted for by the
    scorer and not yielded); ``read=False`` yields them without their rows (``columns=None``) for an engine
    whose workers read the input themselves. ``save`` must be called in this process, once per scored chunk."""

    cfg: ScoreConfig
    router: Any  # loaded in the driver (spec, cascade rule); a worker loads its own with ``loader``
    loader: Callable[..., Any]  # loader(bundle, int8, threads) -> router; picklable (module-level)
    source: TableSource
    cols: Columns
    chunks: Callable[[bool], Iterator[Chunk]]
    save: Callable[[ChunkResult], None]
    log: Callable[[str], None]


class ScoringEngine(ABC):
    """One way to score a run's chunks (see the module doc)."""

    name: str = ""

    @abstractmethod
    def run(self, job: ScoreJob) -> None:
        """Score every chunk of ``job.chunks`` and ``job.save`` each result; raise to stop (the run is resumable)."""
