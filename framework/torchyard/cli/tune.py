"""``torchyard tune``: a hyper-parameter sweep on Optuna (:mod:`torchyard.tune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from torchyard.cli._common import ConfigArg, SetOpt, host, user_errors


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)


@user_errors
def tune(
    config_path: ConfigArg,
    space: Annotated[
        Path,
        typer.Option(
            "--space", help="Search space: YAML mapping dotted config paths to ranges or choices.", show_default=False
        ),
    ],
    trials: Annotated[
        int,
        typer.Option("--trials", "-n", help="Trials of the whole study, all workers together.", show_default=False),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Study folder: trial_NNNN/ runs, best.yaml, plots (default: runs/tune/<study name>).",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL, e.g. postgresql://user:pw@host/db, shared by workers on several "
            "machines (default: sqlite:///<out>/study.db).",
            show_default=False,
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="Study to create or join (default: <config>-<space> file stems).", show_default=False),
    ] = None,
    pruner: Annotated[
        str, typer.Option("--pruner", help="Stop poor trials early on the per-epoch monitored value: median, hyperband or none.")
    ] = "median",
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the sampler (TPE), for a reproducible single-worker sweep.", show_default=False)
    ] = None,
    heartbeat: Annotated[
        int,
        typer.Option("--heartbeat", help="Seconds between a worker's heartbeats; a trial silent 3x as long is marked failed."),
    ] = 30,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each trial's run output, not only how it ended.")
    ] = False,
    overrides: SetOpt = None,
) -> None:
    """Search hyper-parameters: each trial an ordinary run under --out; ends with a table,
    best.yaml and plots. Re-run the same command to continue a study, or start it on
    several machines with one --storage to share the work."""
    from torchyard.loop import TrainingInterrupted
    from torchyard.tune import tune as run_tune

    try:
        run_tune(
            config_path,
            space,
            trials=trials,
            out=out,
            storage=storage,
            study_name=study_name,
            pruner=pruner,
            seed=seed,
            overrides=overrides or (),
            heartbeat=heartbeat,
            verbose=verbose,
            host=host(),
            echo=typer.echo,
        )
    except TrainingInterrupted as stop:
        typer.echo(
            "interrupted: the running trial is recorded as failed; run the same command to continue the study",
            err=True,
        )
        raise typer.Exit(stop.exit_code) from None
