"""Per-class probabilities, for ensembling several runs or models.

One row per test id: the id, then one column per class holding the
softmax of the model's outputs, named by the class names when the data
has them, else ``prob_0``, ``prob_1``, ... CSV, or Parquet (smaller, exact
floats) when ``pyarrow`` is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard.files import atomic_path, atomic_write
from torchyard_builtins.writers.common import duplicates, first_few, plain_filename


class ProbabilitiesWriter:
    """An id column plus one probability column per class, as CSV or Parquet."""

    def __init__(
        self,
        format: Annotated[
            Literal["csv", "parquet"],
            Field(description="File format; parquet needs pyarrow."),
        ] = "csv",
        filename: Annotated[
            str | None,
            Field(min_length=1, description="File name inside the run directory; unset: "
                  "probabilities.csv or probabilities.parquet."),
        ] = None,
        id_column: Annotated[str, Field(min_length=1, description="Header of the id column.")] = "id",
    ) -> None:
        if format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as e:
                raise DataError(
                    "writer 'probabilities': format 'parquet' needs pyarrow, which is not "
                    "installed; run `pip install pyarrow` or use format 'csv'"
                ) from e
        self.format = format
        self.filename = plain_filename(filename or f"probabilities.{format}")
        self.id_column = id_column

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path."""
        import pandas as pd

        columns = self.columns(predictions)
        frame = pd.DataFrame(predictions.probabilities, columns=columns)
        frame.insert(0, self.id_column, predictions.ids)
        path = Path(directory) / self.filename
        if self.format == "parquet":
            with atomic_path(path) as tmp:
                frame.to_parquet(tmp, index=False)
        else:
            with atomic_write(path) as f:
                frame.to_csv(f, index=False)
        return path

    def columns(self, predictions: Predictions) -> list[str]:
        """The probability columns' headers.

        One column per class (a binary task: the negative and the positive
        class), or per label for multi-label.

        :raises DataError: the task's outputs are not classes, or the class
            names clash with each other or with the id column.
        """
        try:
            count = predictions.probabilities.shape[1]
        except (ValueError, IndexError) as e:
            raise DataError(f"writer 'probabilities': {e}") from None
        if count < 2 and predictions.task != "multilabel":
            raise DataError(
                "writer 'probabilities' needs one output per class (at least 2), got outputs "
                f"of shape {predictions.outputs.shape}"
            )
        names = predictions.class_names
        if names is None:
            columns = [f"prob_{i}" for i in range(count)]
        elif len(names) != count:
            raise DataError(
                f"writer 'probabilities': the data names {len(names)} classes but the model "
                f"gives {count} outputs"
            )
        else:
            columns = [str(n) for n in names]
        clashes = duplicates([self.id_column, *columns])
        if clashes:
            raise DataError(
                f"writer 'probabilities': column names occur twice ({first_few(clashes)}); "
                "class names must be unique and differ from id_column"
            )
        return columns
