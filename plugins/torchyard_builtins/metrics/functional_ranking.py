"""Ranking metrics, one value per query, in two forms chosen by the targets' shape.

- Class targets ``(n,)`` with scores ``(n, C)``: each sample is a query
  whose items are the classes and whose single relevant item is its target
  class (Kaggle's "MAP@3 over predicted labels"). Needs no sort: the
  target's rank is a count of the scores above it.
- Graded relevance ``(n, items)`` with scores ``(n, items)``: each row is a
  query; relevance >= 0, and > 0 counts as relevant for MRR and MAP.
  Relevance -1 marks padding (a ranking dataset pads every query to the
  longest): a padded item counts as absent, whatever its score, so a
  query's value is the value on its real items alone. (Padded items are
  ranked below every real item; a real item scoring ``-inf`` would tie
  with them.)

Ties follow scikit-learn. NDCG averages the gain over tied items
(``ndcg_score``, ``ignore_ties=False``). MRR and MAP give an item the rank
"number of items scoring at least as high" (``label_ranking_average_precision_score``,
``average_precision_score``), so constant scores never look good. A query
without relevant items scores 0. A query with a NaN score gives NaN.
"""

from __future__ import annotations

from typing import Literal

import torch

from torchyard_builtins.metrics._common import (
    argsort_descending,
    check_class_targets,
    sort_values,
    sum_dtype,
    tie_runs,
)

__all__ = ["PADDING", "average_precision", "ndcg", "reciprocal_rank", "unpad"]

Gain = Literal["linear", "exponential"]

#: The relevance grade of a padded item: not part of its query.
PADDING = -1.0


