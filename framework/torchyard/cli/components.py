"""Commands that describe what is installed: list, show, plugins, schema.

``list`` and ``plugins`` never import torch: they read the registry, whose
records hold their factories as import paths until used.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from torchyard import kinds
from torchyard.cli._common import JsonOpt, host, user_errors
from torchyard.errors import ConfigError, did_you_mean

_KINDS_TEXT = ", ".join(kinds.names())


def kind_argument(value: str) -> str:
    """Accept a kind's name, plural or alias (``loss``, ``Losses``, ``data``),
    in any case; reject anything else clearly."""
    kind = kinds.from_word(value)
    if kind is None:
        names = kinds.names()
        raise ConfigError(
            f"unknown component kind '{value}'"
            + (did_you_mean(value.lower(), names) or f"; kinds are {', '.join(names)}")
        )
    return kind.name


def register(app: typer.Typer) -> None:
    app.command("list")(list_components)
    app.command("show")(show_component)
    app.command("plugins")(list_plugins)
    app.command("schema")(print_schema)


@user_errors
def list_components(
    kind: Annotated[
        str | None,
        typer.Argument(help=f"Only this kind: {_KINDS_TEXT} (or a plural: losses)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the components every loaded plugin provides."""
    registry = host().registry
    records = registry.records(kind_argument(kind) if kind else None)
    if as_json:
        rows = [
            {
                "kind": r.kind,
                "name": r.name,
                "qualified_name": r.qualified_name,
                "description": r.summary,
                "plugin": r.plugin,
                "distribution": r.distribution,
                "version": r.version,
                **({"options": r.shown_options()} if r.options else {}),
            }
            for r in records
        ]
        typer.echo(json.dumps(rows, indent=2))
        _warn_failed()  # on stderr: the JSON on stdout stays clean
        return
    _print_rows(
        ("kind", "name", "description", "plugin"),
        [(r.kind, r.name, r.summary, r.source) for r in records],
        empty="no components registered (see `torchyard plugins`)",
    )
    for record in registry.shadowed():
        typer.echo(
            f"note: {record.kind} '{record.name}' from {record.source} shares a built-in's name; "
            f"the bare name means the built-in, name it '{record.qualified_name}'"
        )
    for conflict in registry.conflicts():
        names = ", ".join(f"'{r.qualified_name}'" for r in conflict)
        typer.echo(
            f"note: {conflict[0].kind} '{conflict[0].name}' is offered by several plugins; "
            f"name one of {names}"
        )
    _warn_failed()


@user_errors
def show_component(
    kind: Annotated[str, typer.Argument(help=f"The component kind: {_KINDS_TEXT} (or a plural).")],
    name: Annotated[str, typer.Argument(help="The component name, e.g. cross_entropy.")],
    as_json: JsonOpt = False,
) -> None:
    """Document one component: its parameters, types, defaults and constraints."""
    from torchyard.config import section_model

    record = host().registry.get(kind_argument(kind), name)
    params = [p for p in describe_params(section_model(record)) if p["name"] != "name"]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "kind": record.kind,
                    "name": record.name,
                    "qualified_name": record.qualified_name,
                    "description": record.summary or _doc_summary(record.factory),
                    "plugin": record.plugin,
                    "distribution": record.distribution,
                    "version": record.version,
                    "options": record.shown_options(),
                    "params": params,
                },
                indent=2,
                default=str,
            )
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{record.kind} {record.name}[/bold]  [dim]{escape(record.source)}[/dim]")
    description = record.summary or _doc_summary(record.factory)
    if description:
        console.print(description, highlight=False, markup=False)
    for option, value in record.shown_options().items():
        shown = ", ".join(value) if isinstance(value, tuple | list) else value
        console.print(f"{option}: {shown}", highlight=False, markup=False)
    if not params:
        console.print("no parameters")
        return
    table = Table(show_edge=False)
    for column in ("param", "type", "default", "constraints", "description"):
        table.add_column(column)
    for p in params:
        default = "required" if p["required"] else json.dumps(p["default"], default=str)
        cells = (p["name"], p["type"], default, p["constraints"], p["description"] or "")
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
    for p in params:
        if p.get("choices"):  # a parameter that names one of many things (timm's arch)
            console.print(f"\n{p['name']}: one of {len(p['choices'])}", highlight=False, markup=False)
            console.print(" ".join(p["choices"]), highlight=False, markup=False, overflow="fold")


