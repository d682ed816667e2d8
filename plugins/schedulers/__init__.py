"""Built-in learning-rate schedulers from ``torch.optim.lr_scheduler``.

Each declares when it steps (``interval``); the loop never guesses from a
name.
"""

from __future__ import annotations

from typing import Any

import torchyard

#: name -> (torch class, interval, description)
SCHEDULERS: dict[str, tuple[str, str, str]] = {
    "step_lr": ("StepLR", "epoch", "Multiply the LR by gamma every step_size epochs."),
    "multi_step_lr": ("MultiStepLR", "epoch", "Multiply the LR by gamma at each milestone epoch."),
    "exponential_lr": ("ExponentialLR", "epoch", "Multiply the LR by gamma every epoch."),
    "cosine_annealing_lr": (
        "CosineAnnealingLR",
        "epoch",
        "Cosine decay from the initial LR to eta_min over T_max epochs.",
    ),
    "reduce_lr_on_plateau": (
        "ReduceLROnPlateau",
        "metric",
        "Reduce the LR when the monitored value stops improving.",
    ),
}

_HIDDEN = ("last_epoch", "verbose")


def refinements(factory: Any) -> dict[str, Any]:
    """Hide bookkeeping parameters; constrain the common ones."""
    import inspect

    from pydantic import Field

    accepted = inspect.signature(factory).parameters
    refine: dict[str, Any] = {k: None for k in _HIDDEN if k in accepted}
    for key, field in {
        "gamma": Field(gt=0, description="Multiplicative factor of LR decay."),
        "step_size": Field(ge=1, description="Epochs between two LR decays."),
        "T_max": Field(ge=1, description="Epochs of one cosine half-period."),
        "factor": Field(gt=0, lt=1, description="Factor the LR is multiplied by on a plateau."),
        "patience": Field(ge=0, description="Epochs without improvement before reducing."),
    }.items():
        if key in accepted:
            refine[key] = field
    return refine


@torchyard.hookimpl
def register_schedulers(register: Any) -> None:
    for name, (class_name, interval, description) in SCHEDULERS.items():
        register(
            name,
            f"torch.optim.lr_scheduler:{class_name}",
            params=refinements,
            description=description,
            interval=interval,
        )
