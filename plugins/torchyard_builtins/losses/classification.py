"""Classification losses."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from torchyard_builtins.losses.balance import Balanced, class_weights


def cross_entropy(
    weight: Annotated[
        list[Annotated[float, Field(ge=0)]] | Balanced | None,
        Field(description="Per-class weights (one number >= 0 per class), or 'balanced': "
              "n / (classes x count) from the training split's class counts; unset: all 1."),
    ] = None,
    ignore_index: Annotated[
        int, Field(description="Target value that is ignored and does not count.")
    ] = -100,
    label_smoothing: Annotated[
        float,
        Field(ge=0.0, lt=1.0, description="Mass moved from the true class to all classes."),
    ] = 0.0,
    class_counts: Annotated[
        list[int] | None,
        Field(description="Samples per class in the training split; filled in from the data "
              "(used by weight: balanced)."),
    ] = None,
) -> nn.Module:
    """Cross-entropy on logits (``torch.nn.CrossEntropyLoss``), on class
    indices or soft targets."""
    weights = class_weights(weight, class_counts, loss="cross_entropy")
    return CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` whose soft targets (float (n, C) class
    probabilities, as MixUp makes) weigh like class indices: with class
    weights, the mean divides by the targets' total weight ``sum_i sum_c
    w_c y_ic`` (torch divides by n), so one-hot targets give exactly the loss
    of their class indices, smoothing and weights included."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.weight is None or not (target.is_floating_point() and target.shape == input.shape):
            return super().forward(input, target)  # torch's soft targets are right unweighted
        log_p = F.log_softmax(input.float(), dim=-1)
        target = target.float()
        smoothed = target * (1.0 - self.label_smoothing) + self.label_smoothing / input.shape[-1]
        loss = -(smoothed * self.weight * log_p).sum(dim=-1)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / (target * self.weight).sum()
