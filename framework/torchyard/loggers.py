"""Experiment loggers: the ``logger`` kind's place in a run.

A config's ``loggers`` section names components of the ``logger`` kind
(tensorboard, mlflow, wandb, ...). Each builds an object with
``@torchyard.hookimpl`` methods, like a callback, and the run's hooks
(:class:`torchyard.callbacks.RunHooks`) deliver everything to it: the
config at ``on_run_start``, the ``steps.csv`` rows at ``on_step_logged``,
the epochs' rows at ``on_epoch_end``, the summary and the run's files at
``on_run_end``.

Loggers are the one place where a plugin's mistake does not end the run: a
tracking store that is down or a full disk must not cost a night of
training. A logger that raises -- when built or in any hook -- is reported
in one warning line and switched off; the run's own files
(``metrics.csv``, ``summary.json``, the submission) are written as ever.
A logger whose package is missing is refused before any work instead
(:func:`missing_packages`), with the extra that installs it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torchyard import distributed
from torchyard.errors import ConfigError
from torchyard.registry import ComponentRecord

__all__ = [
    "build_loggers",
    "check_logger_conformance",
    "flatten",
    "hyperparameters",
    "missing_packages",
    "warn_line",
]


def warn_line(message: str) -> None:
    """The default way a logger's failure is reported (before a run's
    reporter takes over): one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def missing_packages(specs: Sequence[Any]) -> list[str]:
    """One problem per configured logger whose ``requires`` module is not
    installed: ``loggers.0: logger 'mlflow' needs mlflow: pip install 'torchyard[mlflow]'``.

    ``importlib.util.find_spec`` imports nothing, so ``check`` stays fast.
    """
    problems = []
    for i, spec in enumerate(specs):
        record: ComponentRecord = spec.record
        module = record.options.get("requires")
        if not module or _installed(module):
            continue
        extra = record.options.get("extra")
        install = f"pip install 'torchyard[{extra}]'" if extra else f"pip install {module}"
        problems.append(f"loggers.{i}: logger '{record.name}' needs {module}: {install}")
    return problems


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def build_loggers(
    specs: Sequence[Any], warn: Callable[[str], None] = warn_line
) -> list[tuple[str, ComponentRecord, object]]:
    """``(where, record, object)`` for each configured logger, for
    :class:`~torchyard.callbacks.RunHooks`; none on processes other than 0
    (under torchrun only process 0 logs).

    A factory that raises a ``ValueError`` or ``TypeError`` has refused its
    parameters: a config error, as for any component. Anything else (a
    store that cannot be reached) is a warning, and the run goes on without
    that logger.
    """
    if not distributed.is_main():
        return []
    from torchyard.factories import build_component, first_line

    built = []
    for i, spec in enumerate(specs):
        where = f"loggers.{i}"
        try:
            built.append((where, spec.record, build_component(spec, where=where)))
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a logger never stops a run
            warn(
                f"logger '{spec.record.name}' ({where}, plugin '{spec.record.plugin}') could not "
                f"start: {type(e).__name__}: {first_line(e)}; the run goes on without it"
            )
    return built


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (and lists in it) as ``{"optimizer.lr": 0.1,
    "metrics.0.name": "accuracy"}``; empty containers are kept as ``[]``/``{}``."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list | tuple) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: value}


def hyperparameters(run: Any) -> dict[str, Any]:
    """The run's resolved config as flat dotted keys, the values filled in
    from the data (``model.num_classes``) included: what loggers record as
    hyper-parameters."""
    from torchyard.config import jsonable_config

    config = jsonable_config(run.config)
    resolved = json.loads(json.dumps(getattr(run, "resolved", {}), default=list))
    for section, values in resolved.items():
        target = config.get(section)
        if isinstance(target, dict):
            target.update({k: v for k, v in values.items() if target.get(k) is None})
    return flatten(config)


def numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, as floats (``None`` and text left out)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def check_logger_conformance(record: ComponentRecord, params: dict[str, Any]) -> None:
    """The conformance check of a logger: it builds an object with hook
    implementations (as a callback must); building does no I/O."""
    from torchyard.callbacks import check_callback
    from torchyard.testing import _build

    logger = _build(record, params)
    try:
        check_callback(logger, "loggers.0", record.name)
    except ConfigError as e:
        raise AssertionError(str(e).split(": ", 2)[-1]) from None
