"""Built-in submission writers."""

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
