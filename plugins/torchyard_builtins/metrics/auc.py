"""ROC-AUC metrics. AUC needs every score at once, so the scores are ``cat`` states."""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

import torch
from pydantic import Field

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics._common import undefined
from torchyard_builtins.metrics.base import BuiltinMetric, ClassIndex


class ROCAUC(BuiltinMetric):
    """Area under the ROC curve: multi-class (one-vs-rest or one-vs-one) or binary.

    Outputs ``(n, C)`` with class-index targets give sklearn's
    ``roc_auc_score(targets, softmax(outputs), multi_class=, average=,
    labels=range(C))``; outputs ``(n,)`` or ``(n, 1)`` with 0/1 targets give
    the binary AUC. Undefined cases (one class present; a class absent from
    the targets with one-vs-rest macro) are NaN with an UndefinedMetricWarning.
    """

    higher_is_better = True
    scores: list[torch.Tensor]
    targets: list[torch.Tensor]

    def __init__(
        self,
        multi_class: Annotated[
            Literal["ovr", "ovo"],
            Field(description="One-vs-rest (each class against all others) or one-vs-one "
                  "(each pair of classes)."),
        ] = "ovr",
        average: Annotated[
            Literal["macro", "weighted"],
            Field(description="Plain mean over classes (pairs), or weighted by frequency."),
        ] = "macro",
        class_index: ClassIndex = None,
        outputs: Annotated[
            Literal["logits", "probabilities"],
            Field(description="What the model outputs; logits go through a softmax, since "
                  "multi-class AUC is defined on probabilities."),
        ] = "logits",
    ) -> None:
        super().__init__()
        if class_index is not None and multi_class != "ovr":
            raise ValueError("class_index needs multi_class 'ovr'")
        self.multi_class = multi_class
        self.average = average
        self.class_index = class_index
        self.outputs = outputs
        self.add_state("scores", [], reduce="cat")
        self.add_state("targets", [], reduce="cat")

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
            scores = outputs.reshape(-1)
        elif outputs.ndim == 2:
            scores = outputs.softmax(dim=-1) if self.outputs == "logits" else outputs
        else:
            raise ValueError(f"expected outputs (n,), (n, 1) or (n, C), got {tuple(outputs.shape)}")
        self.scores.append(scores.float())
        self.targets.append(targets.reshape(-1))

    def _compute(self) -> torch.Tensor:
        scores, targets = _joined(self.scores), _joined(self.targets)
        if scores.ndim == 1:
            return F.binary_roc_auc(scores, targets)
        if self.class_index is not None:
            if self.class_index >= scores.shape[1]:
                raise ValueError(
                    f"class_index {self.class_index} is out of range for {scores.shape[1]} classes"
                )
            with warnings.catch_warnings():  # only this class's AUC matters
                warnings.simplefilter("ignore", F.UndefinedMetricWarning)
                auc = F.multiclass_roc_auc(scores, targets, average=None)[self.class_index]
            if auc.isnan():
                return undefined(
                    f"ROC-AUC of class {self.class_index}: it is absent from the targets or "
                    "the only class present, the AUC is not defined"
                )
            return auc
        return F.multiclass_roc_auc(
            scores, targets, multi_class=self.multi_class, average=self.average
        )


class BinaryROCAUC(ROCAUC):
    """Area under the ROC curve of one score ``(n,)`` or ``(n, 1)`` against 0/1 targets."""

    def __init__(self) -> None:
        super().__init__()

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if not (outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)):
            raise ValueError(
                f"binary ROC-AUC expects outputs of shape (n,) or (n, 1), got {tuple(outputs.shape)}; "
                "for (n, C) class scores use 'roc_auc'"
            )
        super()._update(outputs, targets)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """One tensor of a cat state (no copy when there is one part)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
