"""Regression metrics on outputs ``(n,)`` or ``(n, 1)`` and float targets.

Each keeps float64 sums (sum states), so updates and processes combine
exactly; the formulas are in :mod:`.functional_regression`.
"""

from __future__ import annotations

import torch

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics.base import BuiltinMetric
from torchyard_builtins.metrics.functional_regression import pair


class _SumsMetric(BuiltinMetric):
    """Keeps sums of absolute errors, squared errors, targets and squared targets."""

    higher_is_better = False
    abs_errors: torch.Tensor
    squared_errors: torch.Tensor
    target_sum: torch.Tensor
    target_squares: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        for name in ("abs_errors", "squared_errors", "target_sum", "target_squares"):
            self.add_state(name, torch.zeros((), dtype=torch.float64))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        p, t = pair(outputs, targets)
        errors = p - t
        self.abs_errors += errors.abs().sum()
        self.squared_errors += errors.square().sum()
        self.target_sum += t.sum()
        self.target_squares += t.square().sum()


class MeanAbsoluteError(_SumsMetric):
    """Mean absolute error, mean of |output - target| (lower is better)."""

    def _compute(self) -> torch.Tensor:
        return self.abs_errors / self.n_samples


class MeanSquaredError(_SumsMetric):
    """Mean squared error, mean of (output - target)^2 (lower is better)."""

    def _compute(self) -> torch.Tensor:
        return self.squared_errors / self.n_samples


class RootMeanSquaredError(_SumsMetric):
    """Root mean squared error, in the targets' unit (lower is better)."""

    def _compute(self) -> torch.Tensor:
        return (self.squared_errors / self.n_samples).sqrt()


class R2Score(_SumsMetric):
    """Coefficient of determination R^2: 1 is perfect, 0 predicts the mean
    (higher is better); constant targets score 1 if exact else 0, as sklearn."""

    higher_is_better = True

    def _compute(self) -> torch.Tensor:
        return F.r2_from_sums(
            int(self.n_samples), self.target_sum, self.target_squares, self.squared_errors
        )
