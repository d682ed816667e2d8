"""Every ``torch.optim`` optimizer, registered by import path.

The list is written out (not discovered by importing torch) so that listing
stays fast; a test checks it against ``torch.optim`` so a new torch
optimizer is noticed. Schemas are derived from each class's signature and
docstring, refined with the constraints torch itself enforces.
"""

from __future__ import annotations

from typing import Any

import torchyard

#: name -> (torch.optim class, one-line description)
OPTIMIZERS: dict[str, tuple[str, str]] = {
    "sgd": ("SGD", "Stochastic gradient descent, with momentum and Nesterov."),
    "adam": ("Adam", "Adam: adaptive moment estimation."),
    "adamw": ("AdamW", "Adam with decoupled weight decay."),
    "adamax": ("Adamax", "Adamax: Adam with the infinity norm."),
    "nadam": ("NAdam", "Adam with Nesterov momentum."),
    "radam": ("RAdam", "Rectified Adam."),
    "rmsprop": ("RMSprop", "RMSprop: divide by a running average of squared gradients."),
    "adagrad": ("Adagrad", "Adagrad: per-parameter rates from accumulated squared gradients."),
    "adadelta": ("Adadelta", "Adadelta: Adagrad with a decaying window."),
    "adafactor": ("Adafactor", "Adafactor: factored second moments, memory-light."),
    "asgd": ("ASGD", "Averaged stochastic gradient descent."),
    "rprop": ("Rprop", "Resilient backpropagation (full-batch)."),
    "muon": ("Muon", "Muon: orthogonalized momentum for 2-D weight matrices."),
}

#: torch.optim classes a config-driven loop cannot use as they are.
UNSUPPORTED = {
    "LBFGS": "needs a closure that re-evaluates the loss",
    "SparseAdam": "needs sparse gradients",
}

def refinements(factory: Any) -> dict[str, Any]:
    """Constraints for the parameters ``factory`` has; torch's implementation
    switches (foreach, fused, ...) are hidden: they are not training choices.

    Called on first use, so registering imports neither torch nor pydantic.
    """
    import inspect

    from pydantic import Field

    constraints = {
        "lr": Field(gt=0, description="Learning rate."),
        "weight_decay": Field(ge=0, description="Weight decay (L2 penalty; decoupled in AdamW)."),
        "momentum": Field(ge=0, description="Momentum factor."),
        "eps": Field(gt=0, description="Term added to the denominator for numerical stability."),
    }
    accepted = inspect.signature(factory).parameters
    refine: dict[str, Any] = {k: v for k, v in constraints.items() if k in accepted}
    for switch in ("foreach", "capturable", "differentiable", "fused"):
        if switch in accepted:
            refine[switch] = None
    return refine


@torchyard.hookimpl
def register_optimizers(register: Any) -> None:
    for name, (class_name, description) in OPTIMIZERS.items():
        register(
            name,
            f"torch.optim:{class_name}",
            params=refinements,
            description=description,
        )
