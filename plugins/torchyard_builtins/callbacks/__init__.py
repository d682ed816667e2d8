"""Built-in callbacks: weight averaging (EMA, SWA).

Registered by import path: listing them imports neither torch nor numpy.
"""

from __future__ import annotations

from typing import Any

import torchyard

_HERE = "torchyard_builtins.callbacks"


@torchyard.hookimpl
def register_callbacks(register: Any) -> None:
    register(
        "ema",
        f"{_HERE}.averaging:EMA",
        description="Exponential moving average of the weights, used for validation, checkpoints and predictions.",
    )
    register(
        "swa",
        f"{_HERE}.averaging:SWA",
        description="Stochastic weight averaging over the last epochs, BatchNorm statistics recomputed.",
    )
