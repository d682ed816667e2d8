"""A model for tables: category embeddings beside the numeric columns, then an MLP."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn


class _BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that normalizes a one-row training batch with its running
    statistics (a table's last batch may hold a single row, which plain
    batch norm refuses)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def embedding_dim(cardinality: int, largest: int = 16) -> int:
    """Embedding width for a column of ``cardinality`` codes: about half of
    them, at most ``largest``."""
    return max(1, min(largest, (cardinality + 1) // 2))


class TabularMLP(nn.Module):
    """Embeds the categorical codes at the end of each input, concatenates
    them with the leading numeric values, and applies an MLP.

    Inputs are ``(n, num_numeric + len(cardinalities))`` float rows, as the
    ``table_csv`` dataset gives them (which also supplies ``cardinalities``
    and ``num_numeric``). A code outside ``0..cardinality-1`` is read as 0,
    the unknown category. Without ``cardinalities`` every input is numeric.
    """

    cardinalities: torch.Tensor

    def __init__(
        self,
        num_classes: Annotated[
            int | None, Field(ge=1, description="Number of outputs; default: from the data.")
        ] = None,
        input_shape: Annotated[
            list[int] | None, Field(description="Shape of one input; default: from the data.")
        ] = None,
        cardinalities: Annotated[
            list[int] | None,
            Field(description="Codes per categorical column (the inputs' tail); default: from "
                  "the data; unset there too: no categorical columns."),
        ] = None,
        num_numeric: Annotated[
            int | None,
            Field(ge=0, description="Leading numeric inputs; default: from the data, or every "
                  "input not categorical."),
        ] = None,
        hidden: Annotated[
            list[Annotated[int, Field(ge=1, le=65536)]],
            Field(min_length=1, description="Width of each hidden layer (1..65536)."),
        ] = [128, 64],  # noqa: B006 - read only
        dropout: Annotated[
            float, Field(ge=0, lt=1, description="Dropout after each hidden layer.")
        ] = 0.1,
        batch_norm: Annotated[
            bool, Field(description="Batch norm after each hidden layer's linear map.")
        ] = True,
        max_embedding_dim: Annotated[
            int, Field(ge=1, le=4096, description="Largest embedding width (a column of c codes gets "
                       "min(this, (c + 1) // 2)).")
        ] = 16,
    ) -> None:
        super().__init__()
        if num_classes is None or input_shape is None:
            raise ValueError("num_classes and input_shape must be given or come from the data")
        width = math.prod(input_shape)
        cards = list(cardinalities or [])
        if num_numeric is None:
            num_numeric = width - len(cards)
        if num_numeric < 0 or num_numeric + len(cards) != width or min(cards, default=1) < 1:
            raise ValueError(
                f"inputs of width {width} do not fit num_numeric={num_numeric} and "
                f"{len(cards)} categorical columns (cardinalities {cards})"
            )
        self.num_numeric = num_numeric
        self.register_buffer("cardinalities", torch.tensor(cards, dtype=torch.long), persistent=False)
        dims = [embedding_dim(c, max_embedding_dim) for c in cards]
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cards, dims, strict=True))
        layers: list[nn.Module] = []
        size = num_numeric + sum(dims)
        for h in hidden:
            layers.append(nn.Linear(size, h))
            if batch_norm:
                layers.append(_BatchNorm(h))
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
            size = h
        layers.append(nn.Linear(size, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        parts = [x[:, : self.num_numeric].float()]
        if len(self.embeddings):
            codes = x[:, self.num_numeric :].round().long()
            # out-of-range codes are the unknown category, never an index error
            codes = torch.where((codes >= 0) & (codes < self.cardinalities), codes, 0)
            parts += [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))
