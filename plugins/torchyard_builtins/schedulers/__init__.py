"""Built-in learning-rate schedulers from ``torch.optim.lr_scheduler``.

Each declares when it steps (``interval``) and which of its parameters are
durations (they then accept ``"10 epochs"`` or ``"500 steps"``); the loop
never guesses either from a name.
"""

from __future__ import annotations

from typing import Any

import torchyard

#: name -> (factory, interval, duration parameters, description)
SCHEDULERS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "step_lr": (
        "torch.optim.lr_scheduler:StepLR",
        "epoch",
        ("step_size",),
        "Multiply the LR by gamma every step_size.",
    ),
    "multi_step_lr": (
        "torch.optim.lr_scheduler:MultiStepLR",
        "epoch",
        ("milestones",),
        "Multiply the LR by gamma at each milestone.",
    ),
    "exponential_lr": (
        "torch.optim.lr_scheduler:ExponentialLR",
        "epoch",
        (),
        "Multiply the LR by gamma every epoch (or step, with interval: step).",
    ),
    "cosine_annealing_lr": (
        "torch.optim.lr_scheduler:CosineAnnealingLR",
        "epoch",
        ("T_max",),
        "Cosine decay from the initial LR to eta_min over T_max (default: the whole run).",
    ),
    "cosine_annealing_warm_restarts": (
        "torch.optim.lr_scheduler:CosineAnnealingWarmRestarts",
        "epoch",
        ("T_0",),
        "Cosine decay restarted every T_0, each period T_mult times longer (SGDR).",
    ),
    "one_cycle_lr": (
        "torchyard_builtins.schedulers.one_cycle:one_cycle_lr",
        "step",
        ("total_steps",),
        "One-cycle policy: warm up to max_lr, then anneal; spans the whole run by default.",
    ),
    "linear_lr": (
        "torch.optim.lr_scheduler:LinearLR",
        "epoch",
        ("total_iters",),
        "Scale the LR linearly from start_factor to end_factor over total_iters.",
    ),
    "polynomial_lr": (
        "torch.optim.lr_scheduler:PolynomialLR",
        "epoch",
        ("total_iters",),
        "Decay the LR to zero polynomially over total_iters.",
    ),
    "reduce_lr_on_plateau": (
        "torch.optim.lr_scheduler:ReduceLROnPlateau",
        "metric",
        (),
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
        "step_size": Field(description="Time between two LR decays."),
        "T_max": Field(description="Length of the cosine decay."),
        "T_0": Field(description="Length of the first cosine period."),
        "total_iters": Field(description="Length of the schedule."),
        "milestones": Field(description="When to decay, each a duration from the start."),
        "factor": Field(gt=0, lt=1, description="Factor the LR is multiplied by on a plateau."),
        "patience": Field(ge=0, description="Epochs without improvement before reducing."),
    }.items():
        if key in accepted:
            refine[key] = field
    return refine


@torchyard.hookimpl
def register_schedulers(register: Any) -> None:
    for name, (factory, interval, durations, description) in SCHEDULERS.items():
        register(
            name,
            factory,
            params=refinements,
            description=description,
            interval=interval,
            durations=durations,
        )
