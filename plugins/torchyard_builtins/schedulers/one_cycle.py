"""OneCycleLR with its length and peak taken from the run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from torch.optim.lr_scheduler import OneCycleLR


def one_cycle_lr(
    optimizer: Any,
    max_lr: Annotated[
        float | None, Field(gt=0, description="Peak LR; default: the optimizer's configured lr.")
    ] = None,
    total_steps: Annotated[int | None, Field(ge=1, description="Length of the cycle.")] = None,
    pct_start: Annotated[
        float, Field(gt=0, lt=1, description="Share of the cycle spent increasing the LR.")
    ] = 0.3,
    anneal_strategy: Annotated[
        Literal["cos", "linear"], Field(description="How the LR anneals.")
    ] = "cos",
    div_factor: Annotated[
        float, Field(gt=0, description="Initial LR = max_lr / div_factor.")
    ] = 25.0,
    final_div_factor: Annotated[
        float, Field(gt=0, description="Final LR = initial LR / final_div_factor.")
    ] = 1e4,
    three_phase: Annotated[
        bool, Field(description="Anneal back to the initial LR before the final phase.")
    ] = False,
    cycle_momentum: Annotated[
        bool, Field(description="Cycle momentum inversely to the LR (needs momentum or betas).")
    ] = True,
) -> OneCycleLR:
    """The one-cycle policy (Smith & Topin): up to max_lr, then down to nearly zero."""
    if total_steps is None:
        raise ValueError("total_steps must be given or come from the run")
    peaks = max_lr if max_lr is not None else [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peaks,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )
