"""Cross-entropy against smoothed targets (Szegedy et al., 2016).

The target distribution is ``1 - epsilon`` on the true class plus
``epsilon / C`` on every class, which keeps logits from growing without
bound on a confident training set. Same value as
``torch.nn.CrossEntropyLoss(label_smoothing=epsilon)``.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn


class LabelSmoothingCrossEntropy(nn.Module):
    """Label-smoothed cross-entropy on (n, C) logits and (n,) class indices,
    or (n, C) soft targets (class probabilities), smoothed alike."""

    def __init__(
        self,
        epsilon: Annotated[
            float,
            Field(ge=0.0, lt=1.0, description="Probability mass spread from the true class "
                  "over all classes."),
        ] = 0.1,
    ) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        if targets.is_floating_point() and targets.shape == logits.shape:
            nll = -(targets.float() * log_p).sum(dim=-1)  # soft targets: class probabilities
        else:
            nll = -log_p.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
        uniform = -log_p.mean(dim=-1)
        return ((1.0 - self.epsilon) * nll + self.epsilon * uniform).mean()
