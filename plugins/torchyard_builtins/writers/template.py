"""Fill a competition's sample submission with the predictions.

The output has the template's ids in the template's order and its columns
(other columns kept verbatim); only the prediction column is replaced. It
refuses to write when the predictions and the template disagree (ids
missing, extra or repeated), because a submission that quietly drops or
reorders rows scores as garbage, or is rejected after the upload.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard.files import atomic_write
from torchyard_builtins.writers.common import duplicates, first_few, plain_filename

if TYPE_CHECKING:
    import pandas as pd


class TemplateWriter:
    """Fills the prediction column of a sample-submission CSV, keeping its ids,
    order and columns."""

    def __init__(
        self,
        path: Annotated[
            Path,
            Field(description="The template (sample submission) CSV. A relative path is taken "
                  "from the config file's directory."),
        ],
        id_column: Annotated[
            str | None,
            Field(min_length=1, description="The template's id column; unset: its first column."),
        ] = None,
        prediction_column: Annotated[
            str | None,
            Field(min_length=1, description="The column to fill; unset: the template's other "
                  "column, when it has exactly two."),
        ] = None,
        class_names: Annotated[
            bool,
            Field(description="Write class names instead of class indices (when the data has them)."),
        ] = False,
        filename: Annotated[
            str | None,
            Field(min_length=1, description="File name inside the run directory; unset: the "
                  "template's file name."),
        ] = None,
    ) -> None:
        self.path = Path(path)
        self.class_names = class_names
        self.filename = plain_filename(filename if filename is not None else self.path.name)
        # Read now, so a wrong path or column fails before training, not after.
        template = self._read()
        columns = list(template.columns)
        self.id_column = id_column if id_column is not None else columns[0]
        if prediction_column is None:
            others = [c for c in columns if c != self.id_column]
            if len(others) != 1:
                raise DataError(
                    f"template {self.path} has {len(columns)} columns ({', '.join(columns)}): "
                    "set prediction_column to the one to fill"
                )
            prediction_column = others[0]
        if prediction_column == self.id_column:
            raise ValueError("id_column and prediction_column must differ")
        self.prediction_column = prediction_column
        self._check(template)

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path.

        :raises DataError: the template changed or is unusable, or its ids and
            the predicted ids differ.
        """
        template = self._check(self._read())
        predicted = [str(i) for i in predictions.ids]
        self.check_ids(predicted, template)
        values = predictions.label_names() if self.class_names else predictions.labels.tolist()
        by_id = dict(zip(predicted, values, strict=True))
        template[self.prediction_column] = template[self.id_column].map(by_id)
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            template.to_csv(f, index=False)
        return path

    def check_ids(self, ids: list[str], template: pd.DataFrame | None = None) -> None:
        """Raise a one-line :class:`DataError` unless ``ids`` (as strings) are
        exactly the template's ids, each once."""
        template = self._check(self._read()) if template is None else template
        expected = template[self.id_column].tolist()
        wanted, given = set(expected), Counter(ids)
        problems = []
        missing = [i for i in expected if i not in given]
        if missing:
            problems.append(f"{len(missing)} template ids have no prediction (first: "
                            f"{first_few(missing)})")
        extra = [i for i in given if i not in wanted]
        if extra:
            problems.append(f"{len(extra)} predicted ids are not in the template (first: "
                            f"{first_few(extra)})")
        repeated = [i for i, n in given.items() if n > 1]
        if repeated:
            problems.append(f"{len(repeated)} ids are predicted more than once (first: "
                            f"{first_few(repeated)})")
        if problems:
            raise DataError(
                f"predictions do not match template {self.path} (column "
                f"'{self.id_column}'): " + "; ".join(problems) + "; nothing was written"
            )

    def _read(self) -> pd.DataFrame:
        """The template, every cell a string kept verbatim (ids like ``007``
        stay as written; blank cells stay blank)."""
        import pandas as pd

        if not self.path.is_file():
            where = "" if self.path.is_absolute() else f" (relative to {Path.cwd()})"
            raise DataError(f"template file not found: {self.path}{where}")
        try:
            return pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DataError(f"template {self.path} is not a readable CSV: {e}") from e

    def _check(self, template: pd.DataFrame) -> pd.DataFrame:
        """``template``, checked to have both columns and unique ids."""
        absent = [c for c in (self.id_column, self.prediction_column) if c not in template.columns]
        if absent:
            raise DataError(
                f"template {self.path} has no column {' or '.join(repr(c) for c in absent)} "
                f"(its columns: {', '.join(template.columns)})"
            )
        repeated = duplicates(template[self.id_column].tolist())
        if repeated:
            raise DataError(
                f"template {self.path} lists {len(repeated)} ids more than once in column "
                f"'{self.id_column}' (first: {first_few(repeated)})"
            )
        return template
