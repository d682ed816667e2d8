"""Soft macro-F1 loss: ``1 - macro F1`` computed on softmax probabilities.

Counting true/false positives with probabilities instead of hard decisions
makes F1 differentiable, so a model can be trained for the metric it is
judged on (useful on imbalanced classes, usually after or mixed with
cross-entropy). The macro average runs over the classes present in the
batch's targets: a class absent from the batch has no F1 to speak of, and
its false positives still cost the present classes their recall.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn


class SoftF1Loss(nn.Module):
    """``1 - soft macro F1`` on (n, C) logits and (n,) class-index targets."""

    def __init__(
        self,
        epsilon: Annotated[
            float,
            Field(gt=0.0, le=1.0, description="Added to each class's F1 denominator so it "
                  "is never zero."),
        ] = 1e-7,
    ) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits.float(), dim=-1)
        truth = F.one_hot(targets.long(), probs.shape[-1]).to(probs.dtype)
        tp = (probs * truth).sum(dim=0)
        fp = (probs * (1.0 - truth)).sum(dim=0)
        fn = ((1.0 - probs) * truth).sum(dim=0)
        f1 = 2.0 * tp / (2.0 * tp + fp + fn + self.epsilon)
        present = truth.sum(dim=0) > 0
        return 1.0 - f1[present].mean()
