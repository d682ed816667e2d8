"""A run: a validated config turned into live components and an output folder.

:func:`build_run` asks each component's factory for its object (the dataset
first, so its facts -- number of classes, input shape -- can fill in the
model's parameters), checks what can only be checked with the data in hand,
and returns a :class:`Run`. :mod:`torchyard.loop` trains it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from torchyard import kinds
from torchyard.batch_transforms import BatchTransforms, build_batch_transforms
from torchyard.callbacks import RunHooks
from torchyard.config import (
    LoaderConfig,
    RunConfig,
    TrainerConfig,
    jsonable_config,
    metric_key,
    resolve_monitor,
    section_model,
)
from torchyard.data import Compose, DataBundle, length
from torchyard.device import (
    Precision,
    resolve_device,
    resolve_precision,
    seed_everything,
    set_deterministic,
)
from torchyard.errors import ConfigError, DataError, PluginError
from torchyard.factories import accepted_parameters, build_component, first_line
from torchyard.files import atomic_write
from torchyard.loggers import build_loggers
from torchyard.metric import Metric
from torchyard.optim import (
    LRSchedule,
    TrainingLength,
    build_optimizer,
    build_schedule,
    preview_schedule,
    scale_group_lrs,
)
from torchyard.plugins import PluginHost
from torchyard.rundirs import choose_run_dir, create_run_dir  # re-exported
from torchyard.speed import apply_speed_settings
from torchyard.tasks import Task

__all__ = [
    "Run",
    "build_data",
    "build_run",
    "choose_run_dir",
    "create_run_dir",
    "make_loader",
    "preview_lr",
    "setup_device",
    "steps_per_epoch",
    "write_resolved_config",
]


@dataclass
class Run:
    """Everything a training run is made of; lifecycle hooks receive it."""

    config: RunConfig
    out_dir: Path
    host: PluginHost
    device: torch.device
    precision: Precision
    data: DataBundle
    model: torch.nn.Module
    loss_fn: Any
    optimizer: torch.optim.Optimizer | None
    #: The LR schedule (scheduler, stepping cadence, warmup), if any.
    scheduler: LRSchedule | None
    metrics: dict[str, Metric]
    writer: Any
    monitor: str
    mode: Literal["min", "max"]
    #: The run's lifecycle hooks: the plugins', then its callbacks' (``hooks.call("on_...", ...)``).
    hooks: RunHooks
    #: The task's rules: outputs, targets, averaging, reports.
    task: Task = field(default_factory=Task)
    #: Test-time augmentation views (callables on input batches), if any.
    tta: list[Any] = field(default_factory=list)
    #: The batch transforms (``transforms.batch``) the loop mixes training batches with, if any.
    batch_transforms: BatchTransforms | None = None
    #: Values filled in from the data or the run, by config section
    #: (``{"model": {"num_classes": 10}}``), for the resolved config.yaml.
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def trainer(self) -> TrainerConfig:
        return self.config.trainer

    @property
    def loader_config(self) -> LoaderConfig:
        """``config.loader`` with its ``auto`` values as this run resolved them."""
        return self.config.loader.model_copy(update=self.resolved.get("loader", {}))

    def loader(self, split: Literal["train", "val", "test"]) -> DataLoader[Any] | None:
        dataset = getattr(self.data, split)
        if dataset is None:
            return None
        weights = self.extras.get("sample_weights") if split == "train" else None
        return make_loader(
            dataset, self.loader_config, self.device, train=split == "train", seed=self.trainer.seed,
            weights=weights,
        )  # fmt: skip


def make_loader(
    dataset: Dataset[Any],
    loader: LoaderConfig,
    device: torch.device,
    *,
    train: bool,
    seed: int | None = None,
    weights: np.ndarray | None = None,
) -> DataLoader[Any]:
    """The DataLoader of one split.

    Training draws its order through a :class:`~torchyard.resume.ResumableSampler`
    (so an interrupted epoch can be resumed part-way) from its own generator,
    or under torch.distributed from a ``DistributedSampler``; evaluation
    splits keep their order and, under torch.distributed, are shared out
    without padding (:class:`~torchyard.distributed.StridedShard`).
    """
    from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

    from torchyard import distributed
    from torchyard.loader_config import resolve_loader
    from torchyard.resume import ResumableSampler

    # a run hands its resolved settings; any other caller's auto values are settled here
    auto = resolve_loader(
        loader, [dataset], device.type, deterministic=torch.are_deterministic_algorithms_enabled()
    )
    loader = loader.model_copy(update=auto) if auto else loader
    workers = loader.num_workers if isinstance(loader.num_workers, int) else 0  # resolved: an int
    pin = device.type == "cuda" if loader.pin_memory == "auto" else bool(loader.pin_memory)
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size if train else (loader.eval_batch_size or loader.batch_size),
        "drop_last": loader.drop_last if train else False,
        "num_workers": workers,
        "pin_memory": pin,
    }
    if workers > 0:
        kwargs["persistent_workers"] = loader.persistent_workers is True
        if loader.prefetch_factor is not None:
            kwargs["prefetch_factor"] = loader.prefetch_factor
    rank, world = distributed.rank(), distributed.world_size()
    if train:
        generator = torch.Generator()
        generator.manual_seed(torch.initial_seed())
        kwargs["generator"] = generator
        inner: Any
        if weights is not None:  # loader.sampler: balanced
            inner = BalancedSampler(weights, rank=rank, world=world, seed=seed if seed is not None else 0)
        elif world > 1:
            inner = DistributedSampler(
                dataset,
                num_replicas=world,
                rank=rank,
                shuffle=loader.shuffle,
                seed=seed if seed is not None else 0,
                drop_last=loader.drop_last,
            )
        elif loader.shuffle:
            inner = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
        else:
            inner = SequentialSampler(dataset)  # type: ignore[arg-type]
        kwargs["sampler"] = ResumableSampler(inner)
    elif world > 1:
        kwargs["sampler"] = distributed.StridedShard(length(dataset), rank, world)
    return DataLoader(dataset, **kwargs)


class BalancedSampler(torch.utils.data.Sampler[int]):
    """Training indices drawn with replacement in proportion to ``weights``
    (``loader.sampler: balanced``), as many per epoch as there are samples.

    The draw is seeded by (seed, epoch), not by a running generator, so an
    epoch resumed part-way draws the same order again, and under
    torch.distributed every process draws the same sequence and takes its
    own share (every ``world``-th index).
    """

    def __init__(self, weights: np.ndarray, *, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, 0
        self.per_process = -(-len(self.weights) // world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = torch.multinomial(self.weights, self.per_process * self.world, replacement=True, generator=generator)
        return iter(drawn[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.per_process


def setup_device(config: RunConfig) -> torch.device:
    """The device of this process: under torchrun, after joining the process
    group (each process has its own device); else the config's."""
    from torchyard import distributed

    return distributed.setup(config.trainer.device) or resolve_device(config.trainer.device)


