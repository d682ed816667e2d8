"""Classification losses."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from torchyard_builtins.losses.balance import Balanced, class_weights


def cross_entropy(
    weight: Annotated[
        list[Annotated[float, Field(ge=0)]] | Balanced | None,
        Field(description="Per-class weights (one number >= 0 per class), or 'balanced': "
              "n / (classes x count) from the training split's class counts; unset: all 1."),
    ] = None,
    ignore_index: Annotated[
        int, Field(description="Target value that is ignored and does not count.")
    ] = -100,
    label_smoothing: Annotated[
        float,
        Field(ge=0.0, lt=1.0, description="Mass moved from the true class to all classes."),
    ] = 0.0,
    class_counts: Annotated[
        list[int] | None,
        Field(description="Samples per class in the training split; filled in from the data "
              "(used by weight: balanced)."),
    ] = None,
) -> nn.Module:
    """Cross-entropy on logits (``torch.nn.CrossEntropyLoss``)."""
    weights = class_weights(weight, class_counts, loss="cross_entropy")
    return nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
