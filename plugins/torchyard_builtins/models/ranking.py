"""A scoring model for learning to rank: one MLP applied to every item."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn


class RankingMLP(nn.Module):
    """Scores each item of a query from its own features with one shared MLP:
    ``(queries, items, features)`` in, ``(queries, items)`` scores out.

    Items are scored independently, so a query's padding (zero features)
    gets scores too; the ranking losses, metrics and writer ignore them.
    Every axis after the items axis is flattened into the features.
    """

    def __init__(
        self,
        input_shape: Annotated[
            list[int] | None,
            Field(description="Shape of one query, (items, features); default: from the data."),
        ] = None,
        hidden: Annotated[
            list[Annotated[int, Field(ge=1, le=65536)]],
            Field(description="Width of each hidden layer (1..65536)."),
        ] = [64, 32],  # noqa: B006 - read only
        dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout after each hidden layer.")] = 0.1,
    ) -> None:
        super().__init__()
        if input_shape is None:
            raise ValueError("input_shape must be given or come from the data")
        if len(input_shape) < 2:
            raise ValueError(f"input_shape must be (items, features), got {list(input_shape)}")
        width = math.prod(input_shape[1:])
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(2)).squeeze(-1)
