"""One factory for every torchvision classification model.

``torchyard_builtins.vision.factory:resnet18`` (any name of
:data:`~torchyard_builtins.vision.MODELS`) is :func:`build_model` with the
name bound, with the same documented signature, so the registry derives
its params schema from it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import torchvision
from pydantic import Field
from torch import nn

from torchyard.errors import ConfigError
from torchyard_builtins.vision import FAMILIES, MODELS, head_of, torchvision_name
from torchyard_builtins.vision.surgery import (
    FitInput,
    adapt_first_conv,
    first_conv,
    freeze_all_but,
    load_weights,
)
from torchyard_builtins.vision.weights import find_weights, load_state_dict

__all__ = ["build_model", "MIN_SIZE"]

#: The smallest input side each family (or model) takes; others take any size.
MIN_SIZE: dict[str, int] = {
    "alexnet": 63,
    "convnext": 32,
    "densenet": 29,
    "googlenet": 15,
    "inception": 75,
    "squeezenet1_0": 21,
    "squeezenet1_1": 17,
    "swin": 4,
    "vgg": 32,
}

_MAXVIT_GRID = 224  # MaxViT takes multiples of 224 only (7x7 partitions at stride 32)


def build_model(
    name: str,
    num_classes: Annotated[int | None, Field(ge=1)] = None,
    in_channels: Annotated[int | None, Field(ge=1)] = None,
    input_shape: list[int] | None = None,
    pretrained: bool = False,
    weights: str = "DEFAULT",
    weights_path: Path | None = None,
    freeze_backbone: bool = False,
    fit_input: bool = True,
) -> nn.Module:
    """Build torchvision model ``name`` for ``num_classes`` classes.

    :param name: the model name, e.g. resnet18.
    :param num_classes: Number of classes (outputs of the head); default: from the data.
    :param in_channels: Input channels; default: from the data, else 3. Other than 3
        replaces the first convolution (pretrained RGB filters are summed or repeated).
    :param input_shape: Shape of one input, [channels, height, width]; default: from
        the data. Sets ViT's image size when it is not pretrained.
    :param pretrained: Load torchvision's ImageNet weights from the local torch hub
        cache, <torch hub dir>/checkpoints/<file name of the weights' URL>; nothing is
        ever downloaded.
    :param weights: Which torchvision weights pretrained loads: DEFAULT, or a name
        such as IMAGENET1K_V1.
    :param weights_path: A local state dict (or torchyard checkpoint) to load instead
        of torchvision's file; implies pretrained. Head tensors sized for another
        class count are skipped (the head starts fresh).
    :param freeze_backbone: Train only the classifier head; every other parameter is frozen.
    :param fit_input: Resize inputs the architecture cannot take (below its minimum
        size, or not the fixed size of ViT and MaxViT) inside the model; false: such
        inputs fail.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown torchvision model '{name}'")
    if num_classes is None:
        raise ValueError("num_classes must be given or come from the data")
    in_channels = in_channels or 3
    family, head = MODELS[name], head_of(name)
    where = f"model '{name}'"
    state: dict[str, torch.Tensor] | None = None
    if pretrained or weights_path is not None:
        path, member = find_weights(name, weights, weights_path)
        state = load_state_dict(path, name)
        where = f"{where}: weights {path}" + (f" ({member})" if member is not None else "")
    side = _data_size(input_shape)
    kwargs, exact = _builder_kwargs(name, family, num_classes, in_channels, side, state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
        model = torchvision.models.get_model(torchvision_name(name), **kwargs)
    if state is not None:
        stem, _ = first_conv(model)
        stem_weight = state.get(f"{stem}.weight")
        if stem_weight is not None and stem_weight.shape[1] == in_channels:
            adapt_first_conv(model, in_channels, pretrained=False, name=name)
        load_weights(model, state, head, where)
    adapt_first_conv(model, in_channels, pretrained=state is not None, name=name)
    if freeze_backbone:
        freeze_all_but(model, head)
    minimum = MIN_SIZE.get(name, MIN_SIZE.get(family, 1))
    fit = FitInput(exact=exact) if exact else FitInput(minimum=minimum) if minimum > 1 else None
    if fit is not None and fit_input:
        model.register_forward_pre_hook(fit)
        if side is not None and fit.size_for(*side) != side:
            height, width = fit.size_for(*side)
            warnings.warn(
                f"{where}: inputs of {side[0]}x{side[1]} are resized to {height}x{width} inside "
                "the model; resize them in the transforms to choose how",
                stacklevel=2,
            )
    return model


def _data_size(input_shape: Sequence[int] | None) -> tuple[int, int] | None:
    if input_shape is None or len(input_shape) < 2:
        return None
    return int(input_shape[-2]), int(input_shape[-1])


def _builder_kwargs(
    name: str,
    family: str,
    num_classes: int,
    in_channels: int,
    side: tuple[int, int] | None,
    state: dict[str, torch.Tensor] | None,
) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The torchvision builder's arguments, and the exact input size if it has one."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    loading = state is not None
    if family in ("googlenet", "inception"):
        # no auxiliary heads: in training mode they change what forward returns
        kwargs.update(
            aux_logits=False,
            init_weights=not loading,
            transform_input=loading and in_channels == 3,  # as torchvision's pretrained ones
        )
    if family == "vit":
        patch = int(name.rsplit("_", 1)[1])
        pos = None if state is None else state.get("encoder.pos_embedding")
        if pos is not None:
            image = math.isqrt(pos.shape[1] - 1) * patch
        else:
            image = math.ceil(max(side or (224, 224)) / patch) * patch
        kwargs["image_size"] = image
        return kwargs, (image, image)
    if family == "maxvit":
        size = side if side and all(s % _MAXVIT_GRID == 0 for s in side) else None
        kwargs["input_size"] = size or (_MAXVIT_GRID, _MAXVIT_GRID)
        return kwargs, kwargs["input_size"]
    return kwargs, None


# -- one factory per model name ------------------------------------------------

_SIGNATURE = inspect.signature(build_model)
_DOC = inspect.getdoc(build_model) or ""
_PARAM_DOC = _DOC[_DOC.index(":param num_classes:") :]
_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def _factory(name: str) -> Callable[..., nn.Module]:
    title, head = FAMILIES[MODELS[name]]

    def factory(**params: Any) -> nn.Module:
        return build_model(name, **params)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"torchvision {title} {name}; head module '{head}'.\n\n{_PARAM_DOC}"
    factory.__signature__ = _SIGNATURE.replace(  # type: ignore[attr-defined]
        parameters=list(_SIGNATURE.parameters.values())[1:]
    )
    factory.__annotations__ = {k: v for k, v in build_model.__annotations__.items() if k != "name"}
    return factory


def __getattr__(attribute: str) -> Callable[..., nn.Module]:
    if attribute not in MODELS:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
    if attribute not in _FACTORIES:
        _FACTORIES[attribute] = _factory(attribute)
    return _FACTORIES[attribute]


def __dir__() -> list[str]:
    return sorted([*globals(), *MODELS])
