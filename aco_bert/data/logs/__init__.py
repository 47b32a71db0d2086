"""Outcome tables from a team's own traffic: LiteLLM spend logs, Langfuse exports, OpenTelemetry GenAI spans.

``python -m aco_bert.data.import_logs`` (``aco-bert data import-logs``) is the verb; one format per module behind
:class:`~aco_bert.data.logs.base.LogFormat`, registered in :mod:`aco_bert.data.logs.registry`.
"""

from aco_bert.data.logs.base import LogFormat, LogRecord, ReadStats, combine
from aco_bert.data.logs.registry import LOG_FORMATS, get_format

__all__ = ["LOG_FORMATS", "LogFormat", "LogRecord", "ReadStats", "combine", "get_format"]
