"""GPU step settings: ``trainer.matmul_precision``, ``trainer.channels_last``
and ``trainer.compile`` (see docs/config.md, "GPU step settings").

The fields live in :class:`SpeedSettings`, which :class:`~torchyard.config.TrainerConfig`
extends. :func:`apply_speed_settings` applies the process-wide and model-wide parts when
a run is built; :func:`forward_callable` makes what the trainer calls for forward passes:
``run.model`` itself stays the plain module (checkpoints, EMA/SWA callbacks and
``torchyard.load`` see no ``_orig_mod.`` prefixes), wrapped in DistributedDataParallel
first and compiled after, as PyTorch recommends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field

from torchyard.errors import ConfigError
from torchyard.params import ParamsModel

__all__ = ["CompileSettings", "SpeedSettings", "apply_speed_settings", "forward_callable"]


class CompileSettings(ParamsModel):
    """How ``torch.compile`` compiles the model (``trainer.compile``)."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode (inductor only): 'default', 'reduce-overhead' or 'max-autotune'."
    )
    backend: str = Field("inductor", description="torch.compile backend: 'inductor', 'aot_eager', 'eager', ...")
    fullgraph: bool = Field(False, description="Refuse graph breaks (an error instead of falling back to Python).")


class SpeedSettings(ParamsModel):
    """The trainer's GPU step settings (a base of TrainerConfig)."""

    matmul_precision: Literal["highest", "high", "medium"] | None = Field(
        None, description="torch.set_float32_matmul_precision ('high'/'medium': TF32 matmuls on Ampere+); "
        "unset: torch's default ('highest')."
    )
    channels_last: bool = Field(
        False, description="Model and 4-D input batches in channels_last memory format (faster convolutions "
        "under mixed precision on tensor-core GPUs); other inputs: a one-line warning, left as they are."
    )
    compile: bool | CompileSettings = Field(
        False, description="torch.compile the model for training and evaluation: true, or {mode, backend, "
        "fullgraph}; checkpoints keep the plain model's weights."
    )


def _compile_settings(value: bool | CompileSettings) -> CompileSettings | None:
    if value is False:
        return None
    return CompileSettings.model_validate({}) if value is True else value


def apply_speed_settings(trainer: SpeedSettings, model: torch.nn.Module) -> None:
    """Set the matmul precision, put ``model`` in channels_last when asked,
    and check ``trainer.compile``'s backend before any training."""
    if trainer.matmul_precision is not None:
        torch.set_float32_matmul_precision(trainer.matmul_precision)
    if trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    settings = _compile_settings(trainer.compile)
    if settings is not None:
        from torch._dynamo import list_backends

        if settings.backend not in list_backends(exclude_tags=()):
            common = sorted({*list_backends(), "aot_eager", "eager"})  # less the debugging ones
            raise ConfigError(
                f"trainer.compile.backend: unknown torch.compile backend {settings.backend!r}; "
                f"known: {', '.join(common)}, ..."
            )
        if settings.mode != "default" and settings.backend != "inductor":
            raise ConfigError(
                f"trainer.compile.mode: {settings.mode!r} needs backend 'inductor', not {settings.backend!r}"
            )


class StepForward(torch.nn.Module):
    """Calls ``inner``: with 4-D inputs in channels_last memory format when
    ``channels_last`` (other inputs pass unchanged, with one warning through
    ``warn`` the first time); with the outputs cloned when ``clone_outputs``
    (CUDA graphs, ``reduce-overhead``, overwrite a graph's outputs at its
    next replay, and evaluation keeps every batch's outputs)."""

    def __init__(
        self, inner: Callable[..., Any], warn: Callable[[str], None], *, channels_last: bool, clone_outputs: bool
    ) -> None:
        super().__init__()
        self.inner = inner
        self.channels_last, self.clone_outputs = channels_last, clone_outputs
        self._warn: Callable[[str], None] | None = warn

    def forward(self, inputs: Any) -> Any:
        if not self.channels_last:
            pass
        elif isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        elif self._warn is not None:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            self._warn(f"trainer.channels_last: inputs are {shape}, not 4-D images; they stay as they are")
            self._warn = None
        outputs = self.inner(inputs)
        if self.clone_outputs:
            outputs = torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, outputs)
        return outputs


def forward_callable(
    module: torch.nn.Module, trainer: SpeedSettings, warn: Callable[[str], None]
) -> torch.nn.Module:
    """What the trainer calls for forward passes: ``module`` (the model, or its
    DistributedDataParallel wrapper), compiled and/or converting inputs to
    channels_last as ``trainer`` says; ``module`` itself when neither."""
    settings = _compile_settings(trainer.compile)
    called: torch.nn.Module = module
    if settings is not None:
        options: dict[str, Any] = {"backend": settings.backend, "fullgraph": settings.fullgraph}
        if settings.backend == "inductor":
            options["mode"] = settings.mode
        called = torch.compile(module, **options)  # type: ignore[assignment]
    clone = settings is not None and settings.mode == "reduce-overhead"
    if trainer.channels_last or clone:
        called = StepForward(called, warn, channels_last=trainer.channels_last, clone_outputs=clone)
    return called
