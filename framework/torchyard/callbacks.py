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

A config's ``loggers`` (:mod:`torchyard.loggers`) are called last, in
config order, with one difference: a logger that raises is reported in one
warning line (:attr:`RunHooks.warn`) and switched off for the rest of the
run; the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pluggy

from torchyard import hookspecs
from torchyard.errors import ConfigError, did_you_mean
from torchyard.factories import first_line
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


def check_callback(
    obj: object, where: str, name: str, pm: pluggy.PluginManager | None = None, what: str = "callback"
) -> None:
    """Register callback ``obj`` (component ``name``, config place ``where``)
    with ``pm`` (a scratch manager when ``None``); loggers too (``what``).

    :raises ConfigError: it implements no hook, a hook with no spec, or a
        hook with arguments the spec does not have.
    """
    pm = pm if pm is not None else _spec_manager()
    who = f"{where}: {what} '{name}'"
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
    """Calls one run's lifecycle hooks: the plugins', then its callbacks',
    then its loggers'."""

    def __init__(
        self,
        host: PluginHost,
        callbacks: Sequence[tuple[str, ComponentRecord, object]] = (),
        loggers: Sequence[tuple[str, ComponentRecord, object]] = (),
        pending: Sequence[str] = (),
    ) -> None:
        """:param callbacks: ``(where, record, object)`` per callback: its
        config place (``callbacks.0``), its component and what it built.
        :param loggers: the same per logger (``loggers.0``).
        :param pending: warnings to give :meth:`report_to` (loggers that
        could not start)."""
        from torchyard.loggers import warn_line

        #: How a failing logger is reported (one line); see :meth:`report_to`.
        self.warn: Callable[[str], None] = warn_line
        self._pending = list(pending)
        #: The loggers switched off after a failure, by their label.
        self.failed: dict[str, str] = {}
        pm, logger_pm = _spec_manager(), _spec_manager()
        labels: dict[str, str] = {}
        for where, record, obj in callbacks:
            check_callback(obj, where, record.name, pm)
            labels[f"{where}:{record.name}"] = f"callback '{record.name}' ({where}, plugin '{record.plugin}')"
        for where, record, obj in loggers:
            check_callback(obj, where, record.name, logger_pm, what="logger")
            labels[f"{where}:{record.name}"] = f"logger '{record.name}' ({where}, plugin '{record.plugin}')"
        self.callbacks = [obj for _, _, obj in callbacks]
        self.loggers = [obj for _, _, obj in loggers]
        self._logger_labels = [labels[f"{where}:{record.name}"] for where, record, _ in loggers]
        self._calls: dict[str, list[HookCall]] = {
            hook: host.implementations(hook)
            + hook_calls(pm, hook, labels.__getitem__)
            + [self._guarded(call, hook) for call in hook_calls(logger_pm, hook, labels.__getitem__)]
            for hook in LIFECYCLE_HOOKS
        }

    def report_to(self, warn: Callable[[str], None]) -> None:
        """Report loggers' failures with ``warn`` (the run's reporter), the
        pending ones first."""
        self.warn = warn
        pending, self._pending = self._pending, []
        for message in pending:
            warn(message)

    def end_loggers(self) -> None:
        """Let each logger with an ``end()`` method end its tracker's run
        (a k-fold run's later folds, which get no ``on_run_end``); a
        failure is a warning, as in any logger hook."""
        for i, logger in enumerate(self.loggers):
            end = getattr(logger, "end", None)
            if callable(end):
                label = self._logger_labels[i]
                self._guarded(HookCall(label, label, end, ()), "end").function()

    def _guarded(self, call: HookCall, hook: str) -> HookCall:
        """``call`` of a logger, made harmless: an exception becomes one
        warning and the logger's later calls are skipped."""
        from torchyard.loggers import warn_line

        function = call.function

        def guarded(**kwargs: Any) -> None:
            if call.label in self.failed:
                return
            try:
                function(**kwargs)
            except Exception as e:  # noqa: BLE001 - a logger never stops a run
                self.failed[call.label] = hook
                message = (
                    f"{call.label} failed in {hook}: {type(e).__name__}: {first_line(e)}; "
                    "it is switched off, the run goes on"
                )
                try:
                    self.warn(message)
                except Exception:  # noqa: BLE001 - the warning itself must not end the run
                    warn_line(message)

        return replace(call, function=guarded)

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
