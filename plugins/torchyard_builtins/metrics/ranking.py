"""Ranking metrics: the mean over queries of a per-query value (sum states).

Two forms, told apart by the targets' shape (see :mod:`.functional_ranking`):
class-index targets ``(n,)`` with scores ``(n, C)`` (the target class is the
one relevant item), or relevance grades ``(queries, items)`` shaped like
the scores, where relevance -1 marks a padded item: it is ignored, and its
output too (a NaN score there makes no query NaN).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics.base import BuiltinMetric, TopK
from torchyard_builtins.metrics.functional_ranking import PADDING


class _QueryMean(BuiltinMetric):
    """Sums a per-query value; compute() is its mean."""

    higher_is_better = True
    total: torch.Tensor

    def __init__(self, k: int | None = None) -> None:
        super().__init__()
        self.k = k
        self.add_state("total", torch.zeros((), dtype=torch.float64))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if targets.shape == outputs.shape:  # graded: padded items' outputs never count
            outputs = outputs.masked_fill(targets == PADDING, 0.0)
        super().update(outputs, targets)

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.total += self._per_query(outputs, targets).sum()

    def _per_query(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compute(self) -> torch.Tensor:
        return self.total / self.n_samples


class MRR(_QueryMean):
    """Mean reciprocal rank of the first relevant item (0 when ranked below k)."""

    def __init__(self, k: TopK = None) -> None:
        super().__init__(k)

    def _per_query(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.reciprocal_rank(outputs, targets, self.k)


class MAP(_QueryMean):
    """Mean average precision at k, over queries (equals MRR@k for class targets)."""

    def __init__(self, k: TopK = None) -> None:
        super().__init__(k)

    def _per_query(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.average_precision(outputs, targets, self.k)


class NDCG(_QueryMean):
    """Normalized discounted cumulative gain at k, averaged over queries."""

    def __init__(
        self,
        k: TopK = None,
        gain: Annotated[
            Literal["linear", "exponential"],
            Field(description="Gain of a relevance grade r: r (linear, as sklearn) or 2^r - 1."),
        ] = "linear",
    ) -> None:
        super().__init__(k)
        self.gain = gain

    def _per_query(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.ndcg(outputs, targets, self.k, self.gain)
