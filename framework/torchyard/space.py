"""A sweep's search space: dotted config paths and the values they range over.

A space file maps config paths to one search dimension each::

    optimizer.lr: {log_float: [1.0e-4, 1.0e-1]}
    optimizer.weight_decay: {float: [0.0, 0.1], step: 0.01}
    model.channels: {int: [8, 64], log: true}
    loss:
      choice:
        - {name: cross_entropy}
        - {name: focal, gamma: 2}

``float`` and ``int`` take ``[low, high]`` (both included) and optionally
``step`` or ``log``; ``log_float`` is ``float`` with ``log: true``;
``categorical`` (or its alias ``choice``) lists the values, and a value that
is a mapping replaces a whole section, so a choice between components is a
choice between complete, separately validated sections. :func:`check_space`
applies every range endpoint and every branch to the config and validates it
as ``torchyard check`` would, so a bad path, range or branch is a one-line
error before any trial runs.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torchyard.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from torchyard.registry import Registry

__all__ = ["Dimension", "apply_params", "check_space", "parse_space", "read_space"]

KINDS = ("float", "log_float", "int", "categorical", "choice")
_OPTIONS = {"float": ("step", "log"), "log_float": (), "int": ("step", "log"), "categorical": (), "choice": ()}


@dataclass(frozen=True)
class Dimension:
    """One searched config path."""

    #: the dotted config path (``optimizer.lr``); also the Optuna parameter name
    path: str
    kind: Literal["float", "int", "categorical"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    #: categorical: the values, and the labels Optuna records for them
    choices: tuple[Any, ...] = ()
    labels: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value this trial takes (an Optuna ``Trial``'s ``suggest_*``)."""
        if self.kind == "float":
            return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        label = trial.suggest_categorical(self.path, list(self.labels))
        return self.value_of(label)

    def value_of(self, label: Any) -> Any:
        """The config value of a recorded parameter (a choice's label)."""
        if self.kind != "categorical":
            return label
        return copy.deepcopy(self.choices[self.labels.index(label)])

    def probes(self) -> list[tuple[str, Any]]:
        """The values validated up front: both ends of a range, every branch."""
        if self.kind == "categorical":
            return [(f"choice {i + 1} of {len(self.choices)}", c) for i, c in enumerate(self.choices)]
        cast = int if self.kind == "int" else float
        return [("low end", cast(self.low)), ("high end", cast(self.high))]


def read_space(path: str | Path) -> list[Dimension]:
    """Read and parse a space file (YAML or JSON)."""
    from torchyard.config_io import read_config_file

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--space {path}: no such file")
    try:
        data = read_config_file(path)
    except ConfigError as e:
        raise ConfigError(*(p.replace("a config is a mapping of sections (model, data, ...)",
                                      "a space is a mapping of config paths to ranges") for p in e.problems)) from None
    return parse_space(data, str(path))


def parse_space(data: Mapping[str, Any], source: str = "space") -> list[Dimension]:
    """Parse a space mapping; :class:`ConfigError` with one line per bad key."""
    if not data:
        raise ConfigError(f"{source}: the space is empty; map config paths to ranges, e.g. optimizer.lr: {{log_float: [1e-4, 1e-1]}}")
    dims, problems = [], []
    for key, spec in data.items():
        try:
            dims.append(_dimension(str(key), spec))
        except ValueError as e:
            problems.append(f"{source}: {key}: {e}")
    paths = [d.path for d in dims]
    for d in dims:  # `loss` and `loss.gamma`: the section's choice would undo the key's value
        inner = [p for p in paths if p.startswith(d.path + ".")]
        if inner:
            problems.append(f"{source}: {inner[0]}: lies inside {d.path}, which the space also sets; search one of them")
    if problems:
        raise ConfigError(*problems)
    return dims


