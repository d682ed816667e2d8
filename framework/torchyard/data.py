"""What a dataset component returns, and what a writer receives.

A dataset factory returns a :class:`DataBundle`; the loop wraps its splits in
DataLoaders configured by the ``loader`` section of the run config. After
training, the test split is predicted and handed to the writer as
:class:`Predictions`.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["Compose", "DataBundle", "Predictions", "length"]


def length(dataset: Any, where: str = "data") -> int:
    """The number of samples of a map-style dataset.

    :raises DataError: the dataset has no length (an iterable-style
        dataset, which torchyard cannot split, shard or resume).
    """
    from torchyard.errors import DataError

    if not isinstance(dataset, Sized):
        raise DataError(f"{where}: {type(dataset).__name__} has no len(); a dataset must be map-style")
    return len(dataset)


class Compose:
    """Apply transforms in order (torchvision's Compose, without needing it)."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Any) -> Any:
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@dataclass
class DataBundle:
    """The splits of a dataset and the facts the rest of a run needs.

    ``train`` and ``val`` yield ``(input, target)`` pairs; ``test`` yields
    inputs alone (or 1-tuples), in the order of ``test_ids``.
    """

    train: Dataset[Any]
    val: Dataset[Any] | None = None
    test: Dataset[Any] | None = None
    #: One id per test sample, in order: the submission's id column.
    test_ids: Sequence[Any] | None = None
    #: One id per training sample (an image's path, a table's id column),
    #: for ``oof.csv`` and ``val_predictions.csv``; unset: row numbers.
    train_ids: Sequence[Any] | None = field(default=None, repr=False)
    #: One id per sample of the dataset's own ``val`` split; unset: row numbers.
    val_ids: Sequence[Any] | None = field(default=None, repr=False)
    #: What the targets are (see :data:`torchyard.kinds.TASKS`):
    #: ``classification`` (class indices), ``binary`` (0/1), ``multilabel``
    #: (multi-hot rows), ``regression`` (floats) or ``ranking`` (relevance
    #: per item, -1 for padding).
    task: str = "classification"
    #: Classes (classification), labels (multilabel), or for regression the
    #: number of target columns; offered to factories as ``num_classes``.
    num_classes: int | None = None
    #: Names of the classes or labels (regression: of the target columns).
    class_names: Sequence[str] | None = None
    #: For a class fused from several label columns (``image_csv``'s
    #: ``label_columns: [mask, gender, age]``): the parts' names. Class
    #: names are then the parts' values joined by ``/``, the first part most
    #: significant, and metrics and the report are also given per part.
    label_parts: Sequence[str] | None = None
    #: The shape of one input sample, e.g. ``(1, 8, 8)``.
    input_shape: tuple[int, ...] | None = None
    #: Training targets, when cheap to give, so labels can be checked
    #: against ``num_classes`` before training starts, and so a ``split``
    #: section can stratify.
    train_targets: Sequence[Any] | None = field(default=None, repr=False)
    #: One group per training sample (a person, a patient), so a ``split``
    #: never puts one group on both sides.
    groups: Sequence[Any] | None = field(default=None, repr=False)
    #: The training samples again with evaluation transforms: validation
    #: folds carved out of ``train`` by a ``split`` section are taken from
    #: here. Default: ``train`` itself.
    train_eval: Dataset[Any] | None = field(default=None, repr=False)
    #: More values offered to model, loss and metric factories that ask for
    #: them by parameter name (a tabular dataset's ``cardinalities``, say).
    extra_context: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Preprocessing learnt from the training part only, after the split (a
    #: tabular dataset's encoders and scalers): an object with
    #: ``fit(indices)``, ``state_dict()`` and ``load_state_dict(state)``.
    #: torchyard calls ``fit`` with the indices into ``train`` that train
    #: (each fold's, in k-fold) before any sample is read, keeps
    #: ``state_dict()`` in every checkpoint, and calls ``load_state_dict``
    #: when it predicts from a checkpoint. The splits read through it.
    fitted: Any | None = field(default=None, repr=False)
    #: Extras about the test samples handed to writers as
    #: ``Predictions.meta`` (a ranking dataset's item ids per query, say).
    test_meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def in_channels(self) -> int | None:
        return self.input_shape[0] if self.input_shape else None

    def context(self) -> dict[str, Any]:
        """Values offered to model, loss and metric factories that ask for
        them by parameter name and were not set in the config."""
        values = {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_shape": self.input_shape,
            **self.extra_context,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class Predictions:
    """Model outputs on the test split, ready for a submission writer.

    ``outputs`` holds what :attr:`kind` says: the model's raw ``logits``
    (one column per class, one binary logit, or one per label), class
    ``probabilities`` (when test-time augmentation, checkpoints or folds
    were averaged), or ``values`` (regression values, ranking scores).
    Writers should read :attr:`probabilities`, :attr:`labels` or
    :meth:`label_names`: the run's task (:attr:`rules`) decodes them right
    for every task and kind.
    """

    ids: list[Any]
    #: Shape ``(n, k)``; see :attr:`kind`.
    outputs: np.ndarray
    #: The task's name (see :data:`torchyard.kinds.TASKS`).
    task: str = "classification"
    class_names: Sequence[str] | None = None
    kind: Literal["logits", "probabilities", "values"] = "logits"
    #: Extras about the test samples from the dataset (``DataBundle.test_meta``).
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The task's rules (a :class:`torchyard.tasks.Task`); unset: the
    #: defaults of single-label classification, and values passed through.
    rules: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.task == "regression" and self.kind != "values":
            self.kind = "values"
        if self.rules is None:
            from torchyard.tasks import Task

            self.rules = Task()

    @property
    def probabilities(self) -> np.ndarray:
        """Class (or label) probabilities, ``(n, k)``.

        :raises ValueError: the task's outputs are values, not classes.
        """
        return np.asarray(self.rules.probabilities(self.outputs, self.kind))

    @property
    def labels(self) -> np.ndarray:
        """What the task predicts: class indices, 0/1 (binary), multi-hot
        rows (multi-label), values (regression)."""
        return np.asarray(self.rules.labels(self.outputs, self.kind))

    def label_names(self) -> list[Any]:
        """:attr:`labels` with class names where the data has them (a list
        of names per sample for multi-label)."""
        return list(self.rules.label_names(self.labels, self.class_names))
