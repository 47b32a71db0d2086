"""What every routing policy shares: the context it sees and the :class:`Policy` interface.

One interface for every policy (reference ones replayed by the evaluator, learned ones, the runtime's), and the
safety floor applied in one place, :meth:`Policy.decide`, so no policy can route below a prompt's minimum tier.
Tiers are 0-based indices here (tier 1 of a spec is index 0) and ordered cheapest first.

A new policy is one module in this package: a :class:`Policy` subclass decorated with
:func:`aco_bert.policies.registry.register` (its name in a ``routing:`` section) plus its import line in
:mod:`aco_bert.policies` (the registration).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aco_bert.policies.config import PolicyConfig


@dataclass
class RoutingContext:
    """What a policy sees for a batch of P prompts over T tiers."""

    probs: np.ndarray  # (P, T) calibrated P(success) per tier
    exp_cost: np.ndarray  # (P, T) expected USD cost per tier
    min_tier: np.ndarray | None = None  # (P,) 0-based lowest allowed tier (floors, step-type minimums)
    budget: np.ndarray | None = None  # (P,) per-task USD budget, NaN = none

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=float)
        self.exp_cost = np.asarray(self.exp_cost, dtype=float)
        if self.probs.ndim != 2 or self.probs.shape != self.exp_cost.shape:
            raise ValueError(f"probs {self.probs.shape} and exp_cost {self.exp_cost.shape} must be equal (P, T)")
        p, t = self.probs.shape
        self.min_tier = np.zeros(p, dtype=int) if self.min_tier is None else np.asarray(self.min_tier, dtype=int)
        if self.min_tier.shape != (p,) or (self.min_tier < 0).any() or (self.min_tier >= t).any():
            raise ValueError(f"min_tier must be (P,) ints in [0, {t})")
        if self.budget is not None:
            self.budget = np.broadcast_to(np.asarray(self.budget, dtype=float), (p,)).copy()
            if (self.budget[~np.isnan(self.budget)] < 0).any():
                raise ValueError("budget must be >= 0")

    @property
    def shape(self) -> tuple[int, int]:
        return self.probs.shape  # type: ignore[return-value]

    def allowed(self) -> np.ndarray:
        """(P, T) bool: tiers at or above each prompt's minimum."""
        return np.arange(self.shape[1])[None, :] >= self.min_tier[:, None]

    def allowed_row(self, i: int) -> np.ndarray:
        """(T,) bool: row ``i`` of :meth:`allowed` (without building the whole matrix, for per-prompt reasons)."""
        return np.arange(self.shape[1]) >= self.min_tier[i]


@dataclass
class StepContext(RoutingContext):
    """A :class:`RoutingContext` that also knows each prompt's step type (for :class:`~aco_bert.policies.PerStep`)."""

    step_types: np.ndarray | None = None  # (P,) object array of str | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_types is not None:
            self.step_types = np.asarray(self.step_types, dtype=object)
            if self.step_types.shape != (self.shape[0],):
                raise ValueError(f"step_types must be ({self.shape[0]},)")


def masked(values: np.ndarray, allowed: np.ndarray, fill: float) -> np.ndarray:
    """``values`` where ``allowed``, ``fill`` elsewhere (an argmax/argmin then never picks a disallowed tier)."""
    return np.where(allowed, values, fill)


class Policy(ABC):
    """Base class: subclasses implement :meth:`choose`; callers use :meth:`decide` (floors enforced).

    :meth:`label` and :meth:`reason` explain one prompt's choice (the runtime's ``Decision.policy`` and
    ``Decision.reasons``); composite policies delegate them to the part that chose that prompt.
    """

    name: str = "policy"
    requires: tuple[str, ...] = ()  # PolicyConfig knobs that must be set for this policy (checked by the config)

    @abstractmethod
    def choose(self, ctx: RoutingContext) -> np.ndarray:
        """(P,) 0-based tier per prompt. May ignore floors: :meth:`decide` enforces them."""

    def decide(self, ctx: RoutingContext) -> np.ndarray:
        tiers = np.asarray(self.choose(ctx), dtype=int)
        return np.maximum(tiers, ctx.min_tier)

    def label(self, ctx: RoutingContext, i: int) -> str:
        """Name of the policy that chose prompt ``i`` (a composite names its part, e.g. ``utility (edit)``)."""
        return self.name

    def reason(self, ctx: RoutingContext, i: int, raw_tier: int) -> str:
        """One human-readable line on why prompt ``i`` got ``raw_tier`` (0-based, before floors)."""
        return self.name

    @classmethod
    def from_config(cls, cfg: "PolicyConfig") -> "Policy":
        """This policy from its ``routing:`` knobs (registered policies override it)."""
        raise TypeError(f"{cls.__name__} cannot be built from a routing config")


def knob(cfg: Any, name: str, default: Any = None) -> Any:
    """``cfg.name`` when the config has that field (a :class:`RoutingConfig` has more than a PolicyConfig)."""
    v = getattr(cfg, name, None)
    return default if v is None else v
