"""Commands that use a config: check, run, predict."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from torchyard.cli._common import (
    ConfigArg,
    OutOpt,
    OverwriteOpt,
    PredictOutOpt,
    SetOpt,
    host,
    user_errors,
)

if TYPE_CHECKING:
    from torchyard.config import RunConfig


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("run")(run)
    app.command("predict")(predict)
    app.command("lr")(preview_lr)
    app.command("ensemble")(ensemble)
    app.command("export")(export)


def _load(config_path: Path, overrides: list[str] | None) -> RunConfig:
    from torchyard.api import load_run_config

    return load_run_config(config_path, overrides or (), host=host())[0]


@user_errors
def check(config_path: ConfigArg, overrides: SetOpt = None) -> None:
    """Validate a config: every section, every component's params, the device."""
    from torchyard.config import COMPONENT_SECTIONS, resolve_monitor

    config = _load(config_path, overrides)
    from torchyard.device import (  # imports torch: after the config
        resolve_device,
        resolve_precision,
    )

    device = resolve_device(config.trainer.device)
    resolve_precision(config.trainer.precision, device)
    if config.writer is not None:  # its file name is checked when it is built (cheap: no data)
        from torchyard.factories import build_component

        build_component(config.writer, where="writer")
    parts = []
    for section in COMPONENT_SECTIONS:
        value = getattr(config, section)
        if value is None:
            continue
        specs = value if isinstance(value, list) else [value]
        names = ", ".join(s.record.name for s in specs) or "-"
        parts.append(f"{section}: {names}")
    typer.echo(f"{config_path}: ok")
    if config.split is not None and not config.split.group:
        typer.echo(
            "warning: split.group is false: if the data has groups (a person's photos), a group "
            "can land on both sides and validation scores will be optimistic",
            err=True,
        )
    typer.echo("  " + "; ".join(parts))
    typer.echo(
        f"  device: {device}, precision: {config.trainer.precision}, monitor: "
        f"{resolve_monitor(config)}"
    )


ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="Continue a run from its checkpoint: a checkpoint file, a run directory (its "
        "checkpoints/last.pt), or 'last' (--out's, or the newest run of this config).",
        show_default=False,
    ),
]
AllowChangesOpt = Annotated[
    bool,
    typer.Option(
        "--allow-changes",
        help="Resume even though the config differs from the checkpoint's (the differences are printed).",
    ),
]


@user_errors
def run(
    config_path: ConfigArg,
    out: OutOpt = None,
    overrides: SetOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = None,
    allow_changes: AllowChangesOpt = False,
) -> None:
    """Train, keep the best checkpoint, predict the test split and write the submission.

    Under torchrun (torchrun --nproc_per_node=N -m torchyard run CONFIG) every
    process trains its share of the data; process 0 writes and prints.
    """
    from torchyard import api, distributed
    from torchyard.loop import TrainingInterrupted

    try:
        result = api.train(
            config_path,
            out=out,
            overrides=overrides or (),
            overwrite=overwrite,
            resume=resume,
            allow_changes=allow_changes,
            host=host(),
        )
    except TrainingInterrupted as stop:
        _report_interruption(stop, config_path, overrides)
        raise typer.Exit(stop.exit_code) from None
    if not distributed.is_main():
        return
    best = result.best_value
    if "folds" in result.summary:
        typer.echo(f"out-of-fold {result.monitor}: {best:.4f}" if best is not None else "done")
    elif best is not None:
        typer.echo(f"best {result.monitor}: {best:.4f} (epoch {result.best_epoch})")
    else:
        typer.echo(f"best {result.monitor}: none")


def _report_interruption(stop: Any, config_path: Path, overrides: list[str] | None) -> None:
    import os
    import shlex
    import signal

    from torchyard import distributed

    if not distributed.is_main():
        return
    name = signal.Signals(stop.signum).name if stop.signum else "signal"
    command = ["torchyard", "run", str(config_path)]
    if stop.world > 1:  # resume it the way it was launched
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(stop.world))
        command = ["torchrun", f"--nproc_per_node={per_node}", "-m", *command]
    for item in overrides or []:
        command += ["--set", item]
    command += ["--resume", str(stop.checkpoint)]
    typer.echo(
        f"interrupted ({name}) at epoch {stop.epoch}, optimizer step {stop.step}; "
        f"resumable checkpoint: {stop.checkpoint}",
        err=True,
    )
    typer.echo(f"resume with: {shlex.join(command)}", err=True)


@user_errors
def predict(
    config_path: ConfigArg,
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            "-c",
            help="A checkpoint (e.g. best.pt), or a run directory: its best checkpoint, or for a "
            "k-fold run every fold's, their probabilities averaged.",
        ),
    ],
    out: PredictOutOpt = None,
    overrides: SetOpt = None,
    overwrite: OverwriteOpt = False,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            "--checkpoints",
            help="Of a run directory: 'best', or 'top_k' (the checkpoints trainer.save_top_k kept, "
            "averaged); default: as the run made its submission (trainer.predict_with).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict the test split with a checkpoint (or a fold ensemble) and write the submission."""
    from torchyard import api, distributed
    from torchyard.errors import ConfigError

    if checkpoints not in (None, "best", "top_k"):
        raise ConfigError(f"--checkpoints: expected 'best' or 'top_k', got {checkpoints[:40]!r}")
    path = api.predict(
        config_path, checkpoint, out=out, overrides=overrides or (), overwrite=overwrite, host=host(),
        checkpoints=checkpoints,  # type: ignore[arg-type]  # checked above
    )  # fmt: skip
    if path is None and distributed.is_main():
        typer.echo("nothing written")


