"""Config validation errors as one line each: dotted path, what is wrong,
and for an unknown name or key the closest matches ("did you mean ...?").

:func:`format_errors` turns a pydantic ``ValidationError`` of the run
config model (:mod:`torchyard.config`) into those lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from torchyard import kinds
from torchyard.config import (
    EarlyStopping,
    LoaderConfig,
    RunConfig,
    TrainerConfig,
    section_model,
)
from torchyard.config_io import SHOW_CHARS, show_value
from torchyard.errors import TorchyardError, did_you_mean
from torchyard.kinds import Section
from torchyard.registry import Registry
from torchyard.splits import SplitConfig

__all__ = ["format_errors"]


def format_errors(
    error: ValidationError, data: Mapping[str, Any], registry: Registry, model: type[RunConfig]
) -> list[str]:
    broken = model.broken
    tags = {r.qualified_name for r in registry.records()}
    lines: list[str] = []
    errors = error.errors(include_url=False)
    paths = [_data_path([p for p in e["loc"] if not (isinstance(p, str) and p in tags)], data) for e in errors]
    deeper = {".".join(loc[:i]) for loc in paths for i in range(1, len(loc))}
    for err, loc in zip(errors, paths, strict=True):
        path = ".".join(_short(part) for part in loc) or "<config>"
        if err["type"] == "literal_error" and ".".join(loc) in deeper:
            continue  # a union's literal branch ('balanced'), when another branch got further
        kind = _kind_at(loc)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found") and kind:
            lines.append(_component_name_problem(path, kind, _get(data, loc), registry, broken))
            continue
        if err["type"] == "extra_forbidden":
            key = loc[-1]
            allowed = _allowed_keys(loc[:-1], data, registry, model)
            # difflib is quadratic: a huge key gets no suggestion rather than a long wait
            hint = did_you_mean(key, allowed) if len(key) <= _MAX_NAME else ""
            lines.append(f"{path}: unknown key{hint}")
            continue
        lines.append(f"{path}: {_describe(err)}")
    return list(dict.fromkeys(lines))


def _section_at(loc: Sequence[str]) -> tuple[str, Section] | None:
    """The component kind and section that ``loc`` lies in, if any."""
    for kind in kinds.TABLE:
        for section in kind.sections:
            if loc and section.name == loc[0]:
                return kind.name, section
    return None


def _data_path(loc: Sequence[Any], data: Any) -> list[str]:
    """``loc`` without the names pydantic gives union branches
    (``list[constrained-float]``, ``literal['balanced']``): only the keys and
    indexes the config itself has, plus a last key it lacks (a missing one)."""
    out: list[str] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            out.append(str(part))
            node = node[part]
        elif isinstance(node, Mapping) and (part in node or last):
            out.append(str(part))
            node = node.get(part)
        elif not isinstance(part, str) or "[" not in part and not part.startswith(("function-", "json-")):
            out.append(str(part))  # not a branch name: keep it (its value is past what data holds)
            node = None
    return out


def _kind_at(loc: Sequence[str]) -> str | None:
    """The component kind of the component at ``loc``, if it is one."""
    found = _section_at(loc)
    return found[0] if found is not None and len(loc) >= found[1].depth else None


def _allowed_keys(
    loc: Sequence[str], data: Any, registry: Registry, model: type[BaseModel]
) -> list[str]:
    """The keys allowed at ``loc``, for did-you-mean on unknown keys."""
    if not loc:
        return list(model.model_fields)
    section = loc[0]
    if section in ("trainer", "loader"):
        target: type[BaseModel] = TrainerConfig if section == "trainer" else LoaderConfig
        if len(loc) > 1 and loc[1] == "early_stopping":
            target = EarlyStopping
        return list(target.model_fields)
    if section == "split":
        return list(SplitConfig.model_fields)
    found = _section_at(loc)
    if found is not None and found[1].shape == "splits" and len(loc) == 1:
        # the lists, and the settings of the section's static model (transforms.batch_off_last_epochs)
        static = getattr(RunConfig.model_fields.get(section), "annotation", None)
        return list(dict.fromkeys([key for key, _ in found[1].splits] + list(getattr(static, "model_fields", {}))))
    kind = _kind_at(loc)
    spec = _get(data, loc)
    if kind is None or not isinstance(spec, Mapping):
        return []
    try:
        fields = section_model(registry.get(kind, str(spec.get("name")))).model_fields
    except TorchyardError:
        return []
    return [f.alias or n for n, f in fields.items()]


def _component_name_problem(
    path: str, kind: str, value: Any, registry: Registry, broken: Mapping[str, str]
) -> str:
    if not isinstance(value, Mapping):
        return f"{path}: expected a mapping like {{name: ..., <params>}}, got {_show(value)}"
    name = value.get("name")
    if name is None:
        return f"{path}: missing 'name' (which {kind} to use)"
    if not isinstance(name, str):
        return f"{path}.name: expected a {kind} name, got {_show(name)}"
    if len(name) > _MAX_NAME:
        return f"{path}: unknown {kind} {_show(name)}"
    try:
        record = registry.get(kind, name)
    except TorchyardError as e:
        return f"{path}: {e}"
    return f"{path}: {broken.get(record.qualified_name, f'{kind} {name!r} is unusable')}"


def _get(data: Any, loc: Sequence[str]) -> Any:
    for part in loc:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


_NUMBER_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_EXPECTED = {
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
    "finite_number": "a finite number",
}


def _describe(err: Mapping[str, Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required, but missing"
    if kind in _NUMBER_BOUNDS:
        bound = ctx.get(_BOUND_KEYS[kind])
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"expected a number {_NUMBER_BOUNDS[kind]} {bound}, got {_show(value)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the allowed values')}, got {_show(value)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_show(value)}"
    if kind in ("too_short", "too_long"):
        return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(value)}"
    if kind == "value_error":
        return f"{ctx.get('error', err['msg'])}"
    return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(value)}"


_MAX_NAME = 64
"""No component name or key is longer; a longer one is shown cut and gets no suggestions."""


def _short(part: str) -> str:
    """A location part (a key the user wrote) cut to a readable length."""
    return part if len(part) <= SHOW_CHARS else part[: SHOW_CHARS - 3] + "..."


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    return show_value(value)
