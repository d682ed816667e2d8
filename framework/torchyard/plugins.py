"""Plugin loading: entry points, fail-soft registration, load control.

Everything torchyard can use comes from a plugin found in the ``torchyard``
entry-point group -- the built-ins included. Loading is explicit
(:func:`get_host` or :meth:`PluginHost.load_entrypoints`), never an import
side effect, and it is fail-soft: a plugin that cannot be imported, whose
hook raises, or that implements a hook no spec defines is recorded as failed
and skipped, and every other plugin keeps working. A plugin that raises
:class:`~torchyard.errors.PluginUnavailable` (an optional dependency is not
installed) is recorded as unavailable: no failure, no warning.

Environment variables:

``TORCHYARD_LOAD_PLUGINS``
    Comma-separated plugin or distribution names: load only these. Set but
    empty, load no plugin at all.
``TORCHYARD_DISABLE_PLUGINS``
    Comma-separated plugin or distribution names never to load (for a broken
    plugin you cannot uninstall right now).
``TORCHYARD_TRACE_HOOKS``
    Set (to anything but empty or 0): log every hook call -- plugin, hook,
    order and milliseconds -- to stderr.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pluggy

from torchyard import hookspecs
from torchyard.errors import PluginError, PluginUnavailable, did_you_mean
from torchyard.hookspecs import PROJECT, REGISTRATION_HOOKS
from torchyard.registry import ComponentRecord, FailedPlugin, Registry, normalize_name

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_LOAD",
    "ENV_DISABLE",
    "PluginHost",
    "PluginInfo",
    "get_host",
    "reset_host",
]

ENTRY_POINT_GROUP = "torchyard"
ENV_LOAD = "TORCHYARD_LOAD_PLUGINS"
ENV_DISABLE = "TORCHYARD_DISABLE_PLUGINS"
ENV_TRACE = "TORCHYARD_TRACE_HOOKS"


def tracing() -> bool:
    return os.environ.get(ENV_TRACE, "") not in ("", "0")


def _trace(plugin: str, hook: str, started: float, error: BaseException | None = None) -> None:
    import sys

    elapsed = (time.perf_counter() - started) * 1000
    outcome = f" raised {type(error).__name__}" if error is not None else ""
    print(f"trace: {plugin} {hook} {elapsed:.2f} ms{outcome}", file=sys.stderr)


@dataclass(frozen=True)
class HookCall:
    """One implementation of a lifecycle hook, ready to call."""

    #: Who implements it, for messages: ``plugin 'x'``, ``callback 'ema' (callbacks.0)``.
    label: str
    #: The plugin's registered name: traces and checkpoint state are keyed by it.
    name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


def hook_calls(pm: pluggy.PluginManager, hook_name: str, label: Callable[[str], str]) -> list[HookCall]:
    """``pm``'s implementations of ``hook_name`` in registration order (pluggy
    lists the last registered first), labelled by ``label(plugin_name)``."""
    return [
        HookCall(label(impl.plugin_name), impl.plugin_name, impl.function, tuple(impl.argnames))
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls())
    ]


def call_each(calls: Iterable[HookCall], hook_name: str, kwargs: dict[str, Any]) -> None:
    """Call every implementation with the keyword arguments it takes.

    :raises PluginError: an implementation raised; the message names it.
    """
    trace = tracing()
    for call in calls:
        started = time.perf_counter()
        try:
            call.function(**{arg: kwargs[arg] for arg in call.argnames})
        except Exception as e:  # noqa: BLE001 - reported with the implementer's name
            if trace:
                _trace(call.name, hook_name, started, e)
            raise PluginError(f"{call.label} failed in {hook_name}: {_err(e)}") from e
        if trace:
            _trace(call.name, hook_name, started)


@dataclass(frozen=True)
class PluginInfo:
    """What ``torchyard plugins`` reports about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: Literal["ok", "failed", "disabled", "unavailable"]
    error: str | None = None
    hint: str | None = None
    components: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "hint": self.hint,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


