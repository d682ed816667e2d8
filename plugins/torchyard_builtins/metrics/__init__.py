"""Built-in metrics, each checked against its scikit-learn counterpart.

Registered by import path, so listing them imports neither torch nor
pydantic. The math is in :mod:`.functional` (pure functions on tensors);
the classes keep state. ``targets`` tells generic tests what to feed each
metric (see :data:`torchyard.registry.TARGET_KINDS`). A metric whose value
is undefined for the data (ROC-AUC with one class present, no samples, NaN
outputs) returns NaN with an ``UndefinedMetricWarning``, never a number.
"""

from __future__ import annotations

from typing import Any

import torchyard

_HERE = "torchyard_builtins.metrics"

# name, module:class, targets, description
_METRICS: tuple[tuple[str, str, str, str], ...] = (
    # classification: (n, C) logits, class-index targets
    ("accuracy", "classification:Accuracy", "classes",
     "Fraction of samples whose top-scoring class is the target."),
    ("balanced_accuracy", "classification:BalancedAccuracy", "classes",
     "Mean per-class recall over the classes present; robust to class imbalance."),
    ("top_k_accuracy", "classification:TopKAccuracy", "classes",
     "Fraction of samples whose target is among their k highest-scoring classes."),
    ("precision", "classification:Precision", "classes",
     "Precision: macro, micro, weighted, or one class (class_index)."),
    ("recall", "classification:Recall", "classes",
     "Recall: macro, micro, weighted, or one class (class_index)."),
    ("f1", "classification:F1", "classes",
     "F1 score (harmonic mean of precision and recall); macro by default, or one class."),
    ("confusion_matrix", "classification:ConfusionMatrix", "classes",
     "Confusion matrix, read with .matrix(); logged as its diagonal fraction (accuracy)."),
    ("roc_auc", "auc:ROCAUC", "classes",
     "ROC-AUC: multi-class one-vs-rest or one-vs-one (macro/weighted), or binary (n,) outputs."),
    ("binary_roc_auc", "auc:BinaryROCAUC", "binary",
     "ROC-AUC of one score (n,) or (n, 1), logits or probabilities, against 0/1 targets."),
    # regression: (n,) or (n, 1) outputs, float targets
    ("mae", "regression:MeanAbsoluteError", "values", "Mean absolute error (lower is better)."),
    ("mse", "regression:MeanSquaredError", "values", "Mean squared error (lower is better)."),
    ("rmse", "regression:RootMeanSquaredError", "values",
     "Root mean squared error, in the targets' unit (lower is better)."),
    ("r2", "regression:R2Score", "values",
     "Coefficient of determination R^2 (1 is perfect, 0 predicts the mean)."),
    # ranking: (queries, items) scores with relevance grades, or (n, C) with class targets
    ("mrr", "ranking:MRR", "ranking",
     "Mean reciprocal rank of the first relevant item (or of the target class), at k."),
    ("ndcg", "ranking:NDCG", "ranking",
     "Normalized discounted cumulative gain at k, over queries (or class-score rows)."),
    ("map", "ranking:MAP", "ranking",
     "Mean average precision at k, over queries (or class-score rows: MAP@k of the target)."),
)


@torchyard.hookimpl
def register_metrics(register: Any) -> None:
    for name, path, targets, description in _METRICS:
        register(name, f"{_HERE}.{path}", description=description, targets=targets)
