"""Regression errors and R^2 on outputs ``(n,)`` or ``(n, 1)``.

Everything is computed from sums (of absolute errors, squared errors,
targets and squared targets) in float64, so a metric can accumulate the
sums batch by batch and across processes, as torchmetrics does.
"""

from __future__ import annotations

import torch

from torchyard_builtins.metrics._common import sum_dtype, undefined

__all__ = [
    "mean_absolute_error",
    "mean_squared_error",
    "pair",
    "r2_from_sums",
    "r2_score",
    "root_mean_squared_error",
]


def pair(preds: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and targets as two flat float64 vectors of equal length.

    :raises ValueError: the outputs have several columns, or the lengths differ.
    """
    if preds.ndim > 2 or (preds.ndim == 2 and preds.shape[1] != 1):
        raise ValueError(f"expected outputs of shape (n,) or (n, 1), got {tuple(preds.shape)}")
    if preds.numel() != targets.numel():
        raise ValueError(f"{preds.numel()} outputs but {targets.numel()} targets")
    dtype = sum_dtype(preds.device)
    return preds.reshape(-1).to(dtype), targets.reshape(-1).to(dtype)


def mean_absolute_error(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``|output - target|`` (``sklearn.metrics.mean_absolute_error``)."""
    p, t = pair(preds, targets)
    return (p - t).abs().mean()


def mean_squared_error(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``(output - target)^2`` (``sklearn.metrics.mean_squared_error``)."""
    p, t = pair(preds, targets)
    return (p - t).square().mean()


def root_mean_squared_error(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Square root of the MSE (``sklearn.metrics.root_mean_squared_error``)."""
    return mean_squared_error(preds, targets).sqrt()


def r2_score(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination (``sklearn.metrics.r2_score``)."""
    p, t = pair(preds, targets)
    return r2_from_sums(t.numel(), t.sum(), t.square().sum(), (p - t).square().sum())


def r2_from_sums(
    count: int, sum_targets: torch.Tensor, sum_squares: torch.Tensor, sum_squared_errors: torch.Tensor
) -> torch.Tensor:
    """R^2 = 1 - SSE / SST with ``SST = sum(t^2) - sum(t)^2 / n``.

    As sklearn (``force_finite=True``): constant targets score 1 if the
    predictions are exact and 0 otherwise; fewer than two samples leave R^2
    undefined (NaN with a warning). SST below 1e-13 of ``sum(t^2)`` counts
    as zero: that is float64 rounding on constant targets, not variance. As
    with torchmetrics' sums, targets whose spread is under ~1e-5 of their
    magnitude lose digits to that cancellation.
    """
    if count < 2:
        return undefined(
            "R^2: fewer than two samples, the score is not defined", sum_targets.device
        )
    total = (sum_squares - sum_targets.square() / count).clamp(min=0)
    if total <= 1e-13 * sum_squares.abs():
        exact = sum_squared_errors == 0
        return torch.where(exact, 1.0, 0.0).to(sum_squared_errors.dtype)
    return 1 - sum_squared_errors / total
