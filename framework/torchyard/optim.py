"""Optimization: parameter groups, durations with units, LR schedules with warmup.

Three things a config says about optimization beyond the optimizer's own
parameters:

- **Parameter groups** (``optimizer.param_groups`` and
  ``optimizer.no_weight_decay_on_bias_and_norm``): per-module learning
  rates by module-name prefix (a backbone at 0.1x the head), frozen
  modules, and no weight decay on biases and normalization weights.
- **Durations with units**: a scheduler's duration parameters (``T_max``,
  ``step_size``, ``milestones``, ``total_iters``, ``total_steps``) take
  ``"10 epochs"`` or ``"500 steps"`` (a bare number counts in the
  scheduler's own unit). Step counts come from the data loader (whose
  length already reflects a distributed sampler) and gradient
  accumulation; a duration left unset lasts the whole
  run, so OneCycle's ``total_steps`` is never set by hand.
- **Warmup** (``scheduler.warmup``): a linear ramp over optimizer steps that
  composes with any scheduler, ``ReduceLROnPlateau`` included; the wrapped
  scheduler starts when the warmup ends.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from torchyard.errors import ConfigError, PluginError, did_you_mean
from torchyard.params import ParamsModel

if TYPE_CHECKING:
    import torch

    from torchyard.config import OptimizerSpec, SchedulerSpec

__all__ = [
    "Duration",
    "LRSchedule",
    "ParamGroupConfig",
    "TrainingLength",
    "WarmupConfig",
    "build_optimizer",
    "build_param_groups",
    "build_schedule",
    "scale_group_lrs",
    "to_steps_or_epochs",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(epoch|epochs|step|steps)\s*$")


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10, '10 epochs' or '500 steps', got {value}")
    return value


def _check_duration(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return value
    if not _DURATION_RE.match(value):
        raise ValueError(f"expected a duration like 10, '10 epochs' or '500 steps', got {value!r}")
    return value.strip()


#: A number (in the scheduler's own unit) or ``"<n> epochs"`` / ``"<n> steps"``.
Duration = Annotated[
    int | str,
    BeforeValidator(_not_bool),
    AfterValidator(_check_duration),
    Field(json_schema_extra={"examples": [10, "10 epochs", "500 steps"]}),
]


def _check_positive(value: int | str) -> int | str:
    number = value if isinstance(value, int) else float(_DURATION_RE.match(value).group(1))  # type: ignore[union-attr]
    if number <= 0:
        raise ValueError(f"expected a duration > 0, got {value!r}")
    return value


#: A scheduler's length or period (``step_size``, ``T_max``, ...): zero would
#: divide by zero in the scheduler, in the middle of training.
PositiveDuration = Annotated[Duration, AfterValidator(_check_positive)]


class WarmupConfig(ParamsModel):
    """A linear learning-rate warmup before the scheduler starts."""

    duration: Duration = Field(description="How long the warmup lasts, e.g. '1 epoch' or '200 steps'.")
    start_factor: float = Field(
        0.01, gt=0, le=1, description="The LR at the first step, as a fraction of the base LR."
    )


class ParamGroupConfig(ParamsModel):
    """Optimizer settings for the parameters under one module-name prefix."""

    prefix: str = Field(min_length=1, description="Module name prefix, e.g. 'backbone' or 'fc'.")
    lr_scale: float = Field(1.0, gt=0, description="Multiplies the optimizer's lr for this group.")
    lr: float | None = Field(None, gt=0, description="This group's lr (overrides lr_scale).")
    weight_decay: float | None = Field(None, ge=0, description="This group's weight decay.")
    freeze: bool = Field(False, description="Do not train these parameters at all.")


@dataclass(frozen=True)
class TrainingLength:
    """How long a run trains, for turning durations into scheduler steps."""

    epochs: int
    steps_per_epoch: int

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def duration_steps(value: int | str, native: Literal["epoch", "step"], length: TrainingLength) -> float:
    """A duration in optimizer steps."""
    if isinstance(value, int):
        return value * length.steps_per_epoch if native == "epoch" else value
    number, unit = _DURATION_RE.match(value).groups()  # type: ignore[union-attr]
    n = float(number)
    return n * length.steps_per_epoch if unit.startswith("epoch") else n


def needs_steps(value: int | str) -> bool:
    """Whether a duration can only be honoured by stepping per optimizer step."""
    if isinstance(value, int):
        return False
    number, unit = _DURATION_RE.match(value).groups()  # type: ignore[union-attr]
    return unit.startswith("step") or not float(number).is_integer()


def to_steps_or_epochs(
    value: int | str | None,
    *,
    native: Literal["epoch", "step"],
    interval: Literal["epoch", "step"],
    length: TrainingLength,
    remaining_steps: int,
) -> int:
    """Convert a duration to the scheduler's stepping unit (unset: the rest of the run)."""
    steps = remaining_steps if value is None else duration_steps(value, native, length)
    if interval == "step":
        return max(1, round(steps))
    return max(1, round(steps / length.steps_per_epoch))


