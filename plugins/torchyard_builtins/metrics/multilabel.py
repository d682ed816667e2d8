"""Multi-label metrics: logits (or probabilities) ``(n, C)``, one per label,
against multi-hot 0/1 targets ``(n, C)``.

Thresholded metrics keep per-label counts (sum states) and derive their
value with :mod:`.functional_multilabel`; mean average precision needs
every score at once (``cat`` states). Targets other than 0/1 are counted
in ``update()`` (no device sync) and refused by ``compute()``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from torchyard_builtins.metrics._common import as_float
from torchyard_builtins.metrics.base import BuiltinMetric
from torchyard_builtins.metrics.functional_multilabel import (
    LabelAverage,
    OutputKind,
    Score,
    as_label_matrix,
    average_label_scores,
    count_non_binary,
    label_counts,
    multilabel_average_precision,
    predict_labels,
    sample_scores,
)

__all__ = [
    "HammingLoss",
    "MultilabelAveragePrecision",
    "MultilabelF1",
    "MultilabelPrecision",
    "MultilabelRecall",
    "Outputs",
    "SubsetAccuracy",
    "Threshold",
]

Threshold = Annotated[
    float,
    Field(gt=0.0, lt=1.0, description="A label is predicted when its probability reaches this."),
]
Outputs = Annotated[
    OutputKind,
    Field(description="What the model outputs: logits (one per label, read through a sigmoid) "
          "or probabilities."),
]
NumLabels = Annotated[
    int | None,
    Field(ge=1, description="Number of labels; default: the width of the outputs."),
]
LabelAverageField = Annotated[
    LabelAverage,
    Field(description="How per-label scores combine, as in scikit-learn: micro (pooled counts), "
          "macro (plain mean over labels), weighted (by label frequency) or samples (mean over "
          "samples of each one's label set)."),
]


class _LabelMetric(BuiltinMetric):
    """Checks shapes and counts targets that are not 0/1."""

    #: The metric's name in messages.
    what: ClassVar[str] = "multi-label metric"
    #: Only (n,) or (n, 1) outputs (a binary task's single logit).
    single_label: ClassVar[bool] = False
    non_binary: torch.Tensor

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("non_binary", torch.zeros((), dtype=torch.long))

    def _matrices(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.single_label and not (outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)):
            raise ValueError(
                f"{self.what} expects one score per sample, outputs (n,) or (n, 1), got "
                f"{tuple(outputs.shape)}; for (n, C) class scores use a classification metric"
            )
        outputs, targets = as_label_matrix(outputs, targets, self.what)
        if self.num_classes is not None and outputs.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.what}: the outputs have {outputs.shape[1]} labels, not num_classes="
                f"{self.num_classes}"
            )
        self.non_binary += count_non_binary(targets)
        return outputs, targets

    def compute(self) -> float:
        """The metric since the last ``reset()``, NaN when undefined.

        :raises ValueError: some target was neither 0 nor 1.
        """
        bad = int(self.non_binary)
        if bad:
            raise ValueError(f"{self.what} needs 0/1 targets, got {bad} other values")
        return super().compute()


class _Thresholded(_LabelMetric):
    """Predicts the labels whose probability reaches ``threshold``."""

    def __init__(
        self, threshold: float = 0.5, outputs: OutputKind = "logits", num_classes: int | None = None
    ) -> None:
        super().__init__(num_classes)
        self.threshold = threshold
        self.outputs = outputs

    def _predicted(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true labels, both bool ``(n, C)``."""
        outputs, targets = self._matrices(outputs, targets)
        return predict_labels(outputs, self.threshold, self.outputs), targets == 1


