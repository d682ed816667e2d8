"""A plugin whose registration raises KeyboardInterrupt itself: it must fail alone."""

from typing import Any

import torchyard


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    raise KeyboardInterrupt
