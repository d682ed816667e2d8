"""Built-in losses.

Registered by import path, so listing them imports neither torch nor
pydantic. ``targets`` tells generic tests and the conformance kit what to
feed each loss (see :data:`torchyard.registry.TARGET_KINDS`); ``soft_targets``
marks those that also take soft targets, which batch transforms (MixUp,
CutMix) make.
"""

from __future__ import annotations

from typing import Any

import torchyard

_HERE = "torchyard_builtins.losses"


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register(
        "cross_entropy",
        f"{_HERE}.classification:cross_entropy",
        description="Cross-entropy on logits, with class weights, ignore_index and label smoothing.",
        soft_targets=True,
    )
    register(
        "focal",
        f"{_HERE}.focal:FocalLoss",
        description="Focal loss: cross-entropy that down-weights well-classified examples.",
        soft_targets=True,
    )
    register(
        "label_smoothing",
        f"{_HERE}.label_smoothing:LabelSmoothingCrossEntropy",
        description="Cross-entropy against targets smoothed by epsilon.",
        soft_targets=True,
    )
    register(
        "f1",
        f"{_HERE}.soft_f1:SoftF1Loss",
        description="1 - soft macro F1 on softmax probabilities (trains for the F1 metric).",
    )
    register(
        "bce",
        f"{_HERE}.bce:BCEWithLogits",
        description="Binary cross-entropy on logits: multi-label (n, C), or binary (n,)/(n, 1).",
        targets=("binary", "multilabel"),
        soft_targets=True,
    )
    for name, cls, what in (
        ("mse", "MSELoss", "Mean squared error"),
        ("l1", "L1Loss", "Mean absolute error"),
        ("smooth_l1", "SmoothL1Loss", "Smooth L1: squared below beta, absolute above"),
        ("huber", "HuberLoss", "Huber: squared below delta, linear above"),
    ):
        register(
            name,
            f"{_HERE}.regression:{cls}",
            description=f"{what}; (n, 1) outputs meet (n,) targets.",
            targets="values",
        )
    for name, cls, what in (
        ("listnet", "ListNetLoss", "ListNet: softmax cross-entropy between relevance and score "
         "distributions per query"),
        ("ranknet", "RankNetLoss", "RankNet: logistic loss over item pairs of different relevance"),
        ("lambdarank", "LambdaRankLoss", "LambdaRank: RankNet pairs weighted by their NDCG change"),
    ):
        register(
            name,
            f"{_HERE}.ranking:{cls}",
            description=f"{what}; padded items (relevance -1) ignored.",
            targets="ranking",
        )