def build_task(config: RunConfig) -> Task:
    """The config's task (validation filled it in from the dataset when absent)."""
    assert config.task is not None  # validate_config settles it
    task = build_component(config.task, where="task")
    if not isinstance(task, Task):
        raise ConfigError(f"task: '{config.task.record.name}' did not return a torchyard.tasks.Task")
    return task


def build_data(
    config: RunConfig, task: Task, *, train: bool = True, fold: int = 0
) -> tuple[DataBundle, dict[str, Any]]:
    """The dataset, checked against the task, with a ``split`` section's
    validation part carved out (``fold`` picks the pair) and its ``fitted``
    preprocessing fitted on the training part; and what the split found
    out (``extras``: folds, validation indices, warnings)."""
    data = build_component(config.data, context=_transforms(config), where="data")
    if not isinstance(data, DataBundle):
        raise ConfigError(
            f"data: dataset '{config.data.record.name}' returned {type(data).__name__}, "
            "not a torchyard.data.DataBundle"
        )
    _check_data(data, train=train)
    task.bind(data)
    extras: dict[str, Any] = {}
    train_indices = None
    if config.split is not None and train:
        data, extras, train_indices = _split(data, config, fold, task)
    if data.fitted is not None and train:
        # learnt from the training part only; predicting loads it from a checkpoint
        data.fitted.fit(train_indices if train_indices is not None else np.arange(length(data.train)))
    return data, extras


