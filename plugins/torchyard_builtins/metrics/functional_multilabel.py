"""Multi-label (and binary) metric functions on 0/1 label matrices.

Outputs ``(n, C)`` hold one logit (or probability) per label; targets
``(n, C)`` are multi-hot 0/1. A binary task is the ``C == 1`` case. A
label is predicted when its probability reaches the threshold (``p >= t``,
as the binary and multi-label tasks decode predictions); for logits the
test is ``logit >= log(t / (1 - t))``, the same rule without the rounding
of a sigmoid.

Precision, recall and F1 come from per-label counts of true positives,
false positives and false negatives (sum states), averaged as
``sklearn.metrics.f1_score`` averages multi-hot targets; a zero
denominator scores 0 (``zero_division=0``). Tests check each function
against scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch

from torchyard_builtins.metrics._common import UndefinedMetricWarning, as_float, undefined
from torchyard_builtins.metrics.functional_ranking import average_precision

__all__ = [
    "LabelAverage",
    "OutputKind",
    "Score",
    "as_label_matrix",
    "average_label_scores",
    "count_non_binary",
    "label_counts",
    "multilabel_average_precision",
    "predict_labels",
    "sample_scores",
]

#: How per-label scores combine, as scikit-learn's ``average=``.
LabelAverage = Literal["micro", "macro", "weighted", "samples"]
Score = Literal["precision", "recall", "f1"]
OutputKind = Literal["logits", "probabilities"]


def as_label_matrix(outputs: torch.Tensor, targets: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and targets as ``(n, C)`` matrices: ``(n,)`` and ``(n, 1)`` are
    one label (binary); otherwise both must be ``(n, C)`` of the same shape.

    :raises ValueError: the shapes do not fit (no device sync).
    """
    if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
        if targets.numel() != outputs.shape[0]:
            raise ValueError(
                f"{what}: {outputs.shape[0]} outputs but targets of shape {tuple(targets.shape)}"
            )
        return outputs.reshape(-1, 1), targets.reshape(-1, 1)
    if outputs.ndim != 2 or targets.shape != outputs.shape:
        raise ValueError(
            f"{what} expects outputs (n, C) and 0/1 targets of the same shape, got outputs "
            f"{tuple(outputs.shape)} and targets {tuple(targets.shape)}"
        )
    return outputs, targets


def predict_labels(outputs: torch.Tensor, threshold: float = 0.5, kind: OutputKind = "logits") -> torch.Tensor:
    """Which labels are predicted (bool, the shape of ``outputs``): those whose
    probability reaches ``threshold`` (0 < threshold < 1)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    cut = math.log(threshold / (1.0 - threshold)) if kind == "logits" else threshold
    return outputs >= cut


def count_non_binary(targets: torch.Tensor) -> torch.Tensor:
    """How many targets are neither 0 nor 1 (a tensor: no device sync)."""
    return ((targets != 0) & (targets != 1)).sum()


def label_counts(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-label ``[true positives, false positives, false negatives]``: an
    int64 ``(3, C)`` matrix for bool (or 0/1) ``preds`` and ``targets`` ``(n, C)``."""
    p, t = preds.bool(), targets.bool()
    return torch.stack([(p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)])


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` as floats, 0 where the denominator is 0."""
    numerator, denominator = as_float(numerator), as_float(denominator)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator))


def _score(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, score: Score) -> torch.Tensor:
    if score == "precision":
        return _ratio(tp, tp + fp)
    if score == "recall":
        return _ratio(tp, tp + fn)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def average_label_scores(
    counts: torch.Tensor, score: Score, average: Literal["micro", "macro", "weighted"] = "macro"
) -> torch.Tensor:
    """Precision, recall or F1 from :func:`label_counts`, as
    ``sklearn.metrics.f1_score(average=...)`` on multi-hot targets: ``micro``
    pools the counts of all labels, ``macro`` is the plain mean over every
    label (a label never true nor predicted scores 0), ``weighted`` weights
    each label by its number of true samples."""
    tp, fp, fn = counts
    if average == "micro":
        return _score(tp.sum(), fp.sum(), fn.sum(), score)
    per_label = _score(tp, fp, fn, score)
    if average == "weighted":
        support = as_float(tp + fn)
        return _ratio((per_label * support).sum(), support.sum())
    return per_label.mean()


def sample_scores(preds: torch.Tensor, targets: torch.Tensor, score: Score) -> torch.Tensor:
    """Precision, recall or F1 of each sample's predicted label set against its
    true set, ``(n,)`` floats (sklearn's ``average="samples"`` is their mean;
    an empty denominator scores 0)."""
    p, t = preds.bool(), targets.bool()
    tp, fp, fn = (p & t).sum(1), (p & ~t).sum(1), (~p & t).sum(1)
    return _score(tp, fp, fn, score)


def multilabel_average_precision(
    scores: torch.Tensor, targets: torch.Tensor, average: Literal["macro"] | None = "macro"
) -> torch.Tensor:
    """Average precision of each label's scores ``(n, C)`` (logits or
    probabilities: only their order matters) against 0/1 targets ``(n, C)``,
    as ``sklearn.metrics.average_precision_score`` (ties: precision at the
    end of the tied run).

    A label without positive targets has no average precision: ``None``
    returns NaN for it; ``macro`` averages the other labels and warns (an
    :class:`UndefinedMetricWarning`), and is NaN when no label has a
    positive. scikit-learn instead counts such a label as 0 in its macro
    mean, which drags the score down for a reason unrelated to the model.
    """
    if scores.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(
            f"average precision expects scores (n, C) and 0/1 targets of the same shape, got "
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)}"
        )
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    per_label = average_precision(scores.T, (targets.T > 0).to(scores.dtype))
    positive = (targets > 0).any(dim=0)
    per_label = torch.where(positive, per_label, float("nan"))
    if average is None:
        return per_label
    if not bool(positive.any()):
        return undefined("average precision: no label has a positive target", scores.device)
    if not bool(positive.all()):
        absent = (~positive).nonzero().flatten().tolist()
        warnings.warn(
            f"average precision: labels {absent} have no positive target, so their average "
            "precision is not defined; the macro average skips them",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return per_label[positive].mean()
