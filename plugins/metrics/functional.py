"""Pure metric functions on tensors; the metric classes call these."""

from __future__ import annotations

from typing import Literal

import torch

Average = Literal["macro", "micro", "weighted"]


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true class, predicted class]`` as an int64 matrix."""
    index = targets.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def f1_from_confusion(matrix: torch.Tensor, average: Average = "macro") -> torch.Tensor:
    """F1 from a confusion matrix, like ``sklearn.metrics.f1_score``.

    Classes that appear neither as a target nor as a prediction are left out
    of the macro and weighted averages (scikit-learn only averages over the
    labels present); a class with no true or predicted positives scores 0.
    """
    matrix = matrix.double()
    tp = matrix.diag()
    predicted = matrix.sum(0)
    actual = matrix.sum(1)
    if average == "micro":
        total = matrix.sum()
        return (2 * tp.sum() / (predicted.sum() + actual.sum())) if total > 0 else tp.sum() * 0
    denominator = predicted + actual
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    present = denominator > 0
    if average == "weighted":
        support = actual
        return (f1 * support).sum() / support.sum().clamp(min=1)
    return f1[present].mean() if present.any() else f1.sum() * 0
