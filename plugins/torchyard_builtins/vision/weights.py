"""Pretrained weights from local files only: never a download.

torchvision's own loaders fetch missing files from the internet; these
functions only look where torchvision would have cached them
(``<torch.hub.get_dir()>/checkpoints/<file name of the weights' URL>``)
or at a file the config names, and read it with ``weights_only=True`` (or
as safetensors). The timm plugin reads its files and words its "not on this
machine" error with the same functions.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from torchyard.errors import ConfigError
from torchyard_builtins.vision import torchvision_name

__all__ = [
    "cached_weights_path",
    "load_state_dict",
    "local_file",
    "not_downloaded",
    "torchvision_weights",
]

# Old DenseNet checkpoints (torchvision's included) name layers 'norm.1', 'conv.2', ...
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def torchvision_weights(name: str, weights: str) -> Any:
    """torchvision's weights enum member ``weights`` (``DEFAULT``, ``IMAGENET1K_V2``, ...)
    of model ``name``.

    :raises ConfigError: torchvision has no such weights for the model.
    """
    import torchvision

    enum = torchvision.models.get_model_weights(torchvision_name(name))
    members = enum.__members__
    key = weights.split(".")[-1].upper()
    if key not in members:
        raise ConfigError(
            f"model '{name}': unknown weights '{weights}'; torchvision has " + ", ".join(members)
        )
    return members[key]


def cached_weights_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` would have cached its file."""
    filename = os.path.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def local_file(where: str, weights_path: str | Path) -> Path:
    """``model.weights_path`` as an existing file.

    :raises ConfigError: there is no such file.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{where}: weights_path {path}: file not found")
    return path


def not_downloaded(where: str, weights: str, path: str | Path, how: str) -> ConfigError:
    """The error for pretrained weights that are not on this machine.

    :param where: the model, e.g. ``model 'resnet18'``.
    :param weights: which weights, e.g. ``ResNet18_Weights.IMAGENET1K_V1``.
    :param path: where they were looked for.
    :param how: how to put them there, from a machine with network access.
    """
    return ConfigError(
        f"{where}: pretrained weights {weights} not found at {path} (torchyard never "
        f"downloads). Copy the file there: {how}; or set model.weights_path to a local "
        "state dict."
    )


def find_weights(name: str, weights: str, weights_path: str | Path | None) -> tuple[Path, Any]:
    """The local weights file to load and, when it is torchvision's, the enum member.

    :raises ConfigError: the file is missing; the message names the path
        expected and how to put a file there.
    """
    if weights_path is not None:
        return local_file(f"model '{name}'", weights_path), None
    member = torchvision_weights(name, weights)
    path = cached_weights_path(member.url)
    if not path.is_file():
        raise not_downloaded(
            f"model '{name}'",
            str(member),
            path,
            f"download {member.url} on a machine with network access, or run there "
            f"`python -c \"import torchvision; torchvision.models.get_model('{torchvision_name(name)}', "
            f"weights='{member.name}')\"` and copy it from that machine's "
            "torch hub cache (the cache directory follows $TORCH_HOME)",
        )
    return path, member


def load_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Read a state dict safely (``weights_only=True``).

    Accepts a plain state dict (``.safetensors`` files too), a torchyard
    checkpoint or a dictionary with a ``state_dict`` / ``model`` entry;
    ``module.`` (DataParallel) and
    ``_orig_mod.`` (torch.compile) prefixes are removed, and old DenseNet
    key names are renamed.

    :raises ConfigError: the file cannot be read safely or holds no state dict.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # a dependency of timm, not of torchyard

            payload = load_file(path, device="cpu")
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ConfigError(
            f"model '{name}': weights {path}: reading .safetensors needs `pip install safetensors`"
        ) from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"model '{name}': weights {path}: refused to load it safely (weights_only=True): {first}"
        ) from None
    state = _find_state(payload)
    if state is None:
        raise ConfigError(f"model '{name}': weights {path}: holds no state dict of tensors")
    # module versions: some modules (MNASNet, old BatchNorm) read them when loading
    metadata = dict(getattr(state, "_metadata", None) or {})
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
            metadata = {
                ("" if k == prefix[:-1] else k.removeprefix(prefix)): v for k, v in metadata.items()
            }
    renamed: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        match = _DENSENET_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    if metadata:
        renamed._metadata = OrderedDict(metadata)  # type: ignore[attr-defined]
    return renamed


def _find_state(payload: Any) -> Mapping[str, torch.Tensor] | None:
    if (
        isinstance(payload, Mapping)
        and payload
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items())
    ):
        return payload
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            found = _find_state(payload.get(key))
            if found is not None:
                return found
    return None
