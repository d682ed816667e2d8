"""Class weights from the training split's class counts (``weight: balanced``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

#: A loss's class weights: one number >= 0 per class, or "balanced".
Balanced = Literal["balanced"]


def class_weights(
    given: Sequence[float] | str | None, class_counts: Sequence[int] | None, *, loss: str
) -> list[float] | None:
    """``given`` weights as a list; ``"balanced"``: n / (classes x count) per
    class, scikit-learn's 'balanced' rule, from the training split's counts
    (a class the split lacks gets 1).

    :raises ValueError: ``balanced`` without counts (a task that has no
        classes, or no training targets from the dataset).
    """
    if given is None or not isinstance(given, str):
        return list(given) if given is not None else None
    if not class_counts:
        raise ValueError(
            f"{loss}: 'balanced' weights need the training split's class counts, which this "
            "dataset or task does not give"
        )
    total, classes = sum(class_counts), len(class_counts)
    return [total / (classes * count) if count else 1.0 for count in class_counts]
