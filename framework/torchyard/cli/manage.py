"""install / uninstall: pip in torchyard's own interpreter (llm's precedent).

These commands never load plugins, so they work while an installed plugin
is broken -- including to uninstall that very plugin.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("uninstall")(uninstall)


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)


def install(
    packages: Annotated[
        list[str], typer.Argument(help="Distributions (or paths, or requirement specifiers) to install.")
    ],
    upgrade: Annotated[bool, typer.Option("--upgrade", "-U", help="Upgrade if already installed.")] = False,
    editable: Annotated[
        bool, typer.Option("--editable", "-e", help="Install a local project in editable mode.")
    ] = False,
) -> None:
    """Install plugin packages into torchyard's environment, with pip."""
    args = ["install"]
    if upgrade:
        args.append("--upgrade")
    for package in packages:
        args += ["-e", package] if editable else [package]
    _pip(*args)


def uninstall(
    packages: Annotated[list[str], typer.Argument(help="Distributions to remove.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Uninstall plugin packages from torchyard's environment, with pip."""
    _pip("uninstall", *(["-y"] if yes else []), *packages)
