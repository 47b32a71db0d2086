"""Answer extractors: a response text -> a canonical answer, and how much two answers agree.

One class per file behind :class:`AnswerExtractor`; :func:`get_extractor` resolves a name (``auto``, ``choice``,
``number``, ``code``, ``text``). A new format = one new file + one line in :mod:`.registry`.
"""

from aco_bert.verify.extractors.base import Answer, AnswerExtractor
from aco_bert.verify.extractors.registry import EXTRACTORS, get_extractor

__all__ = ["Answer", "AnswerExtractor", "EXTRACTORS", "get_extractor"]
