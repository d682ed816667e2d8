"""K-fold training: one run per fold, out-of-fold predictions, a fold ensemble.

With ``split: {method: kfold}`` (and no single ``fold``), ``torchyard run``
trains every fold into ``<run>/fold_<k>/`` (its own checkpoints and
``metrics.csv``), predicts each fold's validation part with that fold's
best weights -- together the out-of-fold (OOF) predictions, saved as
``oof.csv`` and scored with the configured metrics -- and ends like a
single run (:func:`torchyard.pipeline.finish_run`), its submission made
from the test predictions averaged over the folds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from torchyard import distributed
from torchyard.console import Reporter
from torchyard.inference import Outputs, Scorer, ensemble
from torchyard.loop import Trainer
from torchyard.pipeline import finish_run, tune
from torchyard.predfiles import write_predictions
from torchyard.run import Run, create_run_dir
from torchyard.topk import predict_averaged, recorded, submission_checkpoints

__all__ = ["fit_folds", "is_kfold"]


def is_kfold(config: Any) -> bool:
    """Whether ``config`` trains several folds in one run."""
    split = getattr(config, "split", None)
    return split is not None and split.method == "kfold" and split.fold is None


def fit_folds(first: Run, build_fold: Callable[[int], Run], out_dir: Path, reporter: Reporter) -> dict[str, Any]:
    """Train every fold (``first`` is fold 0, already built and checked;
    ``build_fold(k)`` builds the others); write the OOF predictions and
    finish the run with the folds' averaged test predictions."""
    folds = int(first.extras["folds"])
    n_labelled = int(first.extras["n_labelled"])
    oof: np.ndarray | None = None
    oof_targets: np.ndarray | None = None
    ids: list[Any] = list(range(n_labelled))
    groups: list[Any] | None = None
    tests: list[Outputs] = []
    per_fold: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []  # every fold's metrics rows, for the curves
    for k in range(folds):
        run = first if k == 0 else build_fold(k)
        if distributed.is_main():
            create_run_dir(run.out_dir)
        distributed.barrier()
        # 0-based, as split.fold and the fold_<k> folders are
        reporter.info(f"fold {k} (of 0..{folds - 1}): {run.extras['n_train']} training, "
                      f"{len(run.extras['val_indices'])} validation samples")
        trainer = Trainer(run, reporter)
        result = trainer.fit()
        if k > 0:
            run.hooks.end_loggers()  # fold 0's loggers also take the whole run's end
        rows += [{"fold": k, **row} for row in result.rows]
        val_loader, test_loader = run.loader("val"), run.loader("test")
        assert val_loader is not None  # a fold always has a validation part
        if top := submission_checkpoints(run, result):  # trainer.predict_with: top_k
            fold_oof, fold_test = predict_averaged(
                trainer, [Path(e["checkpoint"]) for e in top], [(val_loader, True), (test_loader, False)]
            )
        else:
            trainer.load_best(result)
            fold_oof = trainer.predict(val_loader, targets=True)
            fold_test = trainer.predict(test_loader, views=run.tta) if test_loader is not None else None
        assert fold_oof is not None and fold_oof.targets is not None
        index = np.asarray(run.extras["val_indices"])
        if oof is None or oof_targets is None:
            oof = np.zeros((n_labelled, fold_oof.outputs.shape[1]), dtype=np.float32)
            oof_targets = np.zeros((n_labelled, *fold_oof.targets.shape[1:]), dtype=fold_oof.targets.dtype)
        oof[index] = fold_oof.outputs
        oof_targets[index] = fold_oof.targets
        for i, sample_id in zip(index.tolist(), run.data.val_ids if run.data.val_ids is not None else index.tolist(), strict=True):
            ids[i] = sample_id
        if run.extras.get("val_groups") is not None:
            groups = groups if groups is not None else [""] * n_labelled
            for i, group in zip(index.tolist(), run.extras["val_groups"], strict=True):
                groups[i] = group
        if fold_test is not None:
            tests.append(fold_test)
        per_fold.append({
            "fold": k,
            "best_value": result.best_value,
            "best_epoch": result.best_epoch,
            "best_checkpoint": str(result.best_path) if result.best_path else None,
            **({"top_k": kept} if (kept := recorded(run, result.rows)) is not None else {}),
        })
    assert oof is not None and oof_targets is not None
    out_of_fold = Outputs(oof, first.task.output_kind, oof_targets)
    scores = _score(first, out_of_fold)
    tuned = tune(first, out_of_fold)  # thresholds from every out-of-fold prediction
    if distributed.is_main():
        write_predictions(out_dir / "oof.csv", ids, out_of_fold, first.task, groups=groups)
    values = [f["best_value"] for f in per_fold if f["best_value"] is not None]
    summary = {
        "monitor": first.monitor,
        "mode": first.mode,
        "best_value": scores.get(first.monitor),
        "best_epoch": None,
        "folds": per_fold,
        "mean_best_value": float(np.mean(values)) if values else None,
        "oof": scores,
        "oof_predictions": str(out_dir / "oof.csv"),
        **tuned,
    }
    _print_summary(reporter, summary)
    if tests:
        reporter.info(f"test predictions: the mean of {len(tests)} folds")
    # the whole run's end is the single run's end, in the run directory
    whole = _as_whole_run(first, out_dir)
    return finish_run(
        whole, reporter, summary, test=ensemble(tests, first.task) if tests else None,
        validation=out_of_fold, rows=rows, report_title="per class (out of fold)",
    )


def _as_whole_run(first: Run, out_dir: Path) -> Run:
    import dataclasses

    return dataclasses.replace(first, out_dir=out_dir)


def _score(run: Run, outputs: Outputs) -> dict[str, float]:
    """The configured metrics and the loss over all out-of-fold predictions."""
    import torch

    assert outputs.targets is not None
    scorer = Scorer(run.loss_fn, run.metrics, run.device)
    scorer.update(
        torch.from_numpy(outputs.outputs).to(run.device), torch.from_numpy(outputs.targets).to(run.device)
    )
    # every process holds every OOF prediction: no reduction across processes
    return scorer.compute(reduce=False)


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
