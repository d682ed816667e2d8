"""Whole runs: train and submit, or predict with checkpoints and submit.

:func:`fit_and_submit` is what ``torchyard run`` does with a built run
(train with :class:`~torchyard.loop.Trainer`, reload the best checkpoint,
predict the test split, then :func:`finish_run`); a k-fold run
(:mod:`torchyard.kfold`) ends through the same :func:`finish_run`: the
submission, the report, ``summary.json`` and the ``on_run_end`` hook.
:func:`predict_and_submit` is ``torchyard predict``. Under
torch.distributed only process 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from torchyard import distributed
from torchyard.checkpoint import load_checkpoint, load_model_weights
from torchyard.console import Reporter
from torchyard.data import Predictions
from torchyard.errors import PluginError
from torchyard.files import atomic_write
from torchyard.inference import Outputs, ensemble
from torchyard.loop import Trainer
from torchyard.predfiles import write_test_predictions, write_val_predictions
from torchyard.run import Run
from torchyard.topk import predict_averaged, recorded, submission_checkpoints

__all__ = ["finish_run", "fit_and_submit", "predict_and_submit", "resolve_checkpoints"]


def fit_and_submit(
    run: Run, reporter: Reporter, resume: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train (or, with ``resume``, a checkpoint's payload, continue training),
    reload the best checkpoint, predict the test split and finish the run."""
    trainer = Trainer(run, reporter)
    result = trainer.fit(resume)
    last = result.rows[-1]
    best_row = next((r for r in result.rows if r["epoch"] == result.best_epoch), None)
    val_loader = run.loader("val")
    if top := submission_checkpoints(run, result):  # trainer.predict_with: top_k
        reporter.info(f"predicting with the {len(top)} best checkpoints, averaged")
        validation, test = predict_averaged(
            trainer, [Path(e["checkpoint"]) for e in top], [(val_loader, True), (run.loader("test"), False)]
        )
        tuned = tune(run, validation)
    else:
        if not trainer.load_best(result):
            reporter.warn(f"{run.monitor} was never finite; predicting with the last weights")
        validation = trainer.predict(val_loader, targets=True) if val_loader is not None else None
        tuned = tune(run, validation)  # before the test split is decoded with it
        test = predict_test(trainer)
    reporter.final_table(best_row, last)
    summary = {
        "monitor": run.monitor,
        "mode": run.mode,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
        "epochs": len(result.rows),
        "stopped_early": result.stopped_early,
        "best_checkpoint": str(result.best_path) if result.best_path else None,
        "last_checkpoint": str(result.last_path) if result.last_path else None,
        # the last epoch (``final``: its values, as older versions wrote them), and
        # the weights that made the submission, which may be other epochs
        "final": _values(last),
        "last": {"epoch": last["epoch"], **_values(last)},
        "submitted_from": _submitted_from(run, result, top, best_row, last),
        **tuned,
    }
    if (kept := recorded(run, result.rows)) is not None:
        summary["top_k"] = kept
    title = f"per class (validation, {len(top)} best checkpoints averaged)" if top else None
    return finish_run(
        run, reporter, summary, test=test, validation=validation, rows=result.rows,
        **({"report_title": title} if title else {}),
    )  # fmt: skip


