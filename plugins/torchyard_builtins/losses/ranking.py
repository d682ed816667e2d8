"""Learning-to-rank losses: listnet, ranknet and lambdarank.

Each takes ``(queries, items)`` scores (a trailing size-1 axis is squeezed)
and relevance grades of the same shape, where -1 marks a padded item (a
ranking dataset pads every query to the longest): padded items take no
part, whatever their score, and get no gradient. Grades are >= 0; any other
negative value is an error. A query without a relevant item, or with a
single item, is legal and adds nothing; a batch of only such queries gives a
loss of 0 with zero gradients, never NaN.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

__all__ = ["PADDING", "LambdaRankLoss", "ListNetLoss", "RankNetLoss", "prepare"]

#: The relevance grade of a padded item.
PADDING = -1.0

_SIGMA = Field(gt=0.0, description="Steepness of the pairwise logistic: the loss of a pair is "
               "log(1 + exp(-sigma * (s_better - s_worse))).")


def prepare(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (float32, 0 on padding), relevance (0 on padding) and the mask of real items.

    :raises ValueError: shapes that are not ``(queries, items)`` alike, or a
        negative grade other than -1.
    """
    if outputs.ndim == 3 and outputs.shape[-1] == 1:
        outputs = outputs.squeeze(-1)
    if outputs.ndim != 2 or outputs.shape != targets.shape:
        raise ValueError(
            f"{loss}: expected scores and relevance grades of one shape (queries, items), got "
            f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)}"
        )
    relevance = targets.float()
    valid = relevance != PADDING
    if bool(((relevance < 0) & valid).any()):
        raise ValueError(f"{loss}: relevance grades must be >= 0 (or -1 for padding)")
    # where (not masked_fill): a NaN or inf score on padding must not reach the gradient
    scores = torch.where(valid, outputs.float(), 0.0)
    return scores, torch.where(valid, relevance, 0.0), valid


def _pairs(relevance: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[q, i, j]``: items i and j are real and i is more relevant than j."""
    both = valid[:, :, None] & valid[:, None, :]
    return both & (relevance[:, :, None] > relevance[:, None, :])


def _pair_losses(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[q, i, j]``: the logistic loss of ranking i above j."""
    return F.softplus(-sigma * (scores[:, :, None] - scores[:, None, :]))


class ListNetLoss(nn.Module):
    """ListNet (Cao et al., 2007): per query, the cross-entropy between the
    softmax of the relevance grades (divided by ``temperature``) and the
    softmax of the scores, over the query's real items; the mean over the
    queries that have a relevant item."""

    def __init__(
        self,
        temperature: Annotated[
            float,
            Field(gt=0.0, description="Divides the relevance grades before their softmax: below 1 "
                  "the most relevant items take more of the target distribution."),
        ] = 1.0,
    ) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores, relevance, valid = prepare(outputs, targets, "listnet")
        # queries without a relevant item have no preferred order: they are left out
        keep = (relevance > 0).any(dim=1)
        if not bool(keep.any()):
            return (scores * 0.0).sum()
        scores, relevance, valid = scores[keep], relevance[keep], valid[keep]
        target = torch.softmax((relevance / self.temperature).masked_fill(~valid, float("-inf")), dim=1)
        log_p = torch.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
        return -(target * torch.where(valid, log_p, 0.0)).sum(dim=1).mean()


class RankNetLoss(nn.Module):
    """RankNet (Burges et al., 2005): the logistic loss of every pair of real
    items of one query with different relevance, the more relevant scored
    above; the mean over all such pairs of the batch."""

    def __init__(self, sigma: Annotated[float, _SIGMA] = 1.0) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores, relevance, valid = prepare(outputs, targets, "ranknet")
        pairs = _pairs(relevance, valid)
        losses = torch.where(pairs, _pair_losses(scores, self.sigma), 0.0)
        return losses.sum() / pairs.sum().clamp(min=1)


class LambdaRankLoss(nn.Module):
    """LambdaRank (Burges et al., 2006): RankNet's pair losses weighted by how
    much swapping the pair would change the query's NDCG@k at the current
    ranking, ``|gain_i - gain_j| * |discount_i - discount_j| / ideal DCG``;
    per query the weighted sum, then the mean over the queries with a
    relevant item. Trains for the ``ndcg`` metric."""

    def __init__(
        self,
        sigma: Annotated[float, _SIGMA] = 1.0,
        k: Annotated[
            int | None,
            Field(ge=1, description="The NDCG cut-off: only swaps that move an item into or "
                  "within the top k count; default: all items."),
        ] = None,
        gain: Annotated[
            Literal["exponential", "linear"],
            Field(description="Gain of a relevance grade r: 2^r - 1 (exponential, the usual "
                  "LambdaRank choice) or r (linear, as the ndcg metric's default)."),
        ] = "exponential",
    ) -> None:
        super().__init__()
        self.sigma = sigma
        self.k = k
        self.gain = gain

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores, relevance, valid = prepare(outputs, targets, "lambdarank")
        with torch.no_grad():
            gains = relevance if self.gain == "linear" else torch.exp2(relevance) - 1
            position = torch.arange(scores.shape[1], device=scores.device, dtype=scores.dtype)
            discount = 1.0 / torch.log2(position + 2.0)
            if self.k is not None:
                discount = torch.where(position < self.k, discount, 0.0)
            order = scores.masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True, stable=True)
            current = torch.empty_like(scores).scatter_(1, order, discount.expand_as(scores).contiguous())
            ideal = (gains.sort(dim=1, descending=True).values * discount).sum(dim=1)
            weight = (gains[:, :, None] - gains[:, None, :]).abs()
            weight = weight * (current[:, :, None] - current[:, None, :]).abs()
            weight = weight / ideal.clamp(min=torch.finfo(ideal.dtype).tiny)[:, None, None]
        pairs = _pairs(relevance, valid)
        losses = torch.where(pairs, weight * _pair_losses(scores, self.sigma), 0.0).sum(dim=(1, 2))
        queries = (ideal > 0).sum().clamp(min=1)
        return losses.sum() / queries
