"""torchyard-example: PolyLoss, a macro error metric and a JSON Lines writer.

This module is what the ``torchyard`` entry point names, so torchyard imports
it on every command, ``torchyard list`` included. It therefore imports
neither torch nor pydantic: each component is registered by import path,
and the implementation modules are imported only when a run uses them.
"""

from __future__ import annotations

from typing import Any

import torchyard

__version__ = "0.1.0"

_HERE = "torchyard_example"


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register(
        "poly1_cross_entropy",
        f"{_HERE}.losses:Poly1CrossEntropy",
        description="PolyLoss (Poly-1): cross-entropy + epsilon * (1 - pt), on logits.",
        targets="classes",
    )


@torchyard.hookimpl
def register_metrics(register: Any) -> None:
    register(
        "macro_error",
        f"{_HERE}.metrics:MacroError",
        description="1 - mean per-class recall (balanced error rate); lower is better.",
        targets="classes",
    )


@torchyard.hookimpl
def register_writers(register: Any) -> None:
    register(
        "jsonl",
        f"{_HERE}.writers:JsonLinesWriter",
        description="JSON Lines: one object per test sample, with its id and prediction.",
    )
