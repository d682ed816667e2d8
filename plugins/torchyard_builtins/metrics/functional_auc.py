"""ROC-AUC as the Mann-Whitney U statistic, from sorted scores.

The area under the ROC curve of a score against a positive class is the
probability that a random positive outscores a random negative, ties
counting half. With average ranks for ties,
``AUC = (sum of positive ranks - p(p + 1) / 2) / (p * q)``
for ``p`` positives and ``q`` negatives. Each rank comes from two binary
searches in the sorted scores, so a one-vs-rest AUC over ``C`` classes costs
one batched values-only sort of the ``(C, n)`` score matrix and ``n``
searches: no ROC curve, no argsort. Rank sums are exact int64 counts; only
the final ratio is a float64 division.

Undefined cases (one class present, a class absent in one-vs-rest macro,
fewer than two classes in one-vs-one) return NaN with an
:class:`UndefinedMetricWarning`, as ``sklearn.metrics.roc_auc_score`` does.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch

from torchyard_builtins.metrics._common import (
    UndefinedMetricWarning,
    as_float,
    check_class_targets,
    count_sum,
    sort_values,
    sum_dtype,
    undefined,
)

__all__ = ["binary_roc_auc", "multiclass_roc_auc"]


def binary_roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ROC-AUC of scores ``(n,)`` or ``(n, 1)`` (logits or probabilities:
    only their order matters) against 0/1 targets; NaN with a warning when
    only one class is present."""
    scores = _floating(scores).reshape(-1)
    targets = targets.reshape(-1)
    if scores.numel() != targets.numel():
        raise ValueError(f"{scores.numel()} scores but {targets.numel()} targets")
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("binary ROC-AUC needs 0/1 targets")
    positives = scores[targets == 1]
    if positives.numel() in (0, scores.numel()):
        return undefined(
            "ROC-AUC: only one class is present in the targets, the AUC is not defined",
            scores.device,
        )
    return _auc(sort_values(scores), positives)


def multiclass_roc_auc(
    probs: torch.Tensor,
    targets: torch.Tensor,
    *,
    multi_class: Literal["ovr", "ovo"] = "ovr",
    average: Literal["macro", "weighted"] | None = "macro",
) -> torch.Tensor:
    """Multi-class ROC-AUC of probabilities ``(n, C)`` against class indices,
    as ``sklearn.metrics.roc_auc_score(..., multi_class=, average=,
    labels=range(C))``.

    ``ovr`` scores each class against the rest: ``macro`` is NaN (with a
    warning) if a class is absent from the targets, ``weighted`` weights by
    class frequency and so skips absent classes, ``None`` returns the ``C``
    per-class AUCs. ``ovo`` averages, over each pair of classes present, the
    AUC of class ``a`` against ``b`` and of ``b`` against ``a`` (``weighted``:
    by the pair's frequency). Pass probabilities, not logits: the AUC of a
    column depends on the row normalization.
    """
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected scores of shape (n, C) with C >= 2, got {tuple(probs.shape)}")
    probs = _floating(probs)
    num_classes = probs.shape[1]
    targets = check_class_targets(targets, num_classes)
    counts = torch.bincount(targets, minlength=num_classes).tolist()
    if multi_class == "ovo":
        if average is None:
            raise ValueError("one-vs-one ROC-AUC needs average 'macro' or 'weighted'")
        return _one_vs_one(probs, targets, counts, average)
    return _one_vs_rest(probs, targets, counts, average)


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=sum_dtype(device), device=device)


def _auc(sorted_all: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """AUC of ``positives`` (some of the values in ``sorted_all``) against the rest."""
    n, p = sorted_all.numel(), positives.numel()
    twice_u = count_sum(sorted_all, positives) + p - p * (p + 1)
    return _scalar(twice_u / (2.0 * p * (n - p)), positives.device)


def _by_class(values: torch.Tensor, targets: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    """Rows of ``values`` grouped by target class (a stable counting sort)."""
    if targets.device.type == "cpu" and len(counts) <= 2**15:
        small = targets.numpy().astype(np.int16)
        order = torch.from_numpy(np.argsort(small, kind="stable"))
    else:
        order = torch.sort(targets, stable=True).indices
    return list(values[order].split(counts))


def _one_vs_rest(
    probs: torch.Tensor,
    targets: torch.Tensor,
    counts: list[int],
    average: Literal["macro", "weighted"] | None,
) -> torch.Tensor:
    n, num_classes = probs.shape
    columns = sort_values(probs.T)
    own = _by_class(probs.gather(1, targets[:, None]).squeeze(1), targets, counts)
    aucs = torch.full((num_classes,), float("nan"), dtype=sum_dtype(probs.device), device=probs.device)
    for c in range(num_classes):
        if 0 < counts[c] < n:
            aucs[c] = _auc(columns[c], own[c])
    undefined_classes = [c for c in range(num_classes) if not 0 < counts[c] < n]
    if average == "weighted":
        undefined_classes = [c for c in undefined_classes if counts[c] > 0]
    if undefined_classes:
        reason = (
            "only one class is present in the targets"
            if max(counts) == n
            else f"classes {undefined_classes} are absent from the targets"
        )
        message = f"ROC-AUC (one-vs-rest): {reason}, so their AUC is not defined"
        if average is None:
            warnings.warn(f"{message}; they are NaN", UndefinedMetricWarning, stacklevel=3)
            return aucs
        return undefined(message, probs.device)
    if average is None:
        return aucs
    if average == "weighted":
        weights = as_float(torch.tensor(counts, device=probs.device))
        return (aucs.nan_to_num(0.0) * weights).sum() / weights.sum()
    return aucs.mean()


def _one_vs_one(
    probs: torch.Tensor,
    targets: torch.Tensor,
    counts: list[int],
    average: Literal["macro", "weighted"],
) -> torch.Tensor:
    present = [c for c, count in enumerate(counts) if count > 0]
    if len(present) < 2:
        return undefined(
            "ROC-AUC (one-vs-one): fewer than two classes are present in the targets, "
            "the AUC is not defined",
            probs.device,
        )
    groups = [group.T.contiguous() for group in _by_class(probs, targets, counts)]
    columns = {c: sort_values(groups[c]) for c in present}
    scores, weights = [], []
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            a_over_b = _pair_auc(groups[a][a], columns[b][a])
            b_over_a = _pair_auc(groups[b][b], columns[a][b])
            scores.append((a_over_b + b_over_a) / 2)
            weights.append(float(counts[a] + counts[b]))
    pair_scores = torch.stack(scores)
    if average == "weighted":
        w = as_float(torch.tensor(weights, device=probs.device))
        return (pair_scores * w).sum() / w.sum()
    return pair_scores.mean()


def _pair_auc(positives: torch.Tensor, sorted_negatives: torch.Tensor) -> torch.Tensor:
    """P(positive > negative) + P(tie) / 2, negatives given sorted."""
    twice_u = count_sum(sorted_negatives, positives)
    total = 2.0 * positives.numel() * sorted_negatives.numel()
    return _scalar(twice_u / total, positives.device)
