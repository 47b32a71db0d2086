"""The response verifier's inputs: what one response shows about itself, and how it agrees with earlier runs.

Why these: post-hoc evidence beats ex-ante prompt analysis (Dekoninck et al.; FrugalGPT's answer scorer;
AutoMix's self-verification). Cheap and general signals of a wrong answer are: no extractable answer, hedging or
refusal, a malformed format (code that does not parse), degenerate repetition, low token logprobs, and above all
*disagreement* with the answers of the other tiers that already ran on the same prompt. The agreement block
depends on which tiers ran before, so it is computed per run from the set of earlier runs (the cascade's history),
weighting each earlier tier by its training success rate ("strength").

Everything here is numpy + regex (no torch): the runtime computes exactly these features for one run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from aco_bert.verify.extractors import Answer, AnswerExtractor, get_extractor

HEDGES = re.compile(r"\b(i'?m not (?:sure|certain)|not entirely sure|i think|i believe|possibly|perhaps|might be|"
                    r"it depends|hard to say|unclear|ambiguous|cannot (?:determine|be determined)|"
                    r"can'?t (?:determine|be sure))\b", re.I)
REFUSAL = re.compile(r"\b(i cannot|i can'?t|i'?m sorry|i am sorry|as an ai|i'?m unable|i am unable|i won'?t|"
                     r"i do not have enough|not possible to answer)\b", re.I)
OWN = ("answered", "log_chars", "hedges", "refusal", "valid", "repetition", "lp_mean", "lp_min")
HISTORY = ("n_earlier", "agree_max", "agree_mean", "agree_top", "agree_weighted", "votes", "top_strength")
N_OWN, N_HISTORY = len(OWN), len(HISTORY)


def own_features(text: str | None, answer: Answer | None, logprobs: Sequence[float] | None = None) -> np.ndarray:
    """The :data:`OWN` block of one response (all NaN when there is no response)."""
    out = np.full(N_OWN, np.nan)
    if logprobs:
        lp = np.asarray(logprobs, float)
        out[6], out[7] = float(lp.mean()), float(lp.min())
    if text is None:
        return out
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out[0] = float(answer is not None)
    out[1] = math.log1p(len(text))
    out[2] = float(len(HEDGES.findall(text)))
    out[3] = float(REFUSAL.search(text) is not None)
    out[4] = np.nan if answer is None else answer.valid
    out[5] = 0.0 if len(lines) < 2 else 1.0 - len(set(lines)) / len(lines)
    return out


@dataclass
class ParsedResponses:
    """A (P, T) response matrix read once: answers (object, None = no answer), own features (P, T, N_OWN)."""

    answers: np.ndarray
    own: np.ndarray
    present: np.ndarray  # (P, T) bool: a response exists

    def subset(self, idx: np.ndarray) -> "ParsedResponses":
        return ParsedResponses(self.answers[idx], self.own[idx], self.present[idx])


class ResponseReader:
    """Turns response texts into verifier feature blocks with one :class:`AnswerExtractor`."""

    def __init__(self, extractor: str | AnswerExtractor = "auto"):
        self.extractor = get_extractor(extractor) if isinstance(extractor, str) else extractor

    def answer(self, text: str | None) -> Answer | None:
        return None if text is None else self.extractor.extract(text)

    def parse(self, responses: np.ndarray) -> ParsedResponses:
        responses = np.asarray(responses, dtype=object)
        p_n, t_n = responses.shape
        answers = np.empty((p_n, t_n), dtype=object)
        own = np.full((p_n, t_n, N_OWN), np.nan)
        present = np.zeros((p_n, t_n), dtype=bool)
        for i in range(p_n):
            for t in range(t_n):
                r = responses[i, t]
                if isinstance(r, str):
                    a = self.answer(r)
                    answers[i, t], own[i, t], present[i, t] = a, own_features(r, a), True
        return ParsedResponses(answers, own, present)

    def history(self, answer: Answer | None, earlier: Sequence[tuple[Answer | None, float]]) -> np.ndarray:
        """The :data:`HISTORY` block of a run whose answer is ``answer``, given the earlier runs' (answer,
        strength) pairs. With no earlier run only ``n_earlier`` = 0 is known; a missing answer agrees with
        nothing (0)."""
        out = np.full(N_HISTORY, np.nan)
        out[0] = float(len(earlier))
        if not earlier:
            return out
        ag = np.array([0.0 if answer is None or a is None else self.extractor.agree(answer, a) for a, _ in earlier])
        st = np.array([s for _, s in earlier], float)
        top = int(np.argmax(st))
        out[1], out[2], out[3] = ag.max(), ag.mean(), ag[top]
        w = st.sum()
        out[4] = float((ag * st).sum() / w) if w > 0 else float(ag.mean())
        out[5] = float((ag >= 0.5).mean())
        out[6] = float(st[top])
        return out
