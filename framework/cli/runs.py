"""Commands that use a config: check, run, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("run")(run)
    app.command("predict")(predict)
    app.command("lr")(preview_lr)


def _load(config_path: Path, overrides: list[str] | None) -> Any:
    from torchyard.config import load_config

    return load_config(config_path, host().registry, overrides or [])


@user_errors
def check(config_path: ConfigArg, overrides: SetOpt = None) -> None:
    """Validate a config: every section, every component's params, the device."""
    from torchyard.config import COMPONENT_SECTIONS, record_of, resolve_monitor

    config = _load(config_path, overrides)
    from torchyard.device import (  # imports torch: after the config
        resolve_device,
        resolve_precision,
    )
    device = resolve_device(config.trainer.device)
    resolve_precision(config.trainer.precision, device)
    parts = []
    for section in COMPONENT_SECTIONS:
        value = getattr(config, section)
        if value is None:
            continue
        specs = value if isinstance(value, list) else [value]
        names = ", ".join(record_of(s).name for s in specs) or "-"
        parts.append(f"{section}: {names}")
    typer.echo(f"{config_path}: ok")
    typer.echo("  " + "; ".join(parts))
    typer.echo(f"  device: {device}, precision: {config.trainer.precision}, monitor: "
               f"{resolve_monitor(config)}")


@user_errors
def run(
    config_path: ConfigArg,
    out: OutOpt = None,
    overrides: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train, keep the best checkpoint, predict the test split and write the submission."""
    from torchyard.console import Reporter
    from torchyard.kfold import fit_folds, is_kfold
    from torchyard.loop import fit_and_submit
    from torchyard.run import build_run, choose_run_dir, create_run_dir, write_resolved_config

    config = _load(config_path, overrides)
    out_dir = choose_run_dir(out, config_path, overwrite=overwrite)
    reporter = Reporter(progress=config.trainer.progress)
    with _threads(config.trainer.num_threads):
        if is_kfold(config):
            # fold 0 is built (and checked) before anything is written
            probe = build_run(config, host(), out_dir / "fold_0")
            _warn_split(reporter, probe)
            create_run_dir(out_dir)
            write_resolved_config(out_dir, config, probe.resolved)
            reporter.info(f"run directory: {out_dir}  ({probe.extras['folds']} folds, device {probe.device})")
            summary = fit_folds(config, host(), out_dir, reporter)
            oof = summary["oof"].get(probe.monitor)
            typer.echo(f"out-of-fold {probe.monitor}: {oof:.4f}" if oof is not None else "done")
            return
        run_ = build_run(config, host(), out_dir)
        _warn_split(reporter, run_)
        create_run_dir(out_dir)
        write_resolved_config(out_dir, config, run_.resolved)
        reporter.info(
            f"run directory: {out_dir}  (device {run_.device}, "
            f"precision {config.trainer.precision})"
        )
        summary = fit_and_submit(run_, reporter)
    best = summary["best_value"]
    typer.echo(
        f"best {summary['monitor']}: {best:.4f} (epoch {summary['best_epoch']})"
        if best is not None
        else f"best {summary['monitor']}: none"
    )


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
) -> None:
    """Predict the test split with a checkpoint (or a fold ensemble) and write the submission."""
    from torchyard.checkpoint import load_checkpoint
    from torchyard.console import Reporter
    from torchyard.loop import predict_and_submit, resolve_checkpoints
    from torchyard.run import build_run, choose_run_dir, create_run_dir

    config = _load(config_path, overrides)
    checkpoints = resolve_checkpoints(checkpoint)
    for path in checkpoints:
        load_checkpoint(path)  # refuse a bad checkpoint before building anything
    out_dir = choose_run_dir(out, config_path, overwrite=overwrite, suffix="-predict")
    reporter = Reporter(progress=False)
    with _threads(config.trainer.num_threads):
        run_ = build_run(config, host(), out_dir, train=False)
        existed = out_dir.exists()
        create_run_dir(out_dir)
        try:
            path = predict_and_submit(run_, checkpoints, reporter)
        except BaseException:
            if not existed and not any(out_dir.iterdir()):
                out_dir.rmdir()  # leave nothing behind for a failed prediction
            raise
    if path is None:
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
    """Preview the learning-rate schedule of a config, without training."""
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from torchyard.optim import TrainingLength, preview_schedule
    from torchyard.run import build_run, steps_per_epoch

    config = _load(config_path, overrides)
    with tempfile.TemporaryDirectory() as scratch, _threads(config.trainer.num_threads):
        run_ = build_run(config, host(), Path(scratch))
    length = TrainingLength(config.trainer.max_epochs, steps_per_epoch(run_.data, config))
    rows = preview_schedule(run_.scheduler, run_.optimizer, length)
    groups = len(rows[0][2])
    table = Table(show_edge=False)
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    for g in range(groups):
        table.add_column("lr" if groups == 1 else f"lr group {g}", justify="right")
    shown = rows if every_step else [r for i, r in enumerate(rows) if i == 0 or r[0] != rows[i - 1][0]]
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


def _warn_split(reporter: Any, run_: Any) -> None:
    for warning in run_.extras.get("split_warnings", ()):
        reporter.warn(warning)


def _threads(count: int | None) -> Any:
    from torchyard.device import num_threads

    return num_threads(count)


__all__ = ["check", "predict", "register", "run"]
