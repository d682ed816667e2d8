"""A plugin whose params model pydantic cannot complete (a forward reference to nothing)."""

from typing import Any

from pydantic import BaseModel

import torchyard


class Params(BaseModel):
    shape: "Undefined" = None  # type: ignore[name-defined]  # noqa: F821 - the mistake under test


@torchyard.hookimpl
def register_losses(register: Any) -> None:
    register("unresolvable", "torch.nn:MSELoss", params=Params, targets="regression")
