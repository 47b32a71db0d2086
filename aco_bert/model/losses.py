"""Router losses: masked BCE over tiers, masked MSE on log cost, cross-entropy for auxiliary heads.

A missing outcome (NaN) is *unknown*, not a failure: it is masked out, contributes nothing to the loss and sends
exactly zero gradient to its tier's head. Targets may be graded (soft labels in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # torch.where (not multiplication) so a NaN/inf in a masked slot cannot leak into the loss or its gradient.
    zeroed = torch.where(mask, values, torch.zeros_like(values))
    return zeroed.sum() / mask.sum().clamp(min=1)


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean BCE over observed (prompt, tier) cells; NaN targets are masked. Soft targets in [0, 1] are allowed."""
    logits = logits.float()
    mask = ~torch.isnan(targets)
    y = torch.where(mask, targets, torch.zeros_like(targets)).to(logits.dtype)
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    pw = pos_weight.to(logits.device, logits.dtype) if pos_weight is not None else None
    loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw, reduction="none")
    return _masked_mean(loss, mask)


def masked_log_cost_mse(pred_log1p: torch.Tensor, cost_usd: torch.Tensor) -> torch.Tensor:
    """MSE between predicted log1p(cost) and log1p(observed USD cost); NaN costs are masked."""
    pred = pred_log1p.float()
    mask = ~torch.isnan(cost_usd)
    target = torch.log1p(torch.where(mask, cost_usd, torch.zeros_like(cost_usd)).clamp(min=0)).to(pred.dtype)
    return _masked_mean((pred - target) ** 2, mask)


def aux_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with ``IGNORE_INDEX`` for prompts without a label (zero, not NaN, when none has one)."""
    valid = labels != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def balanced_pos_weight(targets: np.ndarray, clip: tuple[float, float] = (0.1, 10.0)) -> np.ndarray:
    """Per-tier negative/positive ratio on observed cells (soft labels count fractionally), clipped."""
    obs = ~np.isnan(targets)
    pos = np.where(obs, targets, 0).sum(0)
    neg = np.where(obs, 1 - targets, 0).sum(0)
    w = np.where(pos > 0, neg / np.maximum(pos, 1e-9), 1.0)
    return np.clip(w, *clip).astype(np.float32)


@dataclass
class LossWeights:
    success: float = 1.0
    cost: float = 0.1
    aux: float = 0.1


class RouterLoss(nn.Module):
    """Weighted sum of the success, cost and auxiliary losses; returns (total, {part: value})."""

    def __init__(self, weights: LossWeights | None = None, pos_weight: torch.Tensor | np.ndarray | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.weights = weights or LossWeights()
        self.label_smoothing = label_smoothing
        pw = torch.as_tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None
        self.register_buffer("pos_weight", pw, persistent=False)

    def forward(self, output, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {
            "success": masked_bce_with_logits(output.logits, batch["targets"], self.pos_weight, self.label_smoothing)}
        total = self.weights.success * parts["success"]
        if output.cost is not None and "cost" in batch and self.weights.cost:
            parts["cost"] = masked_log_cost_mse(output.cost, batch["cost"])
            total = total + self.weights.cost * parts["cost"]
        if output.aux and self.weights.aux:
            for name, logits in output.aux.items():
                key = f"aux_{name}"
                if key in batch:
                    parts[key] = aux_cross_entropy(logits, batch[key])
                    total = total + self.weights.aux * parts[key]
        return total, {k: float(v.detach()) for k, v in parts.items()}
