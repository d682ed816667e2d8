"""Tables from a CSV or Parquet file: ``table_csv``.

**Rows and splits.** Every row of the training file is a labelled sample in
``train``; validation is carved out by the config's ``split`` section
(holdout or k-fold, stratified by class for classification, group-aware with
``group_column``). An optional ``test`` file holds the rows to predict; its
ids come from ``id_column``, or are the row numbers (0, 1, ...).

**Task** (``target_type``). ``classification`` (the default): one target
column whose values are classes, mapped to indices in sorted order (numeric
order when every value is a number), ``class_names`` the values as written.
``binary``: one column with exactly two values, the first in that order 0.0,
the second 1.0. ``multilabel``: one 0/1 column per label. ``regression``: one
or more numeric columns, float32 targets (``(n,)`` for one column, ``(n, k)``
for ``k``), ``num_classes`` = ``k``. A missing target is an error.

**Features.** ``features`` lists the input columns; unset, every column but
the targets, ``id_column``, ``group_column`` and ``exclude``. A column is
categorical if listed in ``categorical`` or if it holds text; otherwise it
is numeric. Columns listed in ``numeric`` must hold numbers only: a text
value in one is an error naming the file, the column and the line.

**Preprocessing, fitted on the training part only.** The dataset's
``fitted`` object (:class:`TablePreprocessor`) learns from the rows
torchyard trains on -- after the split, per fold in k-fold -- and is saved
in checkpoints:

- numeric columns: missing values become the column's median, and then
  every value is standardized with the mean and standard deviation of the
  observed values (``standardize: false`` keeps the raw scale); a column
  with any missing value in the training file also gets a 0/1 is-missing
  indicator column;
- categorical columns: code 0 is "unknown" (a value the training part never
  showed: validation, test, or a new file; one warning per column), code 1
  is "missing", codes 2... the training file's values in sorted order.
  A value of the training file that is absent from the training part maps
  to unknown, so every fold's model has the same embedding sizes.

If torchyard never calls ``fit`` (a run without a ``split`` section trains
on every row), the first sample read fits it on every row of the training
file.

**Inputs** are float32 vectors: ``[standardized numerics..., missing
indicators..., categorical codes...]``. ``extra_context`` offers
``num_numeric`` (the count of leading non-categorical values) and
``cardinalities`` (codes per categorical column, unknown and missing
included), so a model such as ``tabular_mlp`` can embed the categorical
tail; any model on flat inputs (``mlp``) works as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from torchyard.data import DataBundle
from torchyard.errors import DataError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TableDataset", "TablePreprocessor", "table_csv"]

TargetType = Literal["classification", "binary", "multilabel", "regression"]
#: Categorical codes below those of the training file's values.
UNKNOWN, MISSING = 0, 1
_PARQUET = (".parquet", ".pq")


def table_csv(
    train: Annotated[
        Path, Field(description="The labelled table: a .csv, or a .parquet (needs pyarrow).")
    ],
    target: Annotated[
        str | list[str],
        Field(description="Target column, or columns (regression: one output each; multilabel: "
              "one 0/1 column per label)."),
    ],
    target_type: Annotated[
        TargetType,
        Field(description="What the target is: 'classification' (classes), 'binary' (two "
              "values), 'multilabel' (0/1 columns) or 'regression' (numbers); the run's task."),
    ] = "classification",
    test: Annotated[
        Path | None,
        Field(description="Table of the rows to predict: the feature columns (targets not "
              "needed); unset: no test split."),
    ] = None,
    features: Annotated[
        list[str] | None,
        Field(description="Input columns, in order; unset: every column but the targets, "
              "id_column, group_column and exclude."),
    ] = None,
    exclude: Annotated[
        list[str], Field(description="Columns never used as inputs (with features unset: "
                         "'all but these').")
    ] = [],  # noqa: B006 - read only
    categorical: Annotated[
        list[str],
        Field(description="Columns to treat as categories even if they hold numbers (codes, "
              "zip codes); text columns are categorical anyway."),
    ] = [],  # noqa: B006 - read only
    numeric: Annotated[
        list[str],
        Field(description="Columns that must hold numbers: a text value in one is an error "
              "naming its line (unlisted text columns become categorical)."),
    ] = [],  # noqa: B006 - read only
    id_column: Annotated[
        str | None,
        Field(description="Column of row ids (the submission's ids); never an input. Unset: "
              "test ids are the row numbers."),
    ] = None,
    group_column: Annotated[
        str | None,
        Field(description="Column grouping the rows (a patient, a user): a split keeps each "
              "group on one side; never an input."),
    ] = None,
    standardize: Annotated[
        bool,
        Field(description="Standardize numeric columns with the training part's mean and "
              "standard deviation."),
    ] = True,
) -> DataBundle:
    """A table of numeric and categorical columns: classification, binary,
    multi-label or regression targets, preprocessing fitted on the training
    part only.

    See the module documentation for the rules.
    """
    targets = [target] if isinstance(target, str) else list(target)
    _check_params(targets, target_type, categorical, numeric)
    text = [*categorical, *targets] if target_type != "regression" else list(categorical)
    frame = read_table(train, "train", text_columns=text)
    source = str(train)
    reserved = [*targets, *([group_column] if group_column else [])]
    _require(frame, source, [*reserved, *exclude, *categorical, *numeric])
    if id_column and id_column not in frame.columns and test is None:
        _require(frame, source, [id_column])
    columns = _feature_columns(frame, source, features, targets, exclude, id_column, group_column)
    stray = [c for c in (*categorical, *numeric) if c not in columns]
    if stray:
        raise ValueError(f"{stray[0]!r} is in categorical/numeric but not among the features")
    is_numeric = {c: c not in categorical and (c in numeric or _numeric_dtype(frame[c])) for c in columns}
    test_frame = test_ids = None
    if test is not None:
        test_frame = read_table(test, "test", text_columns=categorical)
        _require(test_frame, str(test), [*columns, *([id_column] if id_column else [])], "feature")
        test_ids = test_frame[id_column].tolist() if id_column else list(range(len(test_frame)))
    prep = TablePreprocessor(
        frame, test_frame, columns, is_numeric,
        sources=(source, str(test) if test is not None else ""), standardize=standardize,
    )  # fmt: skip
    y, names, train_targets = _targets(frame, source, targets, target_type)
    groups = None
    if group_column:
        groups = [("" if v is None else v) for v in _texts(frame[group_column])]
    return DataBundle(
        train=TableDataset(prep, "train", y),
        val=None,
        test=TableDataset(prep, "test") if test_frame is not None else None,
        test_ids=test_ids,
        train_ids=frame[id_column].tolist() if id_column and id_column in frame.columns else None,
        task=target_type,
        num_classes=len(names),
        class_names=names,
        input_shape=(prep.width,),
        train_targets=train_targets,
        groups=groups,
        extra_context={"cardinalities": prep.cardinalities, "num_numeric": prep.num_numeric},
        fitted=prep,
    )


class TablePreprocessor:
    """Imputation, standardization and category codes of a table, learnt
    from the training part (the ``DataBundle.fitted`` protocol).

    It holds the raw columns of the training file (``part="train"``) and the
    test file (``part="test"``); :meth:`fit` learns the statistics from some
    training rows and re-encodes both parts, which :meth:`inputs` returns.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        test_frame: pd.DataFrame | None,
        columns: Sequence[str],
        is_numeric: dict[str, bool],
        *,
        sources: tuple[str, str] = ("train", "test"),
        standardize: bool = True,
    ) -> None:
        self.numeric = [c for c in columns if is_numeric[c]]
        self.categorical = [c for c in columns if not is_numeric[c]]
        self.standardize = standardize
        self._numbers: dict[str, np.ndarray] = {}
        self._texts: dict[str, list[np.ndarray]] = {}
        for part, table, source in (("train", frame, sources[0]), ("test", test_frame, sources[1])):
            if table is None:
                continue
            self._numbers[part] = np.stack(
                [numbers(table[c], source, c) for c in self.numeric], axis=1
            ) if self.numeric else np.zeros((len(table), 0))
            self._texts[part] = [_texts(table[c]) for c in self.categorical]
        missing = np.isnan(self._numbers["train"]).any(axis=0)
        #: Numeric columns with a missing value in the training file: each
        #: gets an is-missing indicator.
        self.indicators = [c for c, m in zip(self.numeric, missing, strict=True) if m]
        #: Per categorical column, the training file's values in code order (from 2).
        self.vocabulary = {
            c: sorted({v for v in values if v is not None})
            for c, values in zip(self.categorical, self._texts["train"], strict=True)
        }
        self.median = [0.0] * len(self.numeric)
        self.mean = [0.0] * len(self.numeric)
        self.std = [1.0] * len(self.numeric)
        self.codes: dict[str, dict[str, int]] = {c: {} for c in self.categorical}
        self._warned: set[str] = set()
        self._inputs: dict[str, torch.Tensor] = {}

    # -- the shapes a model is built for ---------------------------------------------

    @property
    def num_numeric(self) -> int:
        """Leading input values that are not category codes."""
        return len(self.numeric) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column: unknown, missing and the training file's values."""
        return [len(self.vocabulary[c]) + 2 for c in self.categorical]

    @property
    def width(self) -> int:
        return self.num_numeric + len(self.categorical)

    @property
    def feature_names(self) -> list[str]:
        """One name per input value."""
        return [*self.numeric, *(f"{c}_missing" for c in self.indicators), *self.categorical]

    # -- the fitted protocol -----------------------------------------------------------

    def fit(self, indices: Sequence[int] | np.ndarray) -> None:
        """Learn medians, means, standard deviations and category codes from
        the training rows ``indices``, and re-encode every row."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self._numbers["train"])
        if not len(rows) or rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"fit: expected some of the indices 0..{n - 1}, got {rows.tolist()[:5]}")
        part = self._numbers["train"][rows]
        for j in range(len(self.numeric)):
            observed = part[:, j][~np.isnan(part[:, j])]
            if len(observed):
                std = float(observed.std())
                self.median[j] = float(np.median(observed))
                self.mean[j] = float(observed.mean())
                self.std[j] = std if std > 1e-12 else 1.0
            else:  # nothing to learn from: missing values become 0, and the indicator says so
                self.median[j], self.mean[j], self.std[j] = 0.0, 0.0, 1.0
        for column, values in zip(self.categorical, self._texts["train"], strict=True):
            seen = {v for v in values[rows] if v is not None}
            self.codes[column] = {
                v: code for code, v in enumerate(self.vocabulary[column], start=2) if v in seen
            }
        held_out = np.ones(n, dtype=bool)
        held_out[rows] = False
        self._encode(held_out)

    def state_dict(self) -> dict[str, Any]:
        """What was learnt, as plain JSON-able values (checkpoints stay
        loadable with ``weights_only=True``)."""
        self._ensure_fitted()
        return {
            "numeric": list(self.numeric),
            "indicators": list(self.indicators),
            "categorical": list(self.categorical),
            "standardize": self.standardize,
            "median": list(self.median),
            "mean": list(self.mean),
            "std": list(self.std),
            "cardinalities": self.cardinalities,
            "codes": {c: dict(codes) for c, codes in self.codes.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take what a checkpoint learnt, and re-encode every row with it.

        :raises DataError: the checkpoint was fitted on other columns.
        """
        for key in ("numeric", "indicators", "categorical", "cardinalities"):
            ours = getattr(self, key)
            if list(state.get(key, [])) != list(ours):
                raise DataError(
                    f"the checkpoint's table preprocessing has {key} {list(state.get(key, []))}, "
                    f"but the data gives {list(ours)}: predict with the data the run trained on"
                )
        self.standardize = bool(state["standardize"])
        self.median = [float(v) for v in state["median"]]
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]
        self.codes = {c: {str(v): int(k) for v, k in state["codes"][c].items()} for c in self.categorical}
        self._encode(None)

    # -- encoding ----------------------------------------------------------------------

    def inputs(self, part: str) -> torch.Tensor:
        """The encoded rows of ``part`` (``"train"`` or ``"test"``), ``(n, width)``;
        fitted on every training row if :meth:`fit` was never called."""
        self._ensure_fitted()
        return self._inputs[part]

    def _ensure_fitted(self) -> None:
        if not self._inputs:
            self.fit(np.arange(len(self._numbers["train"])))

    def _encode(self, held_out: np.ndarray | None) -> None:
        """Encode both parts. ``held_out`` marks the training rows not fitted
        on (validation), whose unseen categories are worth a warning; None:
        warn about the test rows only."""
        unseen: dict[str, dict[str, tuple[int, str]]] = {}
        for part, raw in self._numbers.items():
            nan = np.isnan(raw)
            values = np.where(nan, np.asarray(self.median)[None, :], raw)
            if self.standardize:
                values = (values - np.asarray(self.mean)) / np.asarray(self.std)
            flags = nan[:, [self.numeric.index(c) for c in self.indicators]]
            columns = [values, flags.astype(np.float64)]
            for column, texts in zip(self.categorical, self._texts[part], strict=True):
                mapping = self.codes[column]
                codes = np.array(
                    [MISSING if v is None else mapping.get(v, UNKNOWN) for v in texts], dtype=np.float64
                )
                new = codes == UNKNOWN
                if part == "train":
                    new &= held_out if held_out is not None else False
                if new.any():
                    first = texts[np.flatnonzero(new)[0]]
                    unseen.setdefault(column, {})[part] = (int(new.sum()), first)
                columns.append(codes[:, None])
            self._inputs[part] = torch.from_numpy(np.concatenate(columns, axis=1).astype(np.float32))
        for column, parts in unseen.items():
            if column in self._warned:
                continue
            self._warned.add(column)
            counts = " and ".join(
                f"{n} {'validation' if part == 'train' else 'test'} rows" for part, (n, _) in parts.items()
            )
            example = next(iter(parts.values()))[1]
            warnings.warn(
                f"table_csv: column {column!r}: {counts} hold values the training part never "
                f"showed (e.g. {example!r}); they get the unknown category (code 0)",
                UserWarning,
                stacklevel=4,
            )


