"""The macro (balanced) error rate: one minus the mean per-class recall."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torchyard import Metric


class MacroError(Metric):
    """1 - mean per-class recall, over the classes present in the targets.

    Each class counts equally however rare it is, which makes it a fair
    error for imbalanced data (sklearn: ``1 - balanced_accuracy_score``).
    """

    higher_is_better = False  # an error rate: with trainer.mode auto, lower wins

    hits: torch.Tensor
    counts: torch.Tensor

    def __init__(
        self,
        num_classes: Annotated[
            int | None, Field(ge=2, description="Number of classes; default: from the data.")
        ] = None,
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes must be given or come from the data")
        self.num_classes = num_classes
        # sum states: per class, samples predicted right and samples seen
        self.add_state("hits", torch.zeros(num_classes, dtype=torch.long))
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Count, per target class, the samples and the correctly predicted ones."""
        if outputs.ndim != 2 or outputs.shape[1] != self.num_classes:
            raise ValueError(
                f"macro_error expects scores of shape (n, {self.num_classes}), "
                f"got {tuple(outputs.shape)}"
            )
        targets = targets.reshape(-1).long()
        correct = outputs.argmax(dim=-1) == targets
        self.counts += torch.bincount(targets, minlength=self.num_classes)
        self.hits += torch.bincount(targets[correct], minlength=self.num_classes)

    def compute(self) -> float:
        """The error; NaN before any sample was seen."""
        present = self.counts > 0
        if not bool(present.any()):
            return float("nan")
        recall = self.hits[present].double() / self.counts[present].double()
        return float(1.0 - recall.mean().item())
