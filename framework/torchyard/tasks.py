"""Tasks: what differs between classification, regression, multi-label, ...

A :class:`Task` owns every rule that depends on what is being learnt: how
many outputs the model gives, what the targets must look like, how outputs
become probabilities and labels, how several outputs for the same samples
are averaged (test-time augmentation, checkpoints, folds), how a split
stratifies, and what the end-of-run report shows. The loop, the inference
path, k-fold and the writers ask the run's task; none of them tests a
task's name.

Tasks are components of kind ``task``: the built-in ones come from the
``builtin-tasks`` plugin, and a plugin adds one by registering a subclass
(``register_tasks``). A dataset declares its task at registration; a
config's ``task:`` section picks one explicitly and sets its parameters
(thresholds, heads).

This base class has the rules of single-label classification over logits,
and passes regression values through; it is also what a
:class:`~torchyard.data.Predictions` made by hand uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from torchyard.console import Reporter
    from torchyard.data import DataBundle
    from torchyard.metric import Metric

__all__ = ["OutputKind", "Task"]

#: What an array of model outputs holds: raw ``logits`` (of classes, of one
#: binary class, or of labels), ``probabilities`` (after averaging views,
#: checkpoints or folds), or ``values`` (regression values, ranking scores).
OutputKind = Literal["logits", "probabilities", "values"]


class Task:
    """The rules of one task. Subclasses override what differs."""

    #: The task's name, one of :data:`torchyard.kinds.TASKS` for the
    #: built-ins; losses, metrics and writers declare the names they take.
    name: ClassVar[str] = "classification"
    #: What the model's outputs are.
    output_kind: ClassVar[OutputKind] = "logits"

    #: Whether :meth:`report` has something to show (and so the validation
    #: split is predicted once more at the end of a run).
    has_report: ClassVar[bool] = True
    #: Whether :meth:`stratify` gives labels (a split says so when it cannot).
    stratifies: ClassVar[bool] = True

    def __init__(self) -> None:
        self.num_classes: int | None = None
        self.class_names: list[str] | None = None

    # -- before training ---------------------------------------------------------

    def bind(self, data: DataBundle) -> None:
        """Learn what the task needs from the data (called once it is built).

        :raises DataError: the data does not fit the task.
        """
        from torchyard.errors import DataError

        if not self.accepts_data(data.task):
            raise DataError(
                f"data: the dataset yields {data.task} targets, but the task is {self.name}"
            )
        self.setup(data.num_classes, data.class_names)
        if data.train_targets is not None:
            problem = self.check_targets(data.train_targets)
            if problem:
                raise DataError(f"data: {problem}")

    def setup(self, num_classes: int | None, class_names: Sequence[str] | None) -> None:
        """What :meth:`bind` keeps from the data (a loaded run calls it with
        what its checkpoint recorded)."""
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None

    def accepts(self, targets: Sequence[str]) -> bool:
        """Whether a loss, metric or writer taking these tasks' targets fits."""
        return self.name in targets

    def accepts_data(self, task: str) -> bool:
        """Whether a dataset yielding ``task`` targets fits."""
        return task == self.name

    def context(self) -> dict[str, Any]:
        """Values offered to factories by parameter name (``num_classes``
        is the number of model outputs)."""
        return {}

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        """A problem with the training targets, or None."""
        if self.num_classes is None or not len(targets):
            return None
        try:
            values = np.asarray(targets)
        except ValueError:
            return "training labels must be one class index per sample"
        if values.dtype.kind not in "iu":
            if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
                values = values.astype(np.int64)
            else:
                return f"training labels must be class indices, got {values.dtype} values"
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.num_classes:
            return (
                f"training labels span {low}..{high}, outside 0..{self.num_classes - 1} "
                f"for num_classes={self.num_classes}"
            )
        return None

    def check_outputs(self, width: int) -> str | None:
        """A problem with the model giving ``width`` outputs per sample, or None."""
        classes = self.num_classes
        if classes and width not in (classes, 1 if classes == 2 else classes):
            return (
                f"model.num_classes: the model gives {width} outputs per sample, but the data has "
                f"{classes} classes; leave num_classes unset to take it from the data"
            )
        return None

    def stratify(self, targets: Sequence[Any]) -> np.ndarray | None:
        """Labels for a stratified split (one per sample), or None when the
        task's targets cannot be stratified."""
        return np.unique(np.asarray(targets), return_inverse=True)[1]

    def class_counts(self, targets: Sequence[Any]) -> list[int] | None:
        """Training samples per class (``weight: balanced`` of the losses),
        or None for a task without classes."""
        values = np.asarray(targets)
        if values.ndim != 1 or values.dtype.kind not in "iuf" or not len(values):
            return None
        return np.bincount(values.astype(np.int64), minlength=self.num_classes or 0).tolist()

    def sample_weights(self, targets: Sequence[Any]) -> np.ndarray | None:
        """One weight per training sample so that every stratum (class, or
        bin of values) is drawn equally often (``loader.sampler: balanced``),
        or None when the task has no strata."""
        labels = self.stratify(targets)
        if labels is None:
            return None
        return 1.0 / np.bincount(labels)[labels]

    def wrap(
        self, loss_spec: Any, metric_specs: Sequence[Any], build: Callable[..., Any]
    ) -> tuple[Any, dict[str, Metric]]:
        """The loss the loop uses and the metrics it logs (by key), from the
        config's sections. ``build(spec, kind, context, where)`` builds a
        component section (or a raw ``{name: ...}`` mapping) with the run's
        context plus ``context``."""
        loss = build(loss_spec, "loss", {}, "loss")
        metrics = {
            (spec.log_as or spec.record.name): build(spec, "metric", {}, f"metrics.{i}")
            for i, spec in enumerate(metric_specs)
        }
        return loss, metrics

    def losses(self, loss_spec: Any, registry: Any) -> list[tuple[str, Any]]:
        """The loss components that will score this task's targets, each with
        the config path that names it: here the config's loss.

        :raises TorchyardError: a loss named by the task's own settings is unknown.
        """
        return [("loss", loss_spec.record)]

    # -- batch transforms (MixUp, CutMix: torchyard.batch_transforms) -------------

    def mix_problem(self) -> str | None:
        """Why batch transforms cannot mix this task's targets, or None."""
        return None

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """A training batch's targets as soft targets: a float tensor (n, k)
        that mixes linearly and that the losses declaring ``soft_targets``
        take -- here one-hot class probabilities (n, C)."""
        import torch

        if self.num_classes is None:
            raise ValueError(f"the {self.name} task does not know its number of classes")
        return torch.nn.functional.one_hot(targets.long(), self.num_classes).float()

    # -- outputs -----------------------------------------------------------------

    def to_probabilities(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        """Class probabilities of ``outputs``: softmax over classes, or
        ``[1 - sigmoid, sigmoid]`` of a single binary logit.

        :raises ValueError: values have no class probabilities.
        """
        import torch

        if kind == "probabilities":
            return outputs
        if kind == "values":
            raise ValueError("values have no class probabilities")
        if outputs.ndim == 1 or outputs.shape[-1] == 1:
            p = torch.sigmoid(outputs.reshape(-1))
            return torch.stack([1 - p, p], dim=-1)
        return torch.softmax(outputs, dim=-1)

    def combine(self, parts: Sequence[tuple[torch.Tensor, OutputKind]]) -> tuple[torch.Tensor, OutputKind]:
        """The mean of several outputs for the same samples (test-time
        augmentation views, checkpoints, folds): probabilities for classes,
        plain means for values.

        :raises ValueError: values mixed with class outputs.
        """
        import torch

        if len(parts) == 1:
            return parts[0]
        kinds = {kind for _, kind in parts}
        if kinds == {"values"}:
            return torch.stack([p for p, _ in parts]).mean(0), "values"
        if "values" in kinds:
            raise ValueError("cannot average values with class outputs")
        return torch.stack([self.to_probabilities(p, kind) for p, kind in parts]).mean(0), "probabilities"

    def probabilities(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """:meth:`to_probabilities` on an array."""
        import torch

        return self.to_probabilities(torch.from_numpy(np.ascontiguousarray(outputs)), kind).numpy()

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """What the task predicts: here the top class (a single logit: 1
        when positive); values pass through."""
        flat = outputs.reshape(len(outputs), -1)
        if kind == "values":
            return flat[:, 0] if flat.shape[1] == 1 else flat
        if kind == "logits" and flat.shape[1] == 1:
            return (flat[:, 0] > 0).astype(np.int64)
        return np.asarray(flat.argmax(axis=1))

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        """``labels`` as class names where known."""
        values = labels.tolist()
        if class_names is None or labels.dtype.kind == "f":
            return list(values)
        return [class_names[i] for i in values]

    # -- after training ----------------------------------------------------------

    def tune(self, outputs: np.ndarray, kind: OutputKind, targets: np.ndarray) -> dict[str, Any]:
        """Settle what the task learns from labelled validation outputs after
        training (a tuned threshold, say); returns it for ``summary.json``."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`tune` returned (read from the run's ``summary.json``)."""

    def oof_columns(self, outputs: np.ndarray, kind: OutputKind) -> dict[str, np.ndarray]:
        """The columns of ``oof.csv`` besides ``index`` and ``target``."""
        probabilities = self.probabilities(outputs, kind)
        columns = {"predicted": self.labels(outputs, kind)}
        columns.update({f"prob_{i}": probabilities[:, i] for i in range(probabilities.shape[1])})
        return columns

    def report(
        self,
        directory: Path,
        outputs: np.ndarray,
        kind: OutputKind,
        targets: np.ndarray,
        reporter: Reporter | None,
        title: str,
    ) -> dict[str, str]:
        """Write the end-of-run report for labelled ``outputs``; return its files."""
        from torchyard.report import write_report

        return write_report(
            directory, self.labels(outputs, kind), targets, self.class_names, reporter, title,
            n_classes=self.num_classes,
        )  # fmt: skip


# -- settling a config's task ------------------------------------------------------


def declared_task(data_spec: Any) -> str:
    """The task a config's dataset declares at registration (``task=``):
    a name, or a function of its params; classification when silent.

    :raises ConfigError: the function failed or named no task.
    """
    from torchyard.errors import ConfigError
    from torchyard.kinds import TASKS, import_object, task_names

    record = data_spec.record
    declared = record.options.get("task", "classification")
    if callable(declared) or (isinstance(declared, str) and ":" in declared):
        function = import_object(declared) if isinstance(declared, str) else declared
        try:
            declared = function(**data_spec.factory_kwargs())
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data: dataset '{record.name}': {e}") from None
    (name,) = task_names(declared)[:1] or ("",)
    if name not in TASKS:
        raise ConfigError(f"data: dataset '{record.name}' declares an unknown task {declared!r}")
    return name


def settle_task(config: Any, registry: Any) -> list[str]:
    """Fill in the config's ``task`` from its dataset when the config has
    none, and check that the loss, the metrics and the writer take the
    task's targets; returns the problems, one line each."""
    from torchyard import kinds
    from torchyard.config import section_model
    from torchyard.errors import TorchyardError
    from torchyard.factories import build_component

    try:
        declared = declared_task(config.data)
        if config.task is None:
            record = registry.get("task", declared)
            config.task = section_model(record).model_validate({"name": record.name})
        task = build_component(config.task, where="task")
    except TorchyardError as e:
        return [p if p.startswith(("task", "data")) else f"task: {p}" for p in e.problems]
    if not isinstance(task, Task):
        return [f"task: '{config.task.record.name}' did not return a torchyard.tasks.Task"]
    problems = []
    if not task.accepts_data(declared):
        problems.append(
            f"task: '{task.name}' does not fit dataset '{config.data.record.name}', which yields "
            f"{declared} targets"
        )
    where_spec = [("loss", config.loss)] + [(f"metrics.{i}", m) for i, m in enumerate(config.metrics)]
    if config.writer is not None and config.writer.record.tasks:
        where_spec.append(("writer", config.writer))
    for where, spec in where_spec:
        record = spec.record
        if not task.accepts(record.tasks):
            fits = sorted(
                {r.name for r in registry.records(record.kind) if r.tasks and task.accepts(r.tasks)}
            )
            plural = kinds.get(record.kind).plural
            hint = f"; {plural} for {task.name}: {', '.join(fits[:8])}" if fits else ""
            problems.append(
                f"{where}: '{record.name}' takes {' or '.join(record.tasks)} targets, "
                f"but the task is {task.name}{hint}"
            )
    from torchyard.batch_transforms import check_batch_transforms

    return problems + check_batch_transforms(config, task, registry)
