"""Where a scoring run's chunks are scored: in this machine's processes (``local``) or on Ray (``ray``).

An engine only decides *where* each chunk is scored; reading the chunk plan, resume, part files, assembling and
the row-count checks stay in :mod:`aco_bert.score.scorer`, so every engine gives the same guarantees and bytes.
"""

from aco_bert.score.engines.base import ChunksOutside, EngineUnavailable, EveryChunk, ScoreJob, ScoringEngine
from aco_bert.score.engines.registry import ENGINES, get_engine

__all__ = ["ENGINES", "ChunksOutside", "EngineUnavailable", "EveryChunk", "ScoreJob", "ScoringEngine", "get_engine"]
