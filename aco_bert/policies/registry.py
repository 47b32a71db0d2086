"""The policy registry: a ``routing:`` section's ``policy`` name -> its :class:`~aco_bert.policies.base.Policy` class.

Why a registry: the stack stage, the exporter, the evaluator and the runtime all turn the same config into a
policy; one table (filled by ``@register`` in each policy's module) means a new policy is one new file plus its
import line in :mod:`aco_bert.policies`, and an unknown name is refused where the config is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from aco_bert.policies.base import Policy
    from aco_bert.policies.config import PolicyConfig

P = TypeVar("P", bound=type)

_POLICIES: dict[str, type] = {}


def register(name: str) -> Callable[[P], P]:
    """Class decorator: ``@register("threshold")`` makes ``policy: threshold`` build that class."""

    def deco(cls: P) -> P:
        if name in _POLICIES and _POLICIES[name] is not cls:
            raise ValueError(f"routing policy {name!r} is already registered ({_POLICIES[name].__name__})")
        _POLICIES[name] = cls
        return cls

    return deco


def names() -> tuple[str, ...]:
    """Every registered policy name."""
    return tuple(_POLICIES)


def policy_class(name: str) -> type:
    """The class registered as ``name`` (ValueError naming the known ones otherwise)."""
    try:
        return _POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown routing policy {name!r}; expected one of {names()}") from None


def named_policy(cfg: "PolicyConfig") -> "Policy":
    """The policy ``cfg.policy`` names, with its knobs; for a RoutingConfig: its default policy alone."""
    return policy_class(cfg.policy).from_config(cfg)


def from_config(cfg: "PolicyConfig") -> "Policy":
    """The policy of a config.

    A :class:`~aco_bert.policies.config.PolicyConfig` gives the policy it names. A
    :class:`~aco_bert.policies.config.RoutingConfig` gives a bundle's whole routing rule: a request that carries
    its own budget is routed by :class:`~aco_bert.policies.budget.Budget`, a step type with a ``per_step`` entry by
    its own policy, every other prompt by the default policy (:func:`named_policy`).
    """
    from aco_bert.policies.config import RoutingConfig

    pol = named_policy(cfg)
    if not isinstance(cfg, RoutingConfig):
        return pol
    from aco_bert.policies.budget import RequestBudget
    from aco_bert.policies.per_step import PerStep

    if cfg.per_step:
        pol = PerStep(pol, {k: named_policy(v) for k, v in cfg.per_step.items()})
    return RequestBudget(pol)
