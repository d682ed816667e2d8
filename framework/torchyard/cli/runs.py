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
    from torchyard import distributed
    from torchyard.console import Reporter
    from torchyard.kfold import is_kfold
    from torchyard.loop import TrainingInterrupted

    config = _load(config_path, overrides)
    if allow_changes and resume is None:
        from torchyard.errors import ConfigError

        raise ConfigError("--allow-changes: only with --resume (it lets a resumed run use a changed config)")
    distributed.setup(config.trainer.device)  # under torchrun: join the process group
    reporter = Reporter(progress=config.trainer.progress, quiet=not distributed.is_main())
    finished = False
    try:
        with _threads(config.trainer.num_threads):
            if is_kfold(config):
                if resume is not None:
                    from torchyard.errors import ConfigError

                    raise ConfigError(
                        "--resume: k-fold runs cannot be resumed as a whole; train the remaining "
                        "folds one by one with --set split.fold=K"
                    )
                _run_folds(config, config_path, out, overwrite, reporter)
            else:
                _run_single(config, config_path, out, overwrite, reporter, resume, allow_changes)
        finished = True
    except TrainingInterrupted as stop:
        finished = True  # every process stopped at the same step
        _report_interruption(stop, config_path, overrides)
        raise typer.Exit(stop.exit_code) from None
    finally:
        distributed.teardown(wait=finished)


def _run_single(
    config: Any,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    reporter: Any,
    resume: str | None,
    allow_changes: bool,
) -> None:
    from torchyard import distributed
    from torchyard.pipeline import fit_and_submit
    from torchyard.run import build_run, create_run_dir, write_resolved_config

    payload, source = None, None
    if resume is not None:
        out_dir, payload, source = _resume_target(
            config, config_path, out, overwrite, resume, allow_changes, reporter
        )
    else:
        out_dir = _run_dir(out, config_path, overwrite)
    run_ = build_run(config, host(), out_dir)
    _warn_split(reporter, run_)
    if distributed.is_main():
        create_run_dir(out_dir)
        write_resolved_config(out_dir, config, run_.resolved)
        if source is not None:  # resumed into another directory: bring the best checkpoint along
            _copy_best(source, out_dir)
    distributed.barrier()
    where = f"resuming epoch {_resume_point(payload)}, " if payload is not None else ""
    processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    reporter.info(
        f"run directory: {out_dir}  ({where}device {run_.device}{processes}, "
        f"precision {config.trainer.precision})"
    )
    summary = fit_and_submit(run_, reporter, resume=payload)
    best = summary["best_value"]
    if distributed.is_main():
        typer.echo(
            f"best {summary['monitor']}: {best:.4f} (epoch {summary['best_epoch']})"
            if best is not None
            else f"best {summary['monitor']}: none"
        )


def _run_folds(
    config: Any, config_path: Path, out: Path | None, overwrite: bool, reporter: Any
) -> None:
    from torchyard import distributed
    from torchyard.kfold import fit_folds
    from torchyard.run import build_run, create_run_dir, write_resolved_config

    out_dir = _run_dir(out, config_path, overwrite)
    # fold 0 is built (and checked) before anything is written
    probe = build_run(config, host(), out_dir / "fold_0")
    _warn_split(reporter, probe)
    if distributed.is_main():
        create_run_dir(out_dir)
        write_resolved_config(out_dir, config, probe.resolved)
    distributed.barrier()
    reporter.info(
        f"run directory: {out_dir}  ({probe.extras['folds']} folds, device {probe.device})"
    )
    summary = fit_folds(config, host(), out_dir, reporter)
    oof = summary["oof"].get(probe.monitor)
    if distributed.is_main():
        typer.echo(f"out-of-fold {probe.monitor}: {oof:.4f}" if oof is not None else "done")


def _run_dir(out: Path | None, config_path: Path, overwrite: bool, suffix: str = "") -> Path:
    """A new run directory (process 0 picks it, so that every process agrees)."""
    from torchyard import distributed
    from torchyard.run import choose_run_dir

    # every process checks (the same error everywhere, no process left waiting)
    chosen = choose_run_dir(out, config_path, overwrite=overwrite, suffix=suffix)
    shared: Path = distributed.broadcast_object(chosen)
    return shared


