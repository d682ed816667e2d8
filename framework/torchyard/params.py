"""Params schemas derived from a factory's signature, type hints and docstring.

Wrapping ``torch.optim.AdamW`` is one line because its keyword parameters,
their types, defaults and descriptions are all in its signature and
docstring: :func:`derive_params` turns them into a pydantic model with
``extra="forbid"``. Types pydantic cannot check from a config (tensors,
modules, callables) are dropped from unions, or replaced by the type of the
default value; a required parameter of such a type makes the factory
unusable from a config and is reported.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator
from pydantic.fields import FieldInfo

__all__ = [
    "INT_LIMIT",
    "SECTION_ATTRIBUTES",
    "ParamsModel",
    "derive_params",
    "params_to_kwargs",
    "parse_param_docs",
]

#: The largest integer (in size) a params field takes unless it declares its
#: own upper bound (``le``/``lt``): 2**31-1, what a C ``int`` holds. Python
#: ints have no limit, and 2**70 handed to torch, NumPy or a C library ends
#: in an overflow traceback, or in an allocation that never returns.
INT_LIMIT = 2**31 - 1


class ParamsModel(BaseModel):
    """Base for params schemas: unknown keys, infinities and NaN are errors,
    and so is ``true`` where a number is expected (pydantic would read it as 1).
    Integers, also inside lists and mappings, lie within ``±INT_LIMIT`` unless
    the field declares an upper bound of its own."""

    model_config = ConfigDict(
        extra="forbid", protected_namespaces=(), allow_inf_nan=False, populate_by_name=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _numbers_only(field.annotation):
                raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_ints(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel) or value is None or isinstance(value, str | float):
            return value
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata):
            return value
        huge = _huge_int(value)
        if huge is not None:
            digits = int(abs(huge).bit_length() * 0.30103) + 1  # str() refuses > 4300 digits
            shown = str(huge) if digits <= 24 else f"a number of about {digits} digits"
            bound = f"<= {INT_LIMIT}" if huge > 0 else f">= {-INT_LIMIT}"
            raise ValueError(f"expected a number {bound}, got {shown}")
        return value


def _huge_int(value: Any, depth: int = 0) -> int | None:
    """The first integer beyond ``±INT_LIMIT`` in ``value``, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) > INT_LIMIT else None
    if depth > 100:
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        for item in value:
            found = _huge_int(item, depth + 1)
            if found is not None:
                return found
    return None


def _numbers_only(tp: Any) -> bool:
    """Whether ``tp`` admits int or float but not bool (nor anything)."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _numbers_only(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return bool(args) and all(a in (int, float) or _numbers_only(a) for a in args)
    return tp in (int, float)


_SCALARS: tuple[type, ...] = (bool, int, float, str, Path, type(None))

#: What a config section's class (:class:`torchyard.config.ComponentSpec`)
#: has besides fields: a parameter so named is renamed (``record_``, aliased
#: ``record``) like one that clashes with pydantic's own attributes.
SECTION_ATTRIBUTES = frozenset({"record", "factory_kwargs"})
_RESERVED = set(dir(BaseModel)) | SECTION_ATTRIBUTES


def derive_params(
    factory: Callable[..., Any],
    *,
    model_name: str,
    skip_first: bool = False,
    refine: Mapping[str, FieldInfo | None] | None = None,
) -> type[BaseModel]:
    """Build a pydantic model of ``factory``'s keyword parameters.

    :param factory: a function or class.
    :param model_name: the model's name, shown in JSON Schema titles.
    :param skip_first: leave out the first positional parameter (the
        parameter groups of an optimizer, the optimizer of a scheduler).
    :param refine: per parameter, a ``pydantic.Field(...)`` whose
        constraints and description are added to the derived field, or
        ``None`` to hide a parameter (it keeps its default).
    :raises TypeError: a required parameter has a type no config can hold,
        or ``refine`` names a parameter the factory does not have.
    """
    refine = dict(refine or {})
    signature = inspect.signature(factory)
    hints = _type_hints(factory)
    docs = parse_param_docs(inspect.getdoc(factory) or "")
    if inspect.isclass(factory):
        docs = {**parse_param_docs(inspect.getdoc(factory.__init__) or ""), **docs}

    parameters = list(signature.parameters.values())
    if skip_first and parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        parameters = parameters[1:]

    fields: dict[str, Any] = {}
    for p in parameters:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name in refine and refine[p.name] is None:
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"parameter '{p.name}' is required and cannot be hidden")
            continue
        has_default = p.default is not inspect.Parameter.empty
        raw = hints.get(p.name, p.annotation)
        if isinstance(raw, str):  # an annotation nothing could resolve
            raw = inspect.Parameter.empty
        annotation = _config_type(raw, p.default)
        if annotation is None:
            if not has_default:
                raise TypeError(
                    f"required parameter '{p.name}' has a type a config cannot hold "
                    f"({_type_name(hints.get(p.name, p.annotation))})"
                )
            continue
        default = p.default if has_default else ...
        if has_default and not _json_friendly(default):
            default = None
            annotation = annotation | None
        extra = refine.get(p.name)
        if extra is not None:
            annotation = Annotated[annotation, extra]
        description = _annotated_description(annotation) or docs.get(p.name, "")
        field_name, alias = (p.name + "_", p.name) if p.name in _RESERVED else (p.name, None)
        fields[field_name] = (
            annotation,
            Field(default=default, description=description or None, alias=alias),
        )
    unknown = set(refine) - {p.name for p in parameters}
    if unknown:
        raise TypeError(f"refine names unknown parameters: {', '.join(sorted(unknown))}")
    doc = inspect.getdoc(factory) or ""
    return create_model(
        model_name,
        __base__=ParamsModel,
        __doc__=doc.split("\n\n")[0] if doc else None,
        **fields,
    )


def params_to_kwargs(params: BaseModel) -> dict[str, Any]:
    """The keyword arguments a validated params instance stands for.

    Nested values keep their validated Python types (tuples stay tuples),
    unlike ``model_dump``; aliased fields go back to their real names.
    """
    out: dict[str, Any] = {}
    for name, info in type(params).model_fields.items():
        if name == "name":
            continue
        out[info.alias or name] = getattr(params, name)
    return out


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; one that cannot be resolved is left out.

    ``typing.get_type_hints`` gives up on the whole function when one
    annotation names something imported only for type checkers (torch's
    schedulers do this), so each annotation is then resolved on its own.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - fall back to one annotation at a time
        pass
    namespace: dict[str, Any] = {**vars(typing), **vars(abc)}
    module = inspect.getmodule(target)
    if module is not None:
        namespace.update(vars(module))
    hints: dict[str, Any] = {}
    for name, annotation in getattr(target, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - as typing does
            except Exception:  # noqa: BLE001
                continue
        hints[name] = annotation
    return hints


def _config_type(annotation: Any, default: Any) -> Any:
    """The annotation restricted to what a YAML config can express, or None.

    Unannotated parameters take the type of their default (or any value);
    a parameter annotated only with types no config can hold (a tensor, a
    module) falls back to the type of a plain default, else is None.
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        if default is inspect.Parameter.empty or default is None:
            return Any
        return _type_of_default(default)
    cleaned = _clean(annotation)
    if cleaned is None:
        return _type_of_default(default)
    return cleaned


