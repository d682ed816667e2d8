"""Multi-label submissions: the predicted label set of each test id.

Two shapes that competitions ask for: ``label_list`` writes one column of
the predicted label names joined by a delimiter (``"cat dog"``; an empty
string when no label is predicted), ``label_columns`` one 0/1 (or
probability) column per label. Both read the run's task through
:class:`~torchyard.data.Predictions` (``labels``, ``label_names()``,
``probabilities``), so the thresholds the task settled are the ones used.
Single-label predictions are written as one-label sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard.files import atomic_write
from torchyard_builtins.writers.common import duplicates, first_few, plain_filename

__all__ = ["LabelColumnsWriter", "LabelListWriter"]

Filename = Annotated[str, Field(min_length=1, description="File name inside the run directory.")]
IdColumn = Annotated[str, Field(min_length=1, description="Header of the id column.")]


class LabelListWriter:
    """An id column and one column of predicted label names joined by ``delimiter``."""

    def __init__(
        self,
        filename: Filename = "submission.csv",
        id_column: IdColumn = "id",
        prediction_column: Annotated[
            str, Field(min_length=1, description="Header of the column of label lists.")
        ] = "labels",
        delimiter: Annotated[
            str, Field(min_length=1, description="What separates the labels of one sample.")
        ] = " ",
    ) -> None:
        if id_column == prediction_column:
            raise ValueError("id_column and prediction_column must differ")
        self.filename = plain_filename(filename)
        self.id_column = id_column
        self.prediction_column = prediction_column
        self.delimiter = delimiter

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path.

        :raises DataError: a label name holds the delimiter (the list could
            not be read back).
        """
        import pandas as pd

        rows = [_as_list(names) for names in predictions.label_names()]
        clashing = sorted({n for names in rows for n in names if self.delimiter in n})
        if clashing:
            raise DataError(
                f"writer 'label_list': label names contain the delimiter {self.delimiter!r} "
                f"({first_few(clashing)}); set another delimiter"
            )
        values = [self.delimiter.join(names) for names in rows]
        frame = pd.DataFrame({self.id_column: predictions.ids, self.prediction_column: values})
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            frame.to_csv(f, index=False)
        return path


class LabelColumnsWriter:
    """An id column and one column per label: 0/1, or its probability."""

    def __init__(
        self,
        filename: Filename = "submission.csv",
        id_column: IdColumn = "id",
        probabilities: Annotated[
            bool, Field(description="Write each label's probability instead of 0/1.")
        ] = False,
    ) -> None:
        self.filename = plain_filename(filename)
        self.id_column = id_column
        self.probabilities = probabilities

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path.

        :raises DataError: the class names do not fit the outputs, or clash.
        """
        import pandas as pd

        values = predictions.probabilities if self.probabilities else _multi_hot(predictions)
        frame = pd.DataFrame(values, columns=self.columns(predictions, values.shape[1]))
        frame.insert(0, self.id_column, predictions.ids)
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            frame.to_csv(f, index=False)
        return path

    def columns(self, predictions: Predictions, count: int) -> list[str]:
        """The label columns' headers: the class names, else ``label_0``, ..."""
        names = predictions.class_names
        if names is not None and len(names) != count:
            raise DataError(
                f"writer 'label_columns': the data names {len(names)} labels but the "
                f"predictions have {count}"
            )
        columns = [f"label_{i}" for i in range(count)] if names is None else [str(n) for n in names]
        clashes = duplicates([self.id_column, *columns])
        if clashes:
            raise DataError(
                f"writer 'label_columns': column names occur twice ({first_few(clashes)}); "
                "label names must be unique and differ from id_column"
            )
        return columns


def _as_list(names: Any) -> list[str]:
    """One sample's label names: a multi-label list, or one single label."""
    if isinstance(names, list | tuple | np.ndarray):
        return [str(n) for n in names]
    return [str(names)]


def _multi_hot(predictions: Predictions) -> np.ndarray:
    """The predicted labels as 0/1 rows ``(n, C)``; a class index becomes a
    one-hot row over the outputs' width."""
    labels = np.asarray(predictions.labels)
    if labels.ndim == 2:
        return labels.astype(np.int64)
    width = predictions.outputs.shape[1] if predictions.outputs.ndim == 2 else 1
    width = max(width, 2, int(labels.max(initial=-1)) + 1)
    return np.eye(width, dtype=np.int64)[labels.astype(np.int64)]
