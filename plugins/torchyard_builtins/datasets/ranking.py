"""Learning to rank from a table: one row per (query, item), grouped into queries.

**Files.** A CSV (or Parquet: ``.parquet``/``.pq``) with a query id column,
an item id column, feature columns (``feature_columns``, or every column but
the id and relevance columns) and a relevance column of numeric grades
(``>= 0``; higher is more relevant). An optional test file has the same
columns without the relevance (a relevance column there is ignored). In a
config, relative paths are taken from the config file's folder.

**Grouping.** Rows are grouped by query id, queries in the order of their
first row, items in file order; a query's rows need not be contiguous. One
sample is one query: its items' features ``(items, features)`` as float32,
and its relevance grades ``(items,)``. Every query is padded to the longest
query of both files with zero features and relevance -1.0, which the
ranking losses, metrics and writer ignore. ``max_items`` caps the length:
longer queries keep their first ``max_items`` rows, with one warning saying
how many items were dropped (nothing is ever truncated silently).

**Splits.** All labelled queries are ``train``; validation is left to the
config's ``split`` section, which splits whole queries (no stratification,
no groups). The test queries, in the test file's order, are ``test``, with
their ids as ``test_ids`` and their item ids (file order, after any
truncation) as ``test_meta["item_ids"]``, which the ``ranking_topk`` writer
reads. A query id in both files is an error: the same query would be
trained on and predicted.

**Bad values.** A feature or relevance value that is not a finite number,
a negative grade, an empty query id or an item listed twice in one query
is an error naming the file, the row (and the CSV line) and the column.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from torchyard.data import DataBundle
from torchyard.errors import DataError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PADDING", "Queries", "ranking_csv"]

#: The relevance grade of a padded item.
PADDING = -1.0
_PARQUET = (".parquet", ".pq")


@dataclass
class Queries:
    """One file's rows grouped by query (before padding)."""

    ids: list[Any]
    #: Per query, its items' ids, features ``(m, features)`` and grades ``(m,)`` or None.
    item_ids: list[list[Any]]
    features: list[np.ndarray]
    relevance: list[np.ndarray] | None


def ranking_csv(
    train: Annotated[Path, Field(description="CSV or Parquet of the labelled rows, one per (query, item).")],
    query_column: Annotated[str, Field(min_length=1, description="Column of query ids.")] = "query_id",
    item_column: Annotated[
        str | None,
        Field(description="Column of item ids (what the submission lists); null: items are "
              "numbered 0, 1, ... within their query."),
    ] = "item_id",
    relevance_column: Annotated[
        str, Field(min_length=1, description="Column of relevance grades (numbers >= 0).")
    ] = "relevance",
    feature_columns: Annotated[
        list[str] | None,
        Field(min_length=1, description="Feature columns, in order; unset: every column but the "
              "query, item and relevance columns."),
    ] = None,
    test: Annotated[
        Path | None,
        Field(description="CSV or Parquet of the queries to rank (same columns, no relevance); "
              "unset: no test split."),
    ] = None,
    max_items: Annotated[
        int | None,
        Field(ge=1, description="Keep at most this many items per query (its first rows), "
              "warning how many were dropped; unset: keep all, pad to the longest query."),
    ] = None,
) -> DataBundle:
    """Learning-to-rank rows grouped into queries, padded to the longest query.

    See the module documentation for the file format, padding and errors.
    """
    from torch.utils.data import TensorDataset

    ids = [query_column, *([item_column] if item_column else [])]
    frame = _read(train, [*ids, relevance_column])
    features = (
        list(feature_columns)
        if feature_columns
        else [c for c in frame.columns if c not in (*ids, relevance_column)]
    )
    if not features:
        raise DataError(f"{train} has no feature columns besides {', '.join(repr(c) for c in (*ids, relevance_column))}")
    parts = [(train, _group(frame, train, ids, features, relevance_column))]
    if test is not None:
        parts.append((test, _group(_read(test, ids), test, ids, features, None)))
        known = set(parts[0][1].ids)
        shared = [q for q in parts[1][1].ids if q in known]
        if shared:
            raise DataError(
                f"query id {shared[0]!r} is in both {train} and {test} ({len(shared)} shared "
                "ids): the same query would be trained on and predicted; give test queries their own ids"
            )
    _truncate(parts, max_items)
    width = max(len(items) for _, part in parts for items in part.item_ids)
    bundle = DataBundle(
        train=TensorDataset(*_pad(parts[0][1], width, len(features))),
        train_ids=list(parts[0][1].ids),
        task="ranking",
        input_shape=(width, len(features)),
    )
    if test is not None:
        queries = parts[1][1]
        bundle.test = TensorDataset(_pad(queries, width, len(features))[0])
        bundle.test_ids = list(queries.ids)
        bundle.test_meta = {"item_ids": queries.item_ids}
    return bundle


