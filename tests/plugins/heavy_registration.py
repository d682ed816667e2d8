"""A plugin that imports torch just to register (listing it would be slow)."""

from typing import Any

import torch  # noqa: F401 - the mistake under test

import torchyard


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register("heavy_mse", "torch.nn:MSELoss", targets="regression")
