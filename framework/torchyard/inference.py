"""Running a model over data, and combining what several runs of it give.

One function runs a model over a loader -- :func:`forward` -- and every
caller chooses what to keep: validation scores its batches as they come
(:class:`Scorer`), prediction, reports and k-fold collect them
(:func:`collect`), the pre-training probe takes one batch. What the model's
outputs *are* travels with them as an :data:`~torchyard.tasks.OutputKind`,
and averaging test-time-augmentation views, checkpoints or folds
(:func:`ensemble`) goes by the run's task (:mod:`torchyard.tasks`), so a
regression value is never put through a softmax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from torchyard import distributed
from torchyard.tasks import OutputKind, Task

if TYPE_CHECKING:
    from torchyard.device import Precision
    from torchyard.metric import Metric

__all__ = ["Outputs", "Scorer", "collect", "ensemble", "forward"]


def ensemble(outputs: Sequence[Outputs], task: Task) -> Outputs:
    """Average several predictions of the same samples (checkpoints, folds)
    as the task says (class outputs as probabilities, values as values).

    :raises ValueError: nothing to average, or values mixed with class outputs.
    """
    if not outputs:
        raise ValueError("nothing to ensemble")
    mean, kind = task.combine([(torch.from_numpy(o.outputs), o.kind) for o in outputs])
    return Outputs(mean.numpy(), kind, outputs[0].targets)


@dataclass
class Outputs:
    """Outputs of a model for a set of samples, in the data's order."""

    #: ``(n, k)``: logits, probabilities or values (see :attr:`kind`).
    outputs: np.ndarray
    kind: OutputKind
    #: The samples' targets, when the data had them and they were asked for.
    targets: np.ndarray | None = None


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
    task: Task,
    views: Sequence[Any] = (),
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, OutputKind]]:
    """Run ``model`` in eval mode over ``batches`` (a loader, or any iterable
    of ``(inputs, targets)`` or ``inputs`` batches) without gradients.

    Yields each batch's float outputs, its targets (on the device; ``None``
    for unlabelled data) and their kind. With test-time augmentation
    ``views`` (callables on the input batch), the outputs of the plain batch
    and of every view are averaged as the task says (:meth:`Task.combine`).
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
                kind = task.output_kind
                with precision.autocast():
                    parts = [(model(inputs).float(), kind)]
                    parts += [(model(view(inputs)).float(), kind) for view in views]
                outputs, out_kind = task.combine(parts)
            yield outputs, targets, out_kind
    finally:
        model.train(was_training)


def collect(
    model: torch.nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device,
    precision: Precision,
    task: Task,
    views: Sequence[Any] = (),
    targets: bool = False,
) -> Outputs:
    """Every output of ``model`` over ``loader``, in the data's order (under
    torch.distributed: every process's share, gathered on every process)."""
    chunks: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    out_kind: OutputKind = task.output_kind
    for outputs, batch_targets, batch_kind in forward(
        model, loader, device=device, precision=precision, task=task, views=views
    ):
        out_kind = batch_kind
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
