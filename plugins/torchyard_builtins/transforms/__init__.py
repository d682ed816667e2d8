"""Image transforms from ``torchvision.transforms.v2``, by snake_case name.

The list is written out (not discovered by importing torchvision) so that
listing stays fast; a test checks it against ``torchvision.transforms.v2``
so a new transform is noticed. Schemas are derived from each class's
signature, with short descriptions and constraints added here. A few
transforms take parameters no config can hold as they are (a dtype, an
enum, "a number or a sequence"); they go through the small wrappers in
:mod:`torchyard_builtins.transforms.wrappers`.

Configs list transforms per split; they apply to one sample's input
(``mixup`` and ``cutmix``, in :mod:`torchyard_builtins.transforms.batch`,
apply to whole training batches: ``transforms.batch``)::

    transforms:
      train:
        - {name: random_resized_crop, size: 224}
        - {name: random_horizontal_flip}
        - {name: to_image}
        - {name: to_dtype, dtype: float32, scale: true}
        - {name: normalize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
"""

from __future__ import annotations

from typing import Any

import torchyard

_WRAPPERS = "torchyard_builtins.transforms.wrappers"

#: name -> (torchvision.transforms.v2 class, wrapper factory or None, description)
TRANSFORMS: dict[str, tuple[str, str | None, str]] = {
    # geometry
    "resize": ("Resize", None, "Resize to a size (an int resizes the smaller edge)."),
    "center_crop": ("CenterCrop", None, "Crop the center to a size."),
    "random_crop": ("RandomCrop", None, "Crop at a random place, optionally after padding."),
    "random_resized_crop": (
        "RandomResizedCrop",
        None,
        "Crop a random area and aspect ratio, then resize (Inception-style).",
    ),
    "random_horizontal_flip": ("RandomHorizontalFlip", None, "Flip left-right with probability p."),
    "random_vertical_flip": ("RandomVerticalFlip", None, "Flip upside down with probability p."),
    "random_rotation": (
        "RandomRotation",
        f"{_WRAPPERS}:random_rotation",
        "Rotate by a random angle.",
    ),
    "random_affine": (
        "RandomAffine",
        f"{_WRAPPERS}:random_affine",
        "Random rotation, translation, scaling and shear.",
    ),
    "random_perspective": ("RandomPerspective", None, "Random perspective distortion."),
    "elastic_transform": ("ElasticTransform", None, "Elastic (displacement-field) distortion."),
    "pad": ("Pad", None, "Pad every border."),
    "random_zoom_out": ("RandomZoomOut", None, "Place the image on a larger canvas (zoom out)."),
    "random_resize": ("RandomResize", None, "Resize to a random size in [min_size, max_size)."),
    # color and photometric
    "color_jitter": (
        "ColorJitter",
        None,
        "Randomly change brightness, contrast, saturation and hue.",
    ),
    "random_photometric_distort": (
        "RandomPhotometricDistort",
        None,
        "Random brightness, contrast, saturation, hue and channel order (SSD-style).",
    ),
    "grayscale": ("Grayscale", None, "Convert to grayscale (1 or 3 output channels)."),
    "random_grayscale": ("RandomGrayscale", None, "Convert to grayscale with probability p."),
    "rgb": ("RGB", None, "Convert to 3-channel RGB (grayscale inputs are repeated)."),
    "gaussian_blur": ("GaussianBlur", None, "Blur with a random-sigma Gaussian kernel."),
    "gaussian_noise": (
        "GaussianNoise",
        None,
        "Add Gaussian noise (float images only: put it after to_dtype).",
    ),
    "random_invert": ("RandomInvert", None, "Invert the colors with probability p."),
    "random_posterize": (
        "RandomPosterize",
        None,
        "Reduce the bits per channel with probability p.",
    ),
    "random_solarize": (
        "RandomSolarize",
        None,
        "Invert pixels above a threshold with probability p.",
    ),
    "random_adjust_sharpness": (
        "RandomAdjustSharpness",
        None,
        "Change the sharpness with probability p.",
    ),
    "random_autocontrast": ("RandomAutocontrast", None, "Maximize contrast with probability p."),
    "random_equalize": ("RandomEqualize", None, "Equalize the histogram with probability p."),
    "random_channel_permutation": (
        "RandomChannelPermutation",
        None,
        "Shuffle the color channels.",
    ),
    "jpeg": (
        "JPEG",
        None,
        "Apply JPEG compression at a (random) quality (uses torchvision's codec, "
        "deprecated since torchvision 0.29).",
    ),
    # augmentation policies
    "auto_augment": (
        "AutoAugment",
        f"{_WRAPPERS}:auto_augment",
        "AutoAugment with a learned policy (imagenet, cifar10 or svhn).",
    ),
    "rand_augment": (
        "RandAugment",
        None,
        "RandAugment: num_ops random operations at one magnitude.",
    ),
    "trivial_augment_wide": (
        "TrivialAugmentWide",
        None,
        "TrivialAugment: one random operation at a random magnitude.",
    ),
    "aug_mix": ("AugMix", None, "AugMix: mix several chains of augmentations."),
    "random_erasing": (
        "RandomErasing",
        None,
        "Erase a random rectangle (on tensors: put it after to_image).",
    ),
    # conversion
    "to_image": ("ToImage", None, "Convert a PIL image or NumPy array to an image tensor (CHW)."),
    "to_dtype": (
        "ToDtype",
        f"{_WRAPPERS}:to_dtype",
        "Convert the image dtype; scale: true maps uint8 0..255 to float 0..1.",
    ),
    "to_pure_tensor": ("ToPureTensor", None, "Unwrap image tensors to plain torch tensors."),
    "normalize": (
        "Normalize",
        None,
        "Subtract a per-channel mean and divide by a std (float images only).",
    ),
}

