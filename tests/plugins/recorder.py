"""A lifecycle-hook plugin that records every call, for loop tests."""

from __future__ import annotations

from typing import Any

import torchyard

CALLS: list[tuple[str, Any]] = []


@torchyard.hookimpl
def on_run_start(run: Any) -> None:
    CALLS.append(("on_run_start", run.monitor))


@torchyard.hookimpl
def on_validation_end(epoch: int, metrics: Any) -> None:
    CALLS.append(("on_validation_end", (epoch, dict(metrics))))


@torchyard.hookimpl
def on_epoch_end(epoch: int, metrics: Any) -> None:
    CALLS.append(("on_epoch_end", (epoch, dict(metrics))))


@torchyard.hookimpl
def on_run_end(summary: Any) -> None:
    CALLS.append(("on_run_end", dict(summary)))
