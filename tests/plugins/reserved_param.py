"""A plugin whose metric has a parameter named like a key torchyard adds (log_as)."""

from typing import Any

import torchyard


def metric_x(log_as: str = "x") -> Any:
    """A metric factory with a reserved parameter name."""
    raise AssertionError("never built")


@torchyard.hookimpl
def register_metrics(register: Any) -> None:
    register("x", metric_x)
