"""Built-in submission writers.

Every writer writes atomically (a temporary file renamed into place) and
only directly inside the run directory.
"""

from __future__ import annotations

from typing import Any

import torchyard
from torchyard.kinds import TASKS

# The tasks whose prediction is one value per sample (a class, 0/1, a number;
# multihead: its combined class): what csv and template write. multihead
# joins once the core's task list has it.
_ONE_PREDICTION = tuple(
    t for t in ("classification", "binary", "regression", "multihead") if t in TASKS
)


@torchyard.hookimpl
def register_writers(register: Any) -> None:
    register(
        "csv",
        "torchyard_builtins.writers.csv:CsvWriter",
        description="A CSV with an id column and a prediction column.",
        targets=_ONE_PREDICTION,
    )
    register(
        "template",
        "torchyard_builtins.writers.template:TemplateWriter",
        description="Fill a sample submission CSV: its ids, order and columns, checked.",
        targets=_ONE_PREDICTION,
    )
    register(
        "probabilities",
        "torchyard_builtins.writers.probabilities:ProbabilitiesWriter",
        description="Per-class probabilities (CSV or Parquet), for ensembling.",
        targets=("classification", "binary", "multilabel"),
    )
    register(
        "label_list",
        "torchyard_builtins.writers.labels:LabelListWriter",
        description="Multi-label: an id column and the predicted label names, joined by a delimiter.",
        targets="multilabel",
    )
    register(
        "label_columns",
        "torchyard_builtins.writers.labels:LabelColumnsWriter",
        description="Multi-label: an id column and one 0/1 (or probability) column per label.",
        targets="multilabel",
    )
    register(
        "ranking_topk",
        "torchyard_builtins.writers.ranking:RankingTopKWriter",
        description="Ranking: per test query, its top-k item ids by score, space-separated.",
        targets="ranking",
    )