@user_errors
def preview_lr(
    config_path: ConfigArg,
    overrides: SetOpt = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also plot the curve to this PNG file.")
    ] = None,
    every_step: Annotated[
        bool, typer.Option("--every-step", help="One row per optimizer step, not per epoch.")
    ] = False,
) -> None:
    """Preview the learning-rate schedule of a config, without training (and without a model)."""
    from rich.console import Console
    from rich.table import Table

    from torchyard.device import num_threads
    from torchyard.run import preview_lr as preview

    config = _load(config_path, overrides)
    with num_threads(config.trainer.num_threads):
        rows, length = preview(config)
    groups = len(rows[0][2])
    table = Table(show_edge=False)
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    for g in range(groups):
        table.add_column("lr" if groups == 1 else f"lr group {g}", justify="right")
    shown = (
        rows if every_step else [r for i, r in enumerate(rows) if i == 0 or r[0] != rows[i - 1][0]]
    )
    if not every_step and rows[-1] is not shown[-1]:
        shown.append(rows[-1])
    for epoch, step, lrs in shown:
        table.add_row(str(epoch), str(step), *(f"{lr:.4e}" for lr in lrs))
    Console().print(table)
    typer.echo(
        f"{length.epochs} epochs x {length.steps_per_epoch} optimizer steps; "
        f"lr from {rows[0][2][0]:.4e} to {rows[-1][2][0]:.4e}"
    )
    if png is not None:
        _plot_lr(rows, png)
        typer.echo(f"plot: {png}")


@user_errors
def ensemble(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories (two or more).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the ensemble's submission goes (new or empty).")],
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="One weight per run, comma-separated (e.g. 2,1), or 'fit': fitted on the runs' "
            "out-of-fold (oof.csv) or validation (val_predictions.csv) predictions; default: equal.",
        ),
    ] = None,
) -> None:
    """Average the test predictions several runs kept (different models, configs or
    k-folds) and write the submission with the first run's writer."""
    from torchyard.ensemble import ensemble_runs
    from torchyard.errors import ConfigError

    parsed: list[float] | Literal["fit"] | None = None
    if weights == "fit":
        parsed = "fit"
    elif weights is not None:
        try:
            parsed = [float(w) for w in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights: expected numbers separated by commas, got {weights[:80]!r}") from None
    path, record = ensemble_runs(run_dirs, out, weights=parsed, host=host())
    shown = ", ".join(f"{w:.3g}" for w in record["weights"])
    if "fit" in record:
        fit = record["fit"]
        typer.echo(f"weights fitted on {fit['on']} ({fit['samples']} samples, {fit['loss']}):")
        for run_dir, w, loss in zip(run_dirs, record["weights"], fit["run_losses"], strict=True):
            typer.echo(f"  {w:.3f}  {run_dir}  ({fit['loss']} {loss:.4f})")
        typer.echo(f"  blend {fit['loss']} {fit['blend_loss']:.4f}")
    typer.echo(f"averaged {len(run_dirs)} runs ({record['task']}, weights {shown})")
    typer.echo(f"submission: {path}" if path is not None else "no writer configured: test_predictions.csv only")


@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.", show_default=False)],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="weights (safetensors and the config: torchyard.load, torchyard predict -c), "
            "onnx (needs torchyard\\[export]) or torch-export (a torch.export .pt2 program).",
        ),
    ] = "weights",
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            "-c",
            help="best (every fold's for a k-fold run), top_k (those trainer.save_top_k kept), last, "
            "or a checkpoint file; default: those the run made its submission with.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where the export goes (new or empty; default RUN_DIR/export/FORMAT).", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty --out: replace the export there.")
    ] = False,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", help="Largest allowed difference from the eager model's outputs, relative to their magnitude."),
    ] = 1e-4,
) -> None:
    """Write what inference needs and nothing else (no optimizer state), checked
    against the eager model's outputs on a sample batch."""
    from torchyard.export import export_run, human_size

    result = export_run(
        run_dir, format, checkpoint=checkpoint, out=out, force=force, tolerance=tolerance, host=host()
    )
    models = len(result.checkpoints)
    what = f"{models} models, averaged when loaded" if models > 1 else "1 model"
    named = {"best": "best checkpoint", "last": "last checkpoint", "top_k": "top-k checkpoints"}
    which = named.get(checkpoint, checkpoint) if checkpoint else "the submission's checkpoints"
    typer.echo(f"exported {result.format} ({what}; {which}) to {result.out_dir}")
    width = max(len(path.name) for path in result.files)
    for path in result.files:
        typer.echo(f"  {path.name:<{width}}  {human_size(path.stat().st_size):>9}")
    typer.echo(
        f"checked on {result.sample}: max abs difference from the eager model "
        f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    )


def _plot_lr(rows: list[tuple[int, int, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchyard.files import atomic_path

    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=120)
    steps = [r[1] for r in rows]
    for g in range(len(rows[0][2])):
        axes.plot(steps, [r[2][g] for r in rows], label=f"group {g}")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.grid(alpha=0.3)
    if len(rows[0][2]) > 1:
        axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


__all__ = ["check", "predict", "register", "run"]
