"""Free text: lower-cased, punctuation-free, whitespace-collapsed; agreement = token Jaccard overlap."""

from __future__ import annotations

import re

from aco_bert.verify.extractors.base import Answer, AnswerExtractor

PUNCT = re.compile(r"[^\w\s]")


class TextExtractor(AnswerExtractor):
    name = "text"

    def extract(self, response: str) -> Answer | None:
        v = " ".join(PUNCT.sub(" ", response.lower()).split())
        return Answer("text", v) if v else None
