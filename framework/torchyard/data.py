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
    task: Literal["classification", "regression"] = "classification"
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
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
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class Predictions:
    """Model outputs on the test split, ready for a submission writer.

    ``outputs`` holds what :attr:`kind` says: the model's raw ``logits``
    (one column per class, or one binary logit), class ``probabilities``
    (when test-time augmentation, checkpoints or folds were averaged), or
    regression ``values``. Writers should read :attr:`probabilities`,
    :attr:`labels` or :meth:`label_names`, which are right for every kind.
    """

    ids: list[Any]
    #: Shape ``(n, k)``; see :attr:`kind`.
    outputs: np.ndarray
    task: Literal["classification", "regression"] = "classification"
    class_names: Sequence[str] | None = None
    kind: Literal["logits", "probabilities", "values"] = "logits"

    def __post_init__(self) -> None:
        if self.task == "regression" and self.kind != "values":
            self.kind = "values"

    @property
    def single_logit(self) -> bool:
        """A binary classifier with one output per sample (a logit)."""
        return self.kind == "logits" and self.outputs.reshape(len(self.outputs), -1).shape[1] == 1

    @property
    def probabilities(self) -> np.ndarray:
        """Class probabilities, ``(n, classes)``: softmax of logits, or
        ``[1 - sigmoid, sigmoid]`` for a single binary logit; averaged
        probabilities as they are.

        :raises ValueError: regression values have no class probabilities.
        """
        if self.kind == "values":
            raise ValueError("regression values have no class probabilities")
        if self.kind == "probabilities":
            return self.outputs
        if self.single_logit:
            p = 1.0 / (1.0 + np.exp(-self.outputs.reshape(-1)))
            return np.stack([1.0 - p, p], axis=1)
        z = self.outputs - self.outputs.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def labels(self) -> np.ndarray:
        """Predicted class indices (a single logit: 1 when positive), or the
        regression values."""
        flat = self.outputs.reshape(len(self.outputs), -1)
        if self.kind == "values":
            return flat[:, 0]
        if self.single_logit:
            return (flat[:, 0] > 0).astype(np.int64)
        return np.asarray(flat.argmax(axis=1))

    def label_names(self) -> list[Any]:
        """Predicted class names when known, else class indices."""
        labels = self.labels.tolist()
        if self.class_names is None or self.kind == "values":
            return labels
        return [self.class_names[i] for i in labels]
