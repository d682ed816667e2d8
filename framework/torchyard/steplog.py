"""``steps.csv``: a row every ``trainer.log_every_n_steps`` optimizer steps.

Each row holds ``step``, ``epoch``, ``loss`` (the mean training loss of the
batches since the previous row), ``lr`` (the first parameter group's, after
the step) and ``grad_norm`` (the total 2-norm of the step's gradients before
clipping: the norm ``clip_grad_norm_`` computes; empty when the step had no
gradients). The same row goes to the ``on_step_logged`` hook, for loggers.

Rows are appended as they come (process 0 writes); a resumed run first
drops the rows past its checkpoint's step, so the file reads as if the run
had never stopped.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, TextIO

__all__ = ["COLUMNS", "StepLog"]

COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm")


class StepLog:
    """The rows of ``steps.csv`` and the loss window each row averages."""

    def __init__(self, path: Path | None, every: int) -> None:
        """:param path: where to write; ``None`` on processes that do not write."""
        self.path = path
        self.every = every
        self.loss_sum = 0.0
        self.batches = 0
        self._file: TextIO | None = None
        self._writer: Any = None

    def open(self, resumed_step: int | None) -> None:
        """Start the file, or (resuming from ``resumed_step``) keep its rows up to that step."""
        if self.path is None:
            return
        kept: list[dict[str, str]] = []
        if resumed_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resumed_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def add(self, loss: float) -> None:
        """One training batch's loss (non-finite ones are left out of the mean)."""
        if math.isfinite(loss):
            self.loss_sum += loss
            self.batches += 1

    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` gets a row."""
        return step % self.every == 0

    def record(self, step: int, epoch: int, lr: float, grad_norm: float | None) -> dict[str, float]:
        """The row of ``step``, written out; the loss window starts over."""
        row: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "loss": self.loss_sum / self.batches if self.batches else math.nan,
            "lr": lr,
            "grad_norm": grad_norm,
        }
        self.loss_sum, self.batches = 0.0, 0
        if self._writer is not None and self._file is not None:
            self._writer.writerow(row)
            self._file.flush()
        return row

    def state(self) -> list[float]:
        """The open window, for checkpoints taken between rows."""
        return [self.loss_sum, float(self.batches)]

    def restore(self, state: list[float] | None) -> None:
        if state:
            self.loss_sum, self.batches = float(state[0]), int(state[1])