def _values(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row's logged values (without epoch, step and time)."""
    return {k: v for k, v in row.items() if k not in ("epoch", "step", "time_s")}


def _submitted_from(
    run: Run, result: Any, top: list[dict[str, Any]], best_row: dict[str, Any] | None, last: dict[str, Any]
) -> dict[str, Any]:
    """``summary.json``'s ``submitted_from``: the checkpoints whose weights
    made the submission, their epochs and monitored values, and (one
    checkpoint) that epoch's metrics."""
    if top:
        return {
            "checkpoints": [e["checkpoint"] for e in top], "epochs": [e["epoch"] for e in top],
            "values": [e["value"] for e in top], "metrics": None,
        }  # fmt: skip
    row, path = (best_row, result.best_path) if best_row is not None and result.best_path else (last, result.last_path)
    return {
        "checkpoints": [str(path) if path else None], "epochs": [row["epoch"]],
        "values": [row.get(run.monitor)], "metrics": _values(row),
    }  # fmt: skip


def finish_run(
    run: Run,
    reporter: Reporter,
    summary: dict[str, Any],
    *,
    test: Outputs | None,
    validation: Outputs | None,
    rows: list[dict[str, Any]],
    report_title: str = "per class (validation, best checkpoint)",
) -> dict[str, Any]:
    """The end every run shares: the submission from the ``test`` outputs,
    the report from the labelled ``validation`` outputs, ``summary.json``,
    then the ``on_run_end`` hook with the summary."""
    summary["submission"] = str(path) if (path := write_submission(run, test, reporter)) else None
    summary["test_predictions"] = str(p) if (p := write_test_predictions(run, test)) else None
    if "oof" not in summary:  # a holdout run: its validation predictions too (k-fold has oof.csv)
        summary["val_predictions"] = str(p) if (p := write_val_predictions(run, validation)) else None
    summary["class_names"] = list(run.data.class_names) if run.data.class_names else None
    summary["report"] = _report(run, validation, rows, reporter, report_title)
    # warnings printed before training (a leaking split) are easy to lose: again, and kept
    summary["warnings"] = list(run.extras.get("warnings", ()))
    for warning in summary["warnings"]:
        reporter.warn(warning)
    if distributed.is_main():
        with atomic_write(run.out_dir / "summary.json") as f:
            json.dump(summary, f, indent=2)
    run.hooks.call("on_run_end", run=run, summary=summary)
    return summary


def predict_test(trainer: Trainer) -> Outputs | None:
    """The test split's outputs with the model as it is (and the run's TTA)."""
    loader = trainer.run.loader("test")
    if loader is None:
        trainer.reporter.info("no test split: nothing to predict")
        return None
    return trainer.predict(loader, views=trainer.run.tta)


def tune(run: Run, validation: Outputs | None) -> dict[str, Any]:
    """What the task settles from the labelled validation outputs (a tuned
    threshold), for ``summary.json`` under ``task_state``; a run predicting
    later from this directory reads it back (:func:`task_state_of`)."""
    if validation is None or validation.targets is None:
        return {}
    state = run.task.tune(validation.outputs, validation.kind, validation.targets)
    return {"task_state": state} if state else {}


def task_state_of(checkpoint: Path) -> dict[str, Any]:
    """The ``task_state`` of the run a checkpoint belongs to (its
    ``summary.json``, or a k-fold run's), if any; an exported weights file
    carries its own."""
    if checkpoint.suffix == ".safetensors":
        from torchyard.export import weights_metadata

        state = weights_metadata(checkpoint).get("task_state")
        return state if isinstance(state, dict) else {}
    # <run>/checkpoints/best.pt, <run>/fold_<k>/checkpoints/best.pt, and top/ within these
    for directory in list(checkpoint.parents)[1:4]:
        summary = directory / "summary.json"
        if summary.is_file():
            try:
                state = json.loads(summary.read_text()).get("task_state")
            except (OSError, ValueError):
                return {}
            return state if isinstance(state, dict) else {}
    return {}


def _report(
    run: Run, validation: Outputs | None, rows: list[dict[str, Any]], reporter: Reporter, title: str
) -> dict[str, str] | None:
    """The task's report on the labelled validation outputs, and the curves."""
    from torchyard.report import write_curves

    if not distributed.is_main():
        return None
    directory = run.out_dir / "report"
    paths = write_curves(directory, rows)
    if run.task.has_report and validation is not None and validation.targets is not None:
        paths.update(
            run.task.report(directory, validation.outputs, validation.kind, validation.targets, reporter, title)
        )
    return paths or None


def resolve_checkpoints(path: Path, which: Literal["best", "top_k"] | None = "best") -> list[Path]:
    """A checkpoint file, or a run directory: the best checkpoint of the run
    its ``config.yaml`` describes, or for a k-fold run each of its folds'
    (their predictions are averaged), or ``which`` ones; see
    :func:`torchyard.rundirs.run_checkpoints`;
    or a ``torchyard export --format weights`` directory: its weights files."""
    from torchyard.errors import ConfigError
    from torchyard.export import MANIFEST, export_checkpoints
    from torchyard.rundirs import run_checkpoints

    if path.is_file():
        return [path]
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return export_checkpoints(path)
        return run_checkpoints(path, which)
    raise ConfigError(f"checkpoint {path}: file not found")


def predict_with_checkpoints(trainer: Trainer, checkpoints: list[Path]) -> Outputs | None:
    """The test split's outputs with each checkpoint, averaged when several."""
    run = trainer.run
    loader = run.loader("test")
    if loader is None:
        trainer.reporter.info("no test split: nothing to predict")
        return None
    outputs = []
    run.task.load_state(task_state_of(checkpoints[0]))
    for checkpoint in checkpoints:
        payload = load_checkpoint(checkpoint, map_location=run.device)
        load_model_weights(run.model, payload, checkpoint)
        if run.data.fitted is not None:  # each fold's preprocessing, learnt on its training part
            run.data.fitted.load_state_dict(payload.get("fitted") or {})
        outputs.append(trainer.predict(loader, views=run.tta))
    mean = ensemble(outputs, run.task)
    if len(outputs) > 1:
        what = "values" if mean.kind == "values" else "probabilities"
        trainer.reporter.info(f"averaging the {what} of {len(outputs)} checkpoints")
    return mean


def predict_and_submit(run: Run, checkpoints: list[Path], reporter: Reporter) -> Path | None:
    """Predict the test split with each checkpoint (averaged when several)
    and write the submission."""
    return write_submission(run, predict_with_checkpoints(Trainer(run, reporter), checkpoints), reporter)


def predictions_of(run: Run, outputs: Outputs) -> Predictions:
    """What a writer receives for ``outputs`` of the run's test split."""
    ids = list(run.data.test_ids) if run.data.test_ids is not None else list(range(len(outputs.outputs)))
    return Predictions(
        ids=ids,
        outputs=outputs.outputs,
        task=run.task.name,
        class_names=list(run.data.class_names) if run.data.class_names else None,
        kind=outputs.kind,
        meta=dict(run.data.test_meta),
        rules=run.task,
    )


def write_submission(run: Run, outputs: Outputs | None, reporter: Reporter) -> Path | None:
    """The writer's file for the test ``outputs`` (process 0 writes)."""
    if outputs is None:
        return None
    if run.writer is None:
        reporter.info("no writer configured: predictions were not written")
        return None
    if not distributed.is_main():
        return None
    written = run.writer.write(predictions_of(run, outputs), run.out_dir)
    path = Path(written) if isinstance(written, str | Path) else None
    if path is None or not path.is_file():
        record = run.config.writer.record if run.config.writer is not None else None
        who = f"writer '{record.name}' from plugin {record.source}" if record else "the writer"
        raise PluginError(
            f"{who}: write() must return the path of the file it wrote, got {written!r} "
            "(the checkpoints are kept: `torchyard predict` writes again)"
        )
    reporter.info(f"submission: {path}")
    return path
