"""The ``tensorboard`` logger: event files TensorBoard reads.

Scalars at the optimizer step count (``step/loss`` every
``trainer.log_every_n_steps`` steps, each epoch's values at its end), the
resolved config in the HParams dashboard, the report's PNGs as images, and
the summary and the run's file paths as text. Writes under
``<run>/tensorboard/`` unless ``log_dir`` says otherwise
(``tensorboard --logdir runs/`` then shows every run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from torchyard_builtins.loggers.base import Finished, Logger

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Logger):
    """TensorBoard event files: scalars, hparams, report images, summary."""

    def __init__(
        self,
        log_dir: Annotated[
            Path | None, Field(description="Where the event files go; default <run>/tensorboard.")
        ] = None,
        flush_secs: Annotated[int, Field(gt=0, description="Seconds between writes to disk.")] = 30,
    ) -> None:
        super().__init__()
        self.log_dir, self.flush_secs = log_dir, flush_secs
        self.writer: Any = None
        self.monitor = ""

    def start(self, run: Any, hparams: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        log_dir = self.log_dir or Path(run.out_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=self.flush_secs)
        self.monitor = str(run.monitor)
        # the HParams dashboard: the config's values, the monitored metric as its measure
        for summary in hparams_summary(
            {k: _hparam(v) for k, v in hparams.items()}, {run.monitor: math.nan}
        ):
            self.writer._get_file_writer().add_summary(summary)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, run: Any, finished: Finished) -> None:
        import numpy as np
        from matplotlib.image import imread

        step = int((finished.summary.get("last") or {}).get("step") or 0)
        for name, path in finished.images.items():
            image = np.asarray(imread(path))
            if image.ndim == 3 and image.shape[2] == 4:
                image = image[:, :, :3]  # RGBA: TensorBoard takes RGB
            self.writer.add_image(
                f"report/{name}", image, step, dataformats="HWC" if image.ndim == 3 else "HW"
            )
        for key, value in finished.values.items():
            self.writer.add_scalar(f"summary/{key}", value, step)
        self.writer.add_text(
            "summary", _code(json.dumps(finished.summary, indent=2, default=str)), step
        )
        self.writer.add_text("files", _code(json.dumps(finished.paths, indent=2)), step)

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.close()


def _hparam(value: Any) -> Any:
    """A config value as the HParams plugin takes it: a number, a string or a bool."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def _code(text: str) -> str:
    """Text TensorBoard shows as is (markdown: indented code)."""
    return "\n".join("    " + line for line in text.splitlines())
