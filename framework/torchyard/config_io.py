"""Reading config files and applying ``--set`` overrides.

Configs are parsed with a safe YAML loader only (JSON accepted); no tag can
build a Python object. Input is bounded: a file over :data:`MAX_CONFIG_BYTES`,
a document that expands (aliases counted at every use) to more than
:data:`MAX_VALUES` values or nests deeper than :data:`MAX_DEPTH` is refused
before anything is built from it, so a YAML "billion laughs" answers at once.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from torchyard.errors import ConfigError

__all__ = [
    "IGNORED_CHANGES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "apply_overrides",
    "flatten_config",
    "parse_yaml",
    "read_config_file",
    "show_value",
]

MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read, in bytes (1 MiB; a hand-written config is a few KB)."""
MAX_VALUES = 100_000
"""The most values (mappings, lists and scalars, each alias counted at every use)
one config document or ``--set`` value may expand to."""
MAX_DEPTH = 100
"""The deepest nesting of mappings and lists in a config, aliases expanded."""
SHOW_CHARS = 60
"""How much of a value an error message echoes before cutting it with ``...``."""


def show_value(value: Any, limit: int = SHOW_CHARS) -> str:
    """``value`` for an error message: strings quoted, everything else as JSON,
    cut to ``limit`` characters so a huge input never floods the terminal."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])
    else:
        try:
            text = json.dumps(_head(value, limit), default=str)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Config keys that do not change what a run computes (progress bar, threads,
#: logging interval): a resume may change them without ``--allow-changes``,
#: and ``torchyard runs`` does not count them as differences between runs.
IGNORED_CHANGES = frozenset(
    {"trainer.progress", "trainer.num_threads", "trainer.log_every_n_steps"}
)


def flatten_config(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted.key: value}``; lists stay values, and an
    empty mapping below the top is a value of its own (``{}``)."""
    if isinstance(value, dict):
        if not value and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten_config(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _head(value: Any, limit: int) -> Any:
    """The first few items of nested containers, enough to show ``limit`` characters."""
    if isinstance(value, str):
        return value[: limit + 1]
    if isinstance(value, dict):
        return {str(k)[: limit + 1]: _head(v, limit) for k, v in list(value.items())[:limit]}
    if isinstance(value, (list, tuple)):
        return [_head(v, limit) for v in value[:limit]]
    return value


class _TooBig(Exception):
    """A document over the bounds: the message without the source."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a float, refusing a key
    given twice, and bounding what a document may expand to.

    YAML 1.1 wants a dot in a float (``1.0e-3``); configs are written by
    people, so exponent-only numbers count as floats here as in YAML 1.2.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composed = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # counted while composing, so a huge flat document stops early too
        self._composed += 1
        if self._composed > MAX_VALUES:
            raise _TooBig(_too_many())
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(_too_deep())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # a key given twice is a mistake, not "the last one wins"
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                again = key in seen
            except TypeError:  # unhashable: the base class says so below
                continue
            if again:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {show_value(key)} given more than once", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _too_many(aliases: bool = True) -> str:
    if not aliases:
        return f"the config holds more than {MAX_VALUES:,} values"
    return f"the YAML expands to more than {MAX_VALUES:,} values (aliases nested too deep?)"


def _too_deep() -> str:
    return f"the config nests deeper than {MAX_DEPTH} levels"


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose expansion (every alias use counted) is over
    the bounds, before constructing it. Shared nodes are measured once."""
    measured: dict[int, tuple[int, int]] = {}  # id -> (values, height)
    open_: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise _TooBig(_too_deep())
        key = id(node)
        if key in measured:
            size, height = measured[key]
        else:
            if key in open_:
                raise _TooBig("an alias refers to a value that contains it")
            open_.add(key)
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            size, height = 1, 0
            for child in children:
                child_size, child_height = measure(child, depth + 1)
                size += child_size
                height = max(height, child_height + 1)
                if size > MAX_VALUES:
                    raise _TooBig(_too_many())
            open_.discard(key)
            measured[key] = size, height
        if depth + height > MAX_DEPTH:
            raise _TooBig(_too_deep())
        return size, height

    measure(root, 0)


def _check_plain(data: Any) -> None:
    """The same bounds for data without aliases (parsed JSON)."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise _TooBig(_too_many(aliases=False))
        if depth > MAX_DEPTH:
            raise _TooBig(_too_deep())
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML with the safe config loader.

    :raises ConfigError: ``<source>: ...`` when the document is over the
        bounds (:data:`MAX_VALUES`, :data:`MAX_DEPTH`).
    :raises yaml.YAMLError: when it is not valid YAML.
    """
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooBig as e:
        raise ConfigError(f"{source}: {e}") from None
    except ValueError as e:  # a date like 2020-13-45, an integer of 5000 digits
        raise ConfigError(f"{source}: invalid YAML: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    if "integer string conversion" in str(e):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    text = str(e).strip().splitlines()
    return show_value(text[0], 200)[1:-1] if text else type(e).__name__


def _read_bounded(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: config file is larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB; "
            "is it the right file?"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file with a safe loader."""
    path = Path(path)
    text = _read_bounded(path)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            _check_plain(data)
        else:
            data = parse_yaml(text, str(path))
    except _TooBig as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {_too_deep()}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid JSON: {_first_line(e)}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config is a mapping of sections (model, data, ...), "
            f"got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a copy."""
    data = copy.deepcopy(data)
    problems: list[str] = []
    for override in overrides:
        key, sep, raw = override.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(
                f"--set {show_value(override)}: expected KEY=VALUE, e.g. optimizer.lr=0.01"
            )
            continue
        shown = key if len(key) <= SHOW_CHARS else key[: SHOW_CHARS - 3] + "..."
        try:
            value = parse_yaml(raw, f"--set {shown}") if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        try:
            _set_dotted(data, key.split("."), value)
        except (KeyError, IndexError, TypeError) as e:
            problems.append(f"--set {shown}: {e.args[0] if e.args else e}")
    if problems:
        raise ConfigError(*problems)
    return data


def _set_dotted(node: Any, parts: list[str], value: Any) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit():
                raise TypeError(f"'{'.'.join(parts[:i]) or '<root>'}' is a list; use an index")
            index = int(part)
            if not -len(node) <= index < len(node):
                raise IndexError(f"'{where}': index out of range (list has {len(node)} items)")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if node is None:
                    raise TypeError(f"'{where}' is empty; set it as a whole")
        else:
            raise TypeError(f"'{'.'.join(parts[:i])}' is a {type(node).__name__}, not a section")
