"""A plugin implementing a hook name that matches no spec."""

from typing import Any

import torchyard


@torchyard.hookimpl
def register_lossess(register: Any) -> None:  # the typo is the point
    register("never", "torch.nn:L1Loss")
