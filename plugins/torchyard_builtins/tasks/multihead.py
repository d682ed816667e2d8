"""Several heads on one model: mask, gender and age from one photo.

The model gives one block of outputs per head, side by side (any built-in
model: its last layer gets the heads' widths summed, which is one linear
head per head on the shared features). Each head has its task
(classification, binary or regression), its loss and loss weight, and its
metrics, logged as ``val/<head>/<metric>``; ``val/<metric>`` is their mean
over the heads that have it. Targets are one column per head, or -- for a
dataset that fuses classification heads into one class, like ``image_csv``
with ``label_columns: [mask, gender, age_group]`` -- the fused class index,
split into the heads by their sizes (the first head most significant).
``combine`` turns the heads' predictions back into one fused class for the
submission (``mask * 6 + gender * 3 + age``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from torchyard.errors import ConfigError, DataError
from torchyard.metric import Metric, MetricView
from torchyard.params import ParamsModel
from torchyard.tasks import OutputKind, Task
from torchyard_builtins.tasks.labels import fused_digits

if TYPE_CHECKING:
    import torch

    from torchyard.console import Reporter
    from torchyard.data import DataBundle


class Head(ParamsModel):
    """One head: its task, size, loss and weight."""

    task: Literal["classification", "binary", "regression"] = Field(
        "classification", description="What the head predicts."
    )
    classes: int | None = Field(
        None, ge=2, le=100_000, description="classification: the number of classes (required)."
    )
    class_names: list[str] | None = Field(
        None, description="Names of the classes; default: taken from a fused label's names, or indices."
    )
    weight: float = Field(1.0, gt=0, le=1e6, description="The head's weight in the summed loss.")
    loss: dict[str, Any] | None = Field(
        None,
        description="The head's loss section, e.g. {name: focal, gamma: 2}; default: the config's "
        "loss if it takes this head's targets, else cross_entropy, bce or mse.",
    )

    @model_validator(mode="after")
    def _sized(self) -> Head:
        if self.task == "classification" and self.classes is None:
            raise ValueError("a classification head needs classes")
        if self.task != "classification" and self.classes is not None:
            raise ValueError(f"a {self.task} head takes no classes")
        if self.class_names is not None and len(self.class_names) != self.width_classes:
            raise ValueError(f"class_names: {len(self.class_names)} names for {self.width_classes} classes")
        return self

    @property
    def width(self) -> int:
        """The head's number of model outputs."""
        return self.classes if self.task == "classification" and self.classes else 1

    @property
    def width_classes(self) -> int:
        return self.classes or 2


_DEFAULT_LOSS = {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}


class MultiHeadParams(ParamsModel):
    """The ``task:`` section of a multi-head run."""

    heads: dict[str, Head] = Field(
        min_length=1,
        description="The heads by name, in output order, e.g. "
        "{mask: {classes: 3}, gender: {classes: 2}, age: {classes: 3}}.",
    )
    combine: list[str] | None = Field(
        None,
        description="Heads whose predicted classes combine into one class for the submission, "
        "most significant first (mask, gender, age: mask * 6 + gender * 3 + age).",
    )