def _clean(tp: Any) -> Any:
    origin = get_origin(tp)
    if tp in _SCALARS:
        return tp
    if origin is Annotated:
        base, *meta = get_args(tp)
        inner = _clean(base)
        args = (inner, *meta)
        return None if inner is None else Annotated[args]
    if origin is Literal:
        return tp
    if origin in (Union, types.UnionType):
        kept = [c for c in (_clean(a) for a in get_args(tp)) if c is not None]
        if not kept or kept == [type(None)]:
            return None
        result = kept[0]
        for k in kept[1:]:
            result = Union[result, k]  # noqa: UP007 - building a union at run time
        return result
    if origin in (list, tuple, set, frozenset, dict, abc.Sequence, abc.Iterable, abc.Collection):
        args = get_args(tp)
        if not args:
            return origin if origin in (list, tuple, dict) else list
        cleaned = [a if a is Ellipsis else _clean(a) for a in args]
        if any(c is None for c in cleaned):
            return None
        container = {
            abc.Sequence: list,
            abc.Iterable: list,
            abc.Collection: list,
            set: list,
            frozenset: list,
        }.get(origin, origin)
        if container is list and len(cleaned) != 1:
            return None
        return container[tuple(cleaned)] if len(cleaned) > 1 else container[cleaned[0]]
    if tp in (list, tuple, dict):
        return tp
    return None


def _type_of_default(default: Any) -> Any:
    if isinstance(default, bool | int | float | str):
        return type(default)
    if isinstance(default, tuple) and all(isinstance(v, int | float) for v in default):
        return tuple[float, ...]
    if isinstance(default, list):
        return list
    return None


def _json_friendly(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_json_friendly(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_friendly(v) for k, v in value.items())
    return False


def _annotated_description(tp: Any) -> str | None:
    if get_origin(tp) is Annotated:
        for meta in get_args(tp)[1:]:
            if isinstance(meta, FieldInfo) and meta.description:
                return meta.description
    return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ITEM = re.compile(r"^:param\s+(?:[\w\[\], ]+\s+)?(\w+):\s*(.*)$")


def parse_param_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section or Sphinx
    ``:param name:`` fields, whitespace collapsed."""
    found: dict[str, str] = {}
    lines = doc.expandtabs().splitlines()
    current: str | None = None
    section_indent: int | None = None
    item_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        sphinx = _SPHINX_ITEM.match(stripped)
        if sphinx:
            current = sphinx.group(1)
            found[current] = sphinx.group(2)
            section_indent, item_indent = None, indent
            continue
        if _GOOGLE_SECTION.match(stripped):
            section_indent, item_indent, current = indent, None, None
            continue
        if not stripped:
            continue
        if section_indent is not None:
            if indent <= section_indent:
                section_indent, current = None, None
                continue
            if item_indent is None:
                item_indent = indent
            item = _GOOGLE_ITEM.match(stripped)
            if indent == item_indent and item:
                current = item.group(1).lstrip("*")
                found[current] = item.group(3)
                continue
        if current is not None and item_indent is not None and indent > item_indent:
            found[current] = (found[current] + " " + stripped).strip()
        elif section_indent is None:
            current = None
    return {k: " ".join(v.split()) for k, v in found.items()}
