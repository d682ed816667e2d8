"""K-fold training: one run per fold, out-of-fold predictions, a fold ensemble.

With ``split: {method: kfold}`` (and no single ``fold``), ``torchyard run``
trains every fold into ``<run>/fold_<k>/`` (its own checkpoints and
``metrics.csv``), predicts each fold's validation part with that fold's
best weights -- together the out-of-fold (OOF) predictions, saved as
``oof.csv`` and scored with the configured metrics -- and writes the
submission from the test probabilities averaged over the folds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from torchyard import distributed
from torchyard.console import Reporter
from torchyard.data import Predictions
from torchyard.files import atomic_write
from torchyard.loop import Trainer, probabilities_of
from torchyard.plugins import PluginHost
from torchyard.report import collect_outputs, write_report
from torchyard.run import Run, build_run, create_run_dir

__all__ = ["fit_folds", "is_kfold"]


def is_kfold(config: Any) -> bool:
    """Whether ``config`` trains several folds in one run."""
    split = getattr(config, "split", None)
    return split is not None and split.method == "kfold" and split.fold is None


def fit_folds(config: BaseModel, host: PluginHost, out_dir: Path, reporter: Reporter) -> dict[str, Any]:
    """Train every fold; write OOF predictions, reports and the ensembled submission."""
    first = build_run(config, host, out_dir / "fold_0", fold=0)
    folds = int(first.extras["folds"])
    n_labelled = len(first.data.train) + len(first.data.val)
    oof_outputs: np.ndarray | None = None
    oof_targets = np.full(n_labelled, -1, dtype=np.int64)
    test_probabilities: list[np.ndarray] = []
    per_fold: list[dict[str, Any]] = []
    all_rows: list[list[dict[str, Any]]] = []
    for k in range(folds):
        run = first if k == 0 else build_run(config, host, out_dir / f"fold_{k}", fold=k)
        if distributed.is_main():
            create_run_dir(run.out_dir)
        distributed.barrier()
        reporter.info(f"fold {k + 1}/{folds}: {len(run.data.train)} training, "
                      f"{len(run.data.val)} validation samples")
        trainer = Trainer(run, reporter)
        result = trainer.fit()
        all_rows.append(result.rows)
        trainer.load_best(result)
        outputs, targets = collect_outputs(trainer, run.loader("val"))
        index = np.asarray(run.extras["val_indices"])
        if oof_outputs is None:
            oof_outputs = np.zeros((n_labelled, outputs.shape[1]), dtype=np.float32)
        oof_outputs[index] = outputs
        oof_targets[index] = targets
        test_loader = run.loader("test")
        if test_loader is not None:
            test_probabilities.append(_softmax(trainer.predict(test_loader, views=run.tta)))
        per_fold.append({
            "fold": k,
            "best_value": result.best_value,
            "best_epoch": result.best_epoch,
            "best_checkpoint": str(result.best_path) if result.best_path else None,
        })
    assert oof_outputs is not None
    oof_scores = _score(first, oof_outputs, oof_targets)
    if not distributed.is_main():  # process 0 writes the files
        return {"monitor": first.monitor, "oof": oof_scores}
    _write_oof(out_dir / "oof.csv", oof_outputs, oof_targets)
    report = write_report(
        out_dir / "report",
        oof_outputs,
        oof_targets,
        first.data.class_names,
        all_rows[-1],
        reporter,
        title="per class (out of fold)",
    )
    submission = None
    if test_probabilities and first.writer is not None:
        mean = np.mean(test_probabilities, axis=0)
        ids = list(first.data.test_ids) if first.data.test_ids is not None else list(range(len(mean)))
        predictions = Predictions(
            ids=ids,
            outputs=np.log(np.clip(mean, 1e-12, None)).astype(np.float32),  # softmax(log p) = p
            task=first.data.task,
            class_names=list(first.data.class_names) if first.data.class_names else None,
        )
        submission = Path(first.writer.write(predictions, out_dir))
        reporter.info(f"submission (mean of {len(test_probabilities)} folds): {submission}")
    values = [f["best_value"] for f in per_fold if f["best_value"] is not None]
    summary = {
        "monitor": first.monitor,
        "mode": first.mode,
        "folds": per_fold,
        "mean_best_value": float(np.mean(values)) if values else None,
        "oof": oof_scores,
        "oof_predictions": str(out_dir / "oof.csv"),
        "report": report,
        "submission": str(submission) if submission else None,
    }
    with atomic_write(out_dir / "summary.json") as f:
        json.dump(summary, f, indent=2)
    _print_summary(reporter, summary)
    host.call("on_run_end", run=first, summary=summary)
    return summary


def _softmax(outputs: np.ndarray) -> np.ndarray:
    import torch

    return probabilities_of(torch.from_numpy(outputs)).numpy()


def _score(run: Run, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The configured metrics and the loss over all out-of-fold predictions."""
    import torch

    scores: dict[str, float] = {}
    out = torch.from_numpy(outputs)
    tgt = torch.from_numpy(targets)
    with torch.inference_mode():
        loss = run.loss_fn(out.to(run.device), tgt.to(run.device))
    scores["val/loss"] = float(loss)
    for key, metric in run.metrics.items():
        metric.reset()
        metric.update(out.to(run.device), tgt.to(run.device))
        scores[f"val/{key}"] = float(metric.compute())
    return scores


def _write_oof(path: Path, outputs: np.ndarray, targets: np.ndarray) -> None:
    probabilities = _softmax(outputs)
    with atomic_write(path) as f:
        columns = ",".join(f"prob_{i}" for i in range(probabilities.shape[1]))
        f.write(f"index,target,predicted,{columns}\n")
        for i, (target, row) in enumerate(zip(targets, probabilities, strict=True)):
            f.write(f"{i},{target},{int(row.argmax())}," + ",".join(f"{p:.6f}" for p in row) + "\n")


def _print_summary(reporter: Reporter, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="k-fold", show_edge=False)
    table.add_column("fold", justify="right")
    table.add_column(f"best {summary['monitor']}", justify="right")
    table.add_column("epoch", justify="right")
    for fold in summary["folds"]:
        value = fold["best_value"]
        table.add_row(str(fold["fold"]), "-" if value is None else f"{value:.4f}", str(fold["best_epoch"]))
    reporter.console.print(table)
    reporter.info("out-of-fold: " + "  ".join(f"{k} {v:.4f}" for k, v in summary["oof"].items()))
