"""Reading config files and applying ``--set`` overrides.

Configs are parsed with a safe YAML loader only (JSON accepted); no tag can
build a Python object.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from torchyard.errors import ConfigError

__all__ = ["apply_overrides", "parse_yaml", "read_config_file"]


class _ConfigLoader(yaml.SafeLoader):
    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # a key given twice is a mistake, not "the last one wins"
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given more than once", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    """PyYAML's safe loader, reading ``1e-3`` as a float.

    YAML 1.1 wants a dot in a float (``1.0e-3``); configs are written by
    people, so exponent-only numbers count as floats here as in YAML 1.2.
    """


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


def parse_yaml(text: str) -> Any:
    """Parse YAML with the safe config loader."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file with a safe loader."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
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
            problems.append(f"--set {override!r}: expected KEY=VALUE, e.g. optimizer.lr=0.01")
            continue
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        try:
            _set_dotted(data, key.split("."), value)
        except (KeyError, IndexError, TypeError) as e:
            problems.append(f"--set {key}: {e.args[0] if e.args else e}")
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
