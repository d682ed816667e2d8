"""The component registry: frozen records, looked up by kind and name.

Records are created by the ``register`` callback that each registration hook
receives (see :mod:`torchyard.hookspecs`). A record holds its factory as a
callable or as an import path; the import happens on first use, so listing
components never imports torch.

Names are matched case- and separator-insensitively (``AdamW``, ``adamw``
and ``adam_w`` are one name), a name offered by two plugins must be
qualified as ``plugin:name`` (or ``distribution:name``), and an unknown name
is an error that lists the closest matches.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from torchyard import kinds
from torchyard.errors import (
    ConfigError,
    PluginError,
    RegistrationError,
    UnknownComponentError,
    did_you_mean,
)
from torchyard.kinds import SCHEDULER_INTERVALS, TARGET_KINDS

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "KINDS",
    "SCHEDULER_INTERVALS",
    "TARGET_KINDS",
    "ComponentRecord",
    "Register",
    "Registry",
    "normalize_name",
]

#: Every component kind's name, in display order (from :data:`torchyard.kinds.TABLE`).
KINDS: tuple[str, ...] = kinds.names()

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


#: The distribution that provides torchyard itself (its built-in plugins):
#: its components keep their bare names when another plugin reuses one.
CORE_DISTRIBUTION = "torchyard"


def normalize_name(name: str) -> str:
    """The lookup key of a component name: lower case, without ``_``, ``-``
    and ``.`` -- except between two digits, so ``regnet_x_1_6gf`` and
    ``regnet_x_16gf`` stay two names."""
    return re.sub(r"(?<!\d)[_.\-]|[_.\-](?!\d)", "", name.lower())


class Register(Protocol):
    """The callback a registration hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        params: type[BaseModel] | Mapping[str, Any] | Callable[..., Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> None: ...


@dataclass(frozen=True)
class ComponentRecord:
    """One registered component. Immutable; the factory and its params schema
    are resolved on first use and cached."""

    kind: str
    name: str
    factory_ref: Callable[..., Any] | str = field(repr=False)
    description: str
    plugin: str
    distribution: str | None = None
    version: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: An explicit params model, refinements of the derived one, or a
    #: function of the factory returning either (called on first use).
    params_spec: Any = field(default=None, repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def source(self) -> str:
        """Where the component comes from: ``plugin (distribution version)``."""
        if self.distribution:
            return f"{self.plugin} ({self.distribution} {self.version or '?'})"
        return self.plugin

    def shown_options(self) -> dict[str, Any]:
        """The options as plain values for listings: functions by import path."""

        def show(value: Any) -> Any:
            if callable(value):
                return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"
            return list(value) if isinstance(value, tuple) else value

        return {option: show(value) for option, value in self.options.items()}

    @property
    def tasks(self) -> tuple[str, ...]:
        """For losses, metrics and writers: the tasks whose targets (or
        predictions) it takes. Losses and metrics default to
        classification; writers to every task (empty)."""
        if "targets" not in self.options:
            return () if self.kind == "writer" else ("classification",)
        return kinds.task_names(self.options["targets"])

    @property
    def targets(self) -> str:
        """For losses and metrics: the (first) task whose targets it takes."""
        return self.tasks[0] if self.tasks else "classification"

    @property
    def takes_positional(self) -> bool:
        """Whether the factory's first parameter is supplied by the loop."""
        return kinds.get(self.kind).positional_first

    @cached_property
    def factory(self) -> Callable[..., Any]:
        """The factory, imported from its path on first access."""
        ref = self.factory_ref
        if callable(ref):
            return ref
        module_name, _, attr = ref.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as e:  # noqa: BLE001 - any import failure is the plugin's
            raise PluginError(
                f"{self.kind} '{self.name}' from plugin {self.source}: cannot import "
                f"factory '{ref}': {type(e).__name__}: {e}"
            ) from e
        if not callable(target):
            raise PluginError(
                f"{self.kind} '{self.name}' from plugin {self.source}: factory '{ref}' "
                "is not callable"
            )
        return target

    @cached_property
    def params(self) -> type[BaseModel]:
        """The pydantic model of the user-settable parameters."""
        from torchyard.params import derive_params

        spec = self.params_spec
        if isinstance(spec, type):
            return spec
        try:
            if callable(spec):
                spec = spec(self.factory)
                if isinstance(spec, type):
                    return spec
            return derive_params(
                self.factory,
                model_name=f"{self.kind}.{self.name}",
                skip_first=self.takes_positional,
                refine=spec,
            )
        except PluginError:
            raise
        except Exception as e:  # noqa: BLE001 - a plugin's schema bug, reported as such
            raise PluginError(
                f"{self.kind} '{self.name}' from plugin {self.source}: cannot derive a "
                f"params schema from its factory: {e}"
            ) from e

    @cached_property
    def summary(self) -> str:
        """The description, falling back to the factory's docstring when it is
        already imported (never imports just to describe)."""
        if self.description or not callable(self.factory_ref):
            return self.description
        return _first_line(getattr(self.factory_ref, "__doc__", None))

    def build(self, *args: Any, **params: Any) -> Any:
        """Call the factory with validated parameters."""
        return self.factory(*args, **params)


def _first_line(doc: str | None) -> str:
    if not doc:
        return ""
    for line in doc.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be loaded, kept for messages and ``plugins``."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    #: (kind, name) pairs it tried to register before failing, if any.
    attempted: tuple[tuple[str, str], ...] = ()


class Registry:
    """All components of all loaded plugins, by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, list[ComponentRecord]]] = {k: {} for k in KINDS}
        self.failed: list[FailedPlugin] = []
        #: Plugins whose optional dependency is missing (``PluginUnavailable``).
        self.unavailable: list[FailedPlugin] = []

    # -- building -----------------------------------------------------------

    def make_register(
        self,
        kind: str,
        plugin: str,
        distribution: str | None,
        version: str | None,
        sink: list[ComponentRecord],
    ) -> Register:
        """The callback handed to one plugin's registration hook for ``kind``.

        Records go into ``sink``; the caller adds them with :meth:`add` only
        once the plugin's hooks all succeeded, so a failing plugin leaves no
        half of itself behind.
        """

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            params: type[BaseModel] | Mapping[str, Any] | Callable[..., Any] | None = None,
            description: str | None = None,
            **options: Any,
        ) -> None:
            where = f"plugin '{plugin}' registering {kind} {name!r}"
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise RegistrationError(
                    f"{where}: a name starts with a letter and holds only letters, "
                    "digits, '_', '-' and '.'"
                )
            if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
                raise RegistrationError(
                    f"{where}: factory must be a callable or an import path "
                    f"'module:attribute', got {factory!r}"
                )
            if not (params is None or callable(params) or isinstance(params, Mapping)):
                raise RegistrationError(
                    f"{where}: params must be a pydantic BaseModel subclass, a mapping of "
                    f"parameter refinements or a function returning either, got {params!r}"
                )
            if isinstance(params, type) and not _is_pydantic_model(params):
                raise RegistrationError(
                    f"{where}: params must be a pydantic BaseModel subclass, got {params!r}"
                )
            _check_options(kind, options, where)
            key = normalize_name(name)
            for other in sink:
                if other.kind == kind and normalize_name(other.name) == key:
                    raise RegistrationError(f"{where}: registered twice by the same plugin")
            sink.append(
                ComponentRecord(
                    kind=kind,
                    name=name,
                    factory_ref=factory,
                    description=(description or "").strip(),
                    plugin=plugin,
                    distribution=distribution,
                    version=version,
                    options=MappingProxyType(dict(options)),
                    params_spec=MappingProxyType(dict(params))
                    if isinstance(params, Mapping)
                    else params,
                )
            )

        return register

    def add(self, record: ComponentRecord) -> None:
        key = normalize_name(record.name)
        entries = self._by_kind[record.kind].setdefault(key, [])
        for other in entries:
            if other.plugin == record.plugin:
                raise RegistrationError(
                    f"plugin '{record.plugin}' registered {record.kind} '{record.name}' twice"
                )
        entries.append(record)

    # -- reading ------------------------------------------------------------

    def records(self, kind: str | None = None) -> list[ComponentRecord]:
        """Every record (of one kind), sorted by kind order then name."""
        kinds = KINDS if kind is None else (self._check_kind(kind),)
        out: list[ComponentRecord] = []
        for k in kinds:
            for entries in self._by_kind[k].values():
                out.extend(entries)
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(out, key=lambda r: (order[r.kind], r.name.lower(), r.plugin))

    def __iter__(self) -> Iterator[ComponentRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        return len(self.records())

    def conflicts(self) -> list[list[ComponentRecord]]:
        """Names offered by more than one plugin: usable only when qualified,
        unless torchyard's own distribution offers one (see :meth:`shadowed`)."""
        return [
            e for k in KINDS for e in self._by_kind[k].values()
            if len(e) > 1 and sum(r.distribution == CORE_DISTRIBUTION for r in e) != 1
        ]  # fmt: skip

    def shadowed(self) -> list[ComponentRecord]:
        """Components whose bare name torchyard's own distribution also
        offers: the bare name means torchyard's, these need ``plugin:name``."""
        out = []
        for kind in KINDS:
            for entries in self._by_kind[kind].values():
                if len(entries) > 1 and sum(r.distribution == CORE_DISTRIBUTION for r in entries) == 1:
                    out += [r for r in entries if r.distribution != CORE_DISTRIBUTION]
        return out

    def get(self, kind: str, name: str) -> ComponentRecord:
        """The record called ``name`` (or ``plugin:name``) of ``kind``.

        :raises UnknownComponentError: no such component; the message lists
            the closest names and any plugin that failed to load.
        :raises ConfigError: the name is offered by several plugins and must
            be qualified.
        """
        kind = self._check_kind(kind)
        if not isinstance(name, str) or not name:
            raise UnknownComponentError(f"expected a {kind} name, got {name!r}")
        qualifier, sep, bare = name.rpartition(":")
        entries = self._by_kind[kind].get(normalize_name(bare), [])
        if sep:
            q = normalize_name(qualifier)
            entries = [
                r
                for r in entries
                if normalize_name(r.plugin) == q or normalize_name(r.distribution or "") == q
            ]
        if len(entries) > 1 and not sep:
            # torchyard's own distribution keeps its bare names: a plugin that
            # registers 'accuracy' too does not break every config using it
            own = [r for r in entries if r.distribution == CORE_DISTRIBUTION]
            if len(own) == 1:
                return own[0]
        if len(entries) == 1:
            return entries[0]
        if len(entries) > 1:
            options = ", ".join(f"'{r.qualified_name}'" for r in entries)
            raise ConfigError(
                f"{kind} '{name}' is offered by {len(entries)} plugins "
                f"({', '.join(r.source for r in entries)}); name one of {options}"
            )
        raise UnknownComponentError(self._unknown_message(kind, name))

    def _unknown_message(self, kind: str, name: str) -> str:
        bare = name.rpartition(":")[2]
        for failed in [*self.failed, *self.unavailable]:
            if (kind, normalize_name(bare)) in {
                (k, normalize_name(n)) for k, n in failed.attempted
            }:
                state = "is unavailable" if failed in self.unavailable else "failed to load"
                return f"{kind} '{name}' comes from plugin '{failed.name}', which {state}: {failed.error}"
        names = sorted({r.name for e in self._by_kind[kind].values() for r in e})
        message = f"unknown {kind} '{name}'" + did_you_mean(
            bare, names + [r.qualified_name for r in self.records(kind)]
        )
        if not did_you_mean(bare, names) and self.failed:
            broken = ", ".join(f"'{f.name}'" for f in self.failed)
            message += f" (plugins that failed to load: {broken}; see `torchyard plugins`)"
        elif not names:
            message += f" (no {kind} is registered)"
        return message

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KINDS:
            raise ConfigError(
                f"unknown component kind '{kind}'"
                + (did_you_mean(kind.rstrip("s"), KINDS) or f"; kinds are {', '.join(KINDS)}")
            )
        return kind


def _check_options(kind: str, options: Mapping[str, Any], where: str) -> None:
    allowed = {option.name: option for option in kinds.get(kind).options}
    for given in options:
        if given not in allowed:
            raise RegistrationError(
                f"{where}: unknown option '{given}'"
                + (
                    f" (a {kind} takes {', '.join(allowed)})"
                    if allowed
                    else f" (a {kind} takes no options)"
                )
            )
    for key, option in allowed.items():
        if key not in options:
            if option.required:
                raise RegistrationError(f"{where}: option '{key}' is required ({option.expected})")
        elif not option.valid(options[key]):
            raise RegistrationError(
                f"{where}: option '{key}' must be {option.expected}, got {options[key]!r}"
            )


def _is_pydantic_model(obj: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(obj, type) and issubclass(obj, BaseModel)
