"""Datasets made from scikit-learn's bundled toy data: no download, ever."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from torchyard.data import DataBundle


def digits(
    val_fraction: Annotated[
        float,
        Field(
            ge=0,
            lt=1,
            description="Share of the labelled part used for validation; 0 leaves validation "
            "to the config's split section.",
        ),
    ] = 0.2,
    test_fraction: Annotated[
        float,
        Field(ge=0, lt=1, description="Share held out as the unlabelled test part to predict."),
    ] = 0.2,
    split_seed: Annotated[int, Field(description="Seed of the stratified splits.")] = 0,
    flatten: Annotated[
        bool, Field(description="Give 64-vectors instead of 1x8x8 images.")
    ] = False,
) -> DataBundle:
    """scikit-learn's handwritten digits, stratified into train/val/test.

    Pixel values are scaled from 0..16 to 0..1. Ids (test, training and
    validation) are the images' indices in ``sklearn.datasets.load_digits()``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    index = np.arange(len(y))
    if test_fraction > 0:
        labelled, test = train_test_split(
            index, test_size=test_fraction, stratify=y, random_state=split_seed
        )
    else:
        labelled, test = index, index[:0]
    test = np.sort(test)  # the submission lists ids in ascending order
    if val_fraction > 0:
        train, val = train_test_split(
            labelled, test_size=val_fraction, stratify=y[labelled], random_state=split_seed
        )
    else:
        train, val = np.sort(labelled), labelled[:0]
    shape = (64,) if flatten else (1, 8, 8)

    def images(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x[rows]).reshape(len(rows), *shape)

    return DataBundle(
        train=TensorDataset(images(train), torch.from_numpy(y[train])),
        val=TensorDataset(images(val), torch.from_numpy(y[val])) if len(val) else None,
        test=TensorDataset(images(test)) if len(test) else None,
        test_ids=test.tolist() if len(test) else None,
        train_ids=train.tolist(),
        val_ids=val.tolist() if len(val) else None,
        task="classification",
        num_classes=10,
        class_names=[str(c) for c in bunch.target_names],
        input_shape=shape,
        train_targets=y[train].tolist(),
    )