class PluginHost:
    """A pluggy plugin manager and the registry filled from its plugins."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}

    @property
    def hook(self) -> Any:
        """The hook relay for lifecycle hooks: ``host.hook.on_run_start(run=...)``."""
        return self.pm.hook

    def call(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin implementing it.

        :raises PluginError: a plugin's implementation raised; the message
            names the plugin (``TORCHYARD_DEBUG=1`` shows the traceback).
        """
        call_each(self.implementations(hook_name), hook_name, kwargs)

    def implementations(self, hook_name: str) -> list[HookCall]:
        """The plugins' implementations of lifecycle hook ``hook_name``, in
        call order (registration order)."""
        return hook_calls(self.pm, hook_name, lambda name: f"plugin '{name}'")

    # -- loading -------------------------------------------------------------

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every plugin of the entry-point group allowed by the environment.

        Idempotent: a plugin already loaded (or already failed) is skipped.
        """
        only = _env_names(ENV_LOAD)
        disabled = _env_names(ENV_DISABLE) or set()
        entry_points = sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name)
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            if ep.name in self.plugins and self.plugins[ep.name].distribution == dist_name:
                continue  # already loaded: loading is idempotent
            keys = {normalize_name(ep.name), normalize_name(dist_name or "")}
            if (only is not None and not keys & only) or keys & disabled:
                self.plugins[ep.name] = PluginInfo(ep.name, dist_name, version, "disabled")
                continue
            started = time.perf_counter()
            try:
                with _real_interrupts():
                    plugin = ep.load()
                if tracing():
                    _trace(ep.name, "import", started)
            except _PLUGIN_ERRORS as e:  # a broken plugin must not break torchyard
                if getattr(e, "torchyard_real", False):
                    raise
                if isinstance(e, PluginUnavailable):
                    self._unavailable(ep.name, dist_name, version, str(e))
                    continue
                self._fail(ep.name, dist_name, version, f"cannot import '{ep.value}': {_err(e)}")
                continue
            self.add_plugin(plugin, ep.name, distribution=dist_name, version=version)

    def add_plugin(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register one plugin object and collect its components, fail-soft.

        Tests use this to add a plugin without an entry point. The returned
        record says whether the plugin loaded; a failed plugin is unregistered.
        """
        if name in self.plugins:
            other = self.plugins[name]
            return self._fail(
                name,
                distribution,
                version,
                f"plugin name '{name}' is already taken by {other.distribution or 'another plugin'}",
            )
        try:
            self.pm.register(plugin, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors and the like
            return self._fail(name, distribution, version, _err(e))

        unknown = [
            caller.name for caller in self.pm.get_hookcallers(plugin) or [] if not caller.has_spec()
        ]
        if unknown:
            self.pm.unregister(plugin)
            specs = [
                n
                for n in dir(self.pm.hook)
                if not n.startswith("_") and getattr(self.pm.hook, n).has_spec()
            ]
            problems = [f"'{u}' matches no hook spec{did_you_mean(u, specs, n=1)}" for u in unknown]
            return self._fail(name, distribution, version, "; ".join(problems))

        records: list[ComponentRecord] = []
        for kind, hook_name in REGISTRATION_HOOKS.items():
            register = self.registry.make_register(kind, name, distribution, version, records)
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                started = time.perf_counter()
                try:
                    with _real_interrupts():
                        impl.function(**{arg: register for arg in impl.argnames})
                except _PLUGIN_ERRORS as e:  # the plugin's own bug
                    if getattr(e, "torchyard_real", False):
                        raise
                    if tracing():
                        _trace(name, hook_name, started, e)
                    self.pm.unregister(plugin)
                    attempted = tuple((r.kind, r.name) for r in records)
                    if isinstance(e, PluginUnavailable):
                        return self._unavailable(name, distribution, version, str(e), attempted)
                    return self._fail(
                        name, distribution, version, f"{hook_name} raised {_err(e)}", attempted
                    )
                if tracing():
                    _trace(name, hook_name, started)
        for record in records:
            self.registry.add(record)
        info = PluginInfo(
            name,
            distribution,
            version,
            "ok",
            components=tuple((r.kind, r.name) for r in records),
        )
        self.plugins[name] = info
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister plugin ``name``, added with :meth:`add_plugin`: its hooks
        are no longer called. Only a plugin that registered no components can
        be removed (the registry keeps components for the host's life).

        :raises KeyError: no plugin of that name.
        :raises ValueError: it registered components.
        """
        info = self.plugins[name]
        if info.components:
            raise ValueError(f"plugin '{name}' registered components; it cannot be removed")
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        del self.plugins[name]

    def _fail(
        self,
        name: str,
        distribution: str | None,
        version: str | None,
        error: str,
        attempted: tuple[tuple[str, str], ...] = (),
    ) -> PluginInfo:
        target = distribution or name
        hint = (
            f"uninstall it with `pip uninstall {target}`, or skip it with "
            f"{ENV_DISABLE}={name}"
        )
        info = PluginInfo(name, distribution, version, "failed", error, hint, attempted)
        key = name if name not in self.plugins else f"{name} ({distribution or 'unknown'})"
        self.plugins.setdefault(key, info)
        self.registry.failed.append(FailedPlugin(name, distribution, version, error, attempted))
        return info

    def _unavailable(
        self,
        name: str,
        distribution: str | None,
        version: str | None,
        reason: str,
        attempted: tuple[tuple[str, str], ...] = (),
    ) -> PluginInfo:
        """Record a plugin whose optional dependency is missing: not a failure.
        ``attempted`` (what it registered before raising) is what it would offer."""
        info = PluginInfo(name, distribution, version, "unavailable", reason, None, attempted)
        self.plugins.setdefault(name, info)
        self.registry.unavailable.append(FailedPlugin(name, distribution, version, reason, attempted))
        return info


#: What a plugin's import or registration may raise and still only fail
#: itself: any exception, ``SystemExit`` (a plugin calling ``sys.exit``), and
#: a ``KeyboardInterrupt`` the plugin raised itself (a real Ctrl-C is let
#: through by :func:`_real_interrupts`).
_PLUGIN_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


class _Interrupted(BaseException):
    """A real Ctrl-C during plugin loading: it must stop the command."""


@contextlib.contextmanager
def _real_interrupts() -> Iterator[None]:
    """Tell a real Ctrl-C (SIGINT) apart from a ``KeyboardInterrupt`` a
    plugin raises: the first stops the command (as KeyboardInterrupt), the
    second fails the plugin only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: Any) -> None:
        raise _Interrupted()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    except _Interrupted:
        real = KeyboardInterrupt()
        real.torchyard_real = True  # type: ignore[attr-defined]
        raise real from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {normalize_name(v.strip()) for v in value.split(",") if v.strip()}


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, with every allowed entry-point plugin loaded."""
    global _HOST
    if _HOST is None:
        host = PluginHost()
        host.load_entrypoints()
        _HOST = host
    return _HOST


def reset_host(host: PluginHost | None = None) -> None:
    """Forget the process-wide host (or install ``host`` instead); for tests."""
    global _HOST
    _HOST = host


def iter_failures(host: PluginHost) -> Iterable[PluginInfo]:
    return (p for p in host.plugins.values() if p.status == "failed")
