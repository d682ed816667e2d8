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

# (1 - p) is clamped to this before the power: d/dp (1 - p) ** gamma is
# infinite at p == 1 for gamma < 1, and a confident softmax reaches 1 exactly.
_TINY = 1e-12


class FocalLoss(nn.Module):
    """Focal loss on (n, C) logits and (n,) class-index targets."""

    alpha: torch.Tensor | None

    def __init__(
        self,
        gamma: Annotated[
            float,
            Field(ge=0.0, description="Focusing strength: 0 is cross-entropy; larger values "
                  "down-weight well-classified examples more."),
        ] = 2.0,
        alpha: Annotated[
            list[Annotated[float, Field(ge=0.0)]] | None,
            Field(min_length=1, description="Per-class weights (one number >= 0 per class); "
                  "unset: all 1."),
        ] = None,
        reduction: Annotated[
            Literal["mean", "sum", "none"],
            Field(description="'mean' over the counted samples, 'sum', or 'none' (one value "
                  "per sample)."),
        ] = "mean",
        ignore_index: Annotated[
            int, Field(description="Target value that is ignored and does not count.")
        ] = -100,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.register_buffer(
            "alpha", torch.tensor(alpha, dtype=torch.float32) if alpha is not None else None
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.alpha is not None and self.alpha.numel() != logits.shape[-1]:
            raise ValueError(
                f"focal loss: alpha has {self.alpha.numel()} values but the model gives "
                f"{logits.shape[-1]} classes"
            )
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
