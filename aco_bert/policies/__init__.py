"""Routing policies: map calibrated P(success) and expected cost per tier to one tier per prompt.

- :mod:`.base`: :class:`RoutingContext` (what a policy sees), :class:`Policy` (``choose``; ``decide`` enforces the
  floors; ``label``/``reason`` explain a prompt's choice).
- one module per policy: :mod:`.threshold`, :mod:`.utility`, :mod:`.budget`, :mod:`.target_success` (selectable
  by name in a ``routing:`` section), :mod:`.fixed`, :mod:`.random` (evaluation references), :mod:`.per_step`,
  :mod:`.chain` (an escalation ladder), :mod:`.cascade` (composites).
- :mod:`.floors`: the safety floors every policy is held to; :mod:`.config`: the ``routing:`` section as typed
  dataclasses; :mod:`.registry`: name -> policy class, and :func:`from_config`.

A new policy: one new module with a ``@register("name")`` :class:`Policy` subclass, and its import line below.
"""

from aco_bert.policies.base import Policy, RoutingContext, StepContext
from aco_bert.policies.registry import from_config, named_policy, names, policy_class, register

# the registration: importing a policy's module registers it
from aco_bert.policies.threshold import Threshold
from aco_bert.policies.utility import Utility
from aco_bert.policies.budget import Budget, RequestBudget
from aco_bert.policies.target_success import TargetSuccess
from aco_bert.policies.fixed import FixedTier
from aco_bert.policies.random import Random
from aco_bert.policies.per_step import PerStep
from aco_bert.policies.chain import Chain
from aco_bert.policies.cascade import Cascade, CascadeResult
from aco_bert.policies.floors import Floors, build_context, floors_for
from aco_bert.policies.config import CascadeConfig, PolicyConfig, RoutingConfig

__all__ = [
    "Budget", "Cascade", "Chain", "CascadeConfig", "CascadeResult", "FixedTier", "Floors", "PerStep", "Policy",
    "PolicyConfig", "Random", "RequestBudget", "RoutingConfig", "RoutingContext", "StepContext", "TargetSuccess",
    "Threshold", "Utility", "build_context", "floors_for", "from_config", "named_policy", "names", "policy_class",
    "register",
]
