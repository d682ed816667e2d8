"""Validation splits made by torchyard: holdout or k-fold, stratified, group-aware.

A dataset that leaves splitting to torchyard returns its labelled samples as
``train`` (with ``train_targets`` and, when samples come in groups such as
several photos of one person, ``groups``); the ``split`` section of the
config says how to carve validation out of them. With groups, no group ever
lands on both sides (scikit-learn's ``StratifiedGroupKFold``): a random
split that puts photos of one person in train and validation makes local
accuracy lie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from torchyard.errors import ConfigError
from torchyard.params import ParamsModel

__all__ = ["SplitConfig", "make_splits"]


class SplitConfig(ParamsModel):
    """How to split the labelled data into training and validation."""

    method: Literal["holdout", "kfold"] = Field(
        "holdout", description="'holdout': one validation part; 'kfold': k folds, each validated once."
    )
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="holdout: the share of samples (or groups) for validation."
    )
    folds: int = Field(5, ge=2, le=1000, description="kfold: the number of folds.")
    fold: int | None = Field(
        None, ge=0, le=999, description="kfold: train only this fold (0-based); unset: every fold in turn."
    )
    stratify: bool = Field(True, description="Keep class proportions alike on both sides.")
    group: bool = Field(
        True,
        description="Keep each group (from the dataset's group column) on one side; false "
        "splits samples at random, which leaks when samples of a group look alike.",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the split.")


def make_splits(
    config: SplitConfig,
    labels: Sequence[Any] | np.ndarray | None,
    groups: Sequence[Any] | None,
    n: int,
    *,
    quiet: bool = False,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """The (train, validation) index pairs, and warnings for the user.

    Holdout gives one pair, k-fold one per fold (or only ``config.fold``).
    ``labels`` are what to stratify by (the task's: classes, binned values);
    ``quiet``: a task that never stratifies, so no labels is no news.
    """
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
    )

    warnings: list[str] = []
    use_groups = groups is not None and config.group
    if groups is not None and not config.group:
        warnings.append(
            "split.group is false but the data has groups: samples of one group will be on both "
            "sides, and validation scores will be optimistic (a leaking split)"
        )
    stratify = config.stratify and labels is not None
    if config.stratify and labels is None and not quiet:
        warnings.append("split.stratify: the dataset gives no labels; splitting without stratification")
    k = config.folds if config.method == "kfold" else max(2, round(1 / config.val_fraction))
    if k > n:
        raise ConfigError(f"split: {k} folds need at least {k} samples; the data has {n}")
    y = np.asarray(labels) if labels is not None else np.zeros(n)
    g = np.asarray(groups) if use_groups and groups is not None else None
    if g is not None and len(np.unique(g)) < k:
        raise ConfigError(
            f"split: {len(np.unique(g))} groups cannot make {k} folds; lower split.folds "
            "or raise split.val_fraction"
        )
    if stratify and np.bincount(_codes(y)).min() < k and g is None:
        warnings.append(f"split: a class has fewer than {k} samples; its folds cannot all hold it")
    if g is not None:
        splitter: Any = (
            StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
            if stratify
            else GroupKFold(n_splits=k)
        )
        pairs = list(splitter.split(np.zeros(n), _codes(y), g))
    elif stratify:
        pairs = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed).split(np.zeros(n), _codes(y)))
    else:
        pairs = list(KFold(n_splits=k, shuffle=True, random_state=config.seed).split(np.zeros(n)))
    if config.method == "holdout":
        return [pairs[0]], warnings
    if config.fold is not None:
        if config.fold >= k:
            raise ConfigError(f"split.fold: {config.fold} is out of range for {k} folds (0..{k - 1})")
        return [pairs[config.fold]], warnings
    return pairs, warnings


def _codes(values: np.ndarray) -> np.ndarray:
    """Integer codes for any label values (strings included)."""
    return np.unique(values, return_inverse=True)[1]