def build_run(
    config: RunConfig,
    host: PluginHost,
    out_dir: Path,
    *,
    train: bool = True,
    fold: int = 0,
    device: torch.device | None = None,
) -> Run:
    """Build every component of ``config``; check the data before any training.

    With a ``split`` section, the validation part is carved out of the
    dataset's labelled samples; ``fold`` picks which of the split's
    (train, validation) pairs to use (the number of pairs is in
    ``run.extras["folds"]``). ``device``: this process's device, from
    :func:`setup_device` (called here when not given).
    """
    cfg = config
    trainer = cfg.trainer
    if trainer.seed is not None:
        seed_everything(trainer.seed)
    set_deterministic(trainer.deterministic)
    device = device if device is not None else setup_device(config)
    precision = resolve_precision(trainer.precision, device)

    # the writer first: a file name it refuses is known before any data is read
    writer = build_component(cfg.writer, where="writer") if cfg.writer is not None else None
    task = build_task(config)
    data, extras = build_data(config, task, train=train, fold=fold)
    loader = cfg.loader
    if train and loader.drop_last and length(data.train) < loader.batch_size:
        raise ConfigError(
            f"loader.batch_size: {loader.batch_size} is more than the {length(data.train)} training "
            "samples, and drop_last drops that only batch: no step would train; lower batch_size"
        )
    context = {**data.context(), **task.context()}
    counts = task.class_counts(data.train_targets) if train and data.train_targets is not None else None
    if counts is not None:
        context["class_counts"] = counts  # for weight: balanced (not written to config.yaml)
    if train and cfg.loader.sampler == "balanced":
        weights = task.sample_weights(data.train_targets) if data.train_targets is not None else None
        if weights is None:
            raise ConfigError(
                f"loader.sampler: 'balanced' needs classes (or binned values) to balance; the "
                f"{task.name} task of dataset '{cfg.data.record.name}' gives none"
            )
        extras["sample_weights"] = weights

    warned = extras["warnings"] = list(extras.get("warnings", ()))
    resolved: dict[str, dict[str, Any]] = {"loader": _resolve_loader(cfg, data, device, warned)}
    model = build_component(
        cfg.model, context=context, injected=resolved.setdefault("model", {}), where="model"
    )
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model: '{cfg.model.record.name}' did not return a torch.nn.Module")
    model.to(device)
    apply_speed_settings(trainer, model)  # matmul precision, channels_last, compile's backend checked

    monitor = resolve_monitor(cfg)
    if train and data.val is None and monitor.startswith("val/"):
        raise ConfigError(
            f"trainer.monitor: '{monitor}' needs a validation split, and dataset "
            f"'{cfg.data.record.name}' has none; monitor 'train/loss' instead"
        )
    def build(spec: Any, kind: str, extra: dict[str, Any], where: str) -> Any:
        """A loss or metric for the task: a config section or a raw mapping."""
        if isinstance(spec, dict):
            spec = section_model(host.registry.get(kind, str(spec.get("name")))).model_validate(spec)
        # values filled in for the task's own parts (a head's classes) are not the section's
        injected = None if extra else resolved.setdefault(where, {})
        component = build_component(spec, context={**context, **extra}, injected=injected, where=where)
        if injected is not None:
            injected.pop("class_counts", None)  # the split's, not the config's
        return component.to(device) if hasattr(component, "to") else component

    loss_fn, metrics = task.wrap(cfg.loss, cfg.metrics, build)
    mode = _resolve_mode(trainer.mode, monitor, metrics)

    optimizer = scheduler = None
    if train:
        optimizer = build_optimizer(cfg.optimizer, model)
        training_length = TrainingLength(trainer.max_epochs, steps_per_epoch(data, cfg))
        scheduler = build_schedule(
            cfg.scheduler, optimizer, training_length, mode, injected=resolved.setdefault("scheduler", {})
        )
    batch_transforms = None
    if train:
        _probe(cfg, data, task, model, loss_fn, metrics, device, precision)
        batch_transforms = build_batch_transforms(cfg, task, data, model, loss_fn, device)
    callbacks = [
        (f"callbacks.{i}", spec.record, build_component(spec, context=context, where=f"callbacks.{i}"))
        for i, spec in enumerate(cfg.callbacks)
    ]
    failed: list[str] = []  # loggers that could not start: warned about, the run goes on
    loggers = build_loggers(cfg.loggers, failed.append) if train else []  # process 0's only
    check_ids = getattr(writer, "check_ids", None)
    if callable(check_ids) and data.test_ids is not None:
        # refuse a submission that cannot match its template before training
        check_ids([str(i) for i in data.test_ids])
    return Run(
        config=config,
        out_dir=out_dir,
        host=host,
        device=device,
        precision=precision,
        data=data,
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        metrics=metrics,
        writer=writer,
        monitor=monitor,
        mode=mode,
        hooks=RunHooks(host, callbacks, loggers, failed),
        resolved={k: v for k, v in resolved.items() if v},
        extras=extras,
        tta=[Compose([build_component(spec) for spec in view]) for view in cfg.tta],
        task=task,
        batch_transforms=batch_transforms,
    )


