"""Hook specifications: the one place every torchyard hook is documented.

A plugin is a module (or object) with functions decorated by
``@torchyard.hookimpl`` and named after one of the specs below. Plugins are
found through the ``torchyard`` entry-point group; torchyard's own built-in
components register through that very group.

Hooks are called with keyword arguments, so an implementation may accept any
subset of a spec's arguments (``def register_losses(register)`` and
``def on_run_end()`` are both fine), and specs can grow new arguments without
breaking existing plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torchyard.registry import Register
    from torchyard.run import Run

__all__ = ["PROJECT", "hookimpl", "hookspec", "REGISTRATION_HOOKS"]

PROJECT = "torchyard"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Registration hook name for each component kind, in display order.
REGISTRATION_HOOKS: dict[str, str] = {
    "model": "register_models",
    "dataset": "register_datasets",
    "loss": "register_losses",
    "optimizer": "register_optimizers",
    "scheduler": "register_schedulers",
    "metric": "register_metrics",
    "writer": "register_writers",
    "transform": "register_transforms",
}

# --------------------------------------------------------------------------
# Registration hooks
#
# Each receives a ``register`` callback and calls it once per component:
#
#     register(name, factory, *, params=None, description=None, **options)
#
# ``factory`` is a callable or an import path ``"package.module:attribute"``.
# Prefer the import path: it is imported only when the component is used, so
# ``torchyard list`` stays fast and never imports torch. ``params`` is a
# pydantic model of the factory's keyword parameters; when omitted it is
# derived from the factory's signature, type hints and docstring.
# --------------------------------------------------------------------------


@hookspec
def register_models(register: Register) -> None:
    """Register model factories.

    A model factory returns a ``torch.nn.Module``. Parameters named
    ``num_classes``, ``in_channels`` or ``input_shape`` that the user leaves
    unset are filled in from the dataset.

    :param register: call ``register(name, factory, ...)`` once per model.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset factories.

    A dataset factory returns a :class:`torchyard.data.DataBundle`: the
    train, validation and (unlabelled) test splits plus what the rest of the
    run needs to know about them (number of classes, test ids, input shape).

    :param register: call ``register(name, factory, ...)`` once per dataset.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss factories.

    A loss factory returns a callable ``loss(outputs, targets) -> Tensor``
    producing a scalar, usually a ``torch.nn.Module``. The optional
    ``targets`` option says what targets it expects: ``"classes"`` (class
    indices, the default), ``"binary"``, ``"multilabel"``, ``"values"``
    (regression) or ``"ranking"``.

    :param register: call ``register(name, factory, targets=..., ...)`` once per loss.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizer factories.

    An optimizer factory is called as ``factory(param_groups, **params)``
    and returns a ``torch.optim.Optimizer``; any ``torch.optim`` class fits
    as is. The first positional parameter is not part of the params schema.

    :param register: call ``register(name, factory, ...)`` once per optimizer.
    """


@hookspec
def register_schedulers(register: Register) -> None:
    """Register learning-rate scheduler factories.

    A scheduler factory is called as ``factory(optimizer, **params)``; any
    ``torch.optim.lr_scheduler`` class fits as is. Every scheduler must
    declare when it steps, as the ``interval`` option:

    - ``"epoch"``: ``scheduler.step()`` after every epoch,
    - ``"step"``: ``scheduler.step()`` after every optimizer step,
    - ``"metric"``: ``scheduler.step(value)`` after every validation, with
      the value of the monitored metric (like ``ReduceLROnPlateau``).

    :param register: call ``register(name, factory, interval=..., ...)``.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metric factories.

    A metric factory returns a :class:`torchyard.metric.Metric`:
    ``update(outputs, targets)`` accumulates on the device, ``compute()``
    reduces to a number, ``reset()`` starts over, and ``higher_is_better``
    says which way is good (it drives monitoring and early stopping). The
    optional ``targets`` option is as for losses.

    :param register: call ``register(name, factory, targets=..., ...)`` once per metric.
    """


@hookspec
def register_writers(register: Register) -> None:
    """Register submission-writer factories.

    A writer factory returns an object with
    ``write(predictions: torchyard.data.Predictions, directory: Path) -> Path``
    that writes the submission file inside ``directory`` and returns its path.
    A writer that can tell early whether the test ids will fit (a template,
    say) may also implement ``check_ids(ids: list[str]) -> None``, raising
    :class:`torchyard.DataError`; it is called before training starts.

    :param register: call ``register(name, factory, ...)`` once per writer.
    """


@hookspec
def register_transforms(register: Register) -> None:
    """Register data-transform factories.

    A transform factory returns a callable applied to one sample's input
    (a ``torchvision.transforms.v2`` transform, say). Configs list them under
    ``transforms.train`` and ``transforms.eval``; torchyard composes each list
    and hands the results to the dataset factory as its ``train_transform``
    and ``eval_transform`` parameters, when it has them.

    :param register: call ``register(name, factory, ...)`` once per transform.
    """


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
