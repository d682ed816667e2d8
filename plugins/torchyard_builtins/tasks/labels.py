"""Tasks whose targets are labels: classification, binary, multi-label."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from torchyard.metric import Metric, MetricView
from torchyard.tasks import OutputKind, Task

if TYPE_CHECKING:
    import torch

    from torchyard.console import Reporter
    from torchyard.data import DataBundle

Threshold = Annotated[
    float | Literal["tune"],
    Field(description="Probability at or above which a sample is positive, or 'tune': the one "
          "that maximizes F1 on the validation split after training."),
]


class Classification(Task):
    """One class per sample (the base rules). A class fused from several
    label columns (``DataBundle.label_parts``) is also scored per part:
    ``val/<part>/<metric>``, from the parts' marginal probabilities."""

    name = "classification"

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[tuple[str, int]] = []

    def bind(self, data: DataBundle) -> None:
        super().bind(data)
        names = list(data.label_parts or ())
        radix = fused_radix(data.class_names, len(names))
        self.parts = list(zip(names, radix, strict=True)) if radix else []

    def wrap(
        self, loss_spec: Any, metric_specs: Sequence[Any], build: Callable[..., Any]
    ) -> tuple[Any, dict[str, Metric]]:
        loss, metrics = super().wrap(loss_spec, metric_specs, build)
        radix = [size for _, size in self.parts]
        for i, spec in enumerate(metric_specs):
            key = spec.log_as or spec.record.name
            for index, (part, size) in enumerate(self.parts):
                metric = build(spec, "metric", {"num_classes": size}, f"metrics.{i}")
                metrics[f"{part}/{key}"] = _PartMetric.of(metric, radix, index)
        return loss, metrics

    def report(
        self,
        directory: Path,
        outputs: np.ndarray,
        kind: OutputKind,
        targets: np.ndarray,
        reporter: Reporter | None,
        title: str,
    ) -> dict[str, str]:
        from torchyard.report import write_report

        paths = super().report(directory, outputs, kind, targets, reporter, title)
        if self.parts:
            radix = [size for _, size in self.parts]
            predicted = fused_digits(self.labels(outputs, kind), radix)
            truth = fused_digits(np.asarray(targets, dtype=np.int64), radix)
            names = [name.split("/") for name in self.class_names or []]
            for index, (part, size) in enumerate(self.parts):
                values = {int(d[index]): names[i][index] for i, d in enumerate(fused_digits(np.arange(len(names)), radix))}
                paths.update(write_report(
                    directory, predicted[:, index], truth[:, index], [values[v] for v in range(size)],
                    None, title, n_classes=size, prefix=f"{part}_",
                ))  # fmt: skip
        return paths


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _best_f1_threshold(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The threshold among the validation probabilities that maximizes F1."""
    order = np.argsort(-probabilities)
    p, t = probabilities[order], targets[order] > 0.5
    positives = t.sum()
    if positives == 0:
        return 0.5
    true_pos = np.cumsum(t)
    f1 = 2 * true_pos / (np.arange(1, len(t) + 1) + positives)
    best = int(np.argmax(f1))
    return float(p[best])


class Binary(Task):
    """Yes or no per sample: one logit; 1 when its probability reaches the threshold."""

    name = "binary"

    def __init__(self, threshold: Threshold = 0.5) -> None:
        super().__init__()
        if threshold != "tune" and not 0 < threshold < 1:
            raise ValueError(f"threshold: expected a number between 0 and 1, or 'tune', got {threshold}")
        self.threshold = 0.5 if threshold == "tune" else float(threshold)
        self.tuned = threshold == "tune"

    def setup(self, num_classes: int | None, class_names: Sequence[str] | None) -> None:
        super().setup(2, class_names if class_names and len(class_names) == 2 else None)

    def context(self) -> dict[str, Any]:
        return {"num_classes": 1}  # one logit

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        values = np.asarray(targets, dtype=float)
        if values.ndim != 1 or not np.isin(values, (0.0, 1.0)).all():
            return "binary targets must be 0 or 1, one per sample"
        return None

    def check_outputs(self, width: int) -> str | None:
        if width != 1:
            return (f"model.num_classes: a binary task needs one output (a logit) per sample, the "
                    f"model gives {width}; leave num_classes unset")  # fmt: skip
        return None

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        return targets.float().reshape(-1, 1)  # the positive class's probability

    def positive(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """The probability of the positive class, one per sample."""
        return self.probabilities(outputs, kind)[:, 1]

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        return (self.positive(outputs, kind) >= self.threshold).astype(np.int64)

    def tune(self, outputs: np.ndarray, kind: OutputKind, targets: np.ndarray) -> dict[str, Any]:
        if self.tuned:
            self.threshold = _best_f1_threshold(self.positive(outputs, kind), targets.reshape(-1))
        return {"threshold": self.threshold}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.tuned and isinstance(state.get("threshold"), float | int):
            self.threshold = float(state["threshold"])


class Multilabel(Task):
    """Any set of labels per sample: one sigmoid per label."""

    name = "multilabel"
    stratifies = False

    def __init__(
        self,
        threshold: Threshold = 0.5,
        thresholds: Annotated[
            list[float] | None,
            Field(description="One threshold per label, in label order (overrides threshold)."),
        ] = None,
    ) -> None:
        super().__init__()
        if threshold != "tune" and not 0 < threshold < 1:
            raise ValueError(f"threshold: expected a number between 0 and 1, or 'tune', got {threshold}")
        if thresholds is not None and not all(0 < t < 1 for t in thresholds):
            raise ValueError("thresholds: each must be between 0 and 1")
        self.tuned = threshold == "tune" and thresholds is None
        self._given = thresholds
        self.thresholds = np.asarray(thresholds if thresholds else [0.5 if threshold == "tune" else threshold])

    def setup(self, num_classes: int | None, class_names: Sequence[str] | None) -> None:
        super().setup(num_classes, class_names)
        if self._given is not None and num_classes is not None and len(self._given) != num_classes:
            raise ValueError(f"thresholds: {len(self._given)} given for {num_classes} labels")

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        try:
            values = np.asarray(targets, dtype=float)
        except ValueError:
            return "multi-label targets must be rows of 0/1, one column per label"
        if values.ndim != 2 or not np.isin(values, (0.0, 1.0)).all():
            return "multi-label targets must be rows of 0/1, one column per label"
        if self.num_classes is not None and values.shape[1] != self.num_classes:
            return f"multi-label targets have {values.shape[1]} columns for {self.num_classes} labels"
        return None

    def check_outputs(self, width: int) -> str | None:
        if self.num_classes and width != self.num_classes:
            return (f"model.num_classes: the model gives {width} outputs per sample, but the data has "
                    f"{self.num_classes} labels; leave num_classes unset to take it from the data")  # fmt: skip
        return None

    def class_counts(self, targets: Sequence[Any]) -> list[int] | None:
        return None  # no single class per sample

    def stratify(self, targets: Sequence[Any]) -> np.ndarray | None:
        return None  # label sets are not classes: a split is random (groups still apply)

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        return targets.float()  # each label's probability

    def to_probabilities(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        import torch

        if kind == "probabilities":
            return outputs
        if kind == "values":
            raise ValueError("multilabel outputs are logits, not values")
        return torch.sigmoid(outputs)

    def probabilities(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        return outputs if kind == "probabilities" else _sigmoid(outputs)

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        return (self.probabilities(outputs, kind) >= self.thresholds).astype(np.int64)

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        names = list(class_names) if class_names else [str(i) for i in range(labels.shape[1])]
        return [[names[j] for j in np.flatnonzero(row)] for row in labels]

    def tune(self, outputs: np.ndarray, kind: OutputKind, targets: np.ndarray) -> dict[str, Any]:
        if self.tuned:
            probabilities = self.probabilities(outputs, kind)
            self.thresholds = np.asarray(
                [_best_f1_threshold(probabilities[:, j], targets[:, j]) for j in range(targets.shape[1])]
            )
        return {"thresholds": [float(t) for t in np.broadcast_to(self.thresholds, (outputs.shape[1],))]}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.tuned and isinstance(state.get("thresholds"), list):
            self.thresholds = np.asarray(state["thresholds"], dtype=float)

    def oof_columns(self, outputs: np.ndarray, kind: OutputKind) -> dict[str, np.ndarray]:
        probabilities = self.probabilities(outputs, kind)
        labels = self.labels(outputs, kind)
        columns = {"predicted": np.asarray([" ".join(map(str, np.flatnonzero(r))) for r in labels])}
        columns.update({f"prob_{i}": probabilities[:, i] for i in range(probabilities.shape[1])})
        return columns

    def report(
        self,
        directory: Path,
        outputs: np.ndarray,
        kind: OutputKind,
        targets: np.ndarray,
        reporter: Reporter | None,
        title: str,
    ) -> dict[str, str]:
        from torchyard.report import write_label_report

        return write_label_report(
            directory, self.labels(outputs, kind), targets, self.class_names, reporter,
            title.replace("per class", "per label"),
        )  # fmt: skip


def fused_digits(fused: np.ndarray, radix: Sequence[int]) -> np.ndarray:
    """Fused class indices as one column per part (mixed radix, the first
    part most significant): what a multi-column label or a head splits into."""
    out = np.zeros((len(fused), len(radix)), dtype=np.int64)
    rest = np.asarray(fused, dtype=np.int64)
    for h in reversed(range(len(radix))):
        out[:, h] = rest % radix[h]
        rest = rest // radix[h]
    return out


class _PartMetric(MetricView):
    """A metric of one part of a fused class: it sees that part's marginal
    log-probabilities and its digit of the target."""

    def __init__(self, metric: Metric, radix: Sequence[int], index: int) -> None:
        super().__init__(metric)
        self.radix, self.index = list(radix), index

    def view(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        probabilities = torch.softmax(outputs.float(), dim=-1).reshape(len(outputs), *self.radix)
        others = tuple(d + 1 for d in range(len(self.radix)) if d != self.index)
        marginal = probabilities.sum(dim=others) if others else probabilities
        divisor = int(np.prod(self.radix[self.index + 1 :]))
        digit = torch.div(targets.long(), divisor, rounding_mode="floor") % self.radix[self.index]
        return marginal.clamp_min(1e-12).log(), digit


def fused_radix(class_names: Sequence[str] | None, parts: int) -> list[int] | None:
    """The sizes of the parts of fused class names ('wear/male/<30'), when
    the names are every combination of the parts' values with the first part
    most significant; else None."""
    if not class_names or parts < 2 or not all(len(n.split("/")) == parts for n in class_names):
        return None
    values: list[list[str]] = [[] for _ in range(parts)]
    for name in class_names:
        for h, value in enumerate(name.split("/")):
            if value not in values[h]:
                values[h].append(value)
    radix = [len(v) for v in values]
    if int(np.prod(radix)) != len(class_names):
        return None
    for name, digits in zip(class_names, fused_digits(np.arange(len(class_names)), radix), strict=True):
        if [values[h][d] for h, d in enumerate(digits)] != name.split("/"):
            return None
    return radix
