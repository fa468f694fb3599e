"""Soft cross-entropy: the loss of `label_targets: soft`, on a target distribution per item (annotator votes)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: Optional[Sequence[float] | torch.Tensor] = None
) -> torch.Tensor:
    """`-sum_i sum_c w_c y_ic log p_ic / sum_i sum_c w_c y_ic` for logits and targets of shape (batch, classes).

    Unweighted (`w = 1`) it is the batch mean of each item's cross-entropy against its distribution. With class
    weights each item counts with the weight of its target mass, so one-hot targets give exactly
    `F.cross_entropy(logits, labels, weight=w)` (which divides by the summed weights of the labels); torch's own
    probability-target cross-entropy divides by the batch size instead and would not."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    targets = targets.to(device=log_probs.device, dtype=log_probs.dtype)
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=log_probs.dtype, device=log_probs.device)
        targets = targets * weights
    return -(targets * log_probs).sum() / targets.sum()
