"""Whole runs: train and submit, or predict with checkpoints and submit.

:func:`fit_and_submit` is what ``torchyard run`` does with a built run
(train with :class:`~torchyard.loop.Trainer`, reload the best checkpoint,
predict the test split, write the submission, the report and
``summary.json``); :func:`predict_and_submit` is ``torchyard predict``.
Under torch.distributed only process 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchyard import distributed
from torchyard.checkpoint import load_checkpoint, load_model_weights
from torchyard.console import Reporter
from torchyard.data import Predictions
from torchyard.files import atomic_write
from torchyard.loop import FitResult, Trainer, probabilities_of
from torchyard.run import Run

__all__ = ["fit_and_submit", "predict_and_submit", "resolve_checkpoints"]


def fit_and_submit(
    run: Run, reporter: Reporter, resume: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train (or, with ``resume``, a checkpoint's payload, continue training),
    reload the best checkpoint, predict the test split and write it."""
    trainer = Trainer(run, reporter)
    result = trainer.fit(resume)
    last = result.rows[-1]
    best_row = next((r for r in result.rows if r["epoch"] == result.best_epoch), None)
    if not trainer.load_best(result):
        reporter.warn(f"{run.monitor} was never finite; predicting with the last weights")
    submission = _submit(trainer, reporter)
    reporter.final_table(best_row, last)
    report = _report(trainer, result, reporter)
    summary = {
        "monitor": run.monitor,
        "mode": run.mode,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
        "epochs": len(result.rows),
        "stopped_early": result.stopped_early,
        "best_checkpoint": str(result.best_path) if result.best_path else None,
        "last_checkpoint": str(result.last_path) if result.last_path else None,
        "submission": str(submission) if submission else None,
        "report": report,
        "final": {k: v for k, v in last.items() if k not in ("epoch", "step", "time_s")},
    }
    if distributed.is_main():
        with atomic_write(run.out_dir / "summary.json") as f:
            import json

            json.dump(summary, f, indent=2)
    run.host.call("on_run_end", run=run, summary=summary)
    return summary


def _report(trainer: Trainer, result: FitResult, reporter: Reporter) -> dict[str, str] | None:
    """Per-class scores, confusion matrix and curves, for classification runs."""
    from torchyard.report import collect_outputs, write_report

    run = trainer.run
    loader = run.loader("val")
    if run.data.task != "classification" or loader is None:
        return None
    outputs, targets = collect_outputs(trainer, loader)
    if not distributed.is_main():
        return None
    names = run.data.class_names
    return write_report(run.out_dir / "report", outputs, targets, names, result.rows, reporter)


def resolve_checkpoints(path: Path) -> list[Path]:
    """A checkpoint file, or a run directory: its best checkpoint, or for a
    k-fold run every fold's best checkpoint (their predictions are averaged)."""
    from torchyard.errors import ConfigError

    if path.is_file():
        return [path]
    if path.is_dir():
        folds = sorted(path.glob("fold_*/checkpoints/best.pt"))
        if folds:
            return folds
        if (path / "checkpoints" / "best.pt").is_file():
            return [path / "checkpoints" / "best.pt"]
        raise ConfigError(
            f"--checkpoint {path}: no checkpoints/best.pt or fold_*/checkpoints/best.pt in it"
        )
    raise ConfigError(f"checkpoint {path}: file not found")


def predict_and_submit(run: Run, checkpoints: list[Path], reporter: Reporter) -> Path | None:
    """Predict the test split with each checkpoint (their class probabilities
    averaged when several) and write the submission."""
    trainer = Trainer(run, reporter)
    loader = run.loader("test")
    if loader is None:
        reporter.info("no test split: nothing to predict")
        return None
    outputs = []
    for checkpoint in checkpoints:
        load_model_weights(
            run.model, load_checkpoint(checkpoint, map_location=run.device), checkpoint
        )
        outputs.append(trainer.predict(loader, views=run.tta))
    if len(outputs) == 1:
        return _write(run, outputs[0], reporter)
    mean = torch.stack([probabilities_of(torch.from_numpy(o)) for o in outputs]).mean(0)
    reporter.info(f"averaging the probabilities of {len(outputs)} checkpoints")
    return _write(run, mean.clamp_min(1e-12).log().numpy(), reporter)


def _submit(trainer: Trainer, reporter: Reporter) -> Path | None:
    run = trainer.run
    loader = run.loader("test")
    if loader is None:
        reporter.info("no test split: nothing to predict")
        return None
    return _write(run, trainer.predict(loader, views=run.tta), reporter)


def _write(run: Run, outputs: np.ndarray, reporter: Reporter) -> Path | None:
    ids = list(run.data.test_ids) if run.data.test_ids is not None else list(range(len(outputs)))
    predictions = Predictions(
        ids=ids,
        outputs=outputs,
        task=run.data.task,
        class_names=list(run.data.class_names) if run.data.class_names else None,
    )
    if run.writer is None:
        reporter.info("no writer configured: predictions were not written")
        return None
    if not distributed.is_main():
        return None
    path = Path(run.writer.write(predictions, run.out_dir))
    reporter.info(f"submission: {path}")
    return path
