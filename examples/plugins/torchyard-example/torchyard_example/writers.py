"""A JSON Lines submission writer: one JSON object per test sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from torchyard.data import Predictions
from torchyard.files import atomic_write


class JsonLinesWriter:
    """Write ``{"<id_key>": id, "<label_key>": prediction}`` per line, atomically."""

    def __init__(
        self,
        filename: Annotated[
            str, Field(min_length=1, description="File name inside the run directory.")
        ] = "submission.jsonl",
        id_key: Annotated[str, Field(min_length=1, description="Key of the id.")] = "id",
        label_key: Annotated[
            str, Field(min_length=1, description="Key of the prediction.")
        ] = "label",
        class_names: Annotated[
            bool, Field(description="Write class names, not indices (when the data has them).")
        ] = False,
        probabilities: Annotated[
            bool, Field(description="Also write the class probabilities, under 'probabilities'.")
        ] = False,
    ) -> None:
        if Path(filename).name != filename or filename in (".", ".."):
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        if id_key == label_key:
            raise ValueError("id_key and label_key must differ")
        self.filename = filename
        self.id_key = id_key
        self.label_key = label_key
        self.class_names = class_names
        self.probabilities = probabilities

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path."""
        labels = predictions.label_names() if self.class_names else predictions.labels.tolist()
        probabilities = predictions.probabilities.tolist() if self.probabilities else None
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            for i, (id_, label) in enumerate(zip(predictions.ids, labels, strict=True)):
                row: dict[str, Any] = {self.id_key: _plain(id_), self.label_key: label}
                if probabilities is not None:
                    row["probabilities"] = probabilities[i]
                f.write(json.dumps(row) + "\n")
        return path


def _plain(value: Any) -> Any:
    """A JSON-ready id: NumPy and torch scalars become Python numbers."""
    return value.item() if hasattr(value, "item") else value
