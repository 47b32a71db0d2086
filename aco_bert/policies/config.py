"""``RoutingConfig``: the routing section of a stack dir (``stack.json``) and a bundle (``router.yaml``).

Why one dataclass: the stack stage writes it, the exporter may override a knob, the runtime reads it, and each of
them used to validate a plain dict its own way. Here it is validated once, on construction, and every reader gets
the same typed object (``RoutingConfig.from_dict(d, where=...)`` names the file in its error).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

MODES = ("stacked", "heads")
COST_HEADS_INPUTS = ("usd", "log1p")


@dataclass
class CascadeConfig:
    accept: float = 0.5  # accept the tier that ran when the verifier's P(success) >= accept
    accept_first: float | None = None  # the bar for a run with no earlier run (no agreement); None: accept
    max_runs: int | None = None  # tiers run at most per prompt (None: every tier)
    chain: list[str] | None = None  # escalation ladder (model names, cheapest first); None: the default policy
    first: str = "router"  # what runs first: "router" (the default policy) or "chain" (the ladder's bottom tier)

    def __post_init__(self) -> None:
        _number("cascade.accept", self.accept)
        _number("cascade.accept_first", self.accept_first)
        if self.accept_first is not None and not 0.0 <= float(self.accept_first) <= 1.0:
            raise ValueError(f"cascade.accept_first {self.accept_first} not in [0, 1]")
        if self.first not in ("router", "chain"):
            raise ValueError(f"cascade.first must be 'router' or 'chain', got {self.first!r}")
        if self.chain is not None and (not isinstance(self.chain, list) or not self.chain
                                       or not all(isinstance(c, str) for c in self.chain)):
            raise ValueError(f"cascade.chain must be a non-empty list of model names, got {self.chain!r}")
        if self.first == "chain" and self.chain is None:
            raise ValueError("cascade.first 'chain' needs cascade.chain")
        if self.max_runs is not None and (isinstance(self.max_runs, bool)
                                          or not isinstance(self.max_runs, numbers.Integral)):
            raise ValueError(f"cascade.max_runs must be an integer, got {self.max_runs!r}")
        if not 0.0 <= float(self.accept) <= 1.0:
            raise ValueError(f"cascade.accept {self.accept} not in [0, 1]")
        if self.max_runs is not None and int(self.max_runs) < 1:
            raise ValueError(f"cascade.max_runs {self.max_runs} must be >= 1")


def _number(where: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)):
        raise ValueError(f"{where} must be a finite number, got {v!r}")


@dataclass
class PolicyConfig:
    """One policy and its knob, e.g. ``{policy: threshold, tau: 0.7}`` (also the value of a ``per_step`` entry)."""

    policy: str = "threshold"  # a name in aco_bert.policies' registry: threshold | target-success | utility | budget
    tau: float | None = None  # threshold / target-success
    lam: float | None = None  # utility
    budget: float | None = None  # budget: default per-task USD (a request's own budget wins)

    def __post_init__(self) -> None:
        from aco_bert.policies.registry import policy_class

        cls = policy_class(self.policy)  # an unknown name is refused here, where the config is read
        for k in ("tau", "lam", "budget"):
            _number(k, getattr(self, k))
        for need in cls.requires:
            if getattr(self, need) is None:
                raise ValueError(f"routing policy {self.policy!r} needs {need}")
        if self.budget is not None and float(self.budget) < 0:
            raise ValueError(f"budget {self.budget} must be >= 0")


@dataclass
class RoutingConfig(PolicyConfig):
    """The bundle's whole routing section: default policy, per-step policies, cascade, and how it was chosen."""

    mode: str = "heads"  # stacked (XGBoost stacker) | heads (the heads' sigmoid); set by the stack stage
    target: float | None = None  # target success of target-success (documentation of how tau was chosen)
    delta: float | None = None  # Learn-then-Test risk level
    guaranteed: bool | None = None  # Learn-then-Test certified tau (False: tau is a fallback, see note)
    tau_source: str | None = None
    note: str | None = None
    per_step: dict[str, PolicyConfig] = field(default_factory=dict)  # step type -> its own policy
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    cost_heads_input: str = "usd"  # units of the ONNX `cost` output the cost model reads: usd | log1p

    def __post_init__(self) -> None:
        super().__post_init__()
        from aco_bert.data.schema import STEP_TYPES

        _number("target", self.target)
        _number("delta", self.delta)
        if not isinstance(self.per_step, dict):
            raise ValueError(f"per_step must be a mapping of step type -> policy, got {self.per_step!r}")
        bad = sorted(k for k in self.per_step if k not in STEP_TYPES)
        if bad:
            raise ValueError(f"per_step: unknown step types {bad}; expected {list(STEP_TYPES)}")
        wrong = sorted(k for k, v in self.per_step.items() if not isinstance(v, PolicyConfig))
        if wrong:
            raise ValueError(f"per_step.{wrong[0]}: expected a mapping like {{policy: threshold, tau: 0.7}}")
        if not isinstance(self.cascade, CascadeConfig):
            raise ValueError(f"cascade must be a mapping like {{accept: 0.5, max_runs: 2}}, got {self.cascade!r}")
        if self.mode not in MODES:
            raise ValueError(f"routing mode {self.mode!r} not in {MODES}")
        if self.cost_heads_input not in COST_HEADS_INPUTS:
            raise ValueError(f"cost_heads_input {self.cost_heads_input!r} not in {COST_HEADS_INPUTS}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "routing") -> "RoutingConfig":
        """The validated routing section; every error (nested ``cascade``/``per_step`` entries too) starts with
        ``where`` (e.g. ``bundles/x/router.yaml:routing``)."""
        from aco_bert.config import from_dict

        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        try:
            if isinstance(data.get("cascade"), dict):
                data["cascade"] = from_dict(CascadeConfig, data["cascade"], where=f"{where}.cascade")
            if isinstance(data.get("per_step"), dict):
                steps = {}
                for k, v in data["per_step"].items():
                    if not isinstance(v, (dict, PolicyConfig)):
                        raise ValueError(f"{where}.per_step.{k}: expected a mapping like "
                                         "{policy: threshold, tau: 0.7}")
                    steps[k] = v if isinstance(v, PolicyConfig) else from_dict(PolicyConfig, v,
                                                                                where=f"{where}.per_step.{k}")
                data["per_step"] = steps
            return from_dict(cls, data, where=where)
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from e

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, **knobs: Any) -> "RoutingConfig":
        """A copy with the non-None ``knobs`` replaced (validated again): an exporter's ``--tau 0.6``."""
        d = self.to_dict()
        d.update({k: v for k, v in knobs.items() if v is not None})
        return RoutingConfig.from_dict(d)