def unpad(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Graded relevance with padded items (relevance -1) made harmless:
    scored ``-inf`` (ranked after every real item) and given relevance 0.

    :raises ValueError: a relevance grade below 0 other than -1.
    """
    padding = targets == PADDING
    if bool(((targets < 0) & ~padding).any()):
        raise ValueError("relevance grades must be >= 0 (or -1 for padding)")
    if not bool(padding.any()):
        return scores, targets
    return scores.masked_fill(padding, float("-inf")), targets.masked_fill(padding, 0)


def reciprocal_rank(scores: torch.Tensor, targets: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """1 / rank of the first relevant item per query, 0 if it ranks below ``k``."""
    if not _graded(scores, targets):
        _, at_least = _class_ranks(scores, targets)
        return _finite_rows(scores, _reciprocal(at_least, _cut(k, scores), scores))
    scores, targets = unpad(scores, targets)
    relevant, runs = _ranked(scores, targets)
    found = relevant.any(dim=-1)
    first = relevant.byte().argmax(dim=-1, keepdim=True)  # the first True
    if runs is not None:
        first = runs[1].gather(-1, first)
    rank = torch.where(found, first.squeeze(-1) + 1, scores.shape[-1] + 1)
    return _finite_rows(scores, _reciprocal(rank, _cut(k, scores), scores))


def average_precision(scores: torch.Tensor, targets: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Average precision at ``k`` per query (all items when ``k`` is None).

    ``sum over relevant items ranked <= k of precision at their rank``,
    divided by ``min(k, number relevant)``; an item's rank counts every item
    scoring at least as high. Without ``k`` this is sklearn's
    ``average_precision_score`` per query; with class targets it equals the
    reciprocal rank at ``k``.
    """
    if not _graded(scores, targets):
        return reciprocal_rank(scores, targets, k)
    scores, targets = unpad(scores, targets)
    relevant, runs = _ranked(scores, targets)
    relevant_up_to = relevant.cumsum(dim=-1)
    if runs is None:
        rank = torch.arange(1, scores.shape[-1] + 1, device=scores.device)
    else:
        rank = runs[1] + 1
        relevant_up_to = relevant_up_to.gather(-1, runs[1])
    relevant_up_to = relevant_up_to.to(sum_dtype(scores.device))
    hit = relevant & (rank <= _cut(k, scores))
    total = torch.where(hit, relevant_up_to / rank, 0.0).sum(dim=-1)
    n_relevant = relevant.sum(dim=-1)
    denominator = n_relevant.clamp(max=_cut(k, scores)).clamp(min=1)
    return _finite_rows(scores, torch.where(n_relevant > 0, total / denominator, 0.0))


def ndcg(
    scores: torch.Tensor, targets: torch.Tensor, k: int | None = None, gain: Gain = "linear"
) -> torch.Tensor:
    """Normalized discounted cumulative gain at ``k`` per query, as
    ``sklearn.metrics.ndcg_score`` (discount ``1 / log2(rank + 1)``, ties
    averaged). ``gain``: ``linear`` uses the relevance as gain (sklearn),
    ``exponential`` uses ``2^relevance - 1``."""
    length = scores.shape[-1]
    cumulative = _discount_cumsum(length, _cut(k, scores), scores.device)
    if not _graded(scores, targets):
        greater, at_least = _class_ranks(scores, targets)
        dcg = (cumulative[at_least] - cumulative[greater]) / (at_least - greater).clamp(min=1)
        return _finite_rows(scores, dcg)
    scores, targets = unpad(scores, targets)
    relevance = targets.to(cumulative.dtype)
    gains = relevance if gain == "linear" else torch.exp2(relevance) - 1
    values, index = argsort_descending(scores)
    runs = tie_runs(values)
    if runs is None:
        spread = cumulative.diff()
    else:  # a run of ties shares the discounts of its positions equally
        first, last = runs
        spread = (cumulative.take(last + 1) - cumulative.take(first)) / (last - first + 1)
    dcg = (gains.gather(-1, index) * spread).sum(dim=-1)
    ideal = (sort_values(gains).flip(-1) * cumulative.diff()).sum(dim=-1)
    return _finite_rows(scores, torch.where(ideal > 0, dcg / ideal.where(ideal > 0, 1.0), 0.0))


def _ranked(
    scores: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Whether each item is relevant, in descending score order, and the tie runs."""
    values, index = argsort_descending(scores)
    return targets.gather(-1, index) > 0, tie_runs(values)


def _graded(scores: torch.Tensor, targets: torch.Tensor) -> bool:
    """True for graded relevance (targets shaped like scores), False for class indices."""
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (queries, items), got {tuple(scores.shape)}")
    if targets.shape == scores.shape:
        return True
    if targets.numel() == scores.shape[0]:
        return False
    raise ValueError(
        f"targets must be class indices ({scores.shape[0]},) or relevance grades shaped like "
        f"the scores {tuple(scores.shape)}, got {tuple(targets.shape)}"
    )


def _class_ranks(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: how many classes score above the target, and at least as high."""
    own = scores.gather(1, check_class_targets(targets, scores.shape[1])[:, None])
    return (scores > own).sum(dim=1), (scores >= own).sum(dim=1)


def _cut(k: int | None, scores: torch.Tensor) -> int:
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return scores.shape[-1] if k is None else min(k, scores.shape[-1])


def _reciprocal(rank: torch.Tensor, k: int, scores: torch.Tensor) -> torch.Tensor:
    rank = rank.to(sum_dtype(scores.device))
    return torch.where(rank <= k, 1.0 / rank.clamp(min=1), 0.0)


def _discount_cumsum(length: int, k: int, device: torch.device) -> torch.Tensor:
    """``[0, d1, d1 + d2, ...]`` for ranks 1..length, discounts 0 beyond ``k``."""
    dtype = sum_dtype(device)
    ranks = torch.arange(1, length + 1, dtype=dtype, device=device)
    discount = torch.where(ranks <= k, 1.0 / torch.log2(ranks + 1), 0.0)
    return torch.cat([torch.zeros(1, dtype=dtype, device=device), discount.cumsum(0)])


def _finite_rows(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` with NaN for the queries whose scores hold a NaN."""
    return torch.where(scores.isnan().any(dim=-1), float("nan"), values.to(sum_dtype(scores.device)))