def _resolve_loader(cfg: RunConfig, data: DataBundle, device: torch.device, warned: list[str]) -> dict[str, Any]:
    """The values of ``cfg.loader``'s ``auto`` settings for this run (the
    same for every split; written to its ``config.yaml``). Workers that would
    receive a dataset that cannot be pickled: ``auto`` takes none (a warning
    appended to ``warned``), an explicit count is the plugin's error."""
    import os

    from torchyard import distributed
    from torchyard.loader_config import resolve_loader, start_method, unpicklable

    # torchrun's processes on this machine share its CPUs
    processes = int(os.environ.get("LOCAL_WORLD_SIZE") or distributed.world_size())
    splits = [data.train, data.val, data.test]
    values = resolve_loader(
        cfg.loader, splits, device.type, deterministic=cfg.trainer.deterministic, processes=processes
    )
    workers = values.get("num_workers", cfg.loader.num_workers)
    why = unpicklable(splits) if isinstance(workers, int) and workers > 0 else None
    if why is None:
        return values
    record = cfg.data.record
    problem = (f"the dataset of data '{record.name}' (plugin {record.source}) cannot be pickled, and worker "
               f"processes start by '{start_method()}' here, which pickles it ({why[:200]})")  # fmt: skip
    if cfg.loader.num_workers != "auto":
        raise PluginError(f"loader.num_workers: {workers}: {problem}; set loader.num_workers: 0")
    warned.append(f"loader.num_workers: auto takes 0 workers: {problem}")
    values["num_workers"] = 0
    if "persistent_workers" in values:  # auto: on only with workers
        values["persistent_workers"] = False
    return values


def _transforms(cfg: RunConfig) -> dict[str, Any]:
    """The composed train and eval transforms, as dataset-factory context."""
    context = {}
    for split, specs in (("train", cfg.transforms.train), ("eval", cfg.transforms.eval)):
        if specs:
            context[f"{split}_transform"] = Compose(
                [build_component(spec, where=f"transforms.{split}.{i}") for i, spec in enumerate(specs)]
            )
    if context:
        accepted = accepted_parameters(cfg.data.record.factory)
        for key in context:
            if key not in accepted:
                raise ConfigError(
                    f"transforms.{key.removesuffix('_transform')}: dataset "
                    f"'{cfg.data.record.name}' takes no {key} parameter"
                )
    return context


def _split(
    data: DataBundle, cfg: RunConfig, fold: int, task: Task
) -> tuple[DataBundle, dict[str, Any], np.ndarray]:
    """Carve the validation part out of ``data.train`` as ``cfg.split`` says
    (stratified as the task says); returns the indices that train, too."""
    import dataclasses

    from torch.utils.data import Subset

    from torchyard.splits import make_splits

    if data.val is not None:
        raise ConfigError(
            f"split: dataset '{cfg.data.record.name}' makes its own validation split; "
            "drop the split section, or configure the dataset to leave validation to it"
        )
    how = cfg.split
    assert how is not None  # the caller checked
    n = length(data.train)
    labels = task.stratify(data.train_targets) if data.train_targets is not None else None
    pairs, split_warnings = make_splits(how, labels, data.groups, n, quiet=not task.stratifies)
    if not 0 <= fold < len(pairs):
        raise ConfigError(f"split: fold {fold} is out of range ({len(pairs)} folds)")
    train_idx, val_idx = pairs[fold]
    targets = list(data.train_targets) if data.train_targets is not None else None
    groups = list(data.groups) if data.groups is not None else None
    ids = list(data.train_ids) if data.train_ids is not None else list(range(n))
    split = dataclasses.replace(
        data,
        train=Subset(data.train, train_idx.tolist()),
        val=Subset(data.train_eval or data.train, val_idx.tolist()),
        train_targets=[targets[i] for i in train_idx] if targets is not None else None,
        groups=[groups[i] for i in train_idx] if groups is not None else None,
        train_ids=[ids[i] for i in train_idx],
        val_ids=[ids[i] for i in val_idx],
        train_eval=None,
    )
    extras = {
        "n_labelled": n,
        "n_train": len(train_idx),
        "folds": len(pairs),
        "fold": how.fold if how.fold is not None else fold,
        "val_indices": val_idx,
        "val_targets": [targets[i] for i in val_idx] if targets is not None else None,
        "val_groups": [groups[i] for i in val_idx] if groups is not None else None,
        "warnings": split_warnings,
    }
    if groups is not None:
        extras["groups_overlap"] = len({groups[i] for i in train_idx} & {groups[i] for i in val_idx})
    return split, extras, train_idx


