"""scikit-learn's digits relabelled for every task: a test plugin.

``digits_as`` gives the digits images with binary targets (the digit is 5
or more), multi-label targets (even, 5 or more, prime) or regression targets
(the digit's value), so every task runs end to end on real, learnable data.
"""

from __future__ import annotations

from typing import Any, Literal

import torchyard


def digits_as(task: Literal["binary", "multilabel", "regression"] = "binary", val_fraction: float = 0.2) -> Any:
    """Digits with the targets of ``task`` (``val_fraction`` 0: validation left to a split)."""
    import torch
    from torch.utils.data import TensorDataset

    from torchyard_builtins.datasets.sklearn_toys import digits

    base = digits(val_fraction=val_fraction)

    def relabel(dataset: Any) -> Any:
        x, y = dataset.tensors
        if task == "binary":
            return TensorDataset(x, (y >= 5).float())
        if task == "multilabel":
            primes = torch.isin(y, torch.tensor([2, 3, 5, 7]))
            return TensorDataset(x, torch.stack([y % 2 == 0, y >= 5, primes], dim=1).float())
        return TensorDataset(x, y.float())

    train = relabel(base.train)
    return torchyard.DataBundle(
        train=train,
        val=relabel(base.val) if base.val is not None else None,
        test=base.test,
        test_ids=base.test_ids,
        task=task,
        num_classes={"binary": 2, "multilabel": 3, "regression": 1}[task],
        class_names={"multilabel": ["even", "high", "prime"], "binary": ["low", "high"]}.get(task),
        input_shape=base.input_shape,
        train_targets=train.tensors[1].tolist(),
    )


def _task(task: str = "binary", **_: Any) -> str:
    return task


@torchyard.hookimpl
def register_datasets(register: Any) -> None:
    register("digits_as", digits_as, task=_task)
