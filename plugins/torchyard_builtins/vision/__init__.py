"""Every torchvision classification model, as a model component.

The list is written out (not discovered by importing torchvision) so that
listing stays fast; a test compares it with
``torchvision.models.list_models(module=torchvision.models)`` so a new
model is noticed. Each name's factory comes from one module,
:mod:`torchyard_builtins.vision.factory`, imported on first use.

What every model takes (see :func:`~torchyard_builtins.vision.factory.build_model`):

- ``num_classes`` and ``in_channels`` from the data; the classifier head
  is sized for ``num_classes``, and a first convolution for other than 3
  channels is adapted (pretrained RGB filters are summed or repeated).
- ``pretrained: true`` loads torchvision's ImageNet weights from the local
  torch hub cache only (``<torch.hub.get_dir()>/checkpoints/<file>``, the
  file named in the weights' URL), or ``weights_path`` loads any local
  state dict. Nothing is ever downloaded; a missing file is an error that
  names the expected path and how to get it.
- ``freeze_backbone: true`` trains only the head. For per-module learning
  rates use ``optimizer.param_groups`` with the model's module names as
  prefixes: the head is ``fc`` (ResNet, RegNet, ShuffleNet, GoogLeNet,
  Inception), ``classifier`` (EfficientNet, ConvNeXt, MobileNet, MNASNet,
  DenseNet, VGG, AlexNet, SqueezeNet, MaxViT), ``head`` (Swin) or
  ``heads`` (ViT); each model's description names its head.

Inputs smaller than an architecture can take (32x32 for VGG and ConvNeXt,
75x75 for Inception v3, ...), or not the fixed size of ViT and MaxViT, are
resized inside the model unless ``fit_input: false``.
"""

from __future__ import annotations

from typing import Any

import torchyard

#: family -> (display name, the head's module name)
FAMILIES: dict[str, tuple[str, str]] = {
    "alexnet": ("AlexNet", "classifier"),
    "convnext": ("ConvNeXt", "classifier"),
    "densenet": ("DenseNet", "classifier"),
    "efficientnet": ("EfficientNet", "classifier"),
    "googlenet": ("GoogLeNet", "fc"),
    "inception": ("Inception v3", "fc"),
    "maxvit": ("MaxViT", "classifier"),
    "mnasnet": ("MNASNet", "classifier"),
    "mobilenet": ("MobileNet", "classifier"),
    "regnet": ("RegNet", "fc"),
    "resnet": ("ResNet", "fc"),
    "shufflenet": ("ShuffleNet v2", "fc"),
    "squeezenet": ("SqueezeNet", "classifier"),
    "swin": ("Swin Transformer", "head"),
    "vgg": ("VGG", "classifier"),
    "vit": ("Vision Transformer", "heads"),
}

_SERIES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet",),
    "convnext": tuple(f"convnext_{s}" for s in ("tiny", "small", "base", "large")),
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "efficientnet": (
        *(f"efficientnet_b{i}" for i in range(8)),
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
    ),
    "googlenet": ("googlenet",),
    "inception": ("inception_v3",),
    "maxvit": ("maxvit_t",),
    "mnasnet": ("mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"),
    "mobilenet": ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"),
    "regnet": tuple(
        f"regnet_{kind}_{size}"
        for kind, sizes in (
            ("x", ("400mf", "800mf", "1600mf", "3200mf", "8gf", "16gf", "32gf")),
            ("y", ("400mf", "800mf", "1600mf", "3200mf", "8gf", "16gf", "32gf", "128gf")),
        )
        for size in sizes
    ),
    "resnet": (
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    ),
    "shufflenet": tuple(f"shufflenet_v2_{s}" for s in ("x0_5", "x1_0", "x1_5", "x2_0")),
    "squeezenet": ("squeezenet1_0", "squeezenet1_1"),
    "swin": ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"),
    "vgg": tuple(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    "vit": ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
}

#: model name -> family, for every torchvision classification model.
MODELS: dict[str, str] = {name: family for family, names in _SERIES.items() for name in names}

#: Names that differ from torchvision's: torchyard ignores '_' in names, so
#: regnet_x_1_6gf would be regnet_x_16gf; these use RegNet's MFLOP names.
RENAMED: dict[str, str] = {
    f"regnet_{kind}_{mf}": f"regnet_{kind}_{gf}"
    for kind in ("x", "y")
    for mf, gf in (("1600mf", "1_6gf"), ("3200mf", "3_2gf"))
}


def torchvision_name(name: str) -> str:
    """torchvision's name of model ``name``."""
    return RENAMED.get(name, name)


def head_of(name: str) -> str:
    """The module name of a model's classifier head (``fc``, ``classifier``, ...)."""
    return FAMILIES[MODELS[name]][1]


def refinements(factory: Any) -> dict[str, Any]:
    """Name the model's head in the ``freeze_backbone`` description.

    Called on first use, so registering imports neither torch nor pydantic.
    """
    from pydantic import Field

    head = head_of(factory.__name__)
    return {
        "freeze_backbone": Field(
            description=f"Train only the head (module '{head}'); every other parameter is "
            f"frozen. For a lower backbone learning rate instead, use optimizer.param_groups "
            f"(prefix '{head}' for the head)."
        )
    }


@torchyard.hookimpl
def register_models(register: Any) -> None:
    # torchvision's regnet_x_1_6gf reads as regnet_x_16gf here: say so on both
    misread = {tv.replace("_", ""): name for name, tv in RENAMED.items()}
    for name, family in MODELS.items():
        title, head = FAMILIES[family]
        other = misread.get(name.replace("_", ""))
        if name in RENAMED:
            title += f" ({RENAMED[name]} in torchvision)"
        elif other is not None:
            title += f" (for {RENAMED[other]}, say {other})"
        register(
            name,
            f"torchyard_builtins.vision.factory:{name}",
            params=refinements,
            description=f"torchvision {title}; head: {head}.",
        )
