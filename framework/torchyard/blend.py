"""Ensemble weights fitted on labelled predictions (``torchyard ensemble --weights fit``).

The runs' out-of-fold predictions (``oof.csv`` of k-fold runs) -- or, for
holdout runs that share one validation split, their ``val_predictions.csv``
-- are matched by sample id; non-negative weights summing to 1 are fitted to
minimise the task's loss on them: log-loss for classification and binary,
binary cross-entropy per label for multi-label, mean squared error for
regression. The blend's loss is never worse than the best single run's: the
equal and one-run weightings are candidates too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from torchyard.errors import ConfigError
from torchyard.predfiles import read_predictions, read_targets, value_columns

__all__ = ["LOSSES", "BlendFit", "fit_weights", "labelled_predictions"]

#: The loss minimised per task.
LOSSES = {"classification": "log_loss", "binary": "log_loss", "multilabel": "binary_log_loss", "regression": "mse"}
_EPS = 1e-15


@dataclass
class BlendFit:
    """Fitted weights and the loss of each run and of the blend."""

    weights: list[float]
    loss: str
    file: str
    samples: int
    run_losses: list[float]
    blend_loss: float

    def record(self) -> dict[str, Any]:
        return {
            "on": self.file, "loss": self.loss, "samples": self.samples,
            "run_losses": self.run_losses, "blend_loss": self.blend_loss,
        }  # fmt: skip


def labelled_predictions(run_dirs: Sequence[Path]) -> tuple[str, np.ndarray, list[np.ndarray], list[str]]:
    """The runs' labelled predictions, matched by id: the file's name, the
    targets ``(n, t)``, each run's ``(n, k)`` predictions, and the ids."""
    first_ids: list[str] | None = None
    first_name = ""
    targets: np.ndarray | None = None
    columns: list[str] = []
    arrays = []
    for run_dir in run_dirs:
        where = f"ensemble --weights fit: {run_dir}"
        name = next((n for n in ("oof.csv", "val_predictions.csv") if (run_dir / n).is_file()), None)
        if name is None:
            raise ConfigError(
                f"{where}: no oof.csv or val_predictions.csv to fit on (a run without validation, "
                "or written by an older torchyard)"
            )
        frame = read_predictions(run_dir / name, where)
        ids = frame["id"].tolist()
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: {name} lists an id twice; the runs' samples cannot be matched")
        if first_ids is None:
            first_ids, first_name, columns = ids, name, value_columns(frame)
            targets = read_targets(frame, f"{where}: {name}")
        else:
            if sorted(ids) != sorted(first_ids):
                example = sorted(set(first_ids) ^ set(ids))[:3]
                raise ConfigError(
                    f"{where}: its {name} has other sample ids than {run_dirs[0]}'s {first_name} "
                    f"(e.g. {example}); weights are fitted on the samples every run predicted out of fold "
                    "(k-fold runs of one labelled set) or on one shared validation split"
                )
            if value_columns(frame) != columns:
                raise ConfigError(f"{where}: {name} has columns {value_columns(frame)[:6]}, the first run's {columns[:6]}")
            frame = frame.set_index("id").loc[first_ids].reset_index()
            theirs = read_targets(frame, f"{where}: {name}")
            assert targets is not None
            if theirs.shape != targets.shape or not np.allclose(theirs, targets, equal_nan=True):
                raise ConfigError(f"{where}: {name} has other targets for the same ids than {run_dirs[0]}")
        arrays.append(frame[columns].to_numpy(dtype=np.float64))
    assert targets is not None and first_ids is not None
    return first_name, targets, arrays, first_ids


def task_loss(name: str, predictions: np.ndarray, targets: np.ndarray) -> float:
    """The loss ``name`` (see :data:`LOSSES`) of ``predictions`` against ``targets``."""
    if name == "log_loss":
        classes = targets[:, 0].astype(np.int64)
        if classes.min() < 0 or classes.max() >= predictions.shape[1]:
            raise ConfigError("ensemble --weights fit: a target is not a class of the predictions")
        chosen = predictions[np.arange(len(classes)), classes]
        return float(-np.mean(np.log(np.clip(chosen, _EPS, 1.0))))
    if name == "binary_log_loss":
        p = np.clip(predictions, _EPS, 1 - _EPS)
        return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    return float(np.mean((predictions - targets.reshape(predictions.shape)) ** 2))


def fit_weights(task: str, run_dirs: Sequence[Path]) -> BlendFit:
    """Non-negative weights summing to 1 that minimise the task's loss on
    the runs' matched labelled predictions."""
    from scipy.optimize import minimize

    if task not in LOSSES:
        raise ConfigError(
            f"ensemble --weights fit: the {task} task is not supported (classification, binary, "
            "multilabel and regression are); give --weights by hand"
        )
    loss = LOSSES[task]
    name, targets, arrays, ids = labelled_predictions(run_dirs)
    stack = np.stack(arrays)
    n = len(arrays)

    def objective(w: np.ndarray) -> float:
        return task_loss(loss, np.tensordot(w, stack, axes=1), targets)

    fitted = minimize(
        objective, np.full(n, 1.0 / n), method="SLSQP", bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: float(np.sum(w) - 1.0)}],
    )  # fmt: skip
    candidates = [np.full(n, 1.0 / n), *np.eye(n)]
    if np.all(np.isfinite(fitted.x)):
        w = np.clip(fitted.x, 0.0, None)
        if w.sum() > 0:
            candidates.insert(0, w / w.sum())
    best = min(candidates, key=objective)  # never worse than equal weights or the best run alone
    return BlendFit(
        weights=[float(v) for v in best],
        loss=loss,
        file=name,
        samples=len(ids),
        run_losses=[task_loss(loss, a, targets) for a in arrays],
        blend_loss=objective(best),
    )