def _print_rows(header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
    """Aligned plain-text columns; the last-but-one column is cut to the
    terminal's width. (A rich table of ~200 rows takes a quarter second to
    render, and listing must stay fast.)"""
    import shutil
    import sys

    if not rows:
        typer.echo(empty)
        return
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    flexible = len(header) - 2
    if sys.stdout.isatty():
        room = shutil.get_terminal_size().columns - sum(w + 2 for i, w in enumerate(widths) if i != flexible)
        widths[flexible] = max(20, min(widths[flexible], room))
    lines = []
    previous = None
    for row in [header, *rows]:
        cells = [str(c) for c in row]
        if len(cells[flexible]) > widths[flexible]:
            cells[flexible] = cells[flexible][: widths[flexible] - 1] + "…"
        if row is not header and cells[0] == previous:
            cells[0] = ""  # the kind once per group
        else:
            previous = cells[0] if row is not header else None
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    typer.echo("\n".join(lines))


def describe_params(model: Any) -> list[dict[str, Any]]:
    """One dict per parameter: name, type, default, required, constraints, description."""
    schema = model.model_json_schema()
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    out = []
    for field_name, info in model.model_fields.items():
        name = info.alias or field_name
        prop = properties.get(name, {})
        out.append(
            {
                "name": name,
                "type": _type_text(prop, schema.get("$defs", {})),
                "default": None if info.is_required() else _plain(info.get_default(call_default_factory=True)),
                "required": name in required,
                "constraints": _constraints_text(prop),
                "description": info.description,
                # the values of a str parameter too many for its type (a params
                # field's json_schema_extra={"choices": [...]})
                **({"choices": list(prop["choices"])} if isinstance(prop.get("choices"), list) else {}),
            }
        )
    return out


_CONSTRAINTS = {
    "exclusiveMinimum": ">",
    "minimum": ">=",
    "exclusiveMaximum": "<",
    "maximum": "<=",
    "minLength": "min length",
    "maxLength": "max length",
    "minItems": "min items",
    "maxItems": "max items",
}


def _constraints_text(prop: dict[str, Any]) -> str:
    parts = []
    for variant in [prop, *prop.get("anyOf", [])]:
        for key, symbol in _CONSTRAINTS.items():
            if key in variant:
                parts.append(f"{symbol} {variant[key]}")
    return ", ".join(dict.fromkeys(parts))


def _type_text(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " | ".join(_type_text(p, defs) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_type_text(p, defs) for p in prop["prefixItems"]) + "]"
        items = prop.get("items")
        return f"list[{_type_text(items, defs)}]" if items else "list"
    if kind == "object":
        return "mapping"
    return {"number": "float", "integer": "int", "boolean": "bool", "string": "str", "null": "null"}.get(
        kind or "", "any"
    )


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def _doc_summary(factory: Any) -> str:
    doc = (getattr(factory, "__doc__", None) or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ").strip() if doc else ""


@user_errors
def list_plugins(as_json: JsonOpt = False) -> None:
    """List plugins: distribution, version, components and load status."""
    plugins = sorted(host().plugins.values(), key=lambda p: p.name)
    shadowed: dict[str, list[str]] = {}
    for record in host().registry.shadowed():
        shadowed.setdefault(record.plugin, []).append(record.name)
    if as_json:
        rows = [{**p.as_dict(), "shadowed_by_builtins": shadowed.get(p.name, [])} for p in plugins]
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(show_edge=False)
    for column in ("plugin", "distribution", "version", "components", "status"):
        table.add_column(column)
    for p in plugins:
        counts: dict[str, int] = {}
        for kind, _ in p.components:
            counts[kind] = counts.get(kind, 0) + 1
        components = ", ".join(f"{n} {k}" for k, n in counts.items()) or "-"
        if p.status == "ok" and p.name in shadowed:
            names = ", ".join(shadowed[p.name])
            status = f"[green]ok[/green]; [yellow]shadowed by built-ins[/yellow]: {names} (use {p.name}:NAME)"
        elif p.status == "ok":
            status = "[green]ok[/green]"
        elif p.status == "disabled":
            status = "[dim]disabled[/dim]"
        elif p.status == "unavailable":  # an optional dependency is missing: no failure
            status = f"[yellow]unavailable[/yellow]: {escape(p.error or '')}"
        else:
            status = f"[red]failed[/red]: {p.error}\n[dim]{p.hint}[/dim]"
        table.add_row(p.name, p.distribution or "-", p.version or "-", components, status)
    console.print(table)


@user_errors
def print_schema(
    indent: Annotated[int, typer.Option(help="JSON indentation.")] = 2,
) -> None:
    """Print the JSON Schema of a run config, every installed component included."""
    from torchyard.config import build_config_model

    model = build_config_model(host().registry)
    typer.echo(json.dumps(model.model_json_schema(), indent=indent, default=str))
    for name, reason in model.broken.items():  # left out of the schema, and why (stderr: the JSON stays clean)
        typer.echo(f"warning: {name} is left out of the schema: {reason}", err=True)


def _warn_failed() -> None:
    failed = [p for p in host().plugins.values() if p.status == "failed"]
    for p in failed:
        typer.echo(
            f"warning: plugin '{p.name}' failed to load: {p.error} ({p.hint})", err=True
        )
