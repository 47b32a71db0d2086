"""Batch scoring of datasets with a bundle: ``python -m aco_bert.score``."""

from aco_bert.score.scorer import ScoreConfig, score_dataset

__all__ = ["ScoreConfig", "score_dataset"]
