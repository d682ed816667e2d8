"""The ``timm`` model component: build a timm classifier, load local weights, freeze.

What it shares with the torchvision models (and takes from
:mod:`torchyard_builtins.vision`): reading a weights file safely, loading it
around the head (head tensors sized for another class count are skipped),
freezing all but the head, and the never-download rule with its message.
What is timm's own: the architecture names, the head's module names
(``pretrained_cfg['classifier']``), adapting pretrained RGB filters to other
input channels, and each architecture's checkpoint filter (which, for one,
resamples a ViT's position embeddings to another image size).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any

# torchyard never downloads: nothing timm or huggingface_hub does in this process
# may reach the network. Set before timm imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"

import timm  # noqa: E402
import torch  # noqa: E402
from pydantic import AfterValidator, Field  # noqa: E402
from timm.models import get_pretrained_cfg, split_model_name_tag  # noqa: E402
from torch import nn  # noqa: E402

from torchyard.errors import ConfigError, did_you_mean  # noqa: E402
from torchyard_builtins.vision.surgery import freeze_all_but, load_weights  # noqa: E402
from torchyard_builtins.vision.weights import (  # noqa: E402
    cached_weights_path,
    load_state_dict,
    local_file,
    not_downloaded,
)

__all__ = ["architectures", "check_arch", "find_pretrained", "head_of", "timm_model"]

#: Keyword arguments of ``timm.create_model`` that the component's own parameters set.
_MANAGED = {"model_name", "num_classes", "in_chans", "pretrained", "pretrained_cfg",
            "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"}  # fmt: skip


@cache
def architectures() -> tuple[str, ...]:
    """Every architecture name of the installed timm, sorted."""
    return tuple(sorted(timm.list_models()))


def check_arch(arch: str) -> str:
    """``arch`` as timm names it (``resnet18``, or ``resnet18.a1_in1k`` with a
    weights tag), lower-cased.

    :raises ValueError: timm has no such architecture or weights tag; the
        message names the closest ones.
    """
    arch = arch.strip().lower()
    name, tag = split_model_name_tag(arch)
    known = architectures()
    if name not in set(known):
        raise ValueError(
            f"unknown timm architecture '{arch}'{did_you_mean(name, known)} "
            f"(`torchyard show model timm` lists the {len(known)} of timm {timm.__version__})"
        )
    if tag:
        tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{name}.*")]
        if tag not in tags:
            offered = ", ".join(tags) if tags else "none"
            raise ValueError(
                f"timm has no weights '{tag}' for {name}{did_you_mean(tag, tags)} (its weights: {offered})"
            )
    return arch


def choices() -> list[str]:
    """The architecture names, for ``torchyard show model timm``."""
    return list(architectures())


def timm_model(
    arch: Annotated[str, AfterValidator(check_arch), Field(json_schema_extra={"choices": choices()})],
    num_classes: Annotated[int | None, Field(ge=1)] = None,
    in_channels: Annotated[int | None, Field(ge=1)] = None,
    input_shape: list[int] | None = None,
    pretrained: bool = False,
    weights_path: Path | None = None,
    freeze_backbone: bool = False,
    drop_rate: Annotated[float | None, Field(ge=0, lt=1)] = None,
    drop_path_rate: Annotated[float | None, Field(ge=0, lt=1)] = None,
    model_kwargs: dict | None = None,  # a bare dict: dict[str, Any] would leave the schema
) -> nn.Module:
    """A timm image classifier, any architecture of the installed timm.

    :param arch: The timm architecture, e.g. resnet18, convnext_tiny, vit_small_patch16_224; a
        weights tag picks pretrained weights (resnet18.a1_in1k). `torchyard show model timm`
        lists every one.
    :param num_classes: Number of classes (outputs of the head); default: from the data.
    :param in_channels: Input channels (timm's in_chans); default: from the data, else 3.
        Pretrained RGB filters of the first convolution are adapted as timm does.
    :param input_shape: Shape of one input, [channels, height, width]; default: from the
        data. Architectures of a fixed input size (ViT, Swin, ...) are built for it.
    :param pretrained: Load timm's pretrained weights (the arch's tag, else its default)
        from the local Hugging Face cache or torch hub cache only; nothing is ever downloaded.
    :param weights_path: A local state dict (.pth, .safetensors or torchyard checkpoint) to
        load instead; implies pretrained. Head tensors sized for another class count are
        skipped (the head starts fresh).
    :param freeze_backbone: Train only the classifier head (timm's pretrained_cfg classifier:
        fc for ResNet, head.fc for ConvNeXt, head for ViT, classifier for EfficientNet); every
        other parameter is frozen. For a lower backbone learning rate instead, use
        optimizer.param_groups with those module names as prefixes.
    :param drop_rate: Dropout before the classifier (timm's drop_rate); default: timm's.
    :param drop_path_rate: Stochastic depth rate (timm's drop_path_rate), for the
        architectures that have it; default: timm's.
    :param model_kwargs: Other keyword arguments of the architecture (e.g. global_pool: avg),
        passed to timm.create_model.
    """
    if num_classes is None:
        raise ValueError("num_classes must be given or come from the data")
    arch = check_arch(arch)
    in_channels = in_channels or 3
    where = f"model 'timm' ({arch})"
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    clash = sorted(set(kwargs) & _MANAGED)
    if clash:
        raise ValueError(f"model_kwargs: {', '.join(clash)} are set by the component's own parameters")
    for key, value in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if value is not None:
            kwargs[key] = value
    cfg = get_pretrained_cfg(arch)
    side = (int(input_shape[-2]), int(input_shape[-1])) if input_shape and len(input_shape) >= 2 else None
    fixed = tuple(cfg.input_size[1:]) if cfg is not None and cfg.fixed_input_size else None
    if fixed and side and side != fixed:  # ViT, Swin, ...: built for the data's size
        kwargs.setdefault("img_size", side)

    state: dict[str, torch.Tensor] | None = None
    if weights_path is not None:
        path = local_file(where, weights_path)
        state = load_state_dict(path, "timm")
    elif pretrained:
        path = find_pretrained(arch, where)
        state = load_state_dict(path, "timm")
    try:
        model = timm.create_model(arch, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except TypeError as e:
        if fixed and side and "img_size" in str(e) and "img_size" not in (model_kwargs or {}):
            raise ConfigError(
                f"{where}: takes {fixed[0]}x{fixed[1]} inputs only, the data's are "
                f"{side[0]}x{side[1]}; resize them (data.image_size: {list(fixed)})"
            ) from None
        raise
    heads = head_of(model)
    if state is not None:
        state = _fit_state(model, state, in_channels, where)
        load_weights(model, state, heads, f"{where}: weights {path}")
    if freeze_backbone:
        freeze_all_but(model, heads)
    return model


def head_of(model: nn.Module) -> tuple[str, ...]:
    """The module names of a timm model's classifier head (two for distilled models)."""
    heads = getattr(model, "pretrained_cfg", {}).get("classifier")
    if heads:
        return (heads,) if isinstance(heads, str) else tuple(heads)
    classifier = model.get_classifier()  # type: ignore[operator]
    return tuple(n for n, m in model.named_modules() if m is classifier and n)


def find_pretrained(arch: str, where: str) -> Path:
    """The local file of timm's pretrained weights for ``arch``: in the Hugging
    Face cache, where ``timm.create_model(arch, pretrained=True)`` puts it, or
    in the torch hub cache for weights timm still fetches by URL.

    :raises ConfigError: timm has no weights for ``arch``, or they are not on
        this machine (the message says where they go and how to get them).
    """
    cfg = get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(
            f"{where}: timm has no pretrained weights for it; set model.weights_path to a local "
            "state dict, or pretrained: false"
        )
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    from huggingface_hub import constants, try_to_load_from_cache

    full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else arch
    looked: list[str] = []
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        for filename in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        looked.append(str(Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"))
    if isinstance(cfg.url, str) and cfg.url:
        cached = cached_weights_path(cfg.url)
        if cached.is_file():
            return cached
        looked.append(str(cached))
    raise not_downloaded(
        where,
        full,
        " or ".join(looked),
        "on a machine with network access run "
        f"`python -c \"import timm; timm.create_model('{full}', pretrained=True)\"` and copy "
        "the files it adds to its Hugging Face cache (the cache follows $HF_HOME) or torch hub "
        "cache ($TORCH_HOME) to the same place here",
    )


def _fit_state(
    model: nn.Module, state: dict[str, torch.Tensor], in_channels: int, where: str
) -> dict[str, torch.Tensor]:
    """``state`` as timm would load it into ``model``: through the
    architecture's checkpoint filter (other checkpoint layouts, other image
    sizes), with pretrained first-convolution filters adapted to
    ``in_channels`` (summed or repeated, as ``timm.models.adapt_input_conv``)."""
    from timm.models import adapt_input_conv

    filter_fn = _checkpoint_filter(model)
    if filter_fn is not None:
        try:
            try:
                state = filter_fn(state, model)
            except TypeError:  # older filters take the state dict only, as timm allows
                state = filter_fn(state)
        except Exception as e:  # noqa: BLE001 - a checkpoint of another architecture
            raise ConfigError(f"{where}: weights do not fit the model: {e}") from None
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    own = model.state_dict()
    for conv in (first,) if isinstance(first, str) else first or ():
        key = f"{conv}.weight"
        weight = state.get(key)
        if weight is None or key not in own or weight.shape == own[key].shape or weight.ndim != 4:
            continue
        if weight.shape[1] != in_channels:
            with contextlib.suppress(NotImplementedError):  # else load_weights reports the mismatch
                state[key] = adapt_input_conv(in_channels, weight)
    return state


def _checkpoint_filter(model: nn.Module) -> Callable[..., Any] | None:
    """The architecture module's ``checkpoint_filter_fn``, timm's convention
    for converting checkpoints on load; None where a module has none."""
    module = importlib.import_module(type(model).__module__)
    found = getattr(module, "checkpoint_filter_fn", None)
    return found if callable(found) else None

