"""End-of-run reports: per-class scores, a confusion matrix, training curves.

Written into ``<run>/report/`` as ``per_class.csv``, ``confusion_matrix.png``
and ``curves.png``, with a short per-class summary on the console. For a
k-fold run they are made from the out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from torchyard.console import Reporter
from torchyard.files import atomic_path, atomic_write

__all__ = ["curve_series", "write_curves", "write_label_report", "write_report", "write_value_report"]


def write_report(
    directory: Path,
    predicted: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] | None,
    reporter: Reporter | None = None,
    title: str = "per class (validation, best checkpoint)",
    n_classes: int | None = None,
    prefix: str = "",
) -> dict[str, str]:
    """Per-class precision, recall, F1 and a confusion matrix from predicted
    and true class indices (``<prefix>per_class.csv``,
    ``<prefix>confusion_matrix.png``); return their paths."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    directory.mkdir(parents=True, exist_ok=True)
    predicted, targets = np.asarray(predicted).astype(np.int64), np.asarray(targets).astype(np.int64)
    count = max(n_classes or 0, int(targets.max(initial=0)) + 1, int(predicted.max(initial=0)) + 1, 2)
    labels = list(range(count))
    names = list(class_names) if class_names is not None and len(class_names) == count else [str(i) for i in labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=labels, zero_division=0
    )
    per_class = directory / f"{prefix}per_class.csv"
    with atomic_write(per_class) as f:
        f.write("class,precision,recall,f1,support\n")
        for i in labels:
            f.write(f"{names[i]},{precision[i]:.6f},{recall[i]:.6f},{f1[i]:.6f},{int(support[i])}\n")
    matrix = confusion_matrix(targets, predicted, labels=labels)
    paths = {
        f"{prefix}per_class": str(per_class),
        f"{prefix}confusion_matrix": str(_plot_confusion(matrix, names, directory / f"{prefix}confusion_matrix.png")),
    }
    if reporter is not None:
        _summary(reporter, title, names, precision, recall, f1, support)
    return paths


def write_label_report(
    directory: Path,
    predicted: np.ndarray,
    targets: np.ndarray,
    label_names: Sequence[str] | None,
    reporter: Reporter | None = None,
    title: str = "per label (validation, best checkpoint)",
) -> dict[str, str]:
    """Per-label precision, recall, F1 and support of multi-hot predictions
    (``per_label.csv``)."""
    from sklearn.metrics import precision_recall_fscore_support

    directory.mkdir(parents=True, exist_ok=True)
    count = targets.shape[1]
    names = list(label_names) if label_names is not None and len(label_names) == count else [str(i) for i in range(count)]
    precision, recall, f1, support = precision_recall_fscore_support(
        targets.astype(np.int64), predicted.astype(np.int64), average=None, zero_division=0
    )
    path = directory / "per_label.csv"
    with atomic_write(path) as f:
        f.write("label,precision,recall,f1,support\n")
        for i in range(count):
            f.write(f"{names[i]},{precision[i]:.6f},{recall[i]:.6f},{f1[i]:.6f},{int(support[i])}\n")
    if reporter is not None:
        _summary(reporter, title, names, precision, recall, f1, support)
    return {"per_label": str(path)}