class TableDataset(Dataset[Any]):
    """Rows of one part of a table, encoded by a :class:`TablePreprocessor`:
    ``(input, target)`` pairs, or ``(input,)`` without targets."""

    #: The rows are encoded tensors in memory: ``loader.num_workers: auto`` loads them without workers.
    in_memory = True

    def __init__(self, prep: TablePreprocessor, part: str, targets: torch.Tensor | None = None) -> None:
        self.prep = prep
        self.part = part
        self.targets = targets

    def __len__(self) -> int:
        return len(self.prep.inputs(self.part))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        x = self.prep.inputs(self.part)[index]
        return (x,) if self.targets is None else (x, self.targets[index])


# -- reading -------------------------------------------------------------------------


def read_table(path: str | Path, role: str = "table", *, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, ``text_columns`` (of a CSV) read
    as text; empty cells and the usual NA spellings are missing values.

    :raises DataError: the file is missing, unreadable, empty or has no rows.
    """
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        where = "" if file.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"{role} file not found: {file}{where}")
    if file.suffix.lower() in _PARQUET:
        try:
            import pyarrow  # noqa: F401 - pandas reads Parquet through it
        except ImportError as e:
            raise DataError(f"{file}: reading Parquet needs pyarrow (pip install pyarrow); "
                            "or give a .csv") from e
        try:
            frame = pd.read_parquet(file)
        except Exception as e:  # pyarrow raises its own error types for a broken file
            raise DataError(f"{file} is not a readable Parquet file: {e}") from e
    else:
        try:
            header = pd.read_csv(file, nrows=0).columns
            dtypes = {c: str for c in text_columns if c in header}
            frame = pd.read_csv(file, dtype=dtypes)
        except pd.errors.EmptyDataError as e:
            raise DataError(f"{file} is empty: expected a header line and rows") from e
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{file} is not a readable CSV: {e}") from e
    if frame.empty:
        raise DataError(f"{file} has no rows")
    frame.attrs["csv"] = file.suffix.lower() not in _PARQUET
    return frame


def numbers(series: pd.Series, source: str, column: str, *, what: str = "numeric column") -> np.ndarray:
    """A column as float64, NaN where missing.

    :raises DataError: a value is text or infinite (naming file, column, line).
    """
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        values = series.astype("float64").to_numpy()
    elif pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        parsed = pd.to_numeric(series, errors="coerce")
        bad = np.flatnonzero((parsed.isna() & series.notna()).to_numpy())
        if len(bad):
            raise DataError(
                f"{source}: {what} {column!r} holds {series.iloc[bad[0]]!r} at "
                f"{_line(series, bad[0])}, not a number ({len(bad)} such rows)"
            )
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        raise DataError(f"{source}: {what} {column!r} holds {values[infinite[0]]} at "
                        f"{_line(series, infinite[0])}; numbers must be finite")
    return values


def _line(series: pd.Series, i: int) -> str:
    # a CSV's line numbers count the header line
    return f"line {i + 2}" if series.attrs.get("csv", True) else f"row {i + 1}"


def _texts(series: pd.Series) -> np.ndarray:
    """Values as stripped text (``3``, not ``3.0``), ``None`` where missing."""
    import pandas as pd

    out = np.empty(len(series), dtype=object)
    for i, value in enumerate(series.tolist()):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[i] = None
        elif isinstance(value, float) and value.is_integer():
            out[i] = str(int(value))
        else:
            text = str(value).strip()
            out[i] = text if text else None
    return out


def _numeric_dtype(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _require(frame: pd.DataFrame, source: str, columns: Sequence[str], what: str = "") -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{source} has no {what + ' ' if what else ''}column {column!r}"
                f"{did_you_mean(column, [str(c) for c in frame.columns])} "
                f"(its columns: {', '.join(map(str, frame.columns))})"
            )


def _check_params(
    targets: list[str], target_type: str, categorical: list[str], numeric: list[str]
) -> None:
    if not targets:
        raise ValueError("target: name at least one column")
    if len(targets) > 1 and target_type in ("classification", "binary"):
        raise ValueError(
            f"target: {target_type} takes one column, got {len(targets)}; for several 0/1 "
            "columns use target_type: multilabel"
        )
    both = [c for c in categorical if c in numeric]
    if both:
        raise ValueError(f"{both[0]!r} is in both categorical and numeric")


def _feature_columns(
    frame: pd.DataFrame,
    source: str,
    features: list[str] | None,
    targets: list[str],
    exclude: list[str],
    id_column: str | None,
    group_column: str | None,
) -> list[str]:
    reserved = {*targets, *exclude, *(c for c in (id_column, group_column) if c)}
    if features is None:
        columns = [str(c) for c in frame.columns if c not in reserved]
    else:
        _require(frame, source, features, "feature")
        clash = [c for c in features if c in {*targets, id_column, group_column}]
        if clash:
            raise ValueError(f"features: {clash[0]!r} is the target, id or group column")
        columns = [c for c in features if c not in exclude]
    if not columns:
        raise ValueError("no feature columns are left (check features and exclude)")
    return columns


def _targets(
    frame: pd.DataFrame, source: str, columns: list[str], target_type: str
) -> tuple[torch.Tensor, list[str], list[Any]]:
    """The target tensor, the class (or column) names, and the training
    targets for label checks and stratification."""
    for column in columns:
        blank = np.flatnonzero(frame[column].isna().to_numpy())
        if len(blank):
            raise DataError(
                f"{source}: target column {column!r} is empty at {_line(frame[column], blank[0])} "
                f"({len(blank)} rows); every training row needs a target"
            )
    if target_type == "regression":
        values = np.stack([numbers(frame[c], source, c, what="target column") for c in columns], 1)
        y = torch.from_numpy(values.astype(np.float32))
        y = y[:, 0] if len(columns) == 1 else y
        return y, list(columns), y.tolist()
    if target_type == "multilabel":
        values = np.stack([numbers(frame[c], source, c, what="target column") for c in columns], 1)
        odd = np.argwhere((values != 0) & (values != 1))
        if len(odd):
            row, j = odd[0]
            raise DataError(f"{source}: label column {columns[j]!r} holds {values[row, j]:g} at "
                            f"{_line(frame[columns[j]], row)}; multilabel targets are 0 or 1")
        y = torch.from_numpy(values.astype(np.float32))
        return y, list(columns), y.tolist()
    texts = _texts(frame[columns[0]])
    names = _sorted_values({str(v) for v in texts})
    if target_type == "binary" and len(names) != 2:
        raise DataError(f"{source}: binary target column {columns[0]!r} has {len(names)} distinct "
                        f"values ({', '.join(names[:5])}); it needs exactly two")
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index[str(v)] for v in texts], dtype=np.int64)
    y = torch.from_numpy(codes.astype(np.float32) if target_type == "binary" else codes)
    return y, names, codes.tolist()


def _sorted_values(values: set[str]) -> list[str]:
    """Numerically when every value is a number, else as text."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)
