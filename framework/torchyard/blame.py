"""Whose mistake is an exception? The component whose code raised it.

An exception escaping a run is a bug somewhere. When the innermost frames
of its traceback belong to a component's module (a model's forward, a
metric's update, a writer's write, ...), it is that component's, and the
user is told so in one line naming the component, its plugin and
distribution -- not shown a traceback that reads like torchyard's bug
(``TORCHYARD_DEBUG=1`` shows it). An exception from torchyard's own code
stays a bug report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from torchyard.errors import PluginError, TorchyardError

__all__ = ["blame", "reraise_blamed"]


def _module_of(record: Any) -> str | None:
    ref = record.factory_ref
    if isinstance(ref, str):
        return ref.partition(":")[0]
    return getattr(ref, "__module__", None)


def _frames(tb: TracebackType | None) -> list[str]:
    modules = []
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return modules


def blame(error: BaseException, specs: Iterable[Any]) -> PluginError | None:
    """A :class:`PluginError` naming the component whose module raised
    ``error`` (the innermost such frame), or None when none did."""
    owners: dict[str, Any] = {}
    for spec in specs:
        module = _module_of(spec.record)
        if module and not module.startswith(("torchyard.", "torch.", "torchvision.")) and module != "torchyard":
            owners.setdefault(module, spec.record)
    for module in reversed(_frames(error.__traceback__)):
        record = owners.get(module)
        if record is not None:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            what = f"{type(error).__name__}: {message}" if message else type(error).__name__
            return PluginError(f"{record.kind} '{record.name}' from plugin {record.source} failed: {what[:300]}")
    return None


def reraise_blamed(specs: Iterable[Any]) -> None:
    """In an ``except`` block: raise the current exception as its
    component's :class:`PluginError` if a component raised it (chained)."""
    error = sys.exc_info()[1]
    if error is None or not isinstance(error, Exception) or isinstance(error, TorchyardError):
        return
    blamed = blame(error, specs)
    if blamed is not None:
        raise blamed from error
