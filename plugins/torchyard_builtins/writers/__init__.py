"""Built-in submission writers.

Every writer writes atomically (a temporary file renamed into place) and
only directly inside the run directory.
"""

from __future__ import annotations

from typing import Any

import torchyard


@torchyard.hookimpl
def register_writers(register: Any) -> None:
    register(
        "csv",
        "torchyard_builtins.writers.csv:CsvWriter",
        description="A CSV with an id column and a prediction column.",
    )
    register(
        "template",
        "torchyard_builtins.writers.template:TemplateWriter",
        description="Fill a sample submission CSV: its ids, order and columns, checked.",
    )
    register(
        "probabilities",
        "torchyard_builtins.writers.probabilities:ProbabilitiesWriter",
        description="Per-class probabilities (CSV or Parquet), for ensembling.",
    )