def _read(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The file as a frame (a CSV's cells as strings), checked to have ``columns`` and rows."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        where = "" if file.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"ranking file not found: {file}{where}")
    try:
        if file.suffix.lower() in _PARQUET:
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DataError(f"{file} is not a readable {'Parquet' if file.suffix.lower() in _PARQUET else 'CSV'} file: {e}") from e
    frame.columns = [str(c) for c in frame.columns]
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{file} has no column {column!r}{did_you_mean(column, frame.columns)} "
                f"(its columns: {', '.join(frame.columns)})"
            )
    if frame.empty:
        raise DataError(f"{file} has no rows")
    return frame


def _where(path: Path, row: int) -> str:
    """``file, row N (line L)``: a CSV's line counts its header."""
    line = "" if Path(path).suffix.lower() in _PARQUET else f" (line {row + 2})"
    return f"{path}, row {row + 1}{line}"


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """A column as float64, every value a finite number."""
    import pandas as pd

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{_where(path, row)}, column {column!r}: expected a number, got {raw.iloc[row]!r}"
            + (f" ({len(bad)} such values)" if len(bad) > 1 else "")
        )
    return values


def _group(
    frame: pd.DataFrame,
    path: Path,
    ids: Sequence[str],
    features: Sequence[str],
    relevance_column: str | None,
) -> Queries:
    """The rows grouped by query (``ids``: the query and the item id column),
    queries in first-appearance order, rows in file order."""
    import pandas as pd

    query_column, item_column = ids[0], (ids[1] if len(ids) > 1 else None)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path} has no feature column {missing[0]!r}{did_you_mean(missing[0], frame.columns)} "
            f"(its columns: {', '.join(frame.columns)})"
        )
    queries = frame[query_column]
    empty = np.flatnonzero(queries.isna().to_numpy() | (queries.astype(str).str.strip() == "").to_numpy())
    if len(empty):
        raise DataError(f"{_where(path, int(empty[0]))}, column {query_column!r}: the query id is empty")
    if item_column is not None:
        twice = np.flatnonzero(frame.duplicated([query_column, item_column]).to_numpy())
        if len(twice):
            row = int(twice[0])
            raise DataError(
                f"{_where(path, row)}: item {frame[item_column].iloc[row]!r} is listed twice in "
                f"query {queries.iloc[row]!r}"
            )
    x = np.stack([_numbers(frame, c, path) for c in features], axis=1).astype(np.float32)
    y: np.ndarray | None = None
    if relevance_column is not None:
        y = _numbers(frame, relevance_column, path)
        negative = np.flatnonzero(y < 0)
        if len(negative):
            row = int(negative[0])
            raise DataError(
                f"{_where(path, row)}, column {relevance_column!r}: expected a relevance grade "
                f">= 0, got {frame[relevance_column].iloc[row]!r}"
            )
    codes, uniques = pd.factorize(queries, sort=False)
    rows = _rows_by_code(codes, len(uniques))
    items = frame[item_column].tolist() if item_column is not None else None
    return Queries(
        ids=list(uniques),
        item_ids=[[items[i] for i in r] if items is not None else list(range(len(r))) for r in rows],
        features=[x[r] for r in rows],
        relevance=[y[r].astype(np.float32) for r in rows] if y is not None else None,
    )


def _rows_by_code(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """The row indices of each code, in file order (one stable sort)."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n))[:-1])


def _truncate(parts: Sequence[tuple[Path, Queries]], max_items: int | None) -> None:
    """Cut every query to ``max_items`` rows, with one warning counting what went."""
    if max_items is None:
        return
    dropped = []
    for path, part in parts:
        long = [q for q, items in enumerate(part.item_ids) if len(items) > max_items]
        if not long:
            continue
        count = sum(len(part.item_ids[q]) - max_items for q in long)
        dropped.append(f"{count} items of {len(long)} queries in {path}")
        for q in long:
            part.item_ids[q] = part.item_ids[q][:max_items]
            part.features[q] = part.features[q][:max_items]
            if part.relevance is not None:
                part.relevance[q] = part.relevance[q][:max_items]
    if dropped:
        warnings.warn(
            f"ranking_csv: max_items={max_items} dropped " + "; ".join(dropped)
            + " (each query keeps its first rows; dropped test items are not ranked)",
            UserWarning,
            stacklevel=3,
        )


def _pad(part: Queries, width: int, n_features: int) -> tuple[Any, Any]:
    """Features ``(queries, width, features)`` (zeros on padding) and grades
    ``(queries, width)`` (-1 on padding), as tensors."""
    import torch

    x = np.zeros((len(part.ids), width, n_features), dtype=np.float32)
    y = np.full((len(part.ids), width), PADDING, dtype=np.float32)
    for q, features in enumerate(part.features):
        x[q, : len(features)] = features
        if part.relevance is not None:
            y[q, : len(features)] = part.relevance[q]
    return torch.from_numpy(x), torch.from_numpy(y)
