"""Commands that use a config: check, run, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from torchyard.cli._common import ConfigArg, OutOpt, OverwriteOpt, SetOpt, host, user_errors


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("run")(run)
    app.command("predict")(predict)


def _load(config_path: Path, overrides: list[str] | None) -> Any:
    from torchyard.config import load_config

    return load_config(config_path, host().registry, overrides or [])


@user_errors
def check(config_path: ConfigArg, overrides: SetOpt = None) -> None:
    """Validate a config: every section, every component's params, the device."""
    from torchyard.config import COMPONENT_SECTIONS, record_of, resolve_monitor
    from torchyard.device import resolve_device, resolve_precision

    config = _load(config_path, overrides)
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
    from torchyard.loop import fit_and_submit
    from torchyard.run import build_run, choose_run_dir, create_run_dir, write_resolved_config

    config = _load(config_path, overrides)
    out_dir = choose_run_dir(out, config_path, overwrite=overwrite)
    reporter = Reporter(progress=config.trainer.progress)
    with _threads(config.trainer.num_threads):
        run_ = build_run(config, host(), out_dir)
        create_run_dir(out_dir)
        write_resolved_config(out_dir, config)
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
        Path, typer.Option("--checkpoint", "-c", help="Checkpoint to predict with (e.g. best.pt).")
    ],
    out: OutOpt = None,
    overrides: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Predict the test split with a checkpoint and write the submission."""
    from torchyard.checkpoint import load_checkpoint
    from torchyard.console import Reporter
    from torchyard.loop import predict_and_submit
    from torchyard.run import build_run, choose_run_dir, create_run_dir

    config = _load(config_path, overrides)
    load_checkpoint(checkpoint)  # refuse a bad checkpoint before building anything
    out_dir = choose_run_dir(out, config_path, overwrite=overwrite, suffix="-predict")
    reporter = Reporter(progress=False)
    with _threads(config.trainer.num_threads):
        run_ = build_run(config, host(), out_dir, train=False)
        create_run_dir(out_dir)
        path = predict_and_submit(run_, checkpoint, reporter)
    if path is None:
        typer.echo("nothing written")


def _threads(count: int | None) -> Any:
    from torchyard.device import num_threads

    return num_threads(count)


__all__ = ["check", "predict", "register", "run"]
