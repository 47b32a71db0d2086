"""What a routing decision is: the types shared by the runtime, the server and the batch scorer.

Kept free of heavy imports (numpy only through callers) so the HTTP layer and the scorer agree on one shape.
Tiers are 1-based here, as users and router specs name them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class RoutingInputError(ValueError):
    """A request the router refuses: empty prompt, unknown step type, negative budget, bad tier. -> HTTP 4xx."""


class BundleError(RuntimeError):
    """A bundle that cannot be trusted or read: missing file, sha256 mismatch, unknown format version."""


@dataclass
class Decision:
    tier: int  # 1-based chosen tier
    model: str
    probs: list[float]  # calibrated P(success) per tier, cheapest first
    expected_cost: list[float]  # expected USD per tier
    reasons: list[str] = field(default_factory=list)  # e.g. "floor: legal -> tier >= 4", "threshold 0.71"
    policy: str = "threshold"
    n_tokens: int = 0
    truncated: bool = False  # the prompt was longer than max_length and cut (head+tail)
    min_tier: int = 1

    @property
    def p_success(self) -> float:
        return self.probs[self.tier - 1]

    @property
    def cost(self) -> float:
        return self.expected_cost[self.tier - 1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["p_success"] = self.p_success
        d["cost"] = self.cost
        return d


@dataclass
class RunOutput:
    """What a tier's run answered, for the response verifier: its text, the texts of the tiers that ran before it
    on the same prompt (0-based tier -> text, for answer agreement) and optional token logprobs."""

    response: str | None = None
    earlier: dict[int, str] = field(default_factory=dict)
    logprobs: list[float] | None = None


@dataclass
class Escalation:
    accept: bool  # keep tier_run's answer
    p_success: float  # P(tier_run succeeded | prompt, its trace)
    tier_run: int
    next_tier: int | None  # 1-based tier to run next when not accepted (None: nothing above)
    next_model: str | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
