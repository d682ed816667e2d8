"""Checkpoints: written atomically, read with ``weights_only=True`` only.

A checkpoint is a plain dictionary of tensors, numbers, strings and
containers, so loading it can never run code: ``torch.load`` is always
called with ``weights_only=True`` and a file that needs more is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchyard.errors import ConfigError
from torchyard.files import atomic_path

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_model_weights"]

FORMAT = "torchyard-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a torchyard checkpoint safely.

    :raises ConfigError: missing file, not a torchyard checkpoint, or a file
        whose unpickling would need more than tensors and plain containers
        (and could therefore run code).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ConfigError(f"checkpoint {path}: not a torchyard checkpoint (not a file torch.save wrote)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"checkpoint {path}: refused to load it safely (weights_only=True): {first}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {path}: not a torchyard checkpoint")
    return payload


def load_model_weights(model: torch.nn.Module, payload: dict[str, Any], path: str | Path) -> None:
    """Load a checkpoint's model weights, with a readable mismatch message."""
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or str(e)
        raise ConfigError(
            f"checkpoint {path}: does not fit the configured model: {detail}"
        ) from None