class _LabelScore(_Thresholded):
    """Precision, recall or F1 over labels, averaged as scikit-learn does."""

    higher_is_better = True
    score: ClassVar[Score]
    counts: torch.Tensor
    sample_sum: torch.Tensor

    def __init__(
        self,
        average: LabelAverageField = "macro",
        threshold: Threshold = 0.5,
        outputs: Outputs = "logits",
        num_classes: NumLabels = None,
    ) -> None:
        super().__init__(threshold, outputs, num_classes)
        self.average = average
        self.add_state("counts", torch.zeros((3, num_classes or 0), dtype=torch.long))
        self.add_state("sample_sum", torch.zeros((), dtype=torch.float64))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        preds, truth = self._predicted(outputs, targets)
        counts = label_counts(preds, truth)
        if self.counts.shape != counts.shape:
            if self.counts.numel():
                raise ValueError(
                    f"{self.what}: outputs with {counts.shape[1]} labels after ones with "
                    f"{self.counts.shape[1]}"
                )
            self.counts = torch.zeros_like(counts)
        self.counts += counts
        if self.average == "samples":
            self.sample_sum += sample_scores(preds, truth, self.score).to(self.sample_sum.dtype).sum()

    def _compute(self) -> torch.Tensor:
        if self.average == "samples":
            return self.sample_sum / self.n_samples
        return average_label_scores(self.counts, self.score, self.average)


class MultilabelF1(_LabelScore):
    """F1 of the thresholded labels (``sklearn.metrics.f1_score`` on multi-hot
    targets, ``zero_division=0``)."""

    what = "multilabel_f1"
    score = "f1"


class MultilabelPrecision(_LabelScore):
    """Precision of the thresholded labels (``precision_score``, ``zero_division=0``)."""

    what = "multilabel_precision"
    score = "precision"


class MultilabelRecall(_LabelScore):
    """Recall of the thresholded labels (``recall_score``, ``zero_division=0``)."""

    what = "multilabel_recall"
    score = "recall"


class SubsetAccuracy(_Thresholded):
    """Fraction of samples whose predicted label set is exactly the true one
    (``sklearn.metrics.accuracy_score`` on multi-hot targets)."""

    what = "subset_accuracy"
    higher_is_better = True
    correct: torch.Tensor

    def __init__(
        self, threshold: Threshold = 0.5, outputs: Outputs = "logits", num_classes: NumLabels = None
    ) -> None:
        super().__init__(threshold, outputs, num_classes)
        self.add_state("correct", torch.zeros((), dtype=torch.long))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        preds, truth = self._predicted(outputs, targets)
        self.correct += (preds == truth).all(dim=1).sum()

    def _compute(self) -> torch.Tensor:
        return as_float(self.correct) / self.n_samples


class HammingLoss(_Thresholded):
    """Fraction of (sample, label) pairs predicted wrong
    (``sklearn.metrics.hamming_loss``; lower is better)."""

    what = "hamming_loss"
    higher_is_better = False
    wrong: torch.Tensor
    cells: torch.Tensor

    def __init__(
        self, threshold: Threshold = 0.5, outputs: Outputs = "logits", num_classes: NumLabels = None
    ) -> None:
        super().__init__(threshold, outputs, num_classes)
        self.add_state("wrong", torch.zeros((), dtype=torch.long))
        self.add_state("cells", torch.zeros((), dtype=torch.long))

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        preds, truth = self._predicted(outputs, targets)
        self.wrong += (preds != truth).sum()
        self.cells += preds.numel()

    def _compute(self) -> torch.Tensor:
        return as_float(self.wrong) / self.cells


class MultilabelAveragePrecision(_LabelMetric):
    """Mean over labels of each label's average precision (the area under its
    precision-recall curve), as ``sklearn.metrics.average_precision_score(
    average="macro")``; labels without a positive target are skipped with an
    ``UndefinedMetricWarning`` (scikit-learn counts them as 0). Logits or
    probabilities: only the order of the scores matters."""

    what = "multilabel_map"
    higher_is_better = True
    scores: list[torch.Tensor]
    targets: list[torch.Tensor]

    def __init__(self, num_classes: NumLabels = None) -> None:
        super().__init__(num_classes)
        self.add_state("scores", [], reduce="cat")
        self.add_state("targets", [], reduce="cat")

    def _update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs, targets = self._matrices(outputs, targets)
        if self.scores and self.scores[0].shape[1] != outputs.shape[1]:
            raise ValueError(
                f"{self.what}: outputs with {outputs.shape[1]} labels after ones with "
                f"{self.scores[0].shape[1]}"
            )
        self.scores.append(outputs.float())
        self.targets.append(targets == 1)

    def _compute(self) -> torch.Tensor:
        return multilabel_average_precision(torch.cat(self.scores), torch.cat(self.targets))

