"""The ``torchyard`` command line: a thin typer app over the library.

Each command group lives in its own module; heavy imports (torch, pandas)
happen inside command bodies so ``torchyard --help`` and ``torchyard list``
stay fast.
"""

from __future__ import annotations

import typer

from torchyard.cli import components, history, manage, runs, tune

__all__ = ["app", "main"]

app = typer.Typer(
    name="torchyard",
    help="Train, validate, predict and write submissions from one YAML config.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
components.register(app)
runs.register(app)
history.register(app)
manage.register(app)
tune.register(app)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    trace_hooks: bool = typer.Option(
        False,
        "--trace-hooks",
        help="Log every plugin hook call (plugin, hook, milliseconds) to stderr; "
        "same as TORCHYARD_TRACE_HOOKS=1.",
    ),
) -> None:
    if trace_hooks:
        import os

        os.environ["TORCHYARD_TRACE_HOOKS"] = "1"
    if version:
        from torchyard import __version__

        typer.echo(f"torchyard {__version__}")
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    app()
