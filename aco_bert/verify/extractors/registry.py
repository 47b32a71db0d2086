"""Name -> answer extractor class (the one place a new format is registered)."""

from __future__ import annotations

from aco_bert.verify.extractors.auto import AutoExtractor
from aco_bert.verify.extractors.base import AnswerExtractor
from aco_bert.verify.extractors.choice import ChoiceExtractor
from aco_bert.verify.extractors.code import CodeExtractor
from aco_bert.verify.extractors.number import NumberExtractor
from aco_bert.verify.extractors.text import TextExtractor

EXTRACTORS: dict[str, type[AnswerExtractor]] = {
    "auto": AutoExtractor, "choice": ChoiceExtractor, "number": NumberExtractor, "code": CodeExtractor,
    "text": TextExtractor,
}


def get_extractor(name: str) -> AnswerExtractor:
    try:
        return EXTRACTORS[name]()
    except KeyError:
        raise ValueError(f"unknown answer extractor {name!r}; known: {sorted(EXTRACTORS)}") from None