#: torchvision.transforms.v2 classes not registered, and why.
EXCLUDED: dict[str, str] = {
    "Transform": "the base class",
    "Compose": "configs compose each transforms list already",
    "RandomApply": "takes transforms as arguments",
    "RandomChoice": "takes transforms as arguments",
    "RandomOrder": "takes transforms as arguments",
    "Lambda": "takes a function",
    "LinearTransformation": "takes tensors",
    "Identity": "a no-op",
    "MixUp": "registered as the batch transform mixup (transforms.batch), seeded per step",
    "CutMix": "registered as the batch transform cutmix (transforms.batch), seeded per step",
    "FiveCrop": "returns several crops, not one sample",
    "TenCrop": "returns several crops, not one sample",
    "ToTensor": "deprecated by torchvision: use to_image and to_dtype",
    "ConvertImageDtype": "deprecated by torchvision: use to_dtype",
    "PILToTensor": "to_image covers it",
    "ToPILImage": "the models take tensors",
    "UniformTemporalSubsample": "video only",
    "RandomIoUCrop": "detection only (needs boxes)",
    "RandomShortestSize": "detection-style resizing",
    "ScaleJitter": "detection-style resizing",
    "ClampBoundingBoxes": "detection only",
    "ConvertBoundingBoxFormat": "detection only",
    "SanitizeBoundingBoxes": "detection only",
    "ClampKeyPoints": "keypoints only",
    "SanitizeKeyPoints": "keypoints only",
    "SetClampingMode": "detection only",
}

#: Short descriptions (and constraints) for common parameters, by name.
_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "p": ({"ge": 0, "le": 1}, "Probability of applying the transform."),
    "size": (
        {},
        "Output size: [height, width], or an int (a square; for resize, the smaller edge).",
    ),
    "max_size": ({}, "Upper bound on the longer edge after resizing."),
    "antialias": ({}, "Antialias when downscaling tensors (bilinear and bicubic)."),
    "fill": ({}, "Value of pixels outside the image: a number or one per channel."),
    "padding": ({}, "Padding: one int for every border, [left/right, top/bottom] or [l, t, r, b]."),
    "padding_mode": ({}, "How to pad: constant (fill), edge, reflect or symmetric."),
    "pad_if_needed": ({}, "Pad images smaller than size instead of failing."),
    "brightness": ({}, "Brightness jitter: a factor d (range [1-d, 1+d]) or [min, max]."),
    "contrast": ({}, "Contrast jitter: a factor d (range [1-d, 1+d]) or [min, max]."),
    "saturation": ({}, "Saturation jitter: a factor d (range [1-d, 1+d]) or [min, max]."),
    "hue": ({}, "Hue jitter: h in [0, 0.5] (range [-h, h]) or [min, max]."),
    "kernel_size": ({}, "Size of the Gaussian kernel (odd): an int or [height, width]."),
    "num_ops": ({"ge": 0}, "Number of operations applied in a row."),
    "magnitude": ({"ge": 0}, "Strength of every operation, in bins."),
    "num_magnitude_bins": ({"ge": 2}, "Number of magnitude bins."),
    "num_output_channels": ({}, "1 or 3 output channels."),
    "distortion_scale": ({"ge": 0, "le": 1}, "Strength of the distortion, 0 to 1."),
}

