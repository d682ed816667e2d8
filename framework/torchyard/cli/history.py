"""``torchyard runs``: a table of the runs under a folder, and what differs
between them. Reads run directories only; writes nothing; never imports torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from torchyard.cli._common import JsonOpt, user_errors


def register(app: typer.Typer) -> None:
    app.command("runs")(list_runs)


@user_errors
def list_runs(
    directory: Annotated[
        Path, typer.Argument(help="Where to look for run directories (searched recursively).", metavar="DIR")
    ] = Path("runs"),
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="when (newest first), best (best first, ranked within each monitor), time (shortest "
            "first), epochs (most first), run, status, or a dotted config key such as optimizer.lr.",
        ),
    ] = "when",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the --sort order.")] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="Keep runs where KEY=VALUE (repeatable): a dotted config key (model.name=resnet18, "
            "optimizer.lr=1e-3), status (done, unfinished, running, broken) or monitor.",
            show_default=False,
        ),
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option("--monitor", help="Keep runs that monitor this value (e.g. val/accuracy).", show_default=False),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show at most this many runs, after sorting (0: all).", min=0)
    ] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the runs under DIR (default: runs/): status, epochs, best value,
    time, and the config keys whose values differ between the runs shown."""
    from torchyard.runs_table import config_columns, filter_runs, find_runs, format_table, sort_runs

    found = find_runs(directory)
    runs = filter_runs(found, filters or [], monitor)
    if not runs:
        # like `torchyard list` with nothing to list: a message, exit 0 (with --json: [] on stdout)
        if as_json:
            typer.echo("[]")
        none = (
            f"none of the {len(found)} runs under {directory} matches the --filter/--monitor given"
            if found
            else f"no runs under {directory} (a run directory holds config.yaml or summary.json)"
        )
        typer.echo(none, err=as_json)
        return
    runs = sort_runs(runs, sort, reverse)
    shown = runs[:limit] if limit else runs
    keys = config_columns(shown)
    if as_json:
        typer.echo(json.dumps([run.as_dict(keys) for run in shown], indent=2))
        return
    typer.echo(format_table(shown, keys))
    monitors = sorted({run.monitor for run in shown if run.monitor})
    if sort == "best" and len(monitors) > 1:
        typer.echo(f"note: ranked by best within each monitor ({', '.join(monitors)}), not across them")
    if len(shown) < len(runs):
        typer.echo(f"({len(shown)} of {len(runs)} runs; --limit 0 shows all)")
