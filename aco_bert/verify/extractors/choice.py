"""Multiple-choice letters: "The answer is (C)", "Answer: C", "C)", a bare "C".

Patterns follow MMLU-Pro's own extraction (``answer is \\(?([A-J])\\)?``, then ``Answer: X``) and RouterBench's
"Print only a single choice" responses; the *last* explicit statement wins (chain-of-thought often names options
on the way). A long response with no explicit statement has no answer (a guessed letter would fake agreement).
"""

from __future__ import annotations

import re

from aco_bert.verify.extractors.base import Answer, AnswerExtractor

LETTERS = "A-J"
EXPLICIT = (
    re.compile(rf"answer is:?\s*\(?\**\s*([{LETTERS}])\b\)?", re.I),
    re.compile(rf"answer\s*[:=]\s*\(?\**\s*([{LETTERS}])\b\)?", re.I),
    re.compile(rf"(?:option|choice)\s+\(?([{LETTERS}])\)?\s+is\s+(?:correct|right)", re.I),
)
# a bare letter, alone or as "C)" / "(C)" / "C." / "C: <option text>" (never "I am ...": a letter then a space)
BARE = re.compile(rf"^\(?\**([{LETTERS}])\**(?:\)|\.|:|\s*$)")
SHORT = 80  # only a response this short may be a bare letter


class ChoiceExtractor(AnswerExtractor):
    name = "choice"

    def extract(self, response: str) -> Answer | None:
        found = None
        for pat in EXPLICIT:
            for m in pat.finditer(response):
                if found is None or m.start() > found[0]:
                    found = (m.start(), m.group(1))
        if found is not None:
            return Answer("choice", found[1].upper())
        text = response.strip()
        m = BARE.match(text) if len(text) <= SHORT else None
        return Answer("choice", m.group(1).upper()) if m else None
