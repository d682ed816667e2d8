"""The best K checkpoints of a run (``trainer.save_top_k``), kept and averaged.

With ``save_top_k: K`` (K > 1) a run keeps, besides ``best.pt`` and
``last.pt``, the checkpoints of its K best epochs by the monitored value as
``checkpoints/top/epoch=<n>.pt`` (hard links to the file each epoch wrote,
so keeping one costs no extra write); an epoch that falls out of the K best
loses its file. Which epochs are the K best is computed from the metrics
rows alone (ties: the earlier epoch first, as ``best.pt`` keeps the first
epoch to reach a value), so a resumed run -- whose checkpoint holds the rows
-- keeps exactly the same ones. ``trainer.predict_with: top_k`` makes the
submission from these checkpoints' averaged predictions, and ``torchyard
predict --checkpoints top_k`` / ``torchyard.load(..., checkpoints="top_k")``
average them later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchyard.files import atomic_link

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from torchyard.inference import Outputs
    from torchyard.loop import FitResult, Trainer
    from torchyard.run import Run

__all__ = ["TOP_DIR", "TopK", "checkpoint_name", "predict_averaged", "ranking", "recorded", "top_checkpoints"]

#: The folder, inside ``checkpoints/``, of the K best checkpoints.
TOP_DIR = "top"
_NAME = re.compile(r"epoch=(\d+)\.pt")


def checkpoint_name(epoch: int) -> str:
    """``epoch=007.pt``: the name of an epoch's checkpoint in ``checkpoints/top/``."""
    return f"epoch={epoch:03d}.pt"


def ranking(rows: Sequence[Mapping[str, Any]], monitor: str, mode: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best epochs of ``rows`` by ``monitor``, best first, as
    ``{"epoch", "value"}``; epochs whose value is missing or not finite never count."""
    scored = []
    for row in rows:
        value = row.get(monitor)
        if isinstance(value, int | float) and math.isfinite(value):
            scored.append((float(value), int(row["epoch"])))
    sign = 1.0 if mode == "min" else -1.0
    scored.sort(key=lambda pair: (sign * pair[0], pair[1]))
    return [{"epoch": epoch, "value": value} for value, epoch in scored[:k]]


@dataclass(frozen=True)
class TopK:
    """How many of a run's best checkpoints to keep, and by what."""

    k: int
    monitor: str
    mode: str

    @classmethod
    def of(cls, run: Run) -> TopK | None:
        """The run's policy; None when it keeps ``best.pt`` only (``save_top_k: 1``)."""
        k = run.trainer.save_top_k
        return cls(k, run.monitor, run.mode) if k > 1 else None

    def update(self, directory: Path, rows: Sequence[Mapping[str, Any]], epoch: int) -> None:
        """After ``epoch``'s checkpoint was written as ``directory/last.pt``:
        keep it if it is among the K best, and delete the files of epochs
        that no longer are (only ``epoch=<n>.pt`` files, which torchyard wrote)."""
        keep = {entry["epoch"] for entry in ranking(rows, self.monitor, self.mode, self.k)}
        folder = directory / TOP_DIR
        if epoch in keep:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_link(directory / "last.pt", folder / checkpoint_name(epoch))
        if folder.is_dir():
            for file in folder.iterdir():
                match = _NAME.fullmatch(file.name)
                if match and int(match.group(1)) not in keep and file.is_file():
                    file.unlink()


def recorded(run: Run, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The kept checkpoints, best first, as ``{"epoch", "value", "checkpoint"}``
    (for ``summary.json``); None when the run keeps ``best.pt`` only."""
    policy = TopK.of(run)
    if policy is None:
        return None
    folder = run.out_dir / "checkpoints" / TOP_DIR
    entries = []
    for entry in ranking(rows, policy.monitor, policy.mode, policy.k):
        path = folder / checkpoint_name(entry["epoch"])
        if path.is_file():  # a run resumed into another directory lacks the earlier ones
            entries.append({**entry, "checkpoint": str(path)})
    return entries


def top_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """The ``top/epoch=<n>.pt`` files under ``checkpoints_dir``, by epoch."""
    folder = checkpoints_dir / TOP_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), f) for f in folder.iterdir() if (m := _NAME.fullmatch(f.name)) and f.is_file()]
    return [f for _, f in sorted(found)]


def submission_checkpoints(run: Run, result: FitResult) -> list[dict[str, Any]]:
    """The kept checkpoints the submission averages (``predict_with: top_k``);
    empty when it is made with the best checkpoint alone."""
    from torchyard import distributed

    if run.trainer.predict_with != "top_k":
        return []
    # process 0 wrote the files: every process must average the same ones
    kept: list[dict[str, Any]] = distributed.broadcast_object(recorded(run, result.rows) or [])
    return kept


def predict_averaged(
    trainer: Trainer,
    checkpoints: Sequence[Path],
    loaders: Sequence[tuple[DataLoader[Any] | None, bool]],
) -> list[Outputs | None]:
    """Each ``(loader, with targets)``'s outputs with every checkpoint's
    weights (and the run's TTA), averaged as the task averages; None for a
    missing loader. Process 0 reads each file and sends the weights on."""
    from torchyard import distributed
    from torchyard.checkpoint import load_checkpoint, load_model_weights
    from torchyard.inference import ensemble

    run = trainer.run
    parts: list[list[Outputs]] = [[] for _ in loaders]
    for checkpoint in checkpoints:
        if distributed.is_main():
            load_model_weights(run.model, load_checkpoint(checkpoint, map_location=run.device), checkpoint)
        distributed.broadcast_module(run.model)
        for i, (loader, targets) in enumerate(loaders):
            if loader is not None:
                views = [] if targets else run.tta  # validation is scored as it was: without TTA
                parts[i].append(trainer.predict(loader, views=views, targets=targets))
    return [ensemble(outputs, run.task) if outputs else None for outputs in parts]
