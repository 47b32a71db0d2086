"""The complete-case rule: reference policies are chosen, and every policy compared, on the prompts every candidate
model ran.

Why: a model that ran 562 of 730 prompts has a success rate over *its* 562 prompts; comparing it with another
model's rate over all 730 (picking it as frontier, zero router or hull vertex) compares different prompt sets, and
the easier subset wins. So the evaluator keeps only the prompts on which every candidate (every model at or above
the prompt's floor) has a known outcome, and says so in its notes and JSON (``zero_router_rule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class CompleteCase:
    """Which prompts every candidate ran (``keep``), and which models lack outcomes on the others."""

    keep: np.ndarray  # (P,) bool
    models: list[str]
    lacking: dict[str, int]  # model -> candidate prompts without its outcome (only models that lack some)

    @property
    def n(self) -> int:
        return int(self.keep.sum())

    @property
    def n_total(self) -> int:
        return int(len(self.keep))

    @property
    def complete(self) -> bool:
        return self.n == self.n_total

    def rule(self) -> str:
        """The printed rule (notes and JSON ``zero_router_rule``)."""
        if self.complete:
            return f"complete: all {self.n_total} prompts have an outcome of every candidate model"
        worst = sorted(self.lacking.items(), key=lambda kv: -kv[1])
        lack = ", ".join(f"{m} lacks {k}" for m, k in worst[:5]) + (f", +{len(worst) - 5} more" if len(worst) > 5
                                                                      else "")
        return (f"complete-case: {self.n} of {self.n_total} prompts every candidate ran; frontier, zero router, "
                f"hull and every policy are measured on them only ({lack})")


def complete_case(success: np.ndarray, models: Sequence[str], min_tier: np.ndarray | None = None) -> CompleteCase:
    """Prompts where every model at or above the prompt's (0-based) floor has a known outcome. ``success`` is
    (P, len(models)) in the order of ``models``. No such prompt -> a clear error naming the sparsest models."""
    s = np.asarray(success, dtype=float)
    p, t = s.shape
    lo = np.zeros(p, dtype=int) if min_tier is None else np.asarray(min_tier, dtype=int)
    candidate = np.arange(t)[None, :] >= lo[:, None]
    hole = candidate & np.isnan(s)
    keep = ~hole.any(axis=1)
    lacking = {m: int(k) for m, k in zip(models, hole.sum(axis=0)) if k}
    cc = CompleteCase(keep=keep, models=list(models), lacking=lacking)
    if p and not cc.n:
        raise ValueError("no prompt has an outcome of every candidate model, so no two models can be compared on "
                         "the same prompts; choose models that ran the same prompts (--models a,b,...). Sparsest: "
                         + ", ".join(f"{m} lacks {k} of {p}" for m, k in
                                     sorted(lacking.items(), key=lambda kv: -kv[1])[:5]))
    return cc
