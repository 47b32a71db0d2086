"""Batch scoring of datasets with a bundle: ``python -m aco_bert.score`` (see :mod:`aco_bert.score.scorer`)."""

from aco_bert.score.config import ScoreConfig, ScoreError, ScoreSummary
from aco_bert.score.scorer import load_router, main, score_dataset, score_texts

__all__ = ["ScoreConfig", "ScoreError", "ScoreSummary", "load_router", "main", "score_dataset", "score_texts"]
