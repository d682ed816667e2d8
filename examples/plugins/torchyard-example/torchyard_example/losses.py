"""PolyLoss, Poly-1 form (Leng et al., 2022, https://arxiv.org/abs/2204.12511).

Cross-entropy is the series ``sum_j (1 - pt)^j / j``; Poly-1 adds
``epsilon`` to the weight of its leading term::

    poly1 = CE + epsilon * (1 - pt)

where ``pt`` is the softmax probability of the target class. ``epsilon = 0``
is plain cross-entropy; since ``CE >= 1 - pt``, any ``epsilon >= -1`` keeps
the loss non-negative.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field


class Poly1CrossEntropy(torch.nn.Module):
    """Poly-1 loss on logits ``(n, C)`` and class-index targets ``(n,)``."""

    def __init__(
        self,
        epsilon: Annotated[
            float,
            Field(ge=-1, description="Weight added to the (1 - pt) term; 0 is cross-entropy."),
        ] = 1.0,
        reduction: Annotated[
            Literal["mean", "sum"], Field(description="How per-sample losses are combined.")
        ] = "mean",
    ) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.reduction = reduction

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The reduced loss of a batch, a scalar tensor."""
        ce = F.cross_entropy(outputs, targets.reshape(-1).long(), reduction="none")
        pt = torch.exp(-ce)  # the target's probability, stable for any logits
        loss = ce + self.epsilon * (1.0 - pt)
        return loss.mean() if self.reduction == "mean" else loss.sum()

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, reduction={self.reduction!r}"