class MultiHead(Task):
    """Several heads, each a small task of its own, on one model's outputs."""

    name = "multihead"

    def __init__(self, heads: Mapping[str, Head | Mapping[str, Any]], combine: list[str] | None = None) -> None:
        super().__init__()
        self.heads = {name: Head.model_validate(h) if isinstance(h, Mapping) else h for name, h in heads.items()}
        for name in self.heads:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"heads: head name {name!r} must be letters, digits and '_'")
        self.combine_heads = list(combine or [])
        for name in self.combine_heads:
            if name not in self.heads:
                raise ValueError(f"combine: no head named {name!r}; heads are {', '.join(self.heads)}")
            if self.heads[name].task == "regression":
                raise ValueError(f"combine: head {name!r} is a regression head; only class heads combine")
        starts = np.cumsum([0] + [h.width for h in self.heads.values()])
        self.slices = {name: slice(int(a), int(b)) for name, a, b in zip(self.heads, starts[:-1], starts[1:], strict=True)}
        self.head_names: dict[str, list[str] | None] = {n: h.class_names for n, h in self.heads.items()}
        self._fused = False

    # -- before training ---------------------------------------------------------

    @property
    def width(self) -> int:
        return sum(h.width for h in self.heads.values())

    @property
    def radix(self) -> list[int]:
        return [h.width_classes for h in self.heads.values()]

    def accepts(self, targets: Sequence[str]) -> bool:
        return any(h.task in targets for h in self.heads.values())

    def accepts_data(self, task: str) -> bool:
        return task in ("classification", "multihead")  # fused classes, or a column per head

    def context(self) -> dict[str, Any]:
        return {"num_classes": self.width}

    def bind(self, data: DataBundle) -> None:
        if data.task not in ("classification", "multihead"):
            raise DataError(f"data: a multihead task needs per-head or fused class targets, not {data.task}")
        self._fused = data.task == "classification"
        if self._fused:
            if any(h.task == "regression" for h in self.heads.values()):
                raise DataError("data: a fused class label cannot feed a regression head; give per-head targets")
            if data.num_classes is not None and data.num_classes != math.prod(self.radix):
                sizes = " x ".join(f"{n}({r})" for n, r in zip(self.heads, self.radix, strict=True))
                raise DataError(
                    f"data: {data.num_classes} classes cannot be split into heads {sizes} = {math.prod(self.radix)}"
                )
        super().bind(data)  # keeps what it needs (setup) and checks the targets

    def setup(self, num_classes: int | None, class_names: Sequence[str] | None) -> None:
        super().setup(num_classes, class_names)
        if num_classes is not None and num_classes == math.prod(self.radix):
            self._fused = all(h.task != "regression" for h in self.heads.values())
        if self._fused:
            self._names_from_fused(class_names)

    def _names_from_fused(self, names: Sequence[str] | None) -> None:
        """Each head's class names from fused names like 'wear/male/<30'."""
        if not names or not all(len(n.split("/")) == len(self.heads) for n in names):
            return
        digits = fused_digits(np.arange(len(names)), self.radix)
        for h, head in enumerate(self.heads):
            if self.head_names[head] is None:
                found = {int(d[h]): names[i].split("/")[h] for i, d in enumerate(digits)}
                self.head_names[head] = [found[v] for v in sorted(found)]

    def check_targets(self, targets: Sequence[Any]) -> str | None:
        values = np.asarray(targets, dtype=float)
        if self._fused:
            if values.ndim != 1 or (values < 0).any() or (values >= math.prod(self.radix)).any():
                return f"fused class targets must lie in 0..{math.prod(self.radix) - 1}"
            return None
        if values.ndim != 2 or values.shape[1] != len(self.heads):
            return f"multihead targets need one column per head ({len(self.heads)}), got shape {values.shape}"
        return None

    def check_outputs(self, width: int) -> str | None:
        if width != self.width:
            return (f"model.num_classes: the model gives {width} outputs per sample, the heads need "
                    f"{self.width}; leave num_classes unset")  # fmt: skip
        return None

    def class_counts(self, targets: Sequence[Any]) -> list[int] | None:
        return None  # no single class per sample

    def stratify(self, targets: Sequence[Any]) -> np.ndarray | None:
        values = np.asarray(targets)
        rows = values.reshape(len(values), -1)
        return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)

    def head_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """One column per head, from per-head or fused targets."""
        import torch

        if targets.ndim == 2:
            return targets
        columns, rest = [], targets.long()
        for r in reversed(self.radix):
            columns.append(rest % r)
            rest = torch.div(rest, r, rounding_mode="floor")
        return torch.stack(columns[::-1], dim=1)

    def mix_problem(self) -> str | None:
        regression = [name for name, head in self.heads.items() if head.task == "regression"]
        if regression:
            return f"head {regression[0]!r} is a regression head, whose values batch transforms do not mix"
        return None

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Each head's soft targets side by side, in output order: a class
        head's one-hot probabilities, a binary head's positive probability."""
        import torch

        columns = self.head_targets(targets)
        blocks = []
        for i, head in enumerate(self.heads.values()):
            column = columns[:, i]
            if head.task == "classification":
                blocks.append(torch.nn.functional.one_hot(column.long(), head.width).float())
            else:
                blocks.append(column.float().unsqueeze(1))
        return torch.cat(blocks, dim=1)

    def losses(self, loss_spec: Any, registry: Any) -> list[tuple[str, Any]]:
        found = []
        for name, head in self.heads.items():
            if head.loss is not None:
                found.append((f"task.heads.{name}.loss", registry.get("loss", str(head.loss.get("name")))))
            elif head.task in loss_spec.record.tasks:
                found.append(("loss", loss_spec.record))
            else:
                found.append((f"task.heads.{name}", registry.get("loss", _DEFAULT_LOSS[head.task])))
        return found

    def wrap(
        self,
        loss_spec: Any,
        metric_specs: Sequence[Any],
        build: Callable[..., Any],
    ) -> tuple[Any, dict[str, Metric]]:
        """The summed, weighted loss of the heads and the metrics per head
        (``<head>/<key>``) and over heads (``<key>``: the mean)."""
        losses = {}
        for name, head in self.heads.items():
            context = {"num_classes": head.width if head.task != "binary" else 1}
            if head.loss is not None:
                losses[name] = build(head.loss, "loss", context, f"task.heads.{name}.loss")
            elif head.task in loss_spec.record.tasks:
                losses[name] = build(loss_spec, "loss", context, "loss")
            else:
                losses[name] = build({"name": _DEFAULT_LOSS[head.task]}, "loss", context, f"task.heads.{name}")
        metrics: dict[str, Metric] = {}
        for i, spec in enumerate(metric_specs):
            key = spec.log_as or spec.record.name
            per_head = {}
            for name, head in self.heads.items():
                if head.task in spec.record.tasks:
                    metric = build(spec, "metric", {"num_classes": head.width_classes}, f"metrics.{i}")
                    per_head[name] = _HeadMetric.of(metric, self, name)
            if not per_head:
                raise ConfigError(f"metrics.{i}: '{spec.record.name}' fits no head of the multihead task")
            metrics.update({f"{name}/{key}": m for name, m in per_head.items()})
            parts = list(per_head.values())
            metrics[key] = _directed(_MeanMetric, parts[0].higher_is_better)(parts)
        return _HeadsLoss(self, losses), metrics

    # -- outputs -----------------------------------------------------------------

    def to_probabilities(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        """Each class head's probabilities, side by side (regression heads' values as they are)."""
        import torch

        if kind == "probabilities":
            return outputs
        parts = []
        for name, head in self.heads.items():
            block = outputs[:, self.slices[name]]
            if head.task == "classification":
                parts.append(torch.softmax(block, dim=-1))
            elif head.task == "binary":
                parts.append(torch.sigmoid(block))
            else:
                parts.append(block)
        return torch.cat(parts, dim=-1)

    def head_labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """One column per head: its predicted class, 0/1, or value."""
        probabilities = self.probabilities(outputs, kind)
        columns = []
        for name, head in self.heads.items():
            block = probabilities[:, self.slices[name]]
            if head.task == "classification":
                columns.append(block.argmax(axis=1).astype(float))
            elif head.task == "binary":
                columns.append((block[:, 0] >= 0.5).astype(float))
            else:
                columns.append(block[:, 0])
        return np.stack(columns, axis=1)

    def labels(self, outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
        """The combined class (with ``combine``), else one column per head."""
        per_head = self.head_labels(outputs, kind)
        if not self.combine_heads:
            return per_head
        index = list(self.heads)
        fused = np.zeros(len(per_head), dtype=np.int64)
        for name in self.combine_heads:
            fused = fused * self.heads[name].width_classes + per_head[:, index.index(name)].astype(np.int64)
        return fused

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        if self.combine_heads:
            if class_names is not None and self._fused and self.combine_heads == list(self.heads):
                return [class_names[i] for i in labels.tolist()]
            return labels.tolist()
        rows = []
        for row in labels:
            names = []
            for (name, head), value in zip(self.heads.items(), row, strict=True):
                known = self.head_names.get(name)
                names.append(value if head.task == "regression" or not known else known[int(value)])
            rows.append(names)
        return rows

    # -- after training ----------------------------------------------------------

    def oof_columns(self, outputs: np.ndarray, kind: OutputKind) -> dict[str, np.ndarray]:
        per_head = self.head_labels(outputs, kind)
        return {f"predicted_{name}": per_head[:, i] for i, name in enumerate(self.heads)}

    def report(
        self,
        directory: Path,
        outputs: np.ndarray,
        kind: OutputKind,
        targets: np.ndarray,
        reporter: Reporter | None,
        title: str,
    ) -> dict[str, str]:
        import torch

        from torchyard.report import write_report, write_value_report

        truth = self.head_targets(torch.from_numpy(np.asarray(targets))).numpy()
        predicted = self.head_labels(outputs, kind)
        paths: dict[str, str] = {}
        for i, (name, head) in enumerate(self.heads.items()):
            if head.task == "regression":
                paths.update({f"{name}_{k}": v for k, v in write_value_report(
                    directory / name, predicted[:, i], truth[:, i], [name], reporter, f"{name}: {title}").items()})  # fmt: skip
            else:
                paths.update(write_report(
                    directory, predicted[:, i], truth[:, i], self.head_names.get(name), reporter,
                    f"{name}: {title}", n_classes=head.width_classes, prefix=f"{name}_",
                ))  # fmt: skip
        return paths


def _directed(cls: type[Any], higher_is_better: bool) -> type[Any]:
    """``cls`` with the direction of the metric it wraps (a class attribute)."""
    return type(cls.__name__, (cls,), {"higher_is_better": higher_is_better})


class _HeadsLoss:
    """The weighted sum of the heads' losses."""

    def __init__(self, task: MultiHead, losses: Mapping[str, Any]) -> None:
        self.task, self.losses = task, dict(losses)
        self.weights = {n: h.weight for n, h in task.heads.items()}

    def to(self, device: Any) -> _HeadsLoss:
        for loss in self.losses.values():
            if hasattr(loss, "to"):
                loss.to(device)
        return self

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # soft targets (MultiHead.soft_targets, mixed by a batch transform) are
        # one float block per head, as wide as its outputs; when every head is
        # one output wide, they read the same as one column per head
        soft = targets.ndim == 2 and targets.is_floating_point() and targets.shape[1] == self.task.width
        columns = None if soft else self.task.head_targets(targets)
        total = outputs.new_zeros(())
        for i, (name, head) in enumerate(self.task.heads.items()):
            block = outputs[:, self.task.slices[name]]
            if columns is None:
                target = targets[:, self.task.slices[name]]
            else:
                target = columns[:, i].long() if head.task == "classification" else columns[:, i].float()
            total = total + self.weights[name] * self.losses[name](block, target)
        return total


class _HeadMetric(MetricView):
    """A metric of one head: it sees that head's outputs and targets."""

    def __init__(self, metric: Metric, task: MultiHead, head: str) -> None:
        super().__init__(metric)
        self.task, self.head = task, head
        self.index = list(task.heads).index(head)
        self._long = task.heads[head].task == "classification"

    def view(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.task.head_targets(targets)[:, self.index]
        return outputs[:, self.task.slices[self.head]], target.long() if self._long else target.float()


class _MeanMetric(Metric):
    """The mean of a metric over the heads that have it (updated through them)."""

    def __init__(self, parts: list[_HeadMetric]) -> None:
        super().__init__()
        self.parts = parts

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pass  # the per-head metrics are updated on their own

    def compute(self) -> float:
        return float(np.mean([p.compute() for p in self.parts]))

    def reset(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def to(self, device: Any) -> _MeanMetric:
        return self
