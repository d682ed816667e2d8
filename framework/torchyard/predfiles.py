"""A run's prediction files: ``test_predictions.csv``, ``val_predictions.csv``, ``oof.csv``.

One writer, one column convention, so that any of them can be read back
(``torchyard ensemble``, error analysis) without knowing which run wrote it:

- ``id``: the sample's id (test ids; for labelled samples the dataset's
  ``train_ids``/``val_ids``, else their row numbers);
- ``group``: the sample's group, when the split had groups (labelled files);
- ``target``: the true value (a class index, 0/1, a number; several
  space-separated for multi-label rows and several regression targets);
- the task's readable columns (labelled files): ``predicted`` and the like,
  decoded as the submission decodes (tuned thresholds included);
- ``prob_<k>`` (class or label probabilities) or ``value_<k>`` (regression
  values, ranking scores): the raw predictions, averaged by ensembles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from torchyard.errors import ConfigError
from torchyard.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from torchyard.inference import Outputs
    from torchyard.run import Run
    from torchyard.tasks import Task

__all__ = [
    "read_predictions",
    "read_targets",
    "value_columns",
    "write_predictions",
    "write_test_predictions",
    "write_val_predictions",
]


def write_predictions(
    path: Path, ids: Sequence[Any], outputs: Outputs, task: Task, *, groups: Sequence[Any] | None = None
) -> Path:
    """Write ``outputs`` for ``ids`` (with their targets, when ``outputs``
    has them, and ``groups``) in the columns described above."""
    import pandas as pd

    n = len(outputs.outputs)
    if len(ids) != n:
        raise ValueError(f"{path.name}: {len(ids)} ids for {n} predictions")
    frame = pd.DataFrame({"id": list(ids)})
    if groups is not None:
        frame["group"] = list(groups)
    if outputs.targets is not None:
        targets = outputs.targets.reshape(n, -1)
        frame["target"] = (
            targets[:, 0] if targets.shape[1] == 1 else [" ".join(f"{v:g}" for v in row) for row in targets]
        )
        for name, column in task.oof_columns(outputs.outputs, outputs.kind).items():
            if not name.startswith(("prob_", "value_")):
                frame[name] = column
    if outputs.kind == "values":
        values, prefix = outputs.outputs.reshape(n, -1), "value"
    else:
        values, prefix = task.probabilities(outputs.outputs, outputs.kind), "prob"
    values = np.asarray(values, dtype=np.float64)
    raw = pd.DataFrame(values, columns=[f"{prefix}_{k}" for k in range(values.shape[1])])
    frame = pd.concat([frame, raw], axis=1)
    with atomic_write(path) as f:
        frame.to_csv(f, index=False, float_format="%.8g", lineterminator="\n")
    return path


def write_test_predictions(run: Run, outputs: Outputs | None) -> Path | None:
    """``test_predictions.csv``: every test id with its probabilities or
    values, so that runs can be ensembled later without predicting again."""
    from torchyard import distributed

    if outputs is None or not distributed.is_main():
        return None
    n = len(outputs.outputs)
    ids = list(run.data.test_ids) if run.data.test_ids is not None else list(range(n))
    return write_predictions(run.out_dir / "test_predictions.csv", ids, outputs, run.task)


def write_val_predictions(run: Run, outputs: Outputs | None) -> Path | None:
    """``val_predictions.csv`` of a holdout run: every validation sample's
    id (and group), target and predictions, from the weights that made the
    submission."""
    from torchyard import distributed

    if outputs is None or outputs.targets is None or not distributed.is_main():
        return None
    n = len(outputs.outputs)
    ids = list(run.data.val_ids) if run.data.val_ids is not None else list(range(n))
    groups = run.extras.get("val_groups")
    return write_predictions(run.out_dir / "val_predictions.csv", ids, outputs, run.task, groups=groups)


def value_columns(frame: pd.DataFrame) -> list[str]:
    """The ``prob_<k>`` or ``value_<k>`` columns of a prediction file."""
    return [c for c in frame.columns if str(c).startswith(("prob_", "value_"))]


def read_predictions(path: Path, where: str) -> pd.DataFrame:
    """A prediction file, ids as text; a one-line error when it is unusable."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"id": str, "group": str, "target": str}, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read {path.name}: {e}") from None
    if "id" not in frame.columns:
        raise ConfigError(f"{where}: {path.name} has no id column (written by an older torchyard?)")
    if not value_columns(frame):
        raise ConfigError(f"{where}: {path.name} has no prob_<k> or value_<k> columns")
    return frame


def read_targets(frame: pd.DataFrame, where: str) -> np.ndarray:
    """The ``target`` column as numbers, ``(n, k)``."""
    if "target" not in frame.columns:
        raise ConfigError(f"{where}: no target column")
    try:
        rows = [[float(v) for v in str(text).split()] for text in frame["target"]]
        targets = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise ConfigError(f"{where}: its target column holds something other than numbers") from None
    if targets.ndim != 2:
        raise ConfigError(f"{where}: its target rows differ in length")
    return targets
