"""What every command shares: option types, error rendering, the host."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from torchyard.errors import TorchyardError

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[
    Path, typer.Argument(help="Run config, YAML or JSON.", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a config value: dotted.key=value (repeatable), e.g. optimizer.lr=0.01.",
        show_default=False,
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Output directory (default: runs/<config name>/<timestamp>).",
        show_default=False,
    ),
]
PredictOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Output directory (default: runs/<config name>/<timestamp>-predict).",
        show_default=False,
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into an existing, non-empty --out directory: what an earlier run wrote there "
        "(checkpoints, fold_*, report, metrics, ...) is deleted once the run starts; other files stay.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

#: Exit code for user errors (bad config, bad data, bad usage), like click.
USER_ERROR = 2


def render_error(error: TorchyardError) -> None:
    """One line per problem on stderr, no traceback (under torchrun: from
    process 0 only, which every process's identical error would repeat)."""
    if not _rank_zero():
        return
    for problem in error.problems:
        typer.echo(f"error: {problem}", err=True)


def user_errors(func: F) -> F:
    """Turn a :class:`TorchyardError` into its message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TorchyardError as e:
            if os.environ.get("TORCHYARD_DEBUG"):
                raise
            render_error(e)
            raise typer.Exit(USER_ERROR) from None
        except KeyboardInterrupt:
            if _rank_zero():  # under torchrun: once
                typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _rank_zero() -> bool:
    """Whether this is process 0 of a torchrun launch, or no launch at all
    (read from the environment: the CLI's error path must not import torch)."""
    return os.environ.get("RANK", "0") == "0"


def host() -> Any:
    """The process-wide plugin host (plugins loaded on first use)."""
    from torchyard.plugins import get_host

    return get_host()


def is_tty() -> bool:
    return sys.stdout.isatty()
