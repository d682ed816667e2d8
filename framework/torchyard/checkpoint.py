"""Checkpoints: written atomically, read with ``weights_only=True`` only.

A checkpoint is a plain dictionary of tensors, numbers, strings and
containers, so loading it can never run code: ``torch.load`` is always
called with ``weights_only=True`` and a file that needs more is refused.

``model`` is a plain ``state_dict`` (``torch.load(path,
weights_only=True)["model"]`` works in any script). The resume state --
optimizer, scheduler, grad scaler, RNG states -- is stored *packed*
(:func:`pack`): its tensors concatenated into one buffer per dtype and
device, because ``torch.save`` costs about 0.1 ms per tensor it writes and
an optimizer has several per parameter. :func:`load_checkpoint` unpacks
it, so callers see the same nested dictionaries either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchyard.errors import ConfigError
from torchyard.files import atomic_path

__all__ = ["FORMAT", "load_checkpoint", "load_model_weights", "pack", "save_checkpoint", "unpack"]

FORMAT = "torchyard-checkpoint"
#: 2: entries named in ``packed`` are stored by :func:`pack`.
VERSION = 2
_TENSOR = "__torchyard_tensor__"


def pack(value: Any) -> dict[str, Any]:
    """A copy of ``value`` (nested dicts, lists, tuples, tensors and plain
    values) with every tensor moved into one flat buffer per dtype and
    device; the copy no longer shares memory with ``value``."""
    tensors: list[torch.Tensor] = []
    tree = _strip(value, tensors)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(f"{t.device}|{t.dtype}", []).append(i)
    buffers: dict[str, torch.Tensor] = {}
    where: list[list[Any]] = [[] for _ in tensors]
    for key, members in groups.items():
        offset = 0
        for i in members:
            where[i] = [key, offset, list(tensors[i].shape)]
            offset += tensors[i].numel()
        # one copy of the whole group (cat never returns a view of its inputs)
        buffers[key] = torch.cat([tensors[i].detach().reshape(-1) for i in members])
    return {"tree": tree, "buffers": buffers, "where": where}


def unpack(packed: dict[str, Any]) -> Any:
    """The nested value :func:`pack` was given (its tensors are views of the buffers)."""
    views = []
    for key, offset, shape in packed["where"]:
        flat = packed["buffers"][key]
        n = 1
        for d in shape:
            n *= d
        views.append(flat[offset : offset + n].view(shape))
    return _fill(packed["tree"], views)


def _strip(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {_TENSOR: len(tensors) - 1}
    if isinstance(value, dict):
        return {k: _strip(v, tensors) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_strip(v, tensors) for v in value)
    return value


def _fill(tree: Any, views: list[torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if len(tree) == 1 and _TENSOR in tree:
            return views[tree[_TENSOR]]
        return {k: _fill(v, views) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_fill(v, views) for v in tree)
    return tree


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a torchyard checkpoint safely (or the weights file of an
    export, ``.safetensors``: see :func:`torchyard.export.read_weights`).

    :raises ConfigError: missing file, not a torchyard checkpoint, or a file
        whose unpickling would need more than tensors and plain containers
        (and could therefore run code).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path}: file not found")
    if path.suffix == ".safetensors":  # `torchyard export --format weights` wrote it
        from torchyard.export import read_weights

        return read_weights(path, map_location)
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
    for key in payload.pop("packed", ()):
        payload[key] = unpack(payload[key])
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
