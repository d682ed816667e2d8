"""Focal loss (Lin et al., 2017), multi-class softmax form.

``FL = -alpha[y] * (1 - p_y) ** gamma * log p_y``: the ``(1 - p_y) ** gamma``
factor shrinks the loss of examples the model already gets right, so
training concentrates on the hard ones. With ``gamma=0`` and no ``alpha``
it is exactly cross-entropy.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from torchyard_builtins.losses.balance import Balanced, class_weights

# (1 - p) is clamped to this before the power: d/dp (1 - p) ** gamma is
# infinite at p == 1 for gamma < 1, and a confident softmax reaches 1 exactly.
_TINY = 1e-12


class FocalLoss(nn.Module):
    """Focal loss on (n, C) logits and (n,) class-index targets, or (n, C)
    soft targets (class probabilities)."""

    alpha: torch.Tensor | None

    def __init__(
        self,
        gamma: Annotated[
            float,
            Field(ge=0.0, description="Focusing strength: 0 is cross-entropy; larger values "
                  "down-weight well-classified examples more."),
        ] = 2.0,
        alpha: Annotated[
            list[Annotated[float, Field(ge=0.0)]] | Balanced | None,
            Field(description="Per-class weights (one number >= 0 per class), or 'balanced': "
                  "n / (classes x count) from the training split's class counts; unset: all 1."),
        ] = None,
        reduction: Annotated[
            Literal["mean", "sum", "none"],
            Field(description="'mean' over the counted samples, 'sum', or 'none' (one value "
                  "per sample)."),
        ] = "mean",
        ignore_index: Annotated[
            int, Field(description="Target value that is ignored and does not count.")
        ] = -100,
        class_counts: Annotated[
            list[int] | None,
            Field(description="Samples per class in the training split; filled in from the data "
                  "(used by alpha: balanced)."),
        ] = None,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
        self.ignore_index = ignore_index
        weights = class_weights(alpha, class_counts, loss="focal")
        if weights is not None and not weights:
            raise ValueError("alpha: give one weight per class")
        self.register_buffer(
            "alpha", torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.alpha is not None and self.alpha.numel() != logits.shape[-1]:
            raise ValueError(
                f"focal loss: alpha has {self.alpha.numel()} values but the model gives "
                f"{logits.shape[-1]} classes"
            )
        if targets.is_floating_point() and targets.shape == logits.shape:
            return self._soft(logits, targets.float())
        keep = targets != self.ignore_index
        safe = torch.where(keep, targets, torch.zeros_like(targets)).long()
        log_p = F.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        one_minus_p = (-torch.expm1(log_p)).clamp_min(_TINY)  # 1 - p, accurately
        loss = -one_minus_p.pow(self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha[safe]
        loss = loss * keep
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / keep.sum().clamp_min(1)

    def _soft(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Soft targets (n, C) class probabilities, as MixUp makes: the focal
        term of every class weighted by its probability,
        ``-sum_c alpha_c y_c (1 - p_c) ** gamma log p_c`` (one-hot targets:
        the class-index loss)."""
        log_p = F.log_softmax(logits, dim=-1)
        one_minus_p = (-torch.expm1(log_p)).clamp_min(_TINY)
        loss = -(targets * one_minus_p.pow(self.gamma) * log_p)
        if self.alpha is not None:
            loss = loss * self.alpha
        loss = loss.sum(dim=-1)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()
