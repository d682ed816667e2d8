"""Binary metrics: one logit (or probability) per sample, ``(n,)`` or
``(n, 1)``, against 0/1 targets ``(n,)``.

A binary task is multi-label with one label, so these are the thresholded
multi-label metrics restricted to one score per sample: the positive class
is predicted when its probability reaches ``threshold``.
"""

from __future__ import annotations

from torchyard_builtins.metrics.multilabel import (
    MultilabelF1,
    MultilabelPrecision,
    MultilabelRecall,
    Outputs,
    SubsetAccuracy,
    Threshold,
)

__all__ = ["BinaryAccuracy", "BinaryF1", "BinaryPrecision", "BinaryRecall"]

class BinaryAccuracy(SubsetAccuracy):
    """Fraction of samples whose thresholded prediction is the target
    (``sklearn.metrics.accuracy_score``)."""

    what = "binary_accuracy"
    single_label = True

    def __init__(self, threshold: Threshold = 0.5, outputs: Outputs = "logits") -> None:
        super().__init__(threshold, outputs)


class BinaryF1(MultilabelF1):
    """F1 of the positive class (``sklearn.metrics.f1_score``, ``zero_division=0``)."""

    what = "binary_f1"
    single_label = True

    def __init__(self, threshold: Threshold = 0.5, outputs: Outputs = "logits") -> None:
        super().__init__("micro", threshold, outputs)


class BinaryPrecision(MultilabelPrecision):
    """Precision of the positive class (``precision_score``, ``zero_division=0``)."""

    what = "binary_precision"
    single_label = True

    def __init__(self, threshold: Threshold = 0.5, outputs: Outputs = "logits") -> None:
        super().__init__("micro", threshold, outputs)


class BinaryRecall(MultilabelRecall):
    """Recall of the positive class (``recall_score``, ``zero_division=0``)."""

    what = "binary_recall"
    single_label = True

    def __init__(self, threshold: Threshold = 0.5, outputs: Outputs = "logits") -> None:
        super().__init__("micro", threshold, outputs)
