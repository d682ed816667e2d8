"""Classification losses."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn


def cross_entropy(
    weight: Annotated[
        list[Annotated[float, Field(ge=0)]] | None,
        Field(description="Per-class weights (one number >= 0 per class); unset: all 1."),
    ] = None,
    ignore_index: Annotated[
        int, Field(description="Target value that is ignored and does not count.")
    ] = -100,
    label_smoothing: Annotated[
        float,
        Field(ge=0.0, lt=1.0, description="Mass moved from the true class to all classes."),
    ] = 0.0,
) -> nn.Module:
    """Cross-entropy on logits (``torch.nn.CrossEntropyLoss``)."""
    return nn.CrossEntropyLoss(
        weight=torch.tensor(weight, dtype=torch.float32) if weight is not None else None,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
