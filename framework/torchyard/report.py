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

__all__ = ["write_report"]


def write_report(
    directory: Path,
    outputs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] | None,
    rows: Sequence[Mapping[str, Any]],
    reporter: Reporter | None = None,
    title: str = "per class (validation, best checkpoint)",
) -> dict[str, str]:
    """Write the report files for a classification run; return their paths.

    ``outputs`` are one row per sample of class scores (logits or
    probabilities: only their argmax is used), or one binary logit.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    directory.mkdir(parents=True, exist_ok=True)
    predicted = outputs.argmax(axis=1) if outputs.ndim == 2 and outputs.shape[1] > 1 else (outputs.reshape(-1) > 0).astype(int)
    n_classes = max(int(outputs.shape[1]) if outputs.ndim == 2 and outputs.shape[1] > 1 else 2, int(targets.max()) + 1)
    labels = list(range(n_classes))
    names = list(class_names) if class_names is not None and len(class_names) == n_classes else [str(i) for i in labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=labels, zero_division=0
    )
    paths = {"per_class": str(directory / "per_class.csv")}
    with atomic_write(directory / "per_class.csv") as f:
        f.write("class,precision,recall,f1,support\n")
        for i in labels:
            f.write(f"{names[i]},{precision[i]:.6f},{recall[i]:.6f},{f1[i]:.6f},{int(support[i])}\n")
    matrix = confusion_matrix(targets, predicted, labels=labels)
    paths["confusion_matrix"] = str(_plot_confusion(matrix, names, directory / "confusion_matrix.png"))
    if rows:
        paths["curves"] = str(_plot_curves(rows, directory / "curves.png"))
    if reporter is not None:
        _summary(reporter, title, names, precision, recall, f1, support)
    return paths


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


def _plot_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    losses = [k for k in rows[0] if k.endswith("/loss")]
    metrics = [k for k in rows[0] if k.startswith("val/") and k != "val/loss"]
    figure, panels = plt.subplots(1, 3, figsize=(12, 3.4), dpi=110)
    for key in losses:
        panels[0].plot(epochs, [r.get(key) for r in rows], marker=".", label=key)
    panels[0].set_title("loss")
    for key in metrics:
        panels[1].plot(epochs, [r.get(key) for r in rows], marker=".", label=key)
    panels[1].set_title("validation metrics")
    panels[2].plot(epochs, [r.get("lr") for r in rows], marker=".")
    panels[2].set_title("learning rate")
    from matplotlib.ticker import MaxNLocator

    for panel in panels:
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
