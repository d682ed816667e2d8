"""The top-k ranking writer: each test query's best items, best first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard.files import atomic_write
from torchyard_builtins.writers.common import plain_filename


class RankingTopKWriter:
    """A CSV ``query_id,item_ids``: per test query, the ids of its ``k``
    highest-scoring items, space-separated, best first.

    The outputs are ``(queries, items)`` scores padded to the longest query;
    a query with ``m`` items (``Predictions.meta["item_ids"]``, from the
    dataset) is ranked by its first ``m`` scores, so padding never appears.
    Without item ids, the items are numbered 0, 1, ... within each row. Ties
    keep the items' file order.
    """

    def __init__(
        self,
        k: Annotated[
            int | None,
            Field(ge=1, description="How many items to write per query; unset: all of them."),
        ] = 10,
        filename: Annotated[
            str, Field(min_length=1, description="File name inside the run directory.")
        ] = "submission.csv",
        query_column: Annotated[str, Field(min_length=1, description="Header of the query id column.")] = "query_id",
        items_column: Annotated[
            str, Field(min_length=1, description="Header of the column of ranked item ids.")
        ] = "item_ids",
        separator: Annotated[
            str, Field(min_length=1, description="What separates the item ids in a cell.")
        ] = " ",
    ) -> None:
        if query_column == items_column:
            raise ValueError("query_column and items_column must differ")
        self.k = k
        self.filename = plain_filename(filename)
        self.query_column = query_column
        self.items_column = items_column
        self.separator = separator

    def write(self, predictions: Predictions, directory: Path) -> Path:
        """Write ``directory/filename``; return its path."""
        import pandas as pd

        ranked = [self.separator.join(str(i) for i in row) for row in top_items(predictions, self.k)]
        frame = pd.DataFrame({self.query_column: predictions.ids, self.items_column: ranked})
        path = Path(directory) / self.filename
        with atomic_write(path) as f:
            frame.to_csv(f, index=False)
        return path


def top_items(predictions: Predictions, k: int | None = None) -> list[list[Any]]:
    """Per query, the ids of its ``k`` best real items (all when ``k`` is None), best first.

    :raises DataError: the item ids do not fit the outputs.
    """
    scores = np.asarray(predictions.outputs, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    scores = scores.reshape(len(scores), -1)
    item_ids = predictions.meta.get("item_ids")
    if item_ids is None:
        item_ids = [list(range(scores.shape[1]))] * len(scores)
    if len(item_ids) != len(scores):
        raise DataError(f"ranking_topk: {len(item_ids)} queries have item ids, but there are {len(scores)} outputs")
    ranked = []
    for q, items in enumerate(item_ids):
        if len(items) > scores.shape[1]:
            raise DataError(
                f"ranking_topk: query {predictions.ids[q]!r} has {len(items)} items but only "
                f"{scores.shape[1]} scores"
            )
        # stable on the negated scores: ties keep file order; NaN scores go last
        order = np.argsort(-scores[q, : len(items)], kind="stable")[:k]
        ranked.append([items[i] for i in order])
    return ranked
