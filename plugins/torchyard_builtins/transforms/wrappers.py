"""Thin wrappers for the transforms whose parameters a config cannot hold as
torchvision declares them: a ``torch.dtype``, an enum, "a number or a
sequence". Each takes plain values and returns the torchvision transform."""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

__all__ = ["auto_augment", "random_affine", "random_rotation", "to_dtype"]

Interpolation = Literal[
    "nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos"
]
DType = Literal[
    "float32", "float64", "float16", "bfloat16", "uint8", "int8", "int16", "int32", "int64"
]


def to_dtype(dtype: DType = "float32", scale: bool = False) -> v2.ToDtype:
    """Convert images to a dtype.

    :param dtype: the dtype, by name: float32, float16, bfloat16, uint8, ...
    :param scale: rescale the values to the new dtype's range (uint8 0..255
        becomes float 0..1); without it the values are only cast.
    """
    return v2.ToDtype(getattr(torch, dtype), scale=scale)


def random_rotation(
    degrees: float | list[float],
    interpolation: Interpolation = "nearest",
    expand: bool = False,
    center: list[float] | None = None,
    fill: float | list[float] = 0,
) -> v2.RandomRotation:
    """Rotate by a random angle.

    :param degrees: the range of angles: d for [-d, d], or [min, max].
    :param interpolation: how pixels are interpolated.
    :param expand: grow the output to hold the whole rotated image.
    :param center: the center of rotation [x, y]; default: the image center.
    :param fill: value of pixels outside the image.
    """
    return v2.RandomRotation(
        degrees,
        interpolation=InterpolationMode(interpolation),
        expand=expand,
        center=center,
        fill=fill,
    )


def random_affine(
    degrees: float | list[float],
    translate: list[float] | None = None,
    scale: list[float] | None = None,
    shear: float | list[float] | None = None,
    interpolation: Interpolation = "nearest",
    fill: float | list[float] = 0,
    center: list[float] | None = None,
) -> v2.RandomAffine:
    """Random rotation, translation, scaling and shear.

    :param degrees: the range of rotation angles: d for [-d, d], or [min, max]; 0 for none.
    :param translate: the largest shift as fractions of the size, [x, y]; default: none.
    :param scale: the range of the scale factor, [min, max]; default: unscaled.
    :param shear: the range of shear angles: s for [-s, s] along x, [min, max],
        or [xmin, xmax, ymin, ymax]; default: none.
    :param interpolation: how pixels are interpolated.
    :param fill: value of pixels outside the image.
    :param center: the center of rotation [x, y]; default: the image center.
    """
    return v2.RandomAffine(
        degrees,
        translate=translate,
        scale=scale,
        shear=shear,
        interpolation=InterpolationMode(interpolation),
        fill=fill,
        center=center,
    )


def auto_augment(
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet",
    interpolation: Interpolation = "nearest",
    fill: float | list[float] | None = None,
) -> v2.AutoAugment:
    """AutoAugment with one of the policies learned on a dataset.

    :param policy: the policy: imagenet, cifar10 or svhn.
    :param interpolation: how pixels are interpolated.
    :param fill: value of pixels outside the image.
    """
    return v2.AutoAugment(
        v2.AutoAugmentPolicy(policy), interpolation=InterpolationMode(interpolation), fill=fill
    )