# -- parameter groups ------------------------------------------------------------


def build_param_groups(
    model: Any,
    groups: list[ParamGroupConfig],
    *,
    no_decay_on_bias_and_norm: bool,
) -> list[dict[str, Any]]:
    """Torch parameter groups for ``model``.

    Each parameter goes to the first group whose prefix matches its module
    path (``prefix`` or ``prefix.*``), else to the default group. With
    ``no_decay_on_bias_and_norm``, one-dimensional parameters (biases and
    normalization weights, as timm does it) get ``weight_decay=0``.
    Frozen groups get ``requires_grad=False`` and are left out. A group
    with an ``lr_scale`` carries it under that key, for the optimizer's own
    lr to be scaled once it is built (``torchyard.run.scale_group_lrs``).

    :raises ConfigError: a prefix matches no parameter.
    """
    named = list(model.named_parameters())
    matched = [0] * len(groups)
    buckets: dict[tuple[int, bool], list[Any]] = {}
    for name, parameter in named:
        index = next((i for i, g in enumerate(groups) if _under(name, g.prefix)), -1)
        if index >= 0:
            matched[index] += 1
            if groups[index].freeze:
                parameter.requires_grad_(False)
                continue
        if not parameter.requires_grad:
            continue
        no_decay = no_decay_on_bias_and_norm and parameter.ndim <= 1
        buckets.setdefault((index, no_decay), []).append(parameter)
    problems = []
    for i, (spec, count) in enumerate(zip(groups, matched, strict=True)):
        if count == 0:
            prefixes = sorted({n.split(".")[0] for n, _ in named})
            problems.append(
                f"optimizer.param_groups.{i}.prefix: '{spec.prefix}' matches no parameter"
                + (did_you_mean(spec.prefix, _all_prefixes(named)) or f"; top-level modules: {', '.join(prefixes)}")
            )
    if problems:
        raise ConfigError(*problems)
    out: list[dict[str, Any]] = []
    # the configured groups in order, then the default group
    order = lambda kv: (kv[0][0] if kv[0][0] >= 0 else len(groups), kv[0][1])  # noqa: E731
    for (index, no_decay), parameters in sorted(buckets.items(), key=order):
        group: dict[str, Any] = {"params": parameters}
        if index >= 0:
            spec = groups[index]
            if spec.lr is not None:
                group["lr"] = spec.lr
            elif spec.lr_scale != 1.0:
                group["lr_scale"] = spec.lr_scale
            if spec.weight_decay is not None:
                group["weight_decay"] = spec.weight_decay
        if no_decay:
            group["weight_decay"] = 0.0
        out.append(group)
    if not out:
        raise ConfigError("optimizer.param_groups: every parameter is frozen; nothing to train")
    return out