def write_value_report(
    directory: Path,
    predicted: np.ndarray,
    targets: np.ndarray,
    names: Sequence[str] | None,
    reporter: Reporter | None = None,
    title: str = "per target (validation, best checkpoint)",
) -> dict[str, str]:
    """Errors per regression target (``per_target.csv``) and predicted
    against true values (``predicted_vs_true.png``)."""
    directory.mkdir(parents=True, exist_ok=True)
    predicted = predicted.reshape(len(predicted), -1)
    targets = targets.reshape(len(targets), -1)
    columns = list(names) if names is not None and len(names) == targets.shape[1] else [
        f"target_{i}" for i in range(targets.shape[1])
    ]
    errors = predicted - targets
    mae = np.abs(errors).mean(0)
    rmse = np.sqrt((errors**2).mean(0))
    spread = ((targets - targets.mean(0)) ** 2).sum(0)
    r2 = 1 - (errors**2).sum(0) / np.where(spread > 0, spread, np.nan)
    path = directory / "per_target.csv"
    with atomic_write(path) as f:
        f.write("target,mae,rmse,r2,count\n")
        for i, name in enumerate(columns):
            f.write(f"{name},{mae[i]:.6f},{rmse[i]:.6f},{r2[i]:.6f},{len(targets)}\n")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    axes.scatter(targets[:, 0], predicted[:, 0], s=8, alpha=0.6)
    low, high = float(min(targets[:, 0].min(), predicted[:, 0].min())), float(max(targets[:, 0].max(), predicted[:, 0].max()))
    axes.plot([low, high], [low, high], color="grey", linewidth=1)
    axes.set_xlabel(f"true {columns[0]}")
    axes.set_ylabel("predicted")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    paths = {"per_target": str(path), "predicted_vs_true": str(_save(figure, directory / "predicted_vs_true.png"))}
    if reporter is not None:
        reporter.info(
            f"{title}: " + "  ".join(f"{n} mae {m:.4f} rmse {r:.4f}" for n, m, r in zip(columns, mae, rmse, strict=True))
        )
    return paths


def write_curves(directory: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Loss, metric and learning-rate curves per epoch (``curves.png``);
    every fold's, labelled, for a k-fold run's rows (see :func:`curve_series`)."""
    if not rows:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    return {"curves": str(_plot_curves(rows, directory / "curves.png"))}


def _summary(
    reporter: Reporter, title: str, names: list[str], precision: Any, recall: Any, f1: Any, support: Any
) -> None:
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    order = np.argsort(f1)  # the weakest classes first: that is where the work is
    for i in order[:10]:
        table.add_row(names[i], f"{precision[i]:.3f}", f"{recall[i]:.3f}", f"{f1[i]:.3f}", str(int(support[i])))
    reporter.console.print(table)
    if len(names) > 10:
        reporter.info(f"({len(names) - 10} more classes in report/per_class.csv)")


def _plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    plt = _pyplot()
    size = max(4.0, 0.45 * len(names) + 2)
    figure, axes = plt.subplots(figsize=(size, size), dpi=110)
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(names) <= 25:
        peak = matrix.max() or 1
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                axes.text(j, i, str(count), ha="center", va="center", fontsize=6,
                          color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    return _save(figure, path)


def curve_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, list[Any], list[Any]]]]:
    """What ``curves.png`` plots, per panel (``loss``, ``validation metrics``,
    ``learning rate``): one ``(label, epochs, values)`` line per logged value
    -- and per fold, labelled ``fold <k>``, when rows carry a ``fold``."""
    folds: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        folds.setdefault(row.get("fold"), []).append(row)
    keys = [k for row in rows for k in row]
    losses = list(dict.fromkeys(k for k in keys if k.endswith("/loss")))
    metrics = list(dict.fromkeys(k for k in keys if k.startswith("val/") and k != "val/loss"))
    panels: dict[str, list[tuple[str, list[Any], list[Any]]]] = {
        "loss": [], "validation metrics": [], "learning rate": []
    }
    for fold, part in folds.items():
        prefix = "" if fold is None else f"fold {fold} "
        epochs = [r["epoch"] for r in part]
        for panel, names in (("loss", losses), ("validation metrics", metrics), ("learning rate", ["lr"])):
            for key in names:
                if any(key in r for r in part):
                    label = (prefix + key).strip() if key != "lr" or fold is not None else ""
                    panels[panel].append((label, epochs, [r.get(key) for r in part]))
    return panels


def _plot_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=110)
    for panel, (title, lines) in zip(axes, curve_series(rows).items(), strict=True):
        for label, epochs, values in lines:
            panel.plot(epochs, values, marker=".", label=label or None)
        panel.set_title(title)
    from matplotlib.ticker import MaxNLocator

    for panel in axes:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.set_xlabel("epoch")
        panel.grid(alpha=0.3)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