#: Descriptions of parameters whose meaning depends on the transform, by class.
_BY_CLASS: dict[str, dict[str, str]] = {
    "RandomResizedCrop": {
        "scale": "Range of the crop's area, as a fraction of the image: [min, max].",
        "ratio": "Range of the crop's aspect ratio: [min, max].",
    },
    "RandomErasing": {
        "scale": "Range of the erased area, as a fraction of the image: [min, max].",
        "ratio": "Range of the erased rectangle's aspect ratio: [min, max].",
        "value": "Value the erased pixels get.",
    },
    "Normalize": {
        "mean": "Mean of each channel, subtracted.",
        "std": "Standard deviation of each channel, divided by.",
    },
    "GaussianNoise": {
        "mean": "Mean of the noise.",
        "sigma": "Standard deviation of the noise.",
        "clip": "Clip the result to the valid range (0..1 for floats).",
    },
    "GaussianBlur": {
        "sigma": "Standard deviation of the kernel: a number, or [min, max] to draw it from.",
    },
    "ElasticTransform": {
        "alpha": "Magnitude of the displacements: a number or [x, y].",
        "sigma": "Smoothness of the displacements: a number or [x, y].",
    },
}

_INTERPOLATION = (
    "Interpolation: 'nearest', 'nearest-exact', 'bilinear' or 'bicubic' "
    "('box', 'hamming' and 'lanczos' for PIL images only)."
)


def refinements(factory: Any) -> dict[str, Any]:
    """Short descriptions and constraints for the parameters ``factory`` has.

    ``interpolation`` is offered as a string when this torchvision accepts
    strings, else hidden (its default kept); ``inplace`` is hidden: the
    samples a dataset hands out must not be modified in place.
    Called on first use, so registering imports neither torchvision nor pydantic.
    """
    import inspect

    from pydantic import Field

    accepted = inspect.signature(factory).parameters
    refine: dict[str, Any] = {}
    for name, (constraints, description) in _PARAMS.items():
        if name in accepted:
            refine[name] = Field(description=description, **constraints)
    for name, description in _BY_CLASS.get(getattr(factory, "__name__", ""), {}).items():
        if name in accepted:
            refine[name] = Field(description=description)
    if "interpolation" in accepted:
        annotation = str(accepted["interpolation"].annotation)
        takes_strings = "InterpolationMode" not in annotation or "str" in annotation
        refine["interpolation"] = Field(description=_INTERPOLATION) if takes_strings else None
    if "inplace" in accepted:
        refine["inplace"] = None
    return refine


@torchyard.hookimpl
def register_transforms(register: Any) -> None:
    for name, (class_name, wrapper, description) in TRANSFORMS.items():
        register(
            name,
            wrapper or f"torchvision.transforms.v2:{class_name}",
            params=refinements,
            description=description,
        )
    # batch transforms: whole training batches with their soft targets
    register(
        "mixup",
        "torchyard_builtins.transforms.batch:MixUp",
        stage="batch",
        description="MixUp (batch): blend the batch and its targets with a permutation of itself.",
    )
    register(
        "cutmix",
        "torchyard_builtins.transforms.batch:CutMix",
        stage="batch",
        description="CutMix (batch): paste a box from a permutation of the batch; targets mix by area.",
    )
