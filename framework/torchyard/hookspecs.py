"""Hook specifications: the one place every torchyard hook is specified.

The registration hooks (``register_models``, ...) are generated from the
table of component kinds, :mod:`torchyard.kinds`, which documents each; the
lifecycle hooks are written out below. A plugin is a module (or object) with functions decorated by
``@torchyard.hookimpl`` and named after one of the specs below. Plugins are
found through the ``torchyard`` entry-point group; torchyard's own built-in
components register through that very group.

Hooks are called with keyword arguments, so an implementation may accept any
subset of a spec's arguments (``def register_losses(register)`` and
``def on_run_end()`` are both fine), and specs can grow new arguments without
breaking existing plugins.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from torchyard import kinds

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torchyard.kinds import Kind
    from torchyard.registry import Register
    from torchyard.run import Run

__all__ = ["PROJECT", "hookimpl", "hookspec", "REGISTRATION_HOOKS"]

PROJECT = "torchyard"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------
# Registration hooks
#
# One per component kind, generated from the table of kinds
# (:data:`torchyard.kinds.TABLE`), which holds each hook's name and
# documentation. Each receives a ``register`` callback and calls it once per
# component:
#
#     register(name, factory, *, params=None, description=None, **options)
#
# ``factory`` is a callable or an import path ``"package.module:attribute"``.
# Prefer the import path: it is imported only when the component is used, so
# ``torchyard list`` stays fast and never imports torch. ``params`` is a
# pydantic model of the factory's keyword parameters; when omitted it is
# derived from the factory's signature, type hints and docstring.
# --------------------------------------------------------------------------


def _registration_spec(kind: Kind) -> Callable[[Register], None]:
    """The hook spec of ``kind``: a function named after its hook, documented by its doc."""

    def spec(register: Register) -> None:
        pass

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__doc__ = inspect.cleandoc(kind.doc)
    spec.__module__ = __name__
    return hookspec(spec)


for _kind in kinds.TABLE:
    globals()[_kind.hook] = _registration_spec(_kind)
del _kind

#: Registration hook name for each component kind, in display order.
REGISTRATION_HOOKS: dict[str, str] = {kind.name: kind.hook for kind in kinds.TABLE}


# --------------------------------------------------------------------------
# Lifecycle hooks
#
# Called by the training loop, for logging and callbacks. They observe the
# run; an exception raised by one stops the run with a one-line error naming
# the plugin and the hook (TORCHYARD_DEBUG=1 shows the traceback).
# --------------------------------------------------------------------------


@hookspec
def on_run_start(run: Run) -> None:
    """Called once before the first epoch, after everything has been built.

    :param run: the run: its config, output directory, model and components.
    """


@hookspec
def on_epoch_end(run: Run, epoch: int, metrics: Mapping[str, float]) -> None:
    """Called after each epoch, once validation has run.

    :param run: the run.
    :param epoch: the epoch that just ended, counting from 1.
    :param metrics: every value logged for this epoch (``train/loss``,
        ``val/loss``, ``val/<metric>``, ``lr``, ...), the row written to
        ``metrics.csv``.
    """


@hookspec
def on_validation_end(run: Run, epoch: int, metrics: Mapping[str, float]) -> None:
    """Called after each validation pass.

    :param run: the run.
    :param epoch: the epoch whose model was validated, counting from 1.
    :param metrics: the validation values (``val/loss``, ``val/<metric>``).
    """


@hookspec
def on_run_end(run: Run, summary: Mapping[str, Any]) -> None:
    """Called once after training, prediction and writing finish.

    :param run: the run.
    :param summary: the best monitored value, its epoch, the best and last
        checkpoint paths, the submission path, and the final metrics.
    """
