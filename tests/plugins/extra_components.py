"""A well-behaved third-party plugin: one loss and one metric, as callables."""

from __future__ import annotations

from typing import Any

import torchyard


def scaled_mse(scale: float = 1.0) -> Any:
    """Mean squared error times a scale."""
    import torch

    def loss(outputs: Any, targets: Any) -> Any:
        return scale * torch.nn.functional.mse_loss(outputs.reshape(targets.shape), targets)

    return loss


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register("scaled_mse", scaled_mse, targets="values")
    register(
        "focal_lite", "tests.plugins.extra_components:scaled_mse", description="A test loss.", targets="values"
    )
