"""Devices, precision, seeding: the hardware-facing choices of a run.

Every unsupported combination is refused with an explanation (for instance
``16-mixed`` on a CPU) rather than silently rewritten.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from torchyard.errors import ConfigError

__all__ = ["Precision", "resolve_device", "resolve_precision", "seed_everything", "set_deterministic"]


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; explicit devices must exist."""
    cuda = torch.cuda.is_available()
    mps = _mps_available()
    if spec == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not cuda:
            raise ConfigError(
                f"trainer.device: '{spec}' requested, but CUDA is not available here "
                "(torch.cuda.is_available() is False); use 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"trainer.device: '{spec}' requested, but only {count} CUDA device(s) exist "
                f"(cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not mps:
        raise ConfigError(
            "trainer.device: 'mps' requested, but the MPS backend is not available here; "
            "use 'auto' or 'cpu'"
        )
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@dataclass(frozen=True)
class Precision:
    """How forward passes run (autocast dtype) and whether gradients are scaled."""

    name: str
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None means full precision

    @property
    def uses_scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        if not self.uses_scaler:
            return None
        return torch.amp.GradScaler(self.device.type)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Check that ``name`` works on ``device`` and describe it."""
    if name == "32":
        return Precision(name, device, None)
    if name == "16-mixed":
        if device.type != "cuda":
            raise ConfigError(
                f"trainer.precision: '16-mixed' needs a CUDA device (float16 autocast with "
                f"gradient scaling), but this run uses {device.type}; use 'bf16-mixed' or '32'"
            )
        return Precision(name, device, torch.float16)
    if name == "bf16-mixed":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                "trainer.precision: 'bf16-mixed' is not supported by this GPU "
                f"({torch.cuda.get_device_name(device)}); use '16-mixed' or '32'"
            )
        if device.type not in ("cuda", "cpu", "mps"):
            raise ConfigError(f"trainer.precision: 'bf16-mixed' is not supported on {device.type}")
        return Precision(name, device, torch.bfloat16)
    raise ConfigError(f"trainer.precision: unknown precision {name!r}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Restrict torch to deterministic algorithms (and say so to cuBLAS);
    otherwise let cuDNN benchmark its convolution algorithms (fastest for
    fixed input shapes, not bit-for-bit repeatable)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