def _under(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def _all_prefixes(named: list[tuple[str, Any]]) -> Iterator[str]:
    seen = set()
    for name, _ in named:
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in seen:
                seen.add(prefix)
                yield prefix


# -- schedules ---------------------------------------------------------------------


class LRSchedule:
    """A scheduler with its stepping cadence and an optional linear warmup.

    The loop calls :meth:`after_optimizer_step` after every optimizer step
    and :meth:`after_epoch` after every validation; the schedule decides
    which of them steps the wrapped scheduler. During warmup every group's
    LR ramps linearly from ``start_factor`` to 1 times its base LR and the
    wrapped scheduler does not step; afterwards it takes over from the base
    LR, so warmup composes with any scheduler, ReduceLROnPlateau included.
    """

    def __init__(
        self,
        optimizer: Any,
        scheduler: Any,
        interval: Literal["epoch", "step", "metric"] | None,
        *,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.01,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.interval = interval
        self.warmup_steps = warmup_steps
        self.warmup_start_factor = warmup_start_factor
        self.steps = 0
        # set when warmup finishes inside an epoch: that epoch's end does not
        # count as an epoch of the wrapped scheduler
        self._warmup_just_ended = False
        # the LRs the wrapped scheduler starts from (it has set them already)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        if warmup_steps > 0:
            self._set_warmup_lr()

    @property
    def in_warmup(self) -> bool:
        return self.steps < self.warmup_steps

    def _set_warmup_lr(self) -> None:
        fraction = min(self.steps / self.warmup_steps, 1.0)
        factor = self.warmup_start_factor + (1 - self.warmup_start_factor) * fraction
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def after_optimizer_step(self) -> None:
        if self.in_warmup:
            self.steps += 1
            self._set_warmup_lr()
            self._warmup_just_ended = not self.in_warmup
            return
        self.steps += 1
        if self.scheduler is not None and self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, monitored: float | None) -> None:
        if self.in_warmup or self.scheduler is None:
            return
        if self._warmup_just_ended:
            self._warmup_just_ended = False
            return
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "metric" and monitored is not None and math.isfinite(monitored):
            self.scheduler.step(monitored)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "warmup_just_ended": self._warmup_just_ended,
            "base_lrs": list(self.base_lrs),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        self._warmup_just_ended = state.get("warmup_just_ended", False)
        self.base_lrs = list(state["base_lrs"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def preview_schedule(
    schedule: LRSchedule | None, optimizer: Any, length: TrainingLength
) -> list[tuple[int, int, list[float]]]:
    """The LR of every parameter group at every optimizer step of a run.

    Returns ``(epoch, step, lrs)`` rows, the LRs being those the step uses.
    Nothing is trained: a metric-driven scheduler (ReduceLROnPlateau) sees
    a value that never improves, so the preview shows its earliest
    possible reductions.
    """
    import warnings

    rows: list[tuple[int, int, list[float]]] = []
    step = 0
    with warnings.catch_warnings():
        # schedulers warn when stepped without optimizer.step(); nothing trains here
        warnings.simplefilter("ignore", UserWarning)
        for epoch in range(1, length.epochs + 1):
            for _ in range(length.steps_per_epoch):
                step += 1
                rows.append((epoch, step, [float(g["lr"]) for g in optimizer.param_groups]))
                if schedule is not None:
                    schedule.after_optimizer_step()
            if schedule is not None:
                schedule.after_epoch(0.0)
    return rows


# -- building the optimizer and the schedule -----------------------------------------


def build_optimizer(spec: OptimizerSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer over the model's parameter groups."""
    from torchyard.factories import build_component

    groups = build_param_groups(
        model, spec.param_groups, no_decay_on_bias_and_norm=spec.no_weight_decay_on_bias_and_norm
    )
    import torch

    optimizer = build_component(spec, groups, where="optimizer")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise PluginError(
            f"optimizer '{spec.record.name}' from plugin {spec.record.source}: expected a "
            f"torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return scale_group_lrs(optimizer)


def scale_group_lrs(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Give groups with an ``lr_scale`` their lr: the scale times the
    optimizer's own lr (known once the optimizer is built)."""
    for group in optimizer.param_groups:
        scale = group.pop("lr_scale", None)
        if scale is None:
            continue
        base = optimizer.defaults.get("lr")
        if not isinstance(base, int | float):
            raise ConfigError(
                f"optimizer.param_groups: lr_scale needs an optimizer with a numeric lr, and "
                f"{type(optimizer).__name__} has none; give the group an lr instead"
            )
        group["lr"] = base * scale
    return optimizer


def build_schedule(
    spec: SchedulerSpec | None,
    optimizer: torch.optim.Optimizer,
    length: TrainingLength,
    mode: str,
    injected: dict[str, Any] | None = None,
) -> LRSchedule | None:
    """The scheduler with its durations in steps or epochs, and its warmup."""
    from torchyard.factories import build_component

    if spec is None:
        return None
    record = spec.record
    native = record.options["interval"]
    names = record.options.get("durations", ())
    values = {n: getattr(spec, n) for n in names}
    flat = [v for value in values.values() for v in (value if isinstance(value, list) else [value])]
    interval = native
    if native == "epoch":
        in_steps = [v for v in flat if v is not None and needs_steps(v)]
        if in_steps and spec.interval == "epoch":
            raise ConfigError(
                f"scheduler.interval: 'epoch' cannot honour the duration {in_steps[0]!r}; "
                "give it in whole epochs, or drop interval to step per optimizer step"
            )
        if spec.interval == "step" or in_steps:
            interval = "step"
    elif spec.interval is not None and spec.interval != native:
        raise ConfigError(
            f"scheduler.interval: '{record.name}' steps per {native}; it cannot step per {spec.interval}"
        )
    warmup_steps = 0
    if spec.warmup is not None:
        warmup_steps = max(1, round(duration_steps(spec.warmup.duration, "epoch", length)))
    remaining = max(1, length.steps - warmup_steps)
    unit: Literal["epoch", "step"] = "epoch" if native == "epoch" else "step"
    overrides: dict[str, Any] = {}
    for name, value in values.items():
        convert = lambda v: to_steps_or_epochs(  # noqa: E731
            v, native=unit, interval=interval if interval != "metric" else "epoch",
            length=length, remaining_steps=remaining,
        )
        overrides[name] = [convert(v) for v in value] if isinstance(value, list) else convert(value)
    # a scheduler stepping on the monitored value follows its direction
    # (ReduceLROnPlateau would otherwise minimize accuracy)
    context = {"mode": mode} if native == "metric" else {}
    scheduler = build_component(
        spec, optimizer, context=context, overrides=overrides, injected=injected, where="scheduler"
    )
    if scheduler is None or not callable(getattr(scheduler, "step", None)):
        raise PluginError(
            f"scheduler '{record.name}' from plugin {record.source}: expected an LR scheduler with "
            f"step(), got {type(scheduler).__name__}"
        )
    return LRSchedule(
        optimizer,
        scheduler,
        interval,
        warmup_steps=warmup_steps,
        warmup_start_factor=spec.warmup.start_factor if spec.warmup else 0.01,
    )
