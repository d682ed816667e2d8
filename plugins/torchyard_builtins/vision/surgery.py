"""Changes to a built model: loading weights around the head, the first
convolution's input channels, freezing, and fitting input sizes.

Used by the torchvision models and the timm plugin alike: a head is one
module name, or several (timm's distilled models have two).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchyard.errors import ConfigError

__all__ = ["FitInput", "adapt_first_conv", "first_conv", "freeze_all_but", "load_weights"]

#: Auxiliary classifiers that the components build without (they change the output type).
_AUX_MODULES = ("AuxLogits", "aux1", "aux2")


def under(key: str, prefix: str | Sequence[str]) -> bool:
    """Whether parameter ``key`` belongs to module ``prefix`` (or one of several)."""
    if not isinstance(prefix, str):
        return any(under(key, p) for p in prefix)
    return key == prefix or key.startswith(prefix + ".")


def load_weights(
    model: nn.Module, state: dict[str, torch.Tensor], head: str | Sequence[str], where: str
) -> list[str]:
    """Load ``state`` into ``model``; head tensors whose shapes differ (another
    class count) are skipped, so the head keeps its fresh initialization.

    :returns: the names of the head tensors skipped.
    :raises ConfigError: other tensors are missing, unexpected or misshapen.
    """
    own = model.state_dict()
    skipped = [
        k for k, v in state.items() if under(k, head) and k in own and own[k].shape != v.shape
    ]
    metadata = getattr(state, "_metadata", None)
    state = OrderedDict(
        (k, v)
        for k, v in state.items()
        if k not in skipped and not (k.split(".")[0] in _AUX_MODULES and k not in own)
    )
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).strip().splitlines()[1:3]]
        raise ConfigError(f"{where}: do not fit the model: {'; '.join(lines) or e}") from None
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise ConfigError(f"{where}: do not fit the model: {detail}")
    return skipped


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``Conv2d`` (the stem) and its module name."""
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return path, module
    raise ConfigError(f"{type(model).__name__} has no convolution to adapt")


def adapt_first_conv(model: nn.Module, in_channels: int, *, pretrained: bool, name: str) -> None:
    """Replace the first convolution with one taking ``in_channels`` channels.

    Its filters are derived from the RGB ones: pretrained filters are summed
    (one channel) or repeated and scaled by 3/in_channels, which keeps the
    response to a gray image; random ones are repeated as they are.
    """
    path, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ConfigError(
            f"model '{name}': cannot adapt its first convolution ({path}) to {in_channels} "
            "input channels; convert the images to RGB (transform 'rgb') instead"
        )
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        weight = conv.weight
        if pretrained and in_channels == 1:
            new.weight.copy_(weight.sum(dim=1, keepdim=True))
        else:
            repeats = math.ceil(in_channels / weight.shape[1])
            tiled = weight.repeat(1, repeats, 1, 1)[:, :in_channels]
            new.weight.copy_(tiled * (weight.shape[1] / in_channels) if pretrained else tiled)
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    model.set_submodule(path, new)


def freeze_all_but(model: nn.Module, head: str | Sequence[str]) -> None:
    """Stop gradients for every parameter outside module ``head`` (or modules)."""
    for key, parameter in model.named_parameters():
        parameter.requires_grad_(under(key, head))


class FitInput:
    """A forward pre-hook resizing inputs the architecture cannot take.

    ``exact``: the only size the model takes (ViT, MaxViT); ``minimum``:
    the smallest side it takes (inputs below are scaled up, keeping their
    aspect ratio).
    """

    def __init__(self, *, exact: tuple[int, int] | None = None, minimum: int = 1) -> None:
        self.exact = exact
        self.minimum = minimum

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """The size inputs of ``height`` x ``width`` are resized to."""
        if self.exact is not None:
            return self.exact
        if min(height, width) >= self.minimum:
            return height, width
        scale = self.minimum / min(height, width)
        return max(self.minimum, math.ceil(height * scale)), max(
            self.minimum, math.ceil(width * scale)
        )

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        size = self.size_for(*x.shape[-2:])
        if tuple(x.shape[-2:]) == size:
            return None
        return (F.interpolate(x, size=size, mode="bilinear", align_corners=False), *args[1:])

    def __repr__(self) -> str:
        return f"FitInput(exact={self.exact}, minimum={self.minimum})"
