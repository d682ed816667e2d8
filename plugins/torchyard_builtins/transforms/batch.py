"""MixUp and CutMix: batch transforms (``transforms.batch``).

The maths of ``torchvision.transforms.v2.MixUp`` and ``CutMix``, written out
because those draw from torch's global random state and take class indices
only: here every draw comes from the generator the loop passes (seeded per
step, so a resumed run mixes alike), and the targets are the task's soft
targets, a float tensor (n, k) of any task that mixes (classes, binary,
multi-label, per-head blocks). A batch is paired with a random permutation
of itself.

- MixUp (Zhang et al., 2018): ``lam ~ Beta(alpha, alpha)``;
  ``x = lam * x + (1 - lam) * x[perm]``, targets alike.
- CutMix (Yun et al., 2019): ``lam ~ Beta(alpha, alpha)``; a box of about
  ``(1 - lam)`` of the image, centred at a uniform point and clipped to the
  image, is pasted from ``x[perm]``; the targets mix with the pasted area's
  true share, ``lam = 1 - box area / image area``.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

__all__ = ["CutMix", "MixUp", "cutmix_box", "mix"]

Alpha = Annotated[
    float, Field(gt=0, le=1000, description="The Beta(alpha, alpha) distribution of the mixing weight lam.")
]
Probability = Annotated[
    float, Field(ge=0, le=1, description="Probability of mixing a batch this transform is picked for.")
]


def beta(alpha: float, generator: torch.Generator) -> float:
    """A draw from Beta(alpha, alpha), from ``generator`` alone (torch's Beta
    sampler takes no generator: numpy's, seeded from it)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(
    inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * x[perm]`` for the inputs and the targets."""
    if not inputs.is_floating_point():
        raise ValueError(f"mixup: inputs must be floats (add to_dtype to transforms.train), got {inputs.dtype}")
    return inputs.lerp(inputs[perm], 1.0 - lam), targets.lerp(targets[perm], 1.0 - lam)


def cutmix_box(lam: float, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """The box ``(x1, y1, x2, y2)`` CutMix pastes: sides ``sqrt(1 - lam)`` of
    the image's, centred at a uniform point, clipped to the image."""
    centre_x = int(torch.randint(width, (), generator=generator))
    centre_y = int(torch.randint(height, (), generator=generator))
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    return (
        max(centre_x - half_w, 0),
        max(centre_y - half_h, 0),
        min(centre_x + half_w, width),
        min(centre_y + half_h, height),
    )


class MixUp:
    """MixUp: blend the batch with a permutation of itself."""

    def __init__(self, alpha: Alpha = 0.2, p: Probability = 1.0) -> None:
        self.alpha, self.p = alpha, p

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if float(torch.rand((), generator=generator)) >= self.p:
            return inputs, targets
        lam = beta(self.alpha, generator)
        perm = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        return mix(inputs, targets, lam, perm)


class CutMix:
    """CutMix: paste a box from a permutation of the batch; targets mix by its area."""

    def __init__(self, alpha: Alpha = 1.0, p: Probability = 1.0) -> None:
        self.alpha, self.p = alpha, p

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.ndim < 3:
            raise ValueError(
                f"cutmix: needs image batches (n, channels, height, width), got inputs of shape {tuple(inputs.shape)}"
            )
        if float(torch.rand((), generator=generator)) >= self.p:
            return inputs, targets
        lam = beta(self.alpha, generator)
        perm = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        height, width = inputs.shape[-2:]
        x1, y1, x2, y2 = cutmix_box(lam, height, width, generator)
        mixed = inputs.clone()
        mixed[..., y1:y2, x1:x2] = inputs[perm][..., y1:y2, x1:x2]
        area = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
        return mixed, targets.lerp(targets[perm], 1.0 - area)
