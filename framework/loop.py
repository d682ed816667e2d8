"""The training loop: fit, validate, keep the best, predict, write.

The loop does the minimum per step (forward, backward, optimizer and
step-wise scheduler) and leaves everything else -- progress, metrics,
checkpoints, hooks -- to epoch boundaries or to every
``log_every_n_steps`` steps, which keeps it within a few percent of a
hand-written loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchyard.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from torchyard.console import Reporter
from torchyard.data import Predictions
from torchyard.errors import TrainingError
from torchyard.files import atomic_path, atomic_write
from torchyard.run import Run

__all__ = ["FitResult", "Trainer", "fit_and_submit", "predict_and_submit"]


@dataclass
class FitResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    best_path: Path | None = None
    last_path: Path | None = None
    stopped_early: bool = False


class Trainer:
    """Runs the epochs of one :class:`~torchyard.run.Run`."""

    def __init__(self, run: Run, reporter: Reporter | None = None) -> None:
        self.run = run
        self.reporter = reporter or Reporter(progress=False)
        self.global_step = 0
        self.scaler = run.precision.make_scaler()
        self._non_blocking = run.device.type == "cuda"

    # -- fitting -------------------------------------------------------------

    def fit(self) -> FitResult:
        run, trainer = self.run, self.run.trainer
        train_loader = run.loader("train")
        val_loader = run.loader("val")
        assert train_loader is not None  # build_run checked the data
        ckpt_dir = run.out_dir / "checkpoints"
        result = FitResult()
        patience_left = trainer.early_stopping.patience if trainer.early_stopping else None
        writer = _BackgroundWriter()
        run.host.call("on_run_start", run=run)
        try:
            for epoch in range(1, trainer.max_epochs + 1):
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch, train_loader)
                row: dict[str, Any] = {"epoch": epoch, "step": self.global_step, "train/loss": train_loss}
                if val_loader is not None:
                    val = self.validate(val_loader)
                    row.update(val)
                    run.host.call("on_validation_end", run=run, epoch=epoch, metrics=val)
                row["lr"] = float(run.optimizer.param_groups[0]["lr"])  # type: ignore[union-attr]
                value = row[run.monitor]
                if run.scheduler is not None:
                    run.scheduler.after_epoch(value)
                row["time_s"] = time.perf_counter() - started
                result.rows.append(row)
                improved = _finite(value) and (
                    result.best_value is None or _better(value, result.best_value, run.mode, 0.0)
                )
                if patience_left is not None and trainer.early_stopping is not None:
                    significant = _finite(value) and (
                        result.best_value is None
                        or _better(value, result.best_value, run.mode, trainer.early_stopping.min_delta)
                    )
                    patience_left = trainer.early_stopping.patience if significant else patience_left - 1
                if improved:
                    result.best_value, result.best_epoch = float(value), epoch
                # best.pt and last.pt of an improving epoch hold the same state:
                # serialize it once (torch.save is most of an epoch's
                # bookkeeping on small models), copy the file, and do both on
                # the writer thread while the next epoch trains
                state = _snapshot(self._state(epoch, result))
                result.last_path = ckpt_dir / "last.pt"
                if improved:
                    result.best_path = ckpt_dir / "best.pt"
                writer.submit(_write_checkpoints, state, ckpt_dir, improved)
                self._write_metrics(result.rows)
                self.reporter.stop()
                self.reporter.epoch_line(epoch, trainer.max_epochs, row, improved, run.monitor)
                run.host.call("on_epoch_end", run=run, epoch=epoch, metrics=dict(row))
                if patience_left is not None and patience_left <= 0:
                    result.stopped_early = True
                    self.reporter.info(
                        f"early stopping: {run.monitor} has not improved for "
                        f"{trainer.early_stopping.patience} epochs"
                    )
                    break
        finally:
            self.reporter.stop()
            writer.close()  # every checkpoint is on disk before fit() returns or raises
        return result

    def _train_epoch(self, epoch: int, loader: Any) -> float:
        run, trainer = self.run, self.run.trainer
        model, optimizer, loss_fn = run.model, run.optimizer, run.loss_fn
        assert optimizer is not None
        accumulate = trainer.accumulate_grad_batches
        log_every = trainer.log_every_n_steps
        schedule = run.scheduler
        total = len(loader)
        if trainer.limit_train_batches is not None:
            total = min(total, trainer.limit_train_batches)
        self.reporter.start_epoch(epoch, trainer.max_epochs, total)

        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, samples, window_samples = 0.0, 0, 0
        window_start = time.perf_counter()
        for index, batch in enumerate(loader):
            if index >= total:
                break
            inputs, targets = self._to_device(batch)
            with run.precision.autocast():
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"loss is {value} at epoch {epoch}, batch {index + 1} (optimizer step "
                    f"{self.global_step}); training stopped, the last good checkpoint is kept"
                )
            scaled = loss / accumulate if accumulate > 1 else loss
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
            if (index + 1) % accumulate == 0 or index + 1 == total:
                self._optimizer_step()
                if schedule is not None:
                    schedule.after_optimizer_step()
            n = len(targets)
            loss_sum += value * n
            samples += n
            window_samples += n
            if (index + 1) % log_every == 0 or index + 1 == total:
                now = time.perf_counter()
                self.reporter.advance(
                    log_every if (index + 1) % log_every == 0 else (index + 1) % log_every,
                    value,
                    window_samples / max(now - window_start, 1e-9),
                )
                window_start, window_samples = now, 0
        return loss_sum / max(samples, 1)

    def _optimizer_step(self) -> None:
        run, trainer = self.run, self.run.trainer
        optimizer = run.optimizer
        assert optimizer is not None
        if trainer.gradient_clip_val is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            parameters = run.model.parameters()
            if trainer.gradient_clip_algorithm == "norm":
                norm = torch.nn.utils.clip_grad_norm_(parameters, trainer.gradient_clip_val)
                if not torch.isfinite(norm) and self.scaler is None:
                    raise TrainingError(
                        f"gradient norm is {norm.item()} at optimizer step {self.global_step + 1}; "
                        "training stopped, the last good checkpoint is kept"
                    )
            else:
                torch.nn.utils.clip_grad_value_(parameters, trainer.gradient_clip_val)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.global_step += 1

    # -- evaluation -----------------------------------------------------------

    def validate(self, loader: Any) -> dict[str, float]:
        """Validation loss and every metric, over the whole loader."""
        run = self.run
        run.model.eval()
        for metric in run.metrics.values():
            metric.reset()
        loss_total = torch.zeros((), device=run.device)
        count = 0
        with torch.inference_mode():
            for batch in loader:
                inputs, targets = self._to_device(batch)
                with run.precision.autocast():
                    outputs = run.model(inputs)
                    loss = run.loss_fn(outputs, targets)
                outputs = outputs.float()
                loss_total += loss.float() * len(targets)
                count += len(targets)
                for metric in run.metrics.values():
                    metric.update(outputs, targets)
        values = {"val/loss": (loss_total / max(count, 1)).item()}
        for key, metric in run.metrics.items():
            metric.sync()
            values[f"val/{key}"] = float(metric.compute())
        return values

    def predict(self, loader: Any, views: list[Any] | None = None) -> np.ndarray:
        """Model outputs for every sample of ``loader``, in order.

        With test-time augmentation ``views`` (callables applied to the input
        batch), the class probabilities of the plain batch and of every view
        are averaged, and their logarithm is returned (softmax of it gives
        the averaged probabilities back).
        """
        run = self.run
        run.model.eval()
        chunks: list[torch.Tensor] = []
        with torch.inference_mode():
            for batch in loader:
                inputs = batch[0] if isinstance(batch, list | tuple) else batch
                inputs = inputs.to(run.device, non_blocking=self._non_blocking)
                with run.precision.autocast():
                    outputs = run.model(inputs).float()
                    if views:
                        probabilities = [probabilities_of(outputs)]
                        probabilities += [probabilities_of(run.model(view(inputs)).float()) for view in views]
                        outputs = torch.stack(probabilities).mean(0).clamp_min(1e-12).log()
                chunks.append(outputs.float().cpu())
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        out = torch.cat(chunks)
        return (out.unsqueeze(1) if out.ndim == 1 else out).numpy()

    # -- helpers ---------------------------------------------------------------

    def _to_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch[0], batch[1]
        device, nb = self.run.device, self._non_blocking
        return inputs.to(device, non_blocking=nb), targets.to(device, non_blocking=nb)

    def _state(self, epoch: int, result: FitResult) -> dict[str, Any]:
        run = self.run
        return {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict() if run.optimizer is not None else None,
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "global_step": self.global_step,
            "monitor": run.monitor,
            "best_value": result.best_value,
            "config": _jsonable_config(run),
            "plugins": {
                name: info.version or "" for name, info in sorted(run.host.plugins.items())
            },
        }

    def _write_metrics(self, rows: list[dict[str, Any]]) -> None:
        import csv

        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        with atomic_write(self.run.out_dir / "metrics.csv") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def _copy_file(source: Path, target: Path) -> Path:
    """Copy ``source`` over ``target`` atomically (temporary file, fsync, rename),
    as :func:`~torchyard.checkpoint.save_checkpoint` writes."""
    import shutil

    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


class _BackgroundWriter:
    """Runs checkpoint writes one at a time on a thread, in order.

    ``torch.save`` pickles every tensor in Python; on small models that is
    most of an epoch's bookkeeping. On a thread it overlaps the next epoch.
    A write's error surfaces at the next submit or at :meth:`close`.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchyard-checkpoint")
        self._pending: Any = None

    def submit(self, fn: Any, *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _write_checkpoints(state: dict[str, Any], directory: Path, improved: bool) -> None:
    if improved:
        best = save_checkpoint(directory / "best.pt", state)
        _copy_file(best, directory / "last.pt")
    else:
        save_checkpoint(directory / "last.pt", state)


def _snapshot(value: Any) -> Any:
    """A copy of a checkpoint state whose tensors training can no longer change."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_snapshot(v) for v in value)
    return value


def _jsonable_config(run: Run) -> dict[str, Any]:
    import json

    return json.loads(run.config.model_dump_json(by_alias=True))  # type: ignore[no-any-return]


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


# -- whole runs --------------------------------------------------------------------


def fit_and_submit(run: Run, reporter: Reporter) -> dict[str, Any]:
    """Train, reload the best checkpoint, predict the test split and write it."""
    trainer = Trainer(run, reporter)
    result = trainer.fit()
    last = result.rows[-1]
    best_row = next((r for r in result.rows if r["epoch"] == result.best_epoch), None)
    if result.best_path is not None:
        payload = load_checkpoint(result.best_path, map_location=run.device)
        load_model_weights(run.model, payload, result.best_path)
    else:
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
    names = run.data.class_names
    return write_report(run.out_dir / "report", outputs, targets, names, result.rows, reporter)


def probabilities_of(outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities of a batch of outputs: softmax, or for one binary
    logit ``[1 - sigmoid, sigmoid]``."""
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        p = torch.sigmoid(outputs.reshape(-1))
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(outputs, dim=-1)


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
        raise ConfigError(f"--checkpoint {path}: no checkpoints/best.pt or fold_*/checkpoints/best.pt in it")
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
        load_model_weights(run.model, load_checkpoint(checkpoint, map_location=run.device), checkpoint)
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
    path = Path(run.writer.write(predictions, run.out_dir))
    reporter.info(f"submission: {path}")
    return path
