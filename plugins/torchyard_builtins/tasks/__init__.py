"""Built-in tasks: classification, binary, multi-label, regression, ranking, multi-head.

Registered by import path: listing them imports neither torch nor numpy.
"""

from __future__ import annotations

from typing import Any

import torchyard

_HERE = "torchyard_builtins.tasks"


def _multihead_params(factory: Any) -> Any:
    from torchyard_builtins.tasks.multihead import MultiHeadParams

    return MultiHeadParams


@torchyard.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "classification",
        f"{_HERE}.labels:Classification",
        description="One class per sample: softmax over class logits, the top class predicted.",
    )
    register(
        "binary",
        f"{_HERE}.labels:Binary",
        description="Yes or no per sample: one logit, a threshold (fixed or tuned on validation).",
    )
    register(
        "multilabel",
        f"{_HERE}.labels:Multilabel",
        description="Any set of labels per sample: one sigmoid per label, thresholds fixed or tuned.",
    )
    register(
        "regression",
        f"{_HERE}.values:Regression",
        description="One or more numbers per sample: outputs are the values, averaged as values.",
    )
    register(
        "ranking",
        f"{_HERE}.values:Ranking",
        description="Items of a query ordered by score; padded items (relevance -1) are ignored.",
    )
    register(
        "multihead",
        f"{_HERE}.multihead:MultiHead",
        params=_multihead_params,
        description="Several heads on one model (mask, gender, age): each with its task, loss "
        "weight and metrics; optionally decoded back into one combined class.",
    )
