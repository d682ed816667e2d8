"""Shape matching shared by the elementwise losses (bce, regression)."""

from __future__ import annotations

import torch


def match_shapes(
    outputs: torch.Tensor, targets: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop a trailing size-1 axis so (n, 1) outputs meet (n,) targets (or the
    reverse); any other mismatch is an error, never a silent broadcast."""
    if outputs.ndim == targets.ndim + 1 and outputs.shape[-1] == 1:
        outputs = outputs.squeeze(-1)
    elif targets.ndim == outputs.ndim + 1 and targets.shape[-1] == 1:
        targets = targets.squeeze(-1)
    if outputs.shape != targets.shape:
        raise ValueError(
            f"{loss}: model outputs of shape {tuple(outputs.shape)} do not match targets of "
            f"shape {tuple(targets.shape)}"
        )
    return outputs, targets
