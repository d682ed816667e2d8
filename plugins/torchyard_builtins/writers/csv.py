"""The plain CSV submission writer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from torchyard.data import Predictions
from torchyard.files import atomic_write
from torchyard_builtins.writers.common import plain_filename


class CsvWriter:
    """A CSV with an id column and a prediction column, written atomically."""

    def __init__(
        self,
        filename: Annotated[
            str, Field(min_length=1, description="File name inside the run directory.")
        ] = "submission.csv",
        id_column: Annotated[str, Field(min_length=1, description="Header of the id column.")] = "id",
        prediction_column: Annotated[
            str, Field(min_length=1, description="Header of the prediction column.")
        ] = "label",
        class_names: Annotated[
            bool,
            Field(description="Write class names instead of class indices (when the data has them)."),
        ] = False,
    ) -> None:
        if id_column == prediction_column:
            raise ValueError("id_column and prediction_column must differ")
        self.filename = plain_filename(filename)
        self.id_column = id_column
        self.prediction_column = prediction_column
        self.class_names = class_names

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path."""
        import pandas as pd

        values = predictions.label_names() if self.class_names else predictions.labels.tolist()
        frame = pd.DataFrame({self.id_column: predictions.ids, self.prediction_column: values})
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            frame.to_csv(f, index=False)
        return path
