"""torchvision.transforms.v2 as transform components: the static list, schemas, use."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torchvision.transforms import v2

from torchyard.data import Compose
from torchyard.plugins import PluginHost
from torchyard_builtins.transforms import EXCLUDED, TRANSFORMS

#: Params for transforms that require some (or whose defaults do nothing).
EXAMPLES: dict[str, dict[str, Any]] = {
    "resize": {"size": 16},
    "center_crop": {"size": 16},
    "random_crop": {"size": 24, "padding": 4},
    "random_resized_crop": {"size": [16, 20]},
    "random_rotation": {"degrees": 15, "interpolation": "bilinear"},
    "random_affine": {"degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
    "pad": {"padding": 2},
    "random_resize": {"min_size": 16, "max_size": 40},
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1},
    "gaussian_blur": {"kernel_size": 3},
    "random_posterize": {"bits": 4},
    "random_solarize": {"threshold": 128},
    "random_adjust_sharpness": {"sharpness_factor": 2.0},
    "jpeg": {"quality": 50},
    "auto_augment": {"policy": "cifar10"},
    "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}
#: Transforms of float images only.
FLOAT_INPUT = {"normalize", "gaussian_noise"}
#: What a config for image classification needs to find.
IMPORTANT = {
    "resize", "center_crop", "random_crop", "random_resized_crop", "random_horizontal_flip",
    "random_vertical_flip", "random_rotation", "random_affine", "color_jitter",
    "random_grayscale", "gaussian_blur", "random_erasing", "normalize", "to_image", "to_dtype",
    "trivial_augment_wide", "rand_augment", "auto_augment", "aug_mix", "rgb",
}  # fmt: skip


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost()
    host.load_entrypoints()
    return host


def build(host: PluginHost, name: str, **params: Any) -> Any:
    record = host.registry.get("transform", name)
    validated = record.params.model_validate(params)
    return record.build(**{k: getattr(validated, k) for k in validated.model_fields_set})


def v2_transforms() -> set[str]:
    return {n for n, c in vars(v2).items() if inspect.isclass(c) and issubclass(c, v2.Transform)}


def test_the_static_list_names_torchvision_classes() -> None:
    classes = v2_transforms()
    listed = {class_name for class_name, _, _ in TRANSFORMS.values()}
    assert listed <= classes, listed - classes
    assert classes - listed - set(EXCLUDED) == set(), "register (or exclude) the new transforms"
    assert not listed & set(EXCLUDED)
    assert set(TRANSFORMS) >= IMPORTANT


@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_builds_and_applies(host: PluginHost, name: str) -> None:
    transform = build(host, name, **EXAMPLES.get(name, {}))
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    if name in FLOAT_INPUT:
        image = image.float() / 255
    out = transform(image)
    assert isinstance(out, torch.Tensor)
    assert out.ndim == 3 and out.shape[0] in (1, 3) and min(out.shape[1:]) > 0
    assert type(transform).__name__ == TRANSFORMS[name][0]


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_parameter_is_documented(host: PluginHost, name: str) -> None:
    params = host.registry.get("transform", name).params
    for field, info in params.model_fields.items():
        assert info.description, f"{name}.{field}"
    params.model_json_schema()


def test_a_training_pipeline(host: PluginHost) -> None:
    pipeline = Compose(
        [
            build(host, "random_resized_crop", size=24, scale=[0.5, 1.0]),
            build(host, "random_horizontal_flip"),
            build(host, "trivial_augment_wide"),
            build(host, "to_dtype", dtype="float32", scale=True),
            build(host, "normalize", mean=[0.5] * 3, std=[0.5] * 3),
            build(host, "random_erasing", p=1.0),
        ]
    )
    out = pipeline(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_to_dtype_takes_a_name(host: PluginHost) -> None:
    image = torch.full((3, 4, 4), 255, dtype=torch.uint8)
    assert build(host, "to_dtype", dtype="float32", scale=True)(image).max() == 1.0
    assert build(host, "to_dtype", dtype="float16")(image).dtype == torch.float16
    with pytest.raises(ValidationError):
        build(host, "to_dtype", dtype="float33")


def test_schemas_hide_what_a_config_cannot_use(host: PluginHost) -> None:
    fields = host.registry.get("transform", "random_erasing").params.model_fields
    assert "inplace" not in fields and "p" in fields
    fields = host.registry.get("transform", "resize").params.model_fields
    assert "nearest" in (fields["interpolation"].description or "")
    with pytest.raises(ValidationError):
        build(host, "random_horizontal_flip", p=1.5)
    with pytest.raises(ValidationError):
        build(host, "auto_augment", policy="mnist")
    assert isinstance(build(host, "resize", size=8, interpolation="bicubic"), v2.Resize)
