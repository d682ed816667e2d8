"""Ensembles across runs: average the test predictions several runs kept.

Every run writes ``test_predictions.csv`` beside its submission: each test
id with its class probabilities (``prob_<k>``) or values (``value_<k>``).
:func:`ensemble_runs` averages (or weights) them across runs -- different
models, configs, k-fold runs -- after checking that they predict the same
ids for the same task, and writes the submission through the first run's
writer. Nothing is predicted again.

``weights="fit"`` fits the weights (:mod:`torchyard.blend`) on the runs'
out-of-fold predictions (``oof.csv`` of k-fold runs) or the validation
predictions of holdout runs that share one split (``val_predictions.csv``),
matched by sample id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torchyard.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from torchyard.plugins import PluginHost
    from torchyard.tasks import OutputKind

__all__ = ["ensemble_runs"]


def _read_run(run_dir: Path, host: PluginHost) -> tuple[Any, dict[str, Any], pd.DataFrame]:
    """A run's validated config, summary and test predictions."""
    import pandas as pd

    from torchyard.config import read_config_file, validate_config
    from torchyard.predfiles import value_columns

    where = f"ensemble: {run_dir}"
    for name in ("config.yaml", "summary.json", "test_predictions.csv"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{where}: no {name} (not a finished torchyard run, or from an older version)")
    config = validate_config(read_config_file(run_dir / "config.yaml"), host.registry)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        frame = pd.read_csv(run_dir / "test_predictions.csv", dtype={"id": str}, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read its predictions: {e}") from None
    if "id" not in frame.columns or not value_columns(frame):
        raise ConfigError(f"{where}: test_predictions.csv has no id and prob_<k> or value_<k> columns")
    return config, summary, frame


def ensemble_runs(
    run_dirs: Sequence[Path],
    out_dir: Path,
    *,
    weights: Sequence[float] | Literal["fit"] | None = None,
    host: PluginHost,
) -> tuple[Path | None, dict[str, Any]]:
    """Average the runs' kept test predictions and write the submission into
    ``out_dir`` (which must be new or empty). Returns the submission's path
    and what was combined (also written as ``ensemble.json``); with
    ``weights="fit"``, the fit under ``"fit"``."""
    import numpy as np

    from torchyard.data import Predictions
    from torchyard.factories import build_component
    from torchyard.files import atomic_write
    from torchyard.inference import Outputs
    from torchyard.predfiles import value_columns, write_predictions
    from torchyard.run import build_task

    if len(run_dirs) < 2:
        raise ConfigError("ensemble: give at least two run directories")
    if weights is not None and weights != "fit" and (
        len(weights) != len(run_dirs) or min(weights) < 0 or sum(weights) <= 0
    ):
        raise ConfigError(
            f"--weights: one number >= 0 per run ({len(run_dirs)}), not all 0; got {list(weights)}"
        )
    runs = [_read_run(Path(d), host) for d in run_dirs]
    first_config, first_summary, first = runs[0]
    task_name = first_config.task.record.name
    columns = value_columns(first)
    ids = first["id"].tolist()
    arrays = []
    for run_dir, (config, _, frame) in zip(run_dirs, runs, strict=True):
        where = f"ensemble: {run_dir}"
        if config.task.record.name != task_name:
            raise ConfigError(f"{where}: predicts a {config.task.record.name} task, the first run {task_name}")
        if value_columns(frame) != columns:
            raise ConfigError(f"{where}: its predictions have columns {value_columns(frame)[:6]}, the first run's {columns[:6]}")
        if frame["id"].tolist() != ids:
            if sorted(frame["id"]) != sorted(ids):
                missing = sorted(set(ids) - set(frame["id"]))[:3] or sorted(set(frame["id"]) - set(ids))[:3]
                raise ConfigError(f"{where}: predicts other test ids than the first run (e.g. {missing})")
            frame = frame.set_index("id").loc[ids].reset_index()
        arrays.append(frame[columns].to_numpy(dtype=np.float64))
    fit = None
    if weights == "fit":
        from torchyard.blend import fit_weights

        fit = fit_weights(task_name, [Path(d) for d in run_dirs])
        weights = fit.weights
    w = np.asarray(weights if weights is not None else [1.0] * len(runs), dtype=np.float64)
    mean = np.tensordot(w / w.sum(), np.stack(arrays), axes=1)
    kind: OutputKind = "values" if columns[0].startswith("value") else "probabilities"
    task = build_task(first_config)
    class_names = first_summary.get("class_names")
    task.setup(len(columns) if kind == "probabilities" else None, class_names)
    task.load_state(first_summary.get("task_state") or {})
    from torchyard.run import choose_run_dir, create_run_dir

    out_dir = create_run_dir(choose_run_dir(out_dir, "ensemble", overwrite=False))
    record: dict[str, Any] = {"runs": [str(d) for d in run_dirs], "weights": (w / w.sum()).tolist(), "task": task_name}
    if fit is not None:
        record["fit"] = fit.record()
    with atomic_write(out_dir / "ensemble.json") as f:
        json.dump(record, f, indent=2)
    write_predictions(out_dir / "test_predictions.csv", ids, Outputs(mean, kind), task)
    if first_config.writer is None:
        return None, record
    writer = build_component(first_config.writer, where="writer")
    predictions = Predictions(
        ids=ids, outputs=mean.astype(np.float32), task=task.name, class_names=class_names, kind=kind, rules=task
    )
    return Path(writer.write(predictions, out_dir)), record
