"""The training loop: fit, validate, keep the best, predict.

The loop does the minimum per step (forward, backward, optimizer and
step-wise scheduler) and leaves everything else -- progress, metrics,
checkpoints, hooks -- to epoch boundaries or to every
``log_every_n_steps`` steps, which keeps it within a few percent of a
hand-written loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from torchyard import distributed
from torchyard.callbacks import LIFECYCLE_HOOKS
from torchyard.checkpoint import load_checkpoint, load_model_weights, pack, save_checkpoint
from torchyard.config import jsonable_config
from torchyard.console import Reporter
from torchyard.errors import TrainingError
from torchyard.files import atomic_link, atomic_write
from torchyard.inference import Outputs, Scorer, collect, forward
from torchyard.resume import ResumableSampler, capture_rng, require_resume_state, restore_rng
from torchyard.run import Run
from torchyard.speed import forward_callable
from torchyard.steplog import StepLog
from torchyard.stops import StopRequest, stop_requests
from torchyard.topk import TopK

__all__ = ["FitResult", "Trainer", "TrainingInterrupted", "write_metrics_csv"]


@dataclass
class FitResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    best_path: Path | None = None
    last_path: Path | None = None
    stopped_early: bool = False


@dataclass
class _EpochSums:
    """What an epoch accumulates while it trains (kept in mid-epoch checkpoints)."""

    loss_sum: float = 0.0
    samples: int = 0
    skipped: int = 0


@dataclass
class _Progress:
    """Where :meth:`Trainer.fit` stands: the result so far, early stopping's
    patience, and where the next epoch starts (part-way when resumed)."""

    result: FitResult
    patience_left: int | None
    first_epoch: int = 1
    #: batches of ``first_epoch`` already done, and what they summed to
    done: int = 0
    sums: _EpochSums = field(default_factory=_EpochSums)


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; a resumable checkpoint was written."""

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, step: int, world: int = 1) -> None:
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        #: how many processes trained (a resume is launched the same way)
        self.world = world
        super().__init__(f"interrupted at epoch {epoch}, optimizer step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Trainer:
    """Runs the epochs of one :class:`~torchyard.run.Run`."""

    def __init__(self, run: Run, reporter: Reporter | None = None) -> None:
        self.run = run
        self.reporter = reporter or Reporter(progress=False)
        self.global_step = 0
        self.scaler = run.precision.make_scaler()
        self._non_blocking = run.device.type == "cuda"
        self._world = distributed.world_size()
        self._main = distributed.is_main()
        #: the module training calls: the model, or its DistributedDataParallel wrapper,
        #: compiled / channels_last as trainer says (run.model stays the plain module)
        self._ddp: Any = None
        if self._world > 1 and run.optimizer is not None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [run.device.index] if run.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(run.model, device_ids=ids)
        self.eval_model = forward_callable(run.model, run.trainer, self.reporter.warn)
        self.train_model = self.eval_model if self._ddp is None else forward_callable(
            self._ddp, run.trainer, self.reporter.warn)
        self._stop = StopRequest()
        self._parameters = [p for p in run.model.parameters() if p.requires_grad]
        self._found_inf: torch.Tensor | None = None
        self._one: torch.Tensor | None = None
        self._stop_seen = False
        self._epoch_generator_state: torch.Tensor | None = None
        self._train_generator = torch.Generator()
        self._scorer = Scorer(run.loss_fn, run.metrics, run.device)
        #: which lifecycle hooks anything implements: the loop skips the others
        self._acting = {hook: run.hooks.implemented(hook) for hook in LIFECYCLE_HOOKS}
        run.hooks.report_to(self.reporter.warn)  # a failing logger's one line
        self._steps = StepLog(
            run.out_dir / "steps.csv" if self._main else None, run.trainer.log_every_n_steps
        )

    @functools.cached_property
    def _config_json(self) -> dict[str, Any]:
        """The config as every checkpoint keeps it (built once, only when training)."""
        return jsonable_config(self.run.config)

    @functools.cached_property
    def _resolved_json(self) -> dict[str, Any]:
        """The values filled in from the data, as plain JSON values."""
        resolved: dict[str, Any] = json.loads(json.dumps(self.run.resolved, default=list))
        return resolved

    # -- fitting -------------------------------------------------------------

    def fit(self, resume: dict[str, Any] | None = None) -> FitResult:
        """Train for ``trainer.max_epochs`` epochs; with ``resume`` (a checkpoint
        payload), continue that run exactly where its checkpoint left it.

        :raises TrainingInterrupted: on SIGINT/SIGTERM, after writing a
            resumable ``last.pt``.
        """
        run = self.run
        train_loader = run.loader("train")
        val_loader = run.loader("val")
        assert train_loader is not None  # build_run checked the data
        progress = self._start(train_loader, resume)
        run.hooks.call("on_run_start", run=run)
        self._steps.open(self.global_step if resume is not None else None)
        try:
            with stop_requests(self._stop):
                for epoch in range(progress.first_epoch, run.trainer.max_epochs + 1):
                    row = self._run_epoch(epoch, train_loader, val_loader, progress)
                    improved = self._track_best(row, progress)
                    self._end_epoch(epoch, row, improved, progress)
                    if self._stop_agreed(reduce=True):
                        raise self._interrupted(progress.result, epoch)
                    if self._stops_early(progress):
                        break
        finally:
            self._steps.close()
            self.reporter.stop()
        return progress.result

    def _start(self, train_loader: DataLoader[Any], resume: dict[str, Any] | None) -> _Progress:
        """Where training starts: epoch 1, or where checkpoint ``resume`` left off."""
        trainer = self.run.trainer
        self._train_generator = train_loader.generator or torch.Generator()
        ckpt_dir = self.run.out_dir / "checkpoints"
        progress = _Progress(
            FitResult(last_path=ckpt_dir / "last.pt"),
            trainer.early_stopping.patience if trainer.early_stopping else None,
        )
        if resume is None:
            return progress
        self._restore(resume, progress)
        result = progress.result
        result.best_path = ckpt_dir / "best.pt" if result.best_epoch is not None else None
        # process 0 holds the files; every process must agree on the best so far
        missing = self._main and result.best_path is not None and not result.best_path.is_file()
        if distributed.broadcast_object(missing):
            self.reporter.warn(
                f"{result.best_path} is missing: the best epoch so far ({result.best_epoch}) "
                "cannot be reloaded; best.pt will hold the best epoch from here on"
            )
            result.best_value = result.best_epoch = result.best_path = None
        if progress.patience_left is not None and progress.patience_left <= 0:
            result.stopped_early = True  # the checkpoint's run had stopped early
            progress.first_epoch = trainer.max_epochs + 1
        return progress

    def _run_epoch(
        self, epoch: int, train_loader: DataLoader[Any], val_loader: DataLoader[Any] | None, progress: _Progress
    ) -> dict[str, Any]:
        """Train one epoch (from where a resumed run stopped), validate, step
        the epoch-wise schedule; returns the epoch's row of ``metrics.csv``."""
        run = self.run
        started = time.perf_counter()
        # the epoch's order is drawn from this state; a checkpoint taken
        # part-way keeps it, to draw the same order again
        self._epoch_generator_state = self._train_generator.get_state()
        sampler = train_loader.sampler
        assert isinstance(sampler, ResumableSampler)
        sampler.set_epoch(epoch)
        sampler.skip = progress.done * (train_loader.batch_size or 1)
        sums = self._train_epoch(epoch, train_loader, progress)
        progress.done = 0
        if self._acting["on_train_epoch_end"]:
            run.hooks.call("on_train_epoch_end", run=run, epoch=epoch)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": self.global_step,
            "train/loss": sums.loss_sum / max(sums.samples, 1),
        }
        if run.trainer.on_nonfinite_loss == "skip":
            row["train/skipped_batches"] = sums.skipped
        if sums.skipped:
            self.reporter.warn(f"epoch {epoch}: skipped {sums.skipped} batch(es) with a non-finite loss")
        if val_loader is not None:
            val = self.validate(val_loader)
            row.update(val)
            run.hooks.call("on_validation_end", run=run, epoch=epoch, metrics=val)
        assert run.optimizer is not None
        row["lr"] = float(run.optimizer.param_groups[0]["lr"])
        if run.scheduler is not None:
            run.scheduler.after_epoch(row[run.monitor])
        row["time_s"] = time.perf_counter() - started
        progress.result.rows.append(row)
        progress.sums = _EpochSums()
        return row

    def _track_best(self, row: dict[str, Any], progress: _Progress) -> bool:
        """Update the best value and early stopping's patience; whether the
        epoch improved on the best."""
        run, result = self.run, progress.result
        value = row[run.monitor]
        improved = _finite(value) and (
            result.best_value is None or _better(value, result.best_value, run.mode, 0.0)
        )
        stopping = run.trainer.early_stopping
        if progress.patience_left is not None and stopping is not None:
            significant = _finite(value) and (
                result.best_value is None
                or _better(value, result.best_value, run.mode, stopping.min_delta)
            )
            progress.patience_left = stopping.patience if significant else progress.patience_left - 1
        if improved:
            result.best_value, result.best_epoch = float(value), int(row["epoch"])
            result.best_path = self.run.out_dir / "checkpoints" / "best.pt"
        return improved

    def _end_epoch(self, epoch: int, row: dict[str, Any], improved: bool, progress: _Progress) -> None:
        """Checkpoints and ``metrics.csv`` (process 0), the epoch's line, the hook."""
        run = self.run
        # written here, not on a thread: pickling holds the GIL, and overlapped
        # with training it cost more than it took (docs/benchmarks.md)
        state = self._state(epoch, epoch_done=True, batches=0, progress=progress)
        if self._main:
            _write_checkpoints(state, run.out_dir / "checkpoints", improved)
            if (top := TopK.of(run)) is not None:  # trainer.save_top_k: the K best epochs' files
                top.update(run.out_dir / "checkpoints", progress.result.rows, epoch)
            write_metrics_csv(run.out_dir / "metrics.csv", progress.result.rows)
        self.reporter.stop()
        self.reporter.epoch_line(epoch, run.trainer.max_epochs, row, improved, run.monitor)
        run.hooks.call("on_epoch_end", run=run, epoch=epoch, metrics=dict(row))

    def _stops_early(self, progress: _Progress) -> bool:
        stopping = self.run.trainer.early_stopping
        if progress.patience_left is None or progress.patience_left > 0 or stopping is None:
            return False
        progress.result.stopped_early = True
        self.reporter.info(
            f"early stopping: {self.run.monitor} has not improved for {stopping.patience} epochs"
        )
        return True

    def _train_epoch(self, epoch: int, loader: DataLoader[Any], progress: _Progress) -> _EpochSums:
        """Train one epoch from batch ``progress.done`` on (0 unless resumed part-way)."""
        run, trainer = self.run, self.run.trainer
        assert run.optimizer is not None
        sums, first = progress.sums, progress.done
        accumulate, log_every = trainer.accumulate_grad_batches, trainer.log_every_n_steps
        total = len(loader)
        if trainer.limit_train_batches is not None:
            total = min(total, trainer.limit_train_batches)
        self.reporter.start_epoch(epoch, trainer.max_epochs, total - first)
        self.train_model.train()
        if self._acting["on_train_epoch_start"]:
            run.hooks.call("on_train_epoch_start", run=run, epoch=epoch)
        run.optimizer.zero_grad(set_to_none=True)
        window_samples, window_start = 0, time.perf_counter()
        steps, acting = self._steps, self._acting
        for index, batch in enumerate(loader, start=first):
            if index >= total:
                break
            boundary = (index + 1) % accumulate == 0 or index + 1 == total
            value, n = self._train_step(epoch, index, batch, boundary, sums)
            steps.add(value)
            if boundary:
                grad_norm = self._optimizer_step(epoch, index, trainer.on_nonfinite_loss == "skip", sums)
                if run.scheduler is not None:
                    run.scheduler.after_optimizer_step()
                if acting["on_after_optimizer_step"]:
                    run.hooks.call("on_after_optimizer_step", run=run, step=self.global_step, optimizer=run.optimizer)
                if steps.due(self.global_step):
                    self._log_step(epoch, grad_norm)
            if acting["on_train_batch_end"]:
                run.hooks.call(
                    "on_train_batch_end", run=run, epoch=epoch, batch=index, step=self.global_step, loss=value
                )
            window_samples += n
            if (index + 1) % log_every == 0 or index + 1 == total:
                now = time.perf_counter()
                batches = log_every if (index + 1) % log_every == 0 else (index + 1) % log_every
                self.reporter.advance(batches, value, window_samples / max(now - window_start, 1e-9))
                window_start, window_samples = now, 0
            if boundary and index + 1 < total:
                self._within_epoch_checkpoint(epoch, index + 1, progress)
        return sums

    def _train_step(
        self, epoch: int, index: int, batch: Any, boundary: bool, sums: _EpochSums
    ) -> tuple[float, int]:
        """Forward and backward of one batch; returns its loss and size."""
        run = self.run
        inputs, targets = self._to_device(batch)
        if run.batch_transforms is not None:  # MixUp, CutMix: soft targets from here on
            inputs, targets = run.batch_transforms(inputs, targets, epoch, index)
        accumulate = run.trainer.accumulate_grad_batches
        # the micro-batches inside an accumulation window skip DDP's gradient
        # all-reduce (no_sync)
        no_sync: Any = self._ddp.no_sync if self._ddp is not None else None
        with _NULL if boundary or no_sync is None else no_sync():
            with run.precision.autocast():
                outputs = self.train_model(inputs)
                loss = run.loss_fn(outputs, targets)
            value = self._loss_value(loss)
            if math.isfinite(value):
                scaled = loss / accumulate if accumulate > 1 else loss
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            elif run.trainer.on_nonfinite_loss == "skip":
                sums.skipped += 1
            else:
                raise TrainingError(
                    f"loss is {value} at epoch {epoch}, batch {index + 1} (optimizer step "
                    f"{self.global_step}); training stopped, the last good checkpoint is kept"
                )
        n = len(targets)
        if math.isfinite(value):
            sums.loss_sum += value * n
            sums.samples += n
        return value, n

    def _within_epoch_checkpoint(self, epoch: int, batches: int, progress: _Progress) -> None:
        """After an optimizer step inside an epoch: a resumable ``last.pt`` every
        ``checkpoint_every_n_steps`` steps, or when a stop was requested (then stop)."""
        every = self.run.trainer.checkpoint_every_n_steps
        stopping = self._stop_agreed(reduce=False)
        if not (stopping or (every is not None and self.global_step % every == 0)):
            return
        state = self._state(epoch, epoch_done=False, batches=batches, progress=progress)
        if self._main:
            _write_checkpoints(state, self.run.out_dir / "checkpoints", False)
        if stopping:
            raise self._interrupted(progress.result, epoch)

    def _interrupted(self, result: FitResult, epoch: int) -> TrainingInterrupted:
        """What fit() raises once a stop request has written its checkpoint
        (under torch.distributed, a process that saw no signal stops as SIGINT)."""
        return TrainingInterrupted(
            self._stop.signum or signal.SIGINT, result.last_path, epoch, self.global_step, self._world
        )

    def _loss_value(self, loss: torch.Tensor) -> float:
        """The batch's loss as a number; under torch.distributed, the mean over
        processes (so that every process agrees on a non-finite loss)."""
        if self._world == 1:
            return loss.item()
        both = torch.stack(
            [loss.detach().float(), torch.tensor(float(self._stop.signum != 0), device=loss.device)]
        )
        distributed.all_reduce_sum(both)
        self._stop_seen = bool(both[1].item() > 0)
        return float(both[0].item()) / self._world

    def _stop_agreed(self, *, reduce: bool) -> bool:
        """Whether a stop was requested (under torch.distributed: on any process,
        as of the last step's reduction unless ``reduce``)."""
        if self._world == 1:
            return self._stop.signum != 0
        if not reduce:
            return self._stop_seen
        flag = torch.tensor([float(self._stop.signum != 0)], device=self.run.device)
        distributed.all_reduce_sum(flag)
        return bool(flag.item() > 0)

    def _optimizer_step(
        self, epoch: int, index: int, skip_nonfinite: bool, sums: _EpochSums
    ) -> float | None:
        """Clip, check and apply the accumulated gradients; the gradient norm
        before clipping, when something needed it (else ``None``).

        Without a grad scaler, a NaN or inf anywhere in the gradients stops
        training (or, with ``on_nonfinite_loss: skip``, drops this update);
        a grad scaler skips such steps itself. Either way the step counts, so
        the LR schedule keeps its pace.
        """
        run, trainer, acting = self.run, self.run.trainer, self._acting
        optimizer = run.optimizer
        assert optimizer is not None
        parameters = [p for p in self._parameters if p.grad is not None]
        clip, algorithm = trainer.gradient_clip_val, trainer.gradient_clip_algorithm
        by_norm = clip is not None and algorithm == "norm"
        want_norm = acting["on_before_optimizer_step"] or self._steps.due(self.global_step + 1)
        if self.scaler is not None and (clip is not None or want_norm or acting["on_after_backward"]):
            self.scaler.unscale_(optimizer)
        if acting["on_after_backward"]:
            run.hooks.call("on_after_backward", run=run, step=self.global_step)
        norm = None
        if parameters and clip is not None and by_norm:
            norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        elif parameters and want_norm:
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        if clip is not None and algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, clip)
        update = bool(parameters)
        if parameters and self.scaler is None:
            if by_norm and norm is not None:
                finite = bool(torch.isfinite(norm))
            else:
                finite = self._gradients_finite([p.grad for p in parameters if p.grad is not None])
            if not finite:
                if not skip_nonfinite:
                    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
                    raise TrainingError(
                        f"gradient norm is {norm.item()} at epoch {epoch}, batch {index + 1} "
                        f"(optimizer step {self.global_step + 1}); training stopped, the last good "
                        "checkpoint is kept"
                    )
                sums.skipped += 1
                update = False
        grad_norm = float(norm) if norm is not None and want_norm else None
        if acting["on_before_optimizer_step"]:
            run.hooks.call(
                "on_before_optimizer_step", run=run, step=self.global_step, optimizer=optimizer, grad_norm=grad_norm
            )
        if self.scaler is not None:
            if update:
                self.scaler.step(optimizer)  # skips the step itself on inf/NaN gradients
                self.scaler.update()
        elif update:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        return grad_norm

    def _log_step(self, epoch: int, grad_norm: float | None) -> None:
        """A row of ``steps.csv``, and the ``on_step_logged`` hook."""
        assert self.run.optimizer is not None
        lr = float(self.run.optimizer.param_groups[0]["lr"])
        row = self._steps.record(self.global_step, epoch, lr, grad_norm)
        if self._acting["on_step_logged"]:
            self.run.hooks.call("on_step_logged", run=self.run, step=self.global_step, metrics=row)

    def load_best(self, result: FitResult) -> bool:
        """Load the best checkpoint's weights into the model (process 0 reads
        the file and sends the weights to the others); False when there is none."""
        if result.best_path is None:
            return False
        if self._main:
            payload = load_checkpoint(result.best_path, map_location=self.run.device)
            load_model_weights(self.run.model, payload, result.best_path)
        distributed.broadcast_module(self.run.model)
        return True

    def _gradients_finite(self, grads: list[torch.Tensor]) -> bool:
        """Whether every gradient is free of NaN and inf.

        One fused pass, the check ``GradScaler`` makes (with a scale of 1):
        about a tenth of the cost of computing the gradient norm.
        """
        if self._found_inf is None or self._one is None or self._found_inf.device != grads[0].device:
            self._found_inf = torch.zeros(1, device=grads[0].device)
            self._one = torch.ones(1, device=grads[0].device)
        found, one = self._found_inf, self._one
        try:
            found.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
            return not bool(found.item())
        except (RuntimeError, AttributeError):  # a device or torch build without the fused check
            return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))

    # -- evaluation -----------------------------------------------------------

    def validate(self, loader: Any) -> dict[str, float]:
        """Validation loss and every metric, over the whole loader (under
        torch.distributed: over every process's share)."""
        run = self.run
        self._scorer.reset()
        for outputs, targets, _ in forward(
            self.eval_model, loader, device=run.device, precision=run.precision, task=run.task
        ):
            assert targets is not None  # a validation split is labelled
            self._scorer.update(outputs, targets)
        return self._scorer.compute()

    def predict(self, loader: Any, views: list[Any] | None = None, *, targets: bool = False) -> Outputs:
        """Model outputs for every sample of ``loader``, in order (under
        torch.distributed: every process's share, gathered on every process).

        With test-time augmentation ``views`` (callables applied to the input
        batch), the outputs of the plain batch and of every view are averaged
        (class outputs as probabilities; see :mod:`torchyard.inference`).
        """
        run = self.run
        return collect(
            self.eval_model,
            loader,
            device=run.device,
            precision=run.precision,
            task=run.task,
            views=views or (),
            targets=targets,
        )

    # -- helpers ---------------------------------------------------------------

    def _to_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch[0], batch[1]
        device, nb = self.run.device, self._non_blocking
        return inputs.to(device, non_blocking=nb), targets.to(device, non_blocking=nb)

    def _state(self, epoch: int, *, epoch_done: bool, batches: int, progress: _Progress) -> dict[str, Any]:
        """A checkpoint of this moment, to serialize before training goes on."""
        run, result, sums = self.run, progress.result, progress.sums
        rng = distributed.all_gather_objects(capture_rng())  # one per process
        # the state to draw the next epoch's order from (a finished epoch), or
        # this epoch's again (part-way: its remaining batches are skipped to)
        generator = self._train_generator.get_state() if epoch_done else self._epoch_generator_state
        state = {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict() if run.optimizer is not None else None,
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "global_step": self.global_step,
            "monitor": run.monitor,
            "best_value": result.best_value,
            "progress": {
                "epoch": epoch,
                "epoch_done": epoch_done,
                "batches": batches,
                "loss_sum": sums.loss_sum,
                "samples": sums.samples,
                "skipped": sums.skipped,
                "rows": [dict(r) for r in result.rows],
                "best_epoch": result.best_epoch,
                "patience_left": progress.patience_left,
                "world_size": self._world,
                "steps_window": self._steps.state(),
            },
            # what plugins and callbacks keep (on_save_checkpoint), by their name
            "callbacks": run.hooks.save_states(run=run) if self._acting["on_save_checkpoint"] else {},
            "rng": rng,
            "loader_generator": generator,
            "config": self._config_json,
            # what torchyard.load needs to rebuild the model and name its outputs
            "resolved": self._resolved_json,
            "fitted": run.data.fitted.state_dict() if run.data.fitted is not None else None,
            "data": {
                "task": run.task.name,
                "num_classes": run.data.num_classes,
                "class_names": list(run.data.class_names) if run.data.class_names else None,
                "input_shape": list(run.data.input_shape) if run.data.input_shape else None,
            },
            "plugins": {
                name: info.version or "" for name, info in sorted(run.host.plugins.items())
            },
        }
        # the model as a plain state_dict, the resume state packed (see torchyard.checkpoint)
        packed = ["optimizer", "scheduler", "scaler", "rng", "loader_generator"]
        state["packed"] = packed
        for key in packed:
            state[key] = pack(state[key])
        return state

    def _restore(self, payload: dict[str, Any], progress: _Progress) -> None:
        """Put the run back where checkpoint ``payload`` left it: weights,
        optimizer, schedule, scaler, RNGs, the loader's order and ``progress``."""
        from torchyard.errors import ConfigError

        run = self.run
        require_resume_state(payload, "--resume")
        saved = payload["progress"]
        if saved["world_size"] != self._world and not saved["epoch_done"]:
            raise ConfigError(
                f"--resume: the checkpoint was written part-way through an epoch by "
                f"{saved['world_size']} process(es); resume it with the same number of processes"
            )
        run.model.load_state_dict(payload["model"])
        for target, key in ((run.optimizer, "optimizer"), (run.scheduler, "scheduler"), (self.scaler, "scaler")):
            if target is not None and payload.get(key) is not None:
                target.load_state_dict(payload[key])
        self.global_step = int(payload["global_step"])
        self._steps.restore(saved.get("steps_window"))
        unknown = run.hooks.load_states(payload.get("callbacks") or {}, run=run)
        if unknown:
            self.reporter.warn(f"--resume: the checkpoint keeps state of {', '.join(unknown)}, which this run lacks; ignored")
        result = progress.result
        result.rows = [dict(r) for r in saved["rows"]]
        result.best_value = payload.get("best_value")
        result.best_epoch = saved.get("best_epoch")
        rng, rank = payload["rng"], distributed.rank()
        restore_rng(rng[rank] if rank < len(rng) else rng[0])
        if payload.get("loader_generator") is not None:
            # its own storage (see restore_rng)
            self._train_generator.set_state(payload["loader_generator"].clone())
        progress.patience_left = saved["patience_left"]
        if saved["epoch_done"]:
            progress.first_epoch = int(saved["epoch"]) + 1
            return
        progress.first_epoch, progress.done = int(saved["epoch"]), int(saved["batches"])
        progress.sums = _EpochSums(float(saved["loss_sum"]), int(saved["samples"]), int(saved["skipped"]))


_NULL = contextlib.nullcontext()


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per epoch, one column per logged value (in order of first appearance)."""
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    # no fsync: an atomic replace is enough, and every checkpoint holds these rows
    with atomic_write(path, durable=False) as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_checkpoints(state: dict[str, Any], directory: Path, improved: bool) -> None:
    """``last.pt``, and ``best.pt`` after an improving epoch: the same state,
    so it is serialized once and ``last.pt`` becomes a hard link to it."""
    if improved:
        atomic_link(save_checkpoint(directory / "best.pt", state), directory / "last.pt")
    else:
        save_checkpoint(directory / "last.pt", state)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta
