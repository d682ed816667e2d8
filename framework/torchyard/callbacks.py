"""The hooks of one run: every plugin's, then the run's callbacks'.

A config's ``callbacks`` section names components of the ``callback`` kind;
each builds an object whose methods, decorated with ``@torchyard.hookimpl``,
implement lifecycle hooks (:mod:`torchyard.hookspecs`) for that run only.
:class:`RunHooks` calls the plugins' implementations first, in the order
the plugins were loaded, then the callbacks', in config order. It is built
once per run, so nothing registered for one run (or one fold) leaks into the
next, and a hook nothing implements is skipped by the loop at no cost.

Checkpoints keep each implementer's own state (``on_save_checkpoint``) under
its name: the plugin's name, or ``callbacks.<i>:<component>`` for a callback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

from torchyard import hookspecs
from torchyard.errors import ConfigError, did_you_mean
from torchyard.hookspecs import PROJECT, REGISTRATION_HOOKS
from torchyard.plugins import HookCall, PluginHost, call_each, hook_calls
from torchyard.registry import ComponentRecord

__all__ = ["LIFECYCLE_HOOKS", "RunHooks", "check_callback"]

#: Every lifecycle hook: the specs that are not registration hooks.
LIFECYCLE_HOOKS: tuple[str, ...] = tuple(
    name
    for name in vars(hookspecs)
    if name.startswith("on_") and name not in REGISTRATION_HOOKS.values()
)


def _spec_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def check_callback(obj: object, where: str, name: str, pm: pluggy.PluginManager | None = None) -> None:
    """Register callback ``obj`` (component ``name``, config place ``where``)
    with ``pm`` (a scratch manager when ``None``).

    :raises ConfigError: it implements no hook, a hook with no spec, or a
        hook with arguments the spec does not have.
    """
    pm = pm if pm is not None else _spec_manager()
    who = f"{where}: callback '{name}'"
    try:
        pm.register(obj, name=f"{where}:{name}")
    except (pluggy.PluginValidationError, ValueError) as e:
        raise ConfigError(f"{who}: {e}") from None
    callers = pm.get_hookcallers(obj) or []
    unknown = [c.name for c in callers if not c.has_spec()]
    if unknown:
        pm.unregister(obj)
        u = unknown[0]
        raise ConfigError(f"{who}: '{u}' matches no hook spec{did_you_mean(u, LIFECYCLE_HOOKS, n=1)}")
    if not callers:
        pm.unregister(obj)
        raise ConfigError(
            f"{who}: implements no hook; decorate its methods with @torchyard.hookimpl "
            "and name them after lifecycle hooks (docs/hooks.md)"
        )


class RunHooks:
    """Calls one run's lifecycle hooks: the plugins', then its callbacks'."""

    def __init__(self, host: PluginHost, callbacks: Sequence[tuple[str, ComponentRecord, object]] = ()) -> None:
        """:param callbacks: ``(where, record, object)`` per callback: its
        config place (``callbacks.0``), its component and what it built."""
        pm = _spec_manager()
        labels: dict[str, str] = {}
        for where, record, obj in callbacks:
            check_callback(obj, where, record.name, pm)
            labels[f"{where}:{record.name}"] = f"callback '{record.name}' ({where}, plugin '{record.plugin}')"
        self.callbacks = [obj for _, _, obj in callbacks]
        self._calls: dict[str, list[HookCall]] = {
            hook: host.implementations(hook) + hook_calls(pm, hook, labels.__getitem__)
            for hook in LIFECYCLE_HOOKS
        }

    def implemented(self, hook: str) -> bool:
        """Whether any plugin or callback implements ``hook``."""
        return bool(self._calls[hook])

    def call(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on every implementer, with the arguments each takes.

        :raises PluginError: one raised; the message names it and the hook.
        """
        calls = self._calls[hook]
        if calls:
            call_each(calls, hook, kwargs)

    def save_states(self, **kwargs: Any) -> dict[str, dict[str, Any]]:
        """Each ``on_save_checkpoint`` implementer's own state, by its name
        (the empty ones left out)."""
        states: dict[str, dict[str, Any]] = {}
        for call in self._calls["on_save_checkpoint"]:
            state: dict[str, Any] = {}
            call_each([call], "on_save_checkpoint", {**kwargs, "state": state})
            if state:
                states[call.name] = state
        return states

    def load_states(self, states: Mapping[str, dict[str, Any]], **kwargs: Any) -> list[str]:
        """Give each ``on_load_checkpoint`` implementer its saved state; the
        names of saved states that nothing here takes back (a callback or
        plugin since removed)."""
        taken = set()
        for call in self._calls["on_load_checkpoint"]:
            if call.name in states:
                call_each([call], "on_load_checkpoint", {**kwargs, "state": states[call.name]})
                taken.add(call.name)
        return sorted(set(states) - taken)
