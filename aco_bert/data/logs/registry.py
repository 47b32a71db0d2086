"""Log format name -> class: the one place a new format registers (``--format NAME`` of ``import-logs``)."""

from __future__ import annotations

from aco_bert.data.logs.base import LogFormat
from aco_bert.data.logs.langfuse import LangfuseExport
from aco_bert.data.logs.litellm_spend import LiteLLMSpendLogs
from aco_bert.data.logs.otel_genai import OTelGenAISpans

LOG_FORMATS: dict[str, type[LogFormat]] = {
    LiteLLMSpendLogs.name: LiteLLMSpendLogs,
    LangfuseExport.name: LangfuseExport,
    OTelGenAISpans.name: OTelGenAISpans,
}


def get_format(name: str) -> LogFormat:
    """An instance of the log format ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in LOG_FORMATS:
        raise ValueError(f"unknown log format {name!r}; expected one of {sorted(LOG_FORMATS)}")
    return LOG_FORMATS[name]()
