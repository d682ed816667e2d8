"""A plugin whose components return the wrong things, one mistake each."""

from __future__ import annotations

from typing import Any

import torchyard


def vector_loss() -> Any:
    """A loss that forgets to reduce."""
    import torch

    return lambda outputs, targets: torch.nn.functional.cross_entropy(outputs, targets, reduction="none")


class VectorMetric(torchyard.Metric):
    """A metric whose compute() gives one value per sample."""

    def __init__(self) -> None:
        super().__init__()
        import torch

        self.add_state("seen", [], reduce="cat")
        self._torch = torch

    def update(self, outputs: Any, targets: Any) -> None:
        self.seen.append(outputs[:, 0])

    def compute(self) -> Any:
        return self._torch.cat(self.seen)


def not_an_optimizer(params: Any, lr: float = 0.1) -> Any:
    """Returns a dict, not an optimizer."""
    return {"lr": lr}


def no_scheduler(optimizer: Any) -> Any:
    """Returns None."""
    return None


class SilentWriter:
    """Writes a file but returns nothing."""

    def write(self, predictions: Any, directory: Any) -> Any:
        from pathlib import Path

        (Path(directory) / "out.csv").write_text("id\n")
        return None


def exploding_model(num_classes: int = 10) -> Any:
    """A model whose forward fails once it trains (the probe, in eval mode, passes)."""
    import torch

    class Exploding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, num_classes)

        def forward(self, x: Any) -> Any:
            if self.training:
                raise RuntimeError("boom in forward")
            return self.linear(x.flatten(1))

    return Exploding()


def lambda_digits() -> Any:
    """Digits read through a lambda: fine in this process, unpicklable for
    worker processes started by spawn or forkserver."""
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import Dataset

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(bunch.target)

    class Read(Dataset[Any]):
        def __init__(self, rows: range) -> None:
            self.rows = rows
            self.read = lambda i: (x[i], y[i])

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> Any:
            return self.read(self.rows[i])

    return torchyard.DataBundle(train=Read(range(0, 1400)), val=Read(range(1400, 1797)), task="classification",
                                num_classes=10, input_shape=(1, 8, 8))  # fmt: skip


@torchyard.hookimpl
def register_datasets(register: Any) -> None:
    register("lambda_digits", lambda_digits)


@torchyard.hookimpl
def register_models(register: Any) -> None:
    register("exploding", exploding_model)


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register("vector_loss", vector_loss)


@torchyard.hookimpl
def register_metrics(register: Any) -> None:
    register("vector_metric", VectorMetric)


@torchyard.hookimpl
def register_optimizers(register: Any) -> None:
    register("not_an_optimizer", not_an_optimizer)


@torchyard.hookimpl
def register_schedulers(register: Any) -> None:
    register("no_scheduler", no_scheduler, interval="epoch")


@torchyard.hookimpl
def register_writers(register: Any) -> None:
    register("silent_writer", SilentWriter)
