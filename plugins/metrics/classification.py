"""Classification metrics on logits (or scores) of shape ``(n, num_classes)``."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from torchyard.metric import Metric
from torchyard_builtins.metrics.functional import confusion_matrix, f1_from_confusion


class Accuracy(Metric):
    """Fraction of samples whose top-scoring class is the target."""

    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long))
        self.add_state("total", torch.zeros((), dtype=torch.long))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += (outputs.argmax(dim=-1) == targets).sum()
        self.total += targets.numel()

    def compute(self) -> float:
        return (self.correct.double() / self.total.clamp(min=1)).item()


class F1(Metric):
    """F1 score over classes, from an accumulated confusion matrix."""

    higher_is_better = True

    def __init__(
        self,
        average: Annotated[
            Literal["macro", "micro", "weighted"],
            Field(description="How per-class scores are combined (as in scikit-learn)."),
        ] = "macro",
        num_classes: Annotated[
            int | None,
            Field(ge=2, description="Number of classes; default: from the data or the outputs."),
        ] = None,
    ) -> None:
        super().__init__()
        self.average = average
        self.num_classes = num_classes
        self.add_state("matrix", torch.zeros((0, 0), dtype=torch.long))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        n = self.num_classes or outputs.shape[-1]
        if self.matrix.numel() == 0:
            self.matrix = torch.zeros((n, n), dtype=torch.long, device=outputs.device)
        self.matrix += confusion_matrix(outputs.argmax(dim=-1), targets, n)

    def compute(self) -> float:
        if self.matrix.numel() == 0:
            return 0.0
        return f1_from_confusion(self.matrix, self.average).item()