def _dimension(key: str, spec: Any) -> Dimension:
    if not key or any(not part for part in key.split(".")):
        raise ValueError("expected a dotted config path such as optimizer.lr")
    example = "e.g. {log_float: [1e-4, 1e-1]} or {choice: [a, b]}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"expected a mapping with one of {', '.join(KINDS)}, {example}; got {_short(spec)}")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        unknown = [str(k) for k in spec if k not in KINDS and k not in ("step", "log")]
        hint = did_you_mean(unknown[0], KINDS, n=1) if unknown else ""
        what = f"unknown key '{unknown[0]}'{hint}" if unknown and not kinds else f"found {kinds or 'none'}"
        raise ValueError(f"expected exactly one of {', '.join(KINDS)} ({what}), {example}")
    kind = kinds[0]
    extra = [str(k) for k in spec if k != kind and k not in _OPTIONS[kind]]
    if extra:
        allowed = ", ".join(_OPTIONS[kind]) or "nothing else"
        raise ValueError(f"'{extra[0]}' is not an option of {kind} (it takes {allowed})")
    values = spec[kind]
    if kind in ("categorical", "choice"):
        return _categorical(key, values)
    if not (isinstance(values, list) and len(values) == 2):
        raise ValueError(f"{kind}: expected [low, high], got {_short(values)}")
    low, high = values
    log = kind == "log_float" or spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool):
        raise ValueError(f"log: expected true or false, got {_short(log)}")
    number = int if kind == "int" else (int, float)
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v)):
            want = "an integer" if kind == "int" else "a finite number"
            raise ValueError(f"{kind}: {name} must be {want}, got {_short(v)}")
    if not low < high:
        raise ValueError(f"{kind}: expected low < high, got [{low}, {high}]")
    if log and low <= 0:
        raise ValueError(f"{kind}: a log range needs low > 0, got {low}")
    if step is not None:
        if step <= 0:
            raise ValueError(f"{kind}: step must be > 0, got {step}")
        if log and (kind != "int" or step != 1):
            raise ValueError(f"{kind}: step and log cannot be combined")
        if kind == "int" and (high - low) % step:
            raise ValueError(f"int: high - low ({high - low}) is not a multiple of step {step}")
    return Dimension(key, "int" if kind == "int" else "float", low, high, step, bool(log))


def _categorical(key: str, values: Any) -> Dimension:
    if not isinstance(values, list) or not values:
        raise ValueError(f"choice: expected a non-empty list of values, got {_short(values)}")
    labels = [_label(v) for v in values]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ValueError(f"choice: value {_short(values[i])} is listed twice")
    return Dimension(key, "categorical", choices=tuple(values), labels=tuple(labels))


def _label(value: Any) -> Any:
    """What Optuna records for a choice: the value itself when it is a plain
    scalar, else a short text (``focal(gamma=2)``) naming the section."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']}({rest})" if rest else str(value["name"])
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def apply_params(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the raw config ``data`` with each dotted path set to its value."""
    from torchyard.config_io import _set_dotted

    result = copy.deepcopy(dict(data))
    for path, value in values.items():
        try:
            _set_dotted(result, path.split("."), copy.deepcopy(value))
        except (KeyError, IndexError, TypeError) as e:
            raise ConfigError(f"{path}: {e.args[0] if e.args else e}") from None
    return result


def check_space(dims: list[Dimension], data: Mapping[str, Any], registry: Registry, source: str = "space") -> None:
    """Validate the config with each range end and each branch applied (one
    at a time, the rest of the config as it is): one line per bad key, naming
    the key, the value tried and the config's complaint."""
    from torchyard.config import validate_config

    problems = []
    for dim in dims:
        for what, value in dim.probes():
            try:
                validate_config(apply_params(data, {dim.path: value}), registry)
            except ConfigError as e:
                more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
                problems.append(f"{source}: {dim.path}: {what} {_short(value)}: {e.problems[0]}{more}")
                break
    if problems:
        raise ConfigError(*problems)
