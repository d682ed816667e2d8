"""Classification metrics on logits (or scores) ``(n, C)`` and class-index targets.

The predicted class is the argmax (the first one on ties, as numpy's). Most
metrics accumulate a ``C x C`` confusion matrix, a sum state, and derive
their value from it with the functions of :mod:`.functional`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics._common import as_float
from torchyard_builtins.metrics.base import Average, BuiltinMetric, ClassIndex, NumClasses


def _class_scores(outputs: torch.Tensor, what: str) -> torch.Tensor:
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise ValueError(
            f"{what} expects scores of shape (n, C) with C >= 2, got {tuple(outputs.shape)}"
        )
    return outputs


class Accuracy(BuiltinMetric):
    """Fraction of samples whose top-scoring class is the target."""

    higher_is_better = True
    correct: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = _class_scores(outputs, "accuracy")
        self.correct += (outputs.argmax(dim=-1) == targets.reshape(-1)).sum()

    def _compute(self) -> torch.Tensor:
        return as_float(self.correct) / self.n_samples


class TopKAccuracy(BuiltinMetric):
    """Fraction of samples whose target is among their k highest-scoring classes
    (ties: the higher class index first, as sklearn's ``top_k_accuracy_score``)."""

    higher_is_better = True
    correct: torch.Tensor

    def __init__(
        self,
        k: Annotated[int, Field(ge=1, description="How many top classes may hold the target.")] = 5,
    ) -> None:
        super().__init__()
        self.k = k
        self.add_state("correct", torch.zeros((), dtype=torch.long))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = _class_scores(outputs, "top_k_accuracy")
        self.correct += F.top_k_hits(outputs, targets, self.k).sum()

    def _compute(self) -> torch.Tensor:
        return as_float(self.correct) / self.n_samples


class _ConfusionMetric(BuiltinMetric):
    """Accumulates the confusion matrix of argmax predictions."""

    confusion: torch.Tensor

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros((0, 0), dtype=torch.long))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = _class_scores(outputs, type(self).__name__)
        n = self.num_classes or outputs.shape[-1]
        if self.confusion.numel() == 0:
            self.confusion = torch.zeros((n, n), dtype=torch.long, device=outputs.device)
        self.confusion += F.confusion_matrix(outputs.argmax(dim=-1), targets, n)


class BalancedAccuracy(_ConfusionMetric):
    """Mean recall over the classes present in the targets (robust to imbalance)."""

    higher_is_better = True

    def __init__(
        self,
        adjusted: Annotated[
            bool, Field(description="Rescale so that chance scores 0 and perfect scores 1.")
        ] = False,
        num_classes: NumClasses = None,
    ) -> None:
        super().__init__(num_classes)
        self.adjusted = adjusted

    def _compute(self) -> torch.Tensor:
        return F.balanced_accuracy_from_confusion(self.confusion, self.adjusted)


class _AveragedScore(_ConfusionMetric):
    """Precision, recall or F1: averaged over classes, or of one class."""

    higher_is_better = True
    score: ClassVar[F.Score]

    def __init__(
        self,
        average: Average = "macro",
        class_index: ClassIndex = None,
        num_classes: NumClasses = None,
    ) -> None:
        super().__init__(num_classes)
        self.average = average
        self.class_index = class_index

    def _compute(self) -> torch.Tensor:
        if self.class_index is None:
            return F.average_scores(self.confusion, self.score, self.average)
        classes = self.confusion.shape[0]
        if self.class_index >= classes:
            raise ValueError(f"class_index {self.class_index} is out of range for {classes} classes")
        return F.class_scores(self.confusion, self.score)[self.class_index]


class Precision(_AveragedScore):
    """Precision (how many predicted members of a class are right), zero_division=0."""

    score = "precision"


class Recall(_AveragedScore):
    """Recall (how many members of a class are found), zero_division=0."""

    score = "recall"


class F1(_AveragedScore):
    """F1 score, the harmonic mean of precision and recall, zero_division=0."""

    score = "f1"


class ConfusionMatrix(_ConfusionMetric):
    """The confusion matrix; logged as the fraction of samples on its diagonal.

    The loop logs one number per metric, so ``compute()`` returns the trace
    ratio (the accuracy); the matrix itself is :meth:`matrix`, readable
    after validation (e.g. from an ``on_validation_end`` hook through
    ``run.metrics``) until the next ``reset()``.
    """

    higher_is_better = True

    def __init__(
        self,
        normalize: Annotated[
            Literal["true", "pred", "all"] | None,
            Field(
                description="How matrix() normalizes, as sklearn: rows (true), columns (pred), "
                "all, or raw counts (null)."
            ),
        ] = None,
        num_classes: NumClasses = None,
    ) -> None:
        super().__init__(num_classes)
        self.normalize = normalize

    def matrix(self) -> torch.Tensor:
        """``[true class, predicted class]``: counts, or normalized as configured."""
        return F.normalize_confusion(self.confusion, self.normalize)

    def _compute(self) -> torch.Tensor:
        return as_float(self.confusion.diag().sum()) / self.confusion.sum()
