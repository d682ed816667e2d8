"""Pure metric functions on tensors; the metric classes call these.

Classification from a confusion matrix lives here; ROC-AUC, regression and
ranking live in sibling modules and are re-exported, so every function is
importable from ``torchyard_builtins.metrics.functional``. Each function
matches its scikit-learn namesake (tests check to 1e-6).
"""

from __future__ import annotations

from typing import Literal

import torch

from torchyard_builtins.metrics._common import (
    UndefinedMetricWarning,
    as_float,
    check_class_targets,
    undefined,
)
from torchyard_builtins.metrics.functional_auc import binary_roc_auc, multiclass_roc_auc
from torchyard_builtins.metrics.functional_ranking import (
    average_precision,
    ndcg,
    reciprocal_rank,
)
from torchyard_builtins.metrics.functional_regression import (
    mean_absolute_error,
    mean_squared_error,
    r2_from_sums,
    r2_score,
    root_mean_squared_error,
)

__all__ = [
    "UndefinedMetricWarning",
    "average_precision",
    "average_scores",
    "balanced_accuracy_from_confusion",
    "binary_roc_auc",
    "class_scores",
    "confusion_matrix",
    "f1_from_confusion",
    "mean_absolute_error",
    "mean_squared_error",
    "multiclass_roc_auc",
    "ndcg",
    "normalize_confusion",
    "precision_from_confusion",
    "r2_from_sums",
    "r2_score",
    "recall_from_confusion",
    "reciprocal_rank",
    "root_mean_squared_error",
    "top_k_hits",
]

Average = Literal["macro", "micro", "weighted"]
Score = Literal["precision", "recall", "f1"]


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true class, predicted class]`` as an int64 matrix, like
    ``sklearn.metrics.confusion_matrix`` with ``labels=range(num_classes)``."""
    targets = check_class_targets(targets, num_classes)
    index = targets * num_classes + preds.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def normalize_confusion(
    matrix: torch.Tensor, normalize: Literal["true", "pred", "all"] | None = None
) -> torch.Tensor:
    """The matrix as sklearn's ``normalize=``: rows (``true``), columns
    (``pred``) or everything (``all``) sum to 1; empty rows stay 0."""
    if normalize is None:
        return matrix
    matrix = as_float(matrix)
    if normalize == "true":
        total = matrix.sum(1, keepdim=True)
    elif normalize == "pred":
        total = matrix.sum(0, keepdim=True)
    else:
        total = matrix.sum()
    return torch.where(total > 0, matrix / total.clamp(min=1), torch.zeros_like(matrix))


def class_scores(matrix: torch.Tensor, score: Score) -> torch.Tensor:
    """Per-class precision, recall or F1 (as floats) from a confusion matrix; a
    class with a zero denominator scores 0 (sklearn's ``zero_division=0``)."""
    matrix = as_float(matrix)
    tp = matrix.diag()
    predicted, actual = matrix.sum(0), matrix.sum(1)
    numerator, denominator = {
        "precision": (tp, predicted),
        "recall": (tp, actual),
        "f1": (2 * tp, predicted + actual),
    }[score]
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(tp))


def average_scores(matrix: torch.Tensor, score: Score, average: Average = "macro") -> torch.Tensor:
    """Precision, recall or F1 averaged as ``sklearn.metrics.f1_score`` does.

    ``macro`` averages over the classes present in the targets or the
    predictions (sklearn's default labels), ``weighted`` weights by the
    number of true samples, ``micro`` pools all counts (for single-label
    data, micro precision, recall and F1 all equal accuracy).
    """
    matrix = as_float(matrix)
    if average == "micro":
        total = matrix.sum()
        return matrix.diag().sum() / total if total > 0 else total * 0
    per_class = class_scores(matrix, score)
    actual = matrix.sum(1)
    if average == "weighted":
        return (per_class * actual).sum() / actual.sum().clamp(min=1)
    present = (actual + matrix.sum(0)) > 0
    return per_class[present].mean() if present.any() else per_class.sum() * 0


def precision_from_confusion(matrix: torch.Tensor, average: Average = "macro") -> torch.Tensor:
    """Precision (``sklearn.metrics.precision_score``, ``zero_division=0``)."""
    return average_scores(matrix, "precision", average)


def recall_from_confusion(matrix: torch.Tensor, average: Average = "macro") -> torch.Tensor:
    """Recall (``sklearn.metrics.recall_score``, ``zero_division=0``)."""
    return average_scores(matrix, "recall", average)


def f1_from_confusion(matrix: torch.Tensor, average: Average = "macro") -> torch.Tensor:
    """F1 (``sklearn.metrics.f1_score``, ``zero_division=0``)."""
    return average_scores(matrix, "f1", average)


def balanced_accuracy_from_confusion(matrix: torch.Tensor, adjusted: bool = False) -> torch.Tensor:
    """Mean recall over the classes present in the targets, like
    ``sklearn.metrics.balanced_accuracy_score``; ``adjusted`` rescales so
    that chance scores 0 and perfect 1 (undefined, NaN, with one class)."""
    matrix = as_float(matrix)
    actual = matrix.sum(1)
    present = actual > 0
    if not present.any():
        return actual.sum() * 0
    score = (matrix.diag()[present] / actual[present]).mean()
    if adjusted:
        classes = int(present.sum())
        if classes == 1:
            return undefined(
                "adjusted balanced accuracy: only one class present in the targets", matrix.device
            )
        score = (score - 1.0 / classes) / (1 - 1.0 / classes)
    return score


def top_k_hits(scores: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each sample's target is among its ``k`` highest scores (bool).

    Ties are broken as ``sklearn.metrics.top_k_accuracy_score`` breaks them:
    among equal scores the higher class index ranks first. O(n * C), no sort.
    """
    targets = check_class_targets(targets, scores.shape[-1])
    own = scores.gather(1, targets[:, None])
    classes = torch.arange(scores.shape[-1], device=scores.device)
    ahead = (scores > own) | ((scores == own) & (classes > targets[:, None]))
    return ahead.sum(1) < k
