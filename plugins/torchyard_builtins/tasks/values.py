"""Tasks whose outputs are values: regression, ranking."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from torchyard.tasks import OutputKind, Task

if TYPE_CHECKING:
    import torch

    from torchyard.console import Reporter


class Regression(Task):
    """One or more numbers per sample; outputs are the predicted values."""

    name = "regression"
    output_kind = "values"

    def __init__(
        self,
        stratify_bins: Annotated[
            int, Field(ge=0, le=100, description="A stratified split bins the targets into this "
                       "many quantiles and keeps their proportions; 0: no stratification.")
        ] = 5,
    ) -> None:
        super().__init__()
        self.stratify_bins = stratify_bins

    def context(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes or 1}  # one output per target column

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        try:
            values = np.asarray(targets, dtype=float)
        except (TypeError, ValueError):
            return "regression targets must be numbers"
        if not np.isfinite(values).all():
            return f"{int((~np.isfinite(values)).sum())} regression target(s) are NaN or infinite"
        return None

    def mix_problem(self) -> str | None:
        return "the regression task's targets are values, which batch transforms do not mix"

    def check_outputs(self, width: int) -> str | None:
        wanted = self.num_classes or 1
        if width != wanted:
            return (f"model.num_classes: the model gives {width} outputs per sample for {wanted} "
                    "regression target(s); leave num_classes unset to take it from the data")  # fmt: skip
        return None

    def class_counts(self, targets: Sequence[Any]) -> list[int] | None:
        return None  # no single class per sample

    def stratify(self, targets: Sequence[Any]) -> np.ndarray | None:
        """Quantile bins of the (first) target: a split keeps low and high values on both sides."""
        values = np.asarray(targets, dtype=float).reshape(len(targets), -1)[:, 0]
        if self.stratify_bins < 2 or len(np.unique(values)) < 2:
            return None
        edges = np.unique(np.quantile(values, np.linspace(0, 1, self.stratify_bins + 1)[1:-1]))
        return np.digitize(values, edges)

    def to_probabilities(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        raise ValueError("regression outputs are values, not class probabilities")

    def probabilities(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        raise ValueError("regression outputs are values, not class probabilities")

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        flat = outputs.reshape(len(outputs), -1)
        return flat[:, 0] if flat.shape[1] == 1 else flat

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        return list(labels.tolist())

    def oof_columns(self, outputs: np.ndarray, kind: OutputKind) -> dict[str, np.ndarray]:
        flat = outputs.reshape(len(outputs), -1)
        if flat.shape[1] == 1:
            return {"predicted": flat[:, 0]}
        return {f"predicted_{i}": flat[:, i] for i in range(flat.shape[1])}

    def report(
        self,
        directory: Path,
        outputs: np.ndarray,
        kind: OutputKind,
        targets: np.ndarray,
        reporter: Reporter | None,
        title: str,
    ) -> dict[str, str]:
        from torchyard.report import write_value_report

        return write_value_report(
            directory, outputs, targets, self.class_names, reporter, title.replace("per class", "per target")
        )


class Ranking(Task):
    """The items of a query, ordered by score. A sample is a query: its items
    padded to the longest query, padding marked by relevance -1."""

    name = "ranking"
    output_kind = "values"
    has_report = False
    stratifies = False

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        return None  # relevance grades are checked by the dataset

    def mix_problem(self) -> str | None:
        return "the ranking task's targets are relevance grades per query, which batch transforms do not mix"

    def check_outputs(self, width: int) -> str | None:
        return None

    def class_counts(self, targets: Sequence[Any]) -> list[int] | None:
        return None  # no single class per sample

    def stratify(self, targets: Sequence[Any]) -> np.ndarray | None:
        return None  # queries are split as units

    def to_probabilities(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        raise ValueError("ranking outputs are scores, not class probabilities")

    def probabilities(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        raise ValueError("ranking outputs are scores, not class probabilities")

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """Each query's item positions, best first (padding included, last
        when its score is lowest: writers keep a query's real items only)."""
        return np.argsort(-outputs, axis=1, kind="stable")

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        return list(labels.tolist())

    def oof_columns(self, outputs: np.ndarray, kind: OutputKind) -> dict[str, np.ndarray]:
        return {"scores": np.asarray([" ".join(f"{v:.6g}" for v in row) for row in outputs])}
