"""Batch transforms: MixUp, CutMix and their kin, on whole training batches.

A config lists them under ``transforms.batch``; they are transforms
registered with ``stage="batch"`` (:mod:`torchyard.kinds`). The loop hands
every training batch, once on the device and before the forward, to the
run's :class:`BatchTransforms`, which

1. turns the targets into the task's soft form (:meth:`Task.soft_targets
   <torchyard.tasks.Task.soft_targets>`: a float tensor (n, k) that mixes
   linearly -- one-hot class probabilities, a binary or multi-label target's
   probabilities, each head's block side by side),
2. picks one of the listed transforms at random, uniformly (torchvision's
   ``RandomChoice([MixUp(), CutMix()])``, timm's ``Mixup`` with
   ``switch_prob=0.5``), and
3. calls it as ``transform(inputs, targets, generator) -> (inputs, targets)``;
   the transform applies with its own probability ``p``.

All randomness comes from a ``torch.Generator`` seeded from the run's seed,
the process's rank, the epoch and the batch's index, so a resumed run mixes
its batches exactly as the uninterrupted one did. For the last
``transforms.batch_off_last_epochs`` epochs the batches pass unmixed.
Validation and prediction never mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from torchyard.errors import ConfigError, TorchyardError

if TYPE_CHECKING:
    from torchyard.config import RunConfig
    from torchyard.data import DataBundle
    from torchyard.tasks import Task

__all__ = ["BatchTransform", "BatchTransforms", "build_batch_transforms", "check_batch_transforms", "step_generator"]

#: A batch transform: ``(inputs, soft targets, generator) -> (inputs, soft targets)``.
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def step_generator(seed: int, rank: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator seeded by (seed, rank, epoch, batch index) alone."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{epoch}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class BatchTransforms:
    """The run's batch transforms, as the loop calls them: ``mix(inputs,
    targets, epoch, index) -> (inputs, targets)``."""

    def __init__(
        self,
        transforms: Sequence[BatchTransform],
        task: Task,
        *,
        seed: int,
        last_epoch: int,
        rank: int = 0,
    ) -> None:
        if not transforms:
            raise ValueError("no batch transforms")
        self.transforms = list(transforms)
        self.task, self.seed, self.rank = task, seed, rank
        #: the last epoch (1-based) whose batches are mixed
        self.last_epoch = last_epoch

    def active(self, epoch: int) -> bool:
        """Whether the batches of ``epoch`` (1-based) are mixed."""
        return epoch <= self.last_epoch

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch > self.last_epoch:
            return inputs, targets
        generator = step_generator(self.seed, self.rank, epoch, index)
        chosen = 0
        if len(self.transforms) > 1:
            chosen = int(torch.randint(len(self.transforms), (), generator=generator))
        return self.transforms[chosen](inputs, self.task.soft_targets(targets), generator)


def check_batch_transforms(config: RunConfig, task: Task, registry: Any) -> list[str]:
    """The problems of a config's batch transforms, one line each: a
    per-sample transform under ``transforms.batch`` (or a batch transform
    elsewhere), a task whose targets do not mix, a loss without soft targets."""
    problems = []
    transforms = config.transforms
    for split in ("train", "eval", "batch"):
        for i, spec in enumerate(getattr(transforms, split)):
            stage = spec.record.options.get("stage", "sample")
            if split == "batch" and stage != "batch":
                problems.append(
                    f"transforms.batch.{i}: '{spec.record.name}' is a per-sample transform; "
                    "list it under transforms.train"
                )
            elif split != "batch" and stage == "batch":
                problems.append(
                    f"transforms.{split}.{i}: '{spec.record.name}' is a batch transform; "
                    "list it under transforms.batch"
                )
    for v, view in enumerate(config.tta):
        for i, spec in enumerate(view):
            if spec.record.options.get("stage", "sample") == "batch":
                problems.append(f"tta.{v}.{i}: '{spec.record.name}' is a batch transform, for training only")
    if not transforms.batch or problems:
        return problems
    first = f"'{transforms.batch[0].record.name}'"
    problem = task.mix_problem()
    if problem:
        return [f"transforms.batch.0: {first} cannot apply: {problem}"]
    try:
        losses = task.losses(config.loss, registry)
    except TorchyardError:
        return []  # an unknown head loss: reported when the run builds it
    for where, record in losses:
        if not record.options.get("soft_targets", False):
            fits = sorted(
                r.name for r in registry.records("loss") if r.options.get("soft_targets") and task.accepts(r.tasks)
            )
            hint = f"; losses that do: {', '.join(fits[:8])}" if fits else ""
            problems.append(
                f"{where}: '{record.name}' does not take the soft targets that transforms.batch.0 "
                f"{first} makes{hint}"
            )
    epochs = config.trainer.max_epochs
    if transforms.batch_off_last_epochs >= epochs:
        problems.append(
            f"transforms.batch_off_last_epochs: {transforms.batch_off_last_epochs} leaves none of the "
            f"{epochs} epochs for the batch transforms; lower it"
        )
    return problems


def build_batch_transforms(
    config: RunConfig, task: Task, data: DataBundle, model: torch.nn.Module, loss_fn: Any, device: torch.device
) -> BatchTransforms | None:
    """The config's batch transforms (None without any), tried once on a
    small training batch through the model and the loss, so that a transform
    the data does not suit is a config error before the run starts."""
    from torch.utils.data import DataLoader

    from torchyard import distributed
    from torchyard.data import length
    from torchyard.factories import build_component, first_line

    specs = config.transforms.batch
    if not specs:
        return None
    built = [build_component(spec, where=f"transforms.batch.{i}") for i, spec in enumerate(specs)]
    loader = DataLoader(data.train, batch_size=min(8, length(data.train)), generator=torch.Generator())
    with torch.random.fork_rng(devices=[]):  # random sample transforms leave the run's RNG as it was
        batch = next(iter(loader))
    inputs, targets = batch[0].to(device), batch[1].to(device)
    training = model.training
    model.eval()
    try:
        for i, (spec, transform) in enumerate(zip(specs, built, strict=True)):
            where = f"transforms.batch.{i}: '{spec.record.name}'"
            if not callable(transform):
                raise ConfigError(f"{where} did not return a callable")
            try:
                mixed, soft = transform(inputs, task.soft_targets(targets), step_generator(0, 0, 0, i))
            except Exception as e:  # noqa: BLE001 - any failure here is the config's (or the plugin's)
                raise ConfigError(
                    f"{where} cannot take the data's inputs of shape {tuple(inputs.shape)}: {first_line(e)}"
                ) from e
            with torch.inference_mode():
                try:
                    loss_fn(model(mixed), soft)
                except Exception as e:  # noqa: BLE001
                    raise ConfigError(
                        f"loss: '{config.loss.record.name}' cannot take the soft targets {where} makes: "
                        f"{first_line(e)}"
                    ) from e
    finally:
        model.train(training)
    seed = config.trainer.seed if config.trainer.seed is not None else torch.initial_seed()
    return BatchTransforms(
        built,
        task,
        seed=seed,
        last_epoch=config.trainer.max_epochs - config.transforms.batch_off_last_epochs,
        rank=distributed.rank(),
    )
