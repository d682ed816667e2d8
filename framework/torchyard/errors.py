"""The error hierarchy: every mistake a user can make is one of these.

The CLI prints a :class:`TorchyardError` as one line per problem and exits
with code 2; anything else is a bug in torchyard or a plugin and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "TorchyardError",
    "ConfigError",
    "PluginError",
    "PluginUnavailable",
    "RegistrationError",
    "UnknownComponentError",
    "DataError",
    "TrainingError",
    "did_you_mean",
]


class TorchyardError(Exception):
    """Base class of user-facing errors: a message, possibly several lines.

    Each line of ``problems`` is one complete, self-contained problem, so a
    config with three mistakes reports three lines at once.
    """

    #: The longest line a problem prints: whatever value a message quotes
    #: (a huge string, a long list), it stays one readable line.
    MAX_LINE = 1000

    def __init__(self, *problems: str) -> None:
        if not problems:
            raise ValueError("a TorchyardError needs at least one problem")
        self.problems: tuple[str, ...] = tuple(_bounded(p, self.MAX_LINE) for p in problems)
        super().__init__("\n".join(self.problems))


def _bounded(problem: str, limit: int) -> str:
    line = " ".join(str(problem).splitlines()) if "\n" in str(problem) else str(problem)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class ConfigError(TorchyardError):
    """A run config (file, override or component parameter) is invalid."""


class PluginError(TorchyardError):
    """A plugin failed to load or misbehaved while registering components."""


class PluginUnavailable(PluginError):
    """A plugin cannot work here because an optional dependency is missing.

    Raised by a plugin (on import, or from a registration hook), it is no
    failure: ``torchyard plugins`` shows the plugin as *unavailable* with this
    message, no command warns about it, and a config naming one of the
    components it registered before raising is told why it cannot be used.
    The message says what is missing and how to install it.
    """


class RegistrationError(PluginError):
    """A plugin registered a component the registry cannot accept."""


class UnknownComponentError(ConfigError):
    """A config names a component that no loaded plugin provides."""


class DataError(TorchyardError):
    """A dataset or data file cannot be used as configured."""


class TrainingError(TorchyardError):
    """Training cannot continue (for instance the loss became NaN)."""


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest candidates, or ``""``
    (for a word over 100 characters, no suggestion: matching it is slow and
    it is no misspelling)."""
    if len(word) > 100:
        return ""
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + _or_list(matches) + "?"


def _or_list(items: Sequence[str]) -> str:
    quoted = [f"'{item}'" for item in items]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
