"""Binary cross-entropy on logits, for binary and multi-label targets.

Registered with ``targets="multilabel"``: (n, C) logits against (n, C)
0/1 targets. Binary classification is the ``C == 1`` case and may also
give (n,) or (n, 1) logits against (n,) targets: a trailing size-1 axis is
squeezed rather than broadcast (broadcasting (n, 1) against (n,) would
silently compare every sample with every target). Integer targets are
cast to float.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from torchyard_builtins.losses.shapes import match_shapes


class BCEWithLogits(nn.Module):
    """``torch.nn.BCEWithLogitsLoss`` that accepts (n,)/(n, 1) binary outputs."""

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        pos_weight: Annotated[
            list[Annotated[float, Field(ge=0.0)]] | None,
            Field(min_length=1, description="Weight of the positive examples, one per label "
                  "(or one for all); > 1 favours recall. Unset: all 1."),
        ] = None,
        reduction: Annotated[
            Literal["mean", "sum", "none"],
            Field(description="'mean' over all elements, 'sum', or 'none' (elementwise)."),
        ] = "mean",
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.register_buffer(
            "pos_weight",
            torch.tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None,
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = match_shapes(logits, targets, "bce")
        if self.pos_weight is not None and self.pos_weight.numel() not in (1, logits.shape[-1]):
            raise ValueError(
                f"bce: pos_weight has {self.pos_weight.numel()} values but the model gives "
                f"{logits.shape[-1]} labels"
            )
        logits = logits.float()
        return F.binary_cross_entropy_with_logits(
            logits, targets.to(logits.dtype), pos_weight=self.pos_weight, reduction=self.reduction
        )
