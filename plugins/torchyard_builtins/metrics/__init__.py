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
    # binary: one logit (n,) or (n, 1), 0/1 targets; thresholded at a probability
    ("binary_accuracy", "binary:BinaryAccuracy", "binary",
     "Fraction of samples whose thresholded score is the 0/1 target."),
    ("binary_precision", "binary:BinaryPrecision", "binary",
     "Precision of the positive class, its score thresholded."),
    ("binary_recall", "binary:BinaryRecall", "binary",
     "Recall of the positive class, its score thresholded."),
    ("binary_f1", "binary:BinaryF1", "binary",
     "F1 score of the positive class, its score thresholded."),
    # multilabel: (n, C) logits, one per label, multi-hot 0/1 targets (n, C)
    ("multilabel_f1", "multilabel:MultilabelF1", "multilabel",
     "F1 of the thresholded labels: micro, macro, weighted or samples average."),
    ("multilabel_precision", "multilabel:MultilabelPrecision", "multilabel",
     "Precision of the thresholded labels: micro, macro, weighted or samples average."),
    ("multilabel_recall", "multilabel:MultilabelRecall", "multilabel",
     "Recall of the thresholded labels: micro, macro, weighted or samples average."),
    ("multilabel_map", "multilabel:MultilabelAveragePrecision", "multilabel",
     "Mean over labels of their average precision; labels without positives are skipped."),
    ("subset_accuracy", "multilabel:SubsetAccuracy", "multilabel",
     "Fraction of samples whose thresholded label set is exactly the true one."),
    ("hamming_loss", "multilabel:HammingLoss", "multilabel",
     "Fraction of (sample, label) pairs predicted wrong (lower is better)."),
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
