"""Built-in datasets: scikit-learn's toy sets, images from files, and tables."""

from __future__ import annotations

from typing import Any

import torchyard

# The transforms come from the config's `transforms` section: not data params.
_IMAGE_PARAMS = {"train_transform": None, "eval_transform": None}
# how a trained run reads new image files (torchyard.load)
_IMAGE_READER = "torchyard_builtins.datasets.images:image_reader"


def table_task(target_type: str = "classification", **_: Any) -> str:
    """table_csv's task (its ``task`` option): its target_type, read without
    importing the dataset's module."""
    return target_type


@torchyard.hookimpl
def register_datasets(register: Any) -> None:
    register(
        "digits",
        "torchyard_builtins.datasets.sklearn_toys:digits",
        description="scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), "
        "split into train, validation and an unlabelled test part.",
    )
    register(
        "image_csv",
        "torchyard_builtins.datasets.images:image_csv",
        params=_IMAGE_PARAMS,
        reader=_IMAGE_READER,
        task="torchyard_builtins.datasets.images:image_csv_task",
        description="Images (or folders of images) listed in a CSV: label column(s) combined into "
        "one class, or multi-label, or regression targets; labels from file names; an optional "
        "group column; an optional test CSV of ids to predict.",
    )
    register(
        "image_folder",
        "torchyard_builtins.datasets.images:image_folder",
        params=_IMAGE_PARAMS,
        reader=_IMAGE_READER,
        description="torchvision's ImageFolder layout: one subfolder of images per class; "
        "test images from a CSV or a folder.",
    )
    register(
        "ranking_csv",
        "torchyard_builtins.datasets.ranking:ranking_csv",
        task="ranking",
        description="Learning to rank: a CSV/Parquet of (query, item, features, relevance) rows, "
        "one sample per query, padded to the longest; an optional test file to rank.",
    )
    register(
        "table_csv",
        "torchyard_builtins.datasets.tabular:table_csv",
        task="torchyard_builtins.datasets:table_task",
        description="A table (.csv or .parquet) of numeric and categorical columns: "
        "classification, binary, multilabel or regression targets; imputation, scaling and "
        "category codes fitted on the training part only.",
    )
