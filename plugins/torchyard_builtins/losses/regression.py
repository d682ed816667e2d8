"""Regression losses: mse, l1, smooth_l1 and huber, with matched shapes.

A regression model usually ends in ``Linear(..., 1)`` and gives (n, 1)
outputs while datasets give (n,) targets; torch would broadcast these to
(n, n) (with only a warning). These losses squeeze the trailing size-1
axis instead, refuse any other shape mismatch, and cast integer targets
to float.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from torchyard_builtins.losses.shapes import match_shapes

Reduction = Annotated[
    Literal["mean", "sum", "none"],
    Field(description="'mean' over all elements, 'sum', or 'none' (elementwise)."),
]


class _RegressionLoss(nn.Module):
    name = "regression"

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs, targets = match_shapes(outputs, targets, self.name)
        outputs = outputs.float()
        return self.compute(outputs, targets.to(outputs.dtype))

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MSELoss(_RegressionLoss):
    """Mean squared error (``torch.nn.MSELoss``)."""

    name = "mse"

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets, reduction=self.reduction)


class L1Loss(_RegressionLoss):
    """Mean absolute error (``torch.nn.L1Loss``)."""

    name = "l1"

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(outputs, targets, reduction=self.reduction)


class SmoothL1Loss(_RegressionLoss):
    """Squared below ``beta``, absolute above, scaled to be continuous
    (``torch.nn.SmoothL1Loss``)."""

    name = "smooth_l1"

    def __init__(
        self,
        beta: Annotated[
            float, Field(ge=0.0, description="Error size where the loss turns from squared "
                         "to absolute; 0 is l1.")
        ] = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        self.beta = beta

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(outputs, targets, reduction=self.reduction, beta=self.beta)


class HuberLoss(_RegressionLoss):
    """Squared below ``delta``, linear with slope ``delta`` above
    (``torch.nn.HuberLoss``): robust to outliers."""

    name = "huber"

    def __init__(
        self,
        delta: Annotated[
            float, Field(gt=0.0, description="Error size where the loss turns from squared "
                         "to linear.")
        ] = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        self.delta = delta

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(outputs, targets, reduction=self.reduction, delta=self.delta)
