"""Small models for small data: quick to train on a CPU."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

_NUM_CLASSES = Field(ge=1, description="Number of outputs; default: from the data.")


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, pooling) and a linear head."""

    def __init__(
        self,
        num_classes: Annotated[int | None, _NUM_CLASSES] = None,
        in_channels: Annotated[
            int | None, Field(ge=1, description="Input channels; default: from the data.")
        ] = None,
        channels: Annotated[
            int,
            Field(ge=1, le=4096, description="Channels of the first block (doubled in the second)."),
        ] = 32,
        dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout before the head.")] = 0.1,
    ) -> None:
        super().__init__()
        if num_classes is None or in_channels is None:
            raise ValueError("num_classes and in_channels must be given or come from the data")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.BatchNorm2d(channels * 2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * 2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """Fully connected layers with ReLU and dropout on the flattened input."""

    def __init__(
        self,
        num_classes: Annotated[int | None, _NUM_CLASSES] = None,
        input_shape: Annotated[
            list[int] | None, Field(description="Shape of one input; default: from the data.")
        ] = None,
        hidden: Annotated[
            list[Annotated[int, Field(ge=1, le=65536)]],
            Field(description="Width of each hidden layer (1..65536)."),
        ] = [128],  # noqa: B006 - read only
        dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout after each hidden layer.")] = 0.1,
    ) -> None:
        super().__init__()
        if num_classes is None or input_shape is None:
            raise ValueError("num_classes and input_shape must be given or come from the data")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
