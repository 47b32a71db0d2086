"""Per-response format detection: the first of choice, code, number, text that finds an answer.

Why per response: one table mixes formats (RouterBench: multiple-choice ARC/Winogrande next to MBPP code), and a
user's traffic more so. Order matters: an explicit choice statement beats a number in the text; code is tried
before numbers and free text (a fenced program ending in ``4 * x`` is code, not the number 4).
"""

from __future__ import annotations

from aco_bert.verify.extractors.base import Answer, AnswerExtractor
from aco_bert.verify.extractors.choice import ChoiceExtractor
from aco_bert.verify.extractors.code import CodeExtractor
from aco_bert.verify.extractors.number import NumberExtractor
from aco_bert.verify.extractors.text import TextExtractor


class AutoExtractor(AnswerExtractor):
    name = "auto"

    def __init__(self) -> None:
        self.chain: list[AnswerExtractor] = [ChoiceExtractor(), CodeExtractor(), NumberExtractor(), TextExtractor()]

    def extract(self, response: str) -> Answer | None:
        for e in self.chain:
            a = e.extract(response)
            if a is not None:
                return a
        return None
