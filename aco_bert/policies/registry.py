"""The policy registry: a ``routing:`` section's ``policy`` name -> its :class:`~aco_bert.policies.base.Policy` class.

Why a registry: the stack stage, the exporter, the evaluator and the runtime all turn the same config into a
policy; one table (filled by ``@register`` in each policy's module) means a new policy is one new file plus its
import line in :mod:`aco_bert.policies`, and an unknown name is refused where the config is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from aco_bert.registry import Registry

if TYPE_CHECKING:
    from aco_bert.policies.base import Policy
    from aco_bert.policies.config import PolicyConfig

REGISTRY = Registry("routing policy")
register: Callable[[str], Callable[[type], type]] = REGISTRY.register  # ``@register("threshold")``
names = REGISTRY.names  # every registered policy name
policy_class = REGISTRY.get  # the class registered as a name (ValueError naming the known ones otherwise)


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
