"""The answer-extractor contract.

Why extractors: two models that give the same *answer* in different words ("The answer is (B)." vs "B") agree,
and agreement between independent models is the strongest cheap evidence that an answer is right (self-consistency,
AutoMix, FrugalGPT). Each extractor turns a response into an :class:`Answer` (a canonical value plus a kind) and
says how much two answers agree (exact formats 0/1; code and free text a similarity in [0, 1]).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|[^\sA-Za-z0-9_]")


@dataclass(frozen=True)
class Answer:
    kind: str  # "choice", "number", "code", "text"
    value: str  # canonical form (letter, normalised number, normalised code or text)
    valid: float = 1.0  # format validity in [0, 1] (e.g. code parses); NaN-free

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(WORD.findall(self.value))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class AnswerExtractor(ABC):
    """Response text -> :class:`Answer` (None: no answer of this kind in it)."""

    name: str = "base"

    @abstractmethod
    def extract(self, response: str) -> Answer | None:
        """The canonical answer in ``response``, or None when it holds none of this extractor's kind."""

    def agree(self, a: Answer, b: Answer) -> float:
        """Agreement in [0, 1] of two answers; different kinds never agree. Exact formats compare values."""
        if a.kind != b.kind:
            return 0.0
        if a.kind in ("code", "text"):
            return 1.0 if a.value == b.value else jaccard(a.tokens, b.tokens)
        return float(a.value == b.value)