MAX_PREVIEW_STEPS = 1_000_000
"""The most optimizer steps ``torchyard lr`` computes the learning rate for."""


def preview_lr(config: RunConfig) -> tuple[list[tuple[int, int, list[float]]], TrainingLength]:
    """The learning rate of every parameter group at every optimizer step
    (:func:`torchyard.optim.preview_schedule`), without a model: the data
    gives the training split's length, and the optimizer is built over one
    stand-in parameter per group of ``optimizer.param_groups`` (frozen ones
    left out), then one for the default group."""
    cfg = config
    data, _ = build_data(config, build_task(config))
    length = TrainingLength(cfg.trainer.max_epochs, steps_per_epoch(data, cfg))
    if length.steps > MAX_PREVIEW_STEPS:  # one row per step: bounded time and memory
        raise ConfigError(
            f"trainer.max_epochs: {length.epochs} epochs of {length.steps_per_epoch} steps are "
            f"{length.steps:,} optimizer steps; lr previews at most {MAX_PREVIEW_STEPS:,}"
        )
    groups: list[dict[str, Any]] = []
    for group in [*cfg.optimizer.param_groups, None]:
        if group is not None and group.freeze:
            continue
        entry: dict[str, Any] = {"params": [torch.zeros(1, requires_grad=True)]}
        if group is not None and group.lr is not None:
            entry["lr"] = group.lr
        elif group is not None and group.lr_scale != 1.0:
            entry["lr_scale"] = group.lr_scale
        groups.append(entry)
    optimizer = scale_group_lrs(build_component(cfg.optimizer, groups, where="optimizer"))
    metrics = {
        metric_key(spec): build_component(spec, context=data.context(), where=f"metrics.{i}")
        for i, spec in enumerate(cfg.metrics)
    }
    mode = _resolve_mode(cfg.trainer.mode, resolve_monitor(cfg), metrics)
    schedule = build_schedule(cfg.scheduler, optimizer, length, mode)
    return preview_schedule(schedule, optimizer, length), length


