"""Safety floors: the lowest tier each request is allowed, from the router spec, never from a policy.

Domains found in the prompt by :func:`aco_bert.signals.handcrafted.detect_domains` or declared by the request, and
the request's ``step_type``, each give a minimum tier; the request may *raise* its own minimum but never lower it.
:meth:`aco_bert.policies.base.Policy.decide` applies ``RoutingContext.min_tier``, so no policy (learned,
conformal, cascade) can route below a floor. :func:`floors_for` computes them for the stack stage, the nested
report, the scorer's evaluation and the runtime. What each passes in differs: the runtime and the scorer give
detected *and* request-declared domains, the stack stage and the report detected domains only (outcome tables
declare none that are floor domains today), and the reference-policy replay (``aco_bert.evaluate``) declared
domains only (``RouterSpec.min_tier``), so its baseline tables do not move when a detector changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from aco_bert.data.schema import STEP_TYPES
from aco_bert.policies.base import StepContext
from aco_bert.spec import RouterSpec


@dataclass
class Floors:
    """Per-prompt minimum tier (0-based) and the human-readable reasons for it."""

    min_tier: np.ndarray  # (P,) 0-based
    reasons: list[list[str]]
    domains: list[list[str]]


def floors_for(spec: RouterSpec, texts: Sequence[str], step_types: Sequence[str | None] | None = None,
               domains: Sequence[Sequence[str] | None] | None = None,
               min_tiers: Sequence[int | None] | None = None, detect: bool = True,
               detected: Sequence[Sequence[str]] | None = None) -> Floors:
    """Minimum tier of each prompt from the spec's floors.

    ``domains``: domains the request declares (added to the detected ones, never replacing them).
    ``min_tiers``: a 1-based minimum the request asks for itself; it can only raise the floor.
    ``detect=False`` skips text detection (only declared domains count) -- for data without texts.
    ``detected``: the domains already detected in each text (e.g. read off the feature matrix by
    :func:`aco_bert.signals.handcrafted.domains_from_features`), used instead of scanning the texts again.
    """
    n = len(texts)
    for name, arg in (("step_types", step_types), ("domains", domains), ("min_tiers", min_tiers),
                      ("detected", detected)):
        if arg is not None and len(arg) != n:
            raise ValueError(f"{name} has {len(arg)} entries for {n} prompts")
    if detect and detected is None:
        from aco_bert.signals.handcrafted import detect_domains
    mins = np.zeros(n, dtype=int)
    reasons: list[list[str]] = []
    all_domains: list[list[str]] = []
    for i, text in enumerate(texts):
        if detected is not None:
            found = list(detected[i])
        else:
            found = list(detect_domains(text)) if detect else []
        for d in (domains[i] if domains is not None and domains[i] else ()):
            if d not in found:
                found.append(d)
        st = step_types[i] if step_types is not None else None
        if st is not None and not (isinstance(st, float) and np.isnan(st)) and st not in STEP_TYPES:
            raise ValueError(f"prompt {i}: unknown step_type {st!r}; expected one of {STEP_TYPES}")
        st = st if isinstance(st, str) else None
        r = []
        m1 = 1
        for d in found:
            f = int(spec.floors.get(d, 1))
            if f > 1:
                r.append(f"floor: {d} -> tier >= {f}")
            m1 = max(m1, f)
        if st is not None and int(spec.step_type_min.get(st, 1)) > 1:
            f = int(spec.step_type_min[st])
            r.append(f"step_type: {st} -> tier >= {f}")
            m1 = max(m1, f)
        req = min_tiers[i] if min_tiers is not None else None
        if req is not None:
            if not 1 <= int(req) <= spec.n_tiers:
                raise ValueError(f"prompt {i}: requested min tier {req} is not in 1..{spec.n_tiers}")
            if int(req) > m1:
                r.append(f"request: tier >= {int(req)}")
                m1 = int(req)
        mins[i] = m1 - 1
        reasons.append(r)
        all_domains.append(found)
    return Floors(mins, reasons, all_domains)


def build_context(spec: RouterSpec, probs: np.ndarray, exp_cost: np.ndarray, texts: Sequence[str] | None = None,
                  step_types: Sequence[str | None] | None = None,
                  domains: Sequence[Sequence[str] | None] | None = None,
                  min_tiers: Sequence[int | None] | None = None, budget: np.ndarray | float | None = None,
                  detected: Sequence[Sequence[str]] | None = None) -> tuple[StepContext, Floors]:
    """The routing context of a batch with the spec's floors applied (detected + declared domains, step types).

    ``detected``: see :func:`floors_for` (the runtime passes the domains its feature matrix already found)."""
    probs = np.asarray(probs, float)
    if probs.shape[1] != spec.n_tiers:
        raise ValueError(f"probs have {probs.shape[1]} tiers, spec {spec.name!r} has {spec.n_tiers}")
    n = probs.shape[0]
    fl = floors_for(spec, texts if texts is not None else [""] * n, step_types, domains, min_tiers,
                    detect=texts is not None, detected=detected)
    ctx = StepContext(probs, exp_cost, fl.min_tier, None if budget is None else np.broadcast_to(budget, (n,)),
                      step_types=None if step_types is None else np.asarray(list(step_types), dtype=object))
    return ctx, fl
