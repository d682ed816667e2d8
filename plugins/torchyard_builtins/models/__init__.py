"""Built-in small models (torchvision's zoo comes with the image workflow)."""

from __future__ import annotations

from typing import Any

import torchyard


@torchyard.hookimpl
def register_models(register: Any) -> None:
    register(
        "small_cnn",
        "torchyard_builtins.models.small:SmallCNN",
        description="Two conv blocks and a linear head, for small images such as 8x8 digits.",
    )
    register(
        "mlp",
        "torchyard_builtins.models.small:MLP",
        description="A multi-layer perceptron on flattened inputs.",
    )
    register(
        "ranking_mlp",
        "torchyard_builtins.models.ranking:RankingMLP",
        description="Learning to rank: one MLP scores every item of a query, "
        "(queries, items, features) -> (queries, items).",
    )
    register(
        "tabular_mlp",
        "torchyard_builtins.models.tabular:TabularMLP",
        description="For tables: embeddings of the categorical columns beside the numeric ones, "
        "then an MLP (batch norm, dropout).",
    )