def steps_per_epoch(data: DataBundle, config: RunConfig) -> int:
    """Optimizer steps per epoch, as the loop will take them."""
    trainer = config.trainer
    batches = len(make_loader(data.train, config.loader, torch.device("cpu"), train=True))
    if trainer.limit_train_batches is not None:
        batches = min(batches, trainer.limit_train_batches)
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def _probe(
    cfg: RunConfig,
    data: DataBundle,
    task: Task,
    model: torch.nn.Module,
    loss_fn: Any,
    metrics: dict[str, Metric],
    device: torch.device,
    precision: Precision,
) -> None:
    """Send one small batch through the model, the loss and the metrics.

    A model that cannot take the data, an output count that does not match
    the task, a loss or metric that cannot take these outputs and targets:
    all are config errors naming the section, found before the run
    directory is written -- not a traceback in the first training step.
    """
    from torchyard.inference import forward

    dataset = data.val if data.val is not None else data.train
    loader = DataLoader(dataset, batch_size=min(8, length(dataset)), generator=torch.Generator())
    batch = next(iter(loader))
    try:
        outputs, targets, _ = next(forward(model, [batch], device=device, precision=precision, task=task))
    except Exception as e:  # noqa: BLE001 - any failure here is the config's
        raise ConfigError(
            f"model: '{cfg.model.record.name}' cannot take the data's inputs of shape "
            f"{tuple(batch[0].shape)}: {first_line(e)}"
        ) from e
    assert targets is not None  # a labelled split
    problem = task.check_outputs(outputs.shape[-1] if outputs.ndim >= 2 else 1)
    if problem:
        raise ConfigError(problem)
    with torch.inference_mode():
        try:
            loss = loss_fn(outputs, targets)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(
                f"loss: '{cfg.loss.record.name}' cannot take outputs of shape "
                f"{tuple(outputs.shape)} with these targets: {first_line(e)}"
            ) from e
        if not (isinstance(loss, torch.Tensor) and loss.ndim == 0):
            shape = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise PluginError(
                f"loss '{cfg.loss.record.name}' from plugin {cfg.loss.record.source}: expected a scalar "
                f"tensor, got {shape}"
            )
        # metrics by key; a task's derived metrics (per head) map to their section
        where = {metric_key(spec): (i, spec) for i, spec in enumerate(cfg.metrics)}
        for key, metric in metrics.items():
            i, spec = where.get(key.rsplit("/", 1)[-1], (0, cfg.metrics[0] if cfg.metrics else None))
            try:
                metric.update(outputs, targets)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # one small batch may leave it undefined
                    value = metric.compute()
                if not _is_number(value) and spec is not None:
                    raise PluginError(
                        f"metric '{spec.record.name}' from plugin {spec.record.source}: compute() "
                        f"must give a number, got {_describe(value)}"
                    )
            except PluginError:
                raise
            except Exception as e:  # noqa: BLE001
                hint = ""
                if spec is not None and "num_classes" in spec.model_fields_set:
                    hint = f" (its num_classes is {getattr(spec, 'num_classes', None)}; the data has {data.num_classes})"
                name = spec.record.name if spec is not None else key
                raise ConfigError(
                    f"metrics.{i}: '{name}' cannot take these outputs and targets{hint}: {first_line(e)}"
                ) from e
            finally:
                metric.reset()


def _is_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_data(data: DataBundle, *, train: bool) -> None:
    for split in ("train", "val", "test") if train else ("test",):
        dataset = getattr(data, split)
        if dataset is not None and length(dataset, f"data: the {split} split") == 0:
            raise DataError(f"data: the {split} split is empty")
    if data.test is not None and data.test_ids is not None and len(data.test_ids) != length(data.test):
        raise DataError(
            f"data: {len(data.test_ids)} test ids for {length(data.test)} test samples"
        )
    for split, ids in (("train", data.train_ids), ("val", data.val_ids)):
        dataset = getattr(data, split)
        if train and ids is not None and dataset is not None and len(ids) != length(dataset):
            raise DataError(f"data: {len(ids)} {split} ids for {length(dataset)} {split} samples")
    if data.test_ids is not None:
        seen: set[str] = set()
        for test_id in data.test_ids:
            key = str(test_id)
            if key in seen:
                raise DataError(f"data: test id {key[:80]!r} is given twice; a submission needs one row per id")
            seen.add(key)


def _resolve_mode(mode: str, monitor: str, metrics: dict[str, Metric]) -> Literal["min", "max"]:
    if mode in ("min", "max"):
        return mode  # type: ignore[return-value]
    key = monitor.removeprefix("val/")
    if key in metrics:
        return "max" if metrics[key].higher_is_better else "min"
    return "min"  # losses


def write_resolved_config(
    run_dir: Path, config: RunConfig, resolved: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Save the validated config as ``config.yaml``: defaults and the values
    filled in from the data (``resolved``) written out, so running it again
    does the same."""
    import yaml

    path = run_dir / "config.yaml"
    data = with_resolved(jsonable_config(config), resolved)
    with atomic_write(path) as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def with_resolved(data: dict[str, Any], resolved: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """A config's JSON (``jsonable_config``) with the values filled in from
    the data (``{"model": {"num_classes": 10}}``) written in, ``name`` first
    in every component section; changes ``data`` and returns it."""
    for section, values in (resolved or {}).items():
        node: Any = data
        for part in section.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        node.update(json.loads(json.dumps(values, default=list)))
    # `name` first: it is what a reader looks for
    for section in (s.name for k in kinds.TABLE for s in k.sections if s.shape in ("single", "optional", "list")):
        specs = data.get(section)
        for spec in specs if isinstance(specs, list) else [specs]:
            if isinstance(spec, dict) and "name" in spec:
                ordered = {"name": spec.pop("name"), **spec}
                spec.clear()
                spec.update(ordered)
    return data
