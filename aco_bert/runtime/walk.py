"""One prompt's cascade walk without I/O: which tier runs next after each verdict, and when the walk stops.

Why its own module: the live proxy (:mod:`aco_bert.serve.cascade_proxy`, async upstream calls) and the offline
replay (:mod:`aco_bert.score.cascade`, recorded answers) drive :meth:`Router.escalate` the same way; the stop rule
(accepted, nothing above, ``cascade.max_runs`` reached, a verdict that does not climb) and the answer cut live
here once, and each caller only fetches answers and verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aco_bert.runtime.inputs import MAX_RESPONSE_CHARS


def verifier_text(text: str) -> str:
    """The answer as the verifier reads it: head+tail when longer than the router accepts."""
    if len(text) <= MAX_RESPONSE_CHARS:
        return text
    half = MAX_RESPONSE_CHARS // 2
    return text[:half] + text[len(text) - (MAX_RESPONSE_CHARS - half):]


def max_runs_of(router: Any) -> int:
    """The bundle's ``cascade.max_runs`` (unset: every tier)."""
    policy = getattr(getattr(router, "layer", None), "cascade", None)
    return int(getattr(policy, "max_runs", None) or router.spec.n_tiers)


@dataclass
class CascadeWalk:
    """One prompt's cascade, without I/O: :attr:`tier` is the tier to run next; :meth:`judged` records the verdict
    on its answer and returns the next tier, or None when the cascade stops (the answer is the last tier run)."""

    tier: int  # 1-based: the router's first tier, then each verdict's next tier
    max_runs: int
    tiers: list[int] = field(default_factory=list)  # tiers whose answers were judged, in order
    earlier: dict[int, str] = field(default_factory=dict)  # {tier: answer} of the runs before the current one
    p_correct: float = math.nan  # the verifier's P(correct) of the last judged run
    accepted: bool = False

    def responses(self) -> dict[int, str] | None:
        """The earlier answers, as :meth:`Router.escalate` takes them (None when this is the first run)."""
        return dict(self.earlier) or None

    def judged(self, text: str | None, e: Any) -> int | None:
        """Record escalation ``e`` on the current tier's answer ``text``; the next tier or None (stop)."""
        t = self.tier
        self.tiers.append(t)
        self.p_correct, self.accepted = float(e.p_success), bool(e.accept)
        if e.accept or e.next_tier is None or len(self.tiers) >= self.max_runs or int(e.next_tier) <= t:
            return None
        if text is not None:  # a trace-only cascade judges runs without their text
            self.earlier[t] = text
        self.tier = int(e.next_tier)
        return self.tier
