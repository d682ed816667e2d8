"""What every built-in metric shares, and the parameter types they reuse."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from torchyard.metric import Metric
from torchyard_builtins.metrics._common import sum_dtype, undefined

__all__ = ["Average", "BuiltinMetric", "ClassIndex", "NumClasses", "TopK"]

NumClasses = Annotated[
    int | None,
    Field(ge=2, description="Number of classes; default: the width of the outputs."),
]
ClassIndex = Annotated[
    int | None,
    Field(
        ge=0,
        description="Report only this class's score (to monitor one class); overrides 'average'.",
    ),
]
Average = Annotated[
    Literal["macro", "micro", "weighted"],
    Field(
        description="How per-class scores combine, as in scikit-learn: macro (plain mean over "
        "classes present), micro (pooled counts) or weighted (by class frequency)."
    ),
]
TopK = Annotated[
    int | None,
    Field(ge=1, description="Only the k highest-scoring items count; default: all of them."),
]


class BuiltinMetric(Metric):
    """A metric that counts the samples it sees and those with NaN outputs.

    ``compute()`` then returns NaN with an ``UndefinedMetricWarning`` when
    there was no sample or some output was NaN (a diverged model), instead
    of a plausible number; the count needs no device sync in ``update()``.
    Subclasses implement ``_update`` and ``_compute``.
    """

    n_samples: torch.Tensor
    n_nan: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("n_samples", torch.zeros((), dtype=torch.long))
        self.add_state("n_nan", torch.zeros((), dtype=torch.long))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Accumulate one batch: ``outputs`` are raw model outputs (logits)."""
        if outputs.shape[0] != targets.shape[0]:
            raise ValueError(f"{outputs.shape[0]} outputs but {targets.shape[0]} targets")
        if outputs.shape[0] == 0:
            return
        outputs, targets = outputs.detach(), targets.detach()
        self.n_samples += outputs.shape[0]
        self.n_nan += outputs.isnan().reshape(outputs.shape[0], -1).any(dim=1).sum()
        self._update(outputs, targets)

    def compute(self) -> float:
        """The metric over every sample since the last ``reset()``, or NaN (with a warning)."""
        name = type(self).__name__
        seen = int(self.n_samples)
        if seen == 0:
            return float(undefined(f"{name}: no samples since the last reset"))
        nan = int(self.n_nan)
        if nan:
            return float(undefined(f"{name}: the outputs of {nan} of {seen} samples are NaN"))
        return float(self._compute())

    def to(self, device: torch.device | str) -> BuiltinMetric:
        """Move the states to ``device``; float64 sums become float32 where
        the device has no float64 (MPS)."""
        dtype = sum_dtype(torch.device(device))
        for name, (default, reduce) in list(self._defaults.items()):
            if isinstance(default, torch.Tensor) and default.is_floating_point():
                self._defaults[name] = (default.to(dtype), reduce)
                setattr(self, name, getattr(self, name).to(dtype))
        super().to(device)
        return self

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def _compute(self) -> torch.Tensor | float:
        raise NotImplementedError
