"""Numeric answers (GSM8K-style): "#### 42", "the answer is 3.5", else the last number of a short response.

Canonical form: the value as a float printed with up to 6 significant digits, so "1,000", "1000.0" and "1e3" agree.
"""

from __future__ import annotations

import re

from aco_bert.verify.extractors.base import Answer, AnswerExtractor

NUM = r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"
EXPLICIT = (re.compile(rf"####\s*({NUM})"), re.compile(rf"answer is:?\s*({NUM})", re.I),
            re.compile(rf"\\boxed\{{\s*({NUM})\s*\}}"))
ANY = re.compile(NUM)
SHORT = 60


def canonical(s: str) -> str | None:
    try:
        v = float(s.replace(",", "").replace("$", ""))
    except ValueError:
        return None
    return f"{v:.6g}"


class NumberExtractor(AnswerExtractor):
    name = "number"

    def extract(self, response: str) -> Answer | None:
        for pat in EXPLICIT:
            hits = pat.findall(response)
            if hits:
                v = canonical(hits[-1])
                if v is not None:
                    return Answer("number", v)
        text = response.strip()
        if len(text) <= SHORT:
            hits = ANY.findall(text)
            if hits:
                v = canonical(hits[-1])
                if v is not None:
                    return Answer("number", v)
        return None
