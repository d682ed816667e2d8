"""Running a model over data, and combining what several runs of it give.

One function runs a model over a loader -- :func:`forward` -- and every
caller chooses what to keep: validation scores its batches as they come
(:class:`Scorer`), prediction, reports and k-fold collect them
(:func:`collect`), the pre-training probe takes one batch. What the model's
outputs *are* travels with them as an :data:`OutputKind`, so averaging test-
time-augmentation views, checkpoints or folds (:func:`ensemble`) never puts a
regression value through a softmax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from torchyard import distributed

if TYPE_CHECKING:
    from torchyard.device import Precision
    from torchyard.metric import Metric

__all__ = [
    "OutputKind",
    "Outputs",
    "Scorer",
    "collect",
    "ensemble",
    "forward",
    "output_kind",
    "to_probabilities",
]

#: What an array of model outputs holds: raw ``logits`` of classes (one
#: column per class, or a single binary logit), class ``probabilities``
#: (after averaging views, checkpoints or folds), or regression ``values``.
OutputKind = Literal["logits", "probabilities", "values"]


def output_kind(task: str) -> OutputKind:
    """What a model trained for ``task`` outputs: values for regression,
    logits otherwise."""
    return "values" if task == "regression" else "logits"


def to_probabilities(outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
    """Class probabilities of ``outputs``: a softmax over classes, or for a
    single binary logit ``[1 - sigmoid, sigmoid]``; probabilities pass
    through. Values have none."""
    if kind == "probabilities":
        return outputs
    if kind == "values":
        raise ValueError("regression values have no class probabilities")
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        p = torch.sigmoid(outputs.reshape(-1))
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(outputs, dim=-1)


def _combine(parts: Sequence[tuple[torch.Tensor, OutputKind]]) -> tuple[torch.Tensor, OutputKind]:
    """The mean of several outputs for the same samples: class outputs are
    averaged as probabilities, values as values.

    :raises ValueError: values mixed with class outputs.
    """
    if len(parts) == 1:
        return parts[0]
    kinds = {kind for _, kind in parts}
    if kinds == {"values"}:
        return torch.stack([p for p, _ in parts]).mean(0), "values"
    if "values" in kinds:
        raise ValueError("cannot average regression values with class outputs")
    return torch.stack([to_probabilities(p, kind) for p, kind in parts]).mean(0), "probabilities"


def ensemble(outputs: Sequence[Outputs]) -> Outputs:
    """Average several predictions of the same samples (checkpoints, folds).

    :raises ValueError: nothing to average, or values mixed with class outputs.
    """
    if not outputs:
        raise ValueError("nothing to ensemble")
    mean, kind = _combine([(torch.from_numpy(o.outputs), o.kind) for o in outputs])
    return Outputs(mean.numpy(), kind, outputs[0].targets)


@dataclass
class Outputs:
    """Outputs of a model for a set of samples, in the data's order."""

    #: ``(n, k)``: logits, probabilities or values (see :attr:`kind`).
    outputs: np.ndarray
    kind: OutputKind
    #: The samples' targets, when the data had them and they were asked for.
    targets: np.ndarray | None = None

    @property
    def probabilities(self) -> np.ndarray:
        return to_probabilities(torch.from_numpy(self.outputs), self.kind).numpy()


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, list | tuple):
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def forward(
    model: torch.nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device,
    precision: Precision,
    kind: OutputKind,
    views: Sequence[Any] = (),
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, OutputKind]]:
    """Run ``model`` in eval mode over ``batches`` (a loader, or any iterable
    of ``(inputs, targets)`` or ``inputs`` batches) without gradients.

    Yields each batch's float outputs, its targets (on the device; ``None``
    for unlabelled data) and their kind. With test-time augmentation
    ``views`` (callables on the input batch), the outputs of the plain batch
    and of every view are averaged (:func:`_combine`).
    """
    non_blocking = device.type == "cuda"
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            inputs, targets = _split_batch(batch)
            # inference mode per batch, not across the yield: the caller's
            # code between batches runs as it would without this function
            with torch.inference_mode():
                inputs = inputs.to(device, non_blocking=non_blocking)
                if targets is not None:
                    targets = targets.to(device, non_blocking=non_blocking)
                with precision.autocast():
                    parts = [(model(inputs).float(), kind)]
                    parts += [(model(view(inputs)).float(), kind) for view in views]
                outputs, out_kind = _combine(parts)
            yield outputs, targets, out_kind
    finally:
        model.train(was_training)


def collect(
    model: torch.nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device,
    precision: Precision,
    kind: OutputKind,
    views: Sequence[Any] = (),
    targets: bool = False,
) -> Outputs:
    """Every output of ``model`` over ``loader``, in the data's order (under
    torch.distributed: every process's share, gathered on every process)."""
    chunks: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    out_kind: OutputKind = _combine([(torch.zeros(1, 2), kind)] * (1 + len(views)))[1]
    for outputs, batch_targets, _ in forward(
        model, loader, device=device, precision=precision, kind=kind, views=views
    ):
        chunks.append(outputs.cpu())
        if targets and batch_targets is not None:
            labels.append(batch_targets.cpu())
    out = torch.cat(chunks) if chunks else torch.zeros((0, 0))
    array = (out.unsqueeze(1) if out.ndim == 1 else out).numpy()
    gathered_targets = None
    if targets and labels:
        gathered_targets = distributed.gather_in_order(torch.cat(labels).numpy())
    return Outputs(distributed.gather_in_order(array), out_kind, gathered_targets)


class Scorer:
    """The loss and the metrics over batches of outputs and targets.

    Validation feeds it batch by batch; k-fold feeds it all out-of-fold
    outputs at once. Under torch.distributed, :meth:`compute` reduces every
    process's share.
    """

    def __init__(self, loss_fn: Any, metrics: Mapping[str, Metric], device: torch.device) -> None:
        self.loss_fn = loss_fn
        self.metrics = metrics
        self.device = device
        self.reset()

    def reset(self) -> None:
        self._loss_total = torch.zeros((), device=self.device)
        self._count = 0
        for metric in self.metrics.values():
            metric.reset()

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        with torch.inference_mode():
            loss = self.loss_fn(outputs, targets)
            self._loss_total += loss.float() * len(targets)
            for metric in self.metrics.values():
                metric.update(outputs, targets)
        self._count += len(targets)

    def compute(self, prefix: str = "val/", *, reduce: bool = True) -> dict[str, float]:
        """``<prefix>loss`` and ``<prefix><key>`` for every metric; with
        ``reduce`` (under torch.distributed), over every process's share."""
        reduce = reduce and distributed.world_size() > 1
        if reduce:  # sum and count over every process, in one call
            totals = torch.stack(
                [self._loss_total.double(), torch.tensor(float(self._count), device=self.device).double()]
            )
            total, samples = distributed.all_reduce_sum(totals).tolist()
        else:
            total, samples = self._loss_total.item(), self._count
        values = {f"{prefix}loss": total / max(samples, 1)}
        for key, metric in self.metrics.items():
            if reduce:
                metric.sync()
            values[f"{prefix}{key}"] = float(metric.compute())
        return values
