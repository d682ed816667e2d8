"""Built-in metrics. The math is in :mod:`.functional`; the classes keep state."""

from __future__ import annotations

from typing import Any

import torchyard


@torchyard.hookimpl
def register_metrics(register: Any) -> None:
    register(
        "accuracy",
        "torchyard_builtins.metrics.classification:Accuracy",
        description="Fraction of samples whose top-scoring class is the target.",
    )
    register(
        "f1",
        "torchyard_builtins.metrics.classification:F1",
        description="F1 score (harmonic mean of precision and recall); macro by default.",
    )
