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

    import torch

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
# Called by the training loop, for logging and callbacks: the epoch-level
# hooks below observe the run; the step-level hooks after them may act on it,
# within the contract each states. Implemented by plugins (for every run) or
# by the objects a config's ``callbacks`` section builds (for that run). An
# exception raised by one stops the run with a one-line error naming the
# plugin or callback and the hook (TORCHYARD_DEBUG=1 shows the traceback).
# A hook that nothing implements costs nothing: the loop skips it.
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


# --------------------------------------------------------------------------
# Step-level hooks
#
# They may act, within what each one's contract allows: change gradients in
# place, read or change the weights between steps, keep state of their own in
# checkpoints. ``step`` is the optimizer step count: the number of steps taken
# so far (``on_after_optimizer_step`` sees the step just taken). What a hook
# must not do: replace the model, the optimizer or their parameters (change
# them in place), or start a new optimizer step.
# --------------------------------------------------------------------------


@hookspec
def on_train_epoch_start(run: Run, epoch: int) -> None:
    """Called before the epoch's first training batch (also when a resumed
    run starts part-way through an epoch), with the model in training mode.

    May change the weights in place (an averaging callback puts the training
    weights back here).

    :param run: the run.
    :param epoch: the epoch about to train, counting from 1.
    """


@hookspec
def on_after_backward(run: Run, step: int) -> None:
    """Called once per optimizer step, after the backward pass of the
    step's last (accumulated) batch and before gradient clipping.

    Gradients are unscaled (under mixed precision) and may be read or
    changed in place (``p.grad``); clipping, the non-finite check and the
    optimizer step see what this hook leaves.

    :param run: the run.
    :param step: the optimizer steps taken before this one.
    """


@hookspec
def on_before_optimizer_step(
    run: Run, step: int, optimizer: torch.optim.Optimizer, grad_norm: float | None
) -> None:
    """Called after clipping, just before ``optimizer.step()``.

    :param run: the run.
    :param optimizer: the run's optimizer, about to step.
    :param step: the optimizer steps taken before this one.
    :param grad_norm: the total 2-norm of the gradients before clipping
        (what ``clip_grad_norm_`` returns); computed only when something uses
        it: this hook, ``steps.csv`` on its logging steps, or clipping by norm.
        ``None`` when the step has no gradients.
    """


@hookspec
def on_after_optimizer_step(run: Run, step: int, optimizer: torch.optim.Optimizer) -> None:
    """Called after the optimizer step (and the step-wise LR schedule), with
    gradients already zeroed. May read the updated weights or change them in
    place (an exponential moving average updates its copy here).

    :param run: the run.
    :param optimizer: the run's optimizer, just stepped.
    :param step: the optimizer steps taken so far, this one included.
    """


@hookspec
def on_train_batch_end(run: Run, epoch: int, batch: int, step: int, loss: float) -> None:
    """Called after every training batch (micro-batches too, under gradient
    accumulation).

    :param run: the run.
    :param epoch: the epoch, counting from 1.
    :param batch: the batch's index in the epoch, counting from 0.
    :param step: the optimizer steps taken so far.
    :param loss: the batch's loss (mean over processes under torch.distributed).
    """


@hookspec
def on_train_epoch_end(run: Run, epoch: int) -> None:
    """Called after the epoch's last training batch and before validation.

    May change the weights in place: validation, the best checkpoint and the
    epoch's checkpoints see what this hook leaves (an averaging callback
    swaps its averaged weights in here, and back in ``on_train_epoch_start``).

    :param run: the run.
    :param epoch: the epoch just trained, counting from 1.
    """


@hookspec
def on_step_logged(run: Run, step: int, metrics: Mapping[str, float]) -> None:
    """Called every ``trainer.log_every_n_steps`` optimizer steps with the
    row just added to ``steps.csv``: ``step``, ``epoch``, ``loss`` (the mean
    over the steps since the last row), ``lr`` and ``grad_norm``.

    :param run: the run.
    :param step: the optimizer steps taken so far.
    :param metrics: the row: ``step``, ``epoch``, ``loss``, ``lr``, ``grad_norm``.
    """


@hookspec
def on_save_checkpoint(run: Run, state: dict[str, Any]) -> None:
    """Called whenever a checkpoint is written, to keep the implementer's own
    state in it.

    :param run: the run.
    :param state: a dict of this plugin's (or callback's) own, empty at
        first: put what resuming needs into it (tensors, numbers, strings,
        lists and dicts of them). It is saved under the plugin's name and
        given back to ``on_load_checkpoint`` on ``--resume``.
    """


@hookspec
def on_load_checkpoint(run: Run, state: dict[str, Any]) -> None:
    """Called on ``--resume`` with what ``on_save_checkpoint`` kept, after the
    model, optimizer and schedule are restored and before training goes on.
    Not called when the checkpoint holds nothing of this plugin's.

    :param run: the run.
    :param state: what this plugin's ``on_save_checkpoint`` put into its dict.
    """