def _resume_target(
    config: Any,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    resume: str,
    allow_changes: bool,
    reporter: Any,
) -> tuple[Path, dict[str, Any], Path | None]:
    """The run directory to continue in, the checkpoint to continue from, and
    the checkpoint's own run directory when the run continues elsewhere.

    A changed config is refused (every difference listed) unless
    ``allow_changes``; keys that do not change what is computed (progress
    bar, threads) may always change.
    """
    from torchyard.checkpoint import load_checkpoint
    from torchyard.config import jsonable_config
    from torchyard.errors import ConfigError
    from torchyard.resume import (
        config_differences,
        find_resume_checkpoint,
        require_resume_state,
        run_dir_of,
    )
    from torchyard.run import choose_run_dir

    checkpoint = find_resume_checkpoint(resume, out, config_path)
    payload = load_checkpoint(checkpoint)
    require_resume_state(payload, f"--resume {checkpoint}")
    differences = config_differences(payload.get("config") or {}, jsonable_config(config))
    if differences and not allow_changes:
        raise ConfigError(
            *(
                f"--resume {checkpoint}: config changed since the checkpoint: {line} "
                "(pass --allow-changes to resume anyway)"
                for line in differences
            )
        )
    for line in differences:
        reporter.warn(f"resuming with a changed config: {line}")
    home = run_dir_of(checkpoint)
    if out is None:
        if home is None:
            raise ConfigError(
                f"--resume {checkpoint}: the checkpoint is not inside a run directory "
                "(<run>/checkpoints/); pass --out to choose where the resumed run writes"
            )
        return home, payload, None
    if home is not None and out.resolve() == home:
        return out, payload, None
    return choose_run_dir(out, config_path, overwrite=overwrite), payload, home


def _copy_best(source: Path, out_dir: Path) -> None:
    from torchyard.files import atomic_copy

    best = source / "checkpoints" / "best.pt"
    if best.is_file():
        atomic_copy(best, out_dir / "checkpoints" / "best.pt")


def _resume_point(payload: dict[str, Any]) -> str:
    progress = payload["progress"]
    if progress["epoch_done"]:
        return f"{progress['epoch'] + 1}"
    return f"{progress['epoch']} at batch {progress['batches'] + 1}"


def _report_interruption(stop: Any, config_path: Path, overrides: list[str] | None) -> None:
    import os
    import shlex
    import signal

    from torchyard import distributed

    if not distributed.is_main():
        return
    name = signal.Signals(stop.signum).name if stop.signum else "signal"
    command = ["torchyard", "run", str(config_path)]
    if distributed.world_size() > 1:  # resume it the way it was launched
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(distributed.world_size()))
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
) -> None:
    """Predict the test split with a checkpoint (or a fold ensemble) and write the submission."""
    from torchyard import distributed
    from torchyard.checkpoint import load_checkpoint
    from torchyard.console import Reporter
    from torchyard.pipeline import predict_and_submit, resolve_checkpoints
    from torchyard.run import build_run, create_run_dir

    config = _load(config_path, overrides)
    checkpoints = resolve_checkpoints(checkpoint)
    for path in checkpoints:
        load_checkpoint(path)  # refuse a bad checkpoint before building anything
    distributed.setup(config.trainer.device)  # under torchrun: join the process group
    finished = False
    try:
        out_dir = _run_dir(out, config_path, overwrite, suffix="-predict")
        reporter = Reporter(progress=False, quiet=not distributed.is_main())
        with _threads(config.trainer.num_threads):
            run_ = build_run(config, host(), out_dir, train=False)
            existed = out_dir.exists()
            if distributed.is_main():
                create_run_dir(out_dir)
            try:
                path = predict_and_submit(run_, checkpoints, reporter)
            except BaseException:
                if distributed.is_main() and not existed and not any(out_dir.iterdir()):
                    out_dir.rmdir()  # leave nothing behind for a failed prediction
                raise
        finished = True
    finally:
        distributed.teardown(wait=finished)
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
