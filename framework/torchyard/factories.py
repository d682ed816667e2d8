"""Calling a component's factory with its validated config section."""

from __future__ import annotations

import inspect
from typing import Any

from torchyard.config import ComponentSpec
from torchyard.errors import ConfigError

__all__ = ["accepted_parameters", "build_component", "first_line"]


def build_component(
    spec: ComponentSpec,
    *args: Any,
    context: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    injected: dict[str, Any] | None = None,
    where: str | None = None,
) -> Any:
    """Call a component's factory with its validated params.

    Values in ``context`` fill parameters the factory declares and the
    config does not set explicitly (``num_classes`` for a model, say);
    ``overrides`` replace parameters outright (durations converted to
    steps, say). Section keys that are not the factory's parameters
    (``log_as``, ``warmup``, ...) are not passed. The context values used
    are recorded in ``injected``, so the run's ``config.yaml`` states them.
    A ``ValueError`` or ``TypeError`` from the factory is reported as a
    config problem of that section.
    """
    record = spec.record
    kwargs = spec.factory_kwargs()
    kwargs.update(overrides or {})
    if context:
        accepted = accepted_parameters(record.factory)
        for key, value in context.items():
            # a run's own config.yaml states the filled-in value, or null
            if key in accepted and (key not in spec.model_fields_set or kwargs.get(key) is None):
                kwargs[key] = value
                if injected is not None:
                    injected[key] = value
    try:
        return record.build(*args, **kwargs)
    except (ValueError, TypeError) as e:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{record.kind} '{record.name}': {first_line(e)}") from e


def first_line(error: BaseException) -> str:
    """An exception's message, its first line only (or its type's name)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def accepted_parameters(factory: Any) -> set[str]:
    """The parameter names of ``factory`` (empty when it has no signature)."""
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()
