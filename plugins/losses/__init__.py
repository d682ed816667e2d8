"""Built-in losses."""

from __future__ import annotations

from typing import Any

import torchyard


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register(
        "cross_entropy",
        "torchyard_builtins.losses.classification:cross_entropy",
        description="Cross-entropy on logits, with class weights, ignore_index and label smoothing.",
    )
