"""A plugin offering a loss called cross_entropy, like the built-ins."""

from typing import Any

import torchyard


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register("cross_entropy", "torch.nn:CrossEntropyLoss", description="Another cross-entropy.")
