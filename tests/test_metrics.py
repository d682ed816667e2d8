"""Metrics: the update/compute/reset contract, cross-checked against scikit-learn."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    top_k_accuracy_score,
)

from torchyard.plugins import PluginHost
from torchyard_builtins.metrics.classification import (
    F1,
    Accuracy,
    BalancedAccuracy,
    ConfusionMatrix,
    Precision,
    Recall,
    TopKAccuracy,
)
from torchyard_builtins.metrics.functional import UndefinedMetricWarning
from torchyard_builtins.metrics.functional import confusion_matrix as confusion_counts


@st.composite
def predictions(draw: Any) -> tuple[np.ndarray, np.ndarray, int]:
    classes = draw(st.integers(2, 6))
    n = draw(st.integers(1, 60))
    targets = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    preds = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    return preds, targets, classes


def one_hot_logits(preds: np.ndarray, classes: int) -> torch.Tensor:
    logits = torch.zeros(len(preds), classes)
    logits[torch.arange(len(preds)), torch.as_tensor(preds)] = 1.0
    return logits


def feed(metric: Any, preds: np.ndarray, targets: np.ndarray, classes: int, chunks: int = 3) -> float:
    """Update in several chunks, as a loop does, then compute."""
    logits = one_hot_logits(preds, classes)
    for part_logits, part_targets in zip(
        torch.tensor_split(logits, chunks), torch.tensor_split(torch.as_tensor(targets), chunks), strict=True
    ):
        if len(part_targets):
            metric.update(part_logits, part_targets)
    return metric.compute()


@settings(max_examples=150, deadline=None)
@given(predictions())
def test_accuracy_matches_sklearn(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    preds, targets, classes = case
    assert feed(Accuracy(), preds, targets, classes) == pytest.approx(accuracy_score(targets, preds), abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(predictions(), st.sampled_from(["macro", "micro", "weighted"]))
def test_f1_matches_sklearn(case: tuple[np.ndarray, np.ndarray, int], average: str) -> None:
    preds, targets, classes = case
    expected = f1_score(targets, preds, average=average, zero_division=0)
    assert feed(F1(average=average), preds, targets, classes) == pytest.approx(expected, abs=1e-6)


def test_f1_known_value() -> None:
    targets = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    # per class F1: 0.5, 0.8, 0.666..., macro = 0.6555...
    assert feed(F1(), preds, targets, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_reset_restores_the_initial_state() -> None:
    metric = Accuracy()
    metric.update(one_hot_logits(np.array([0, 1]), 2), torch.tensor([0, 0]))
    assert metric.compute() == 0.5
    metric.reset()
    metric.update(one_hot_logits(np.array([1]), 2), torch.tensor([1]))
    assert metric.compute() == 1.0


def test_metrics_say_which_way_is_better(builtin_host: PluginHost) -> None:
    for record in builtin_host.registry.records("metric"):
        metric = record.build(**dict(record.params()))
        assert isinstance(metric.higher_is_better, bool), record.name


# -- every classification metric against scikit-learn -----------------------------


@st.composite
def scored(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n, C), with many ties when drawn from few levels, and targets."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    classes, n = draw(st.integers(3, 7)), draw(st.integers(1, 80))
    levels = draw(st.sampled_from([0, 2, 3]))
    scores = rng.integers(0, levels, (n, classes)) if levels else rng.normal(size=(n, classes))
    return scores.astype(np.float32), rng.integers(0, classes, n)


def chunked(metric: Any, scores: np.ndarray, targets: np.ndarray, chunks: int = 3) -> float:
    for s, t in zip(np.array_split(scores, chunks), np.array_split(targets, chunks), strict=True):
        if len(t):
            metric.update(torch.as_tensor(s), torch.as_tensor(t))
    return float(metric.compute())


SCORES = {"precision": precision_score, "recall": recall_score, "f1": f1_score}
CLASSES = {"precision": Precision, "recall": Recall, "f1": F1}


@settings(max_examples=60, deadline=None)
@given(scored(), st.sampled_from(sorted(SCORES)), st.sampled_from(["macro", "micro", "weighted"]))
def test_precision_recall_f1_match_sklearn(case: Any, score: str, average: str) -> None:
    scores, targets = case
    preds = scores.argmax(1)
    expected = SCORES[score](targets, preds, average=average, zero_division=0)
    got = chunked(CLASSES[score](average=average), scores, targets)
    assert got == pytest.approx(expected, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(scored(), st.sampled_from(sorted(SCORES)), st.integers(0, 2))
def test_one_class_scores_match_sklearn_average_none(case: Any, score: str, index: int) -> None:
    scores, targets = case
    labels = list(range(scores.shape[1]))
    expected = SCORES[score](targets, scores.argmax(1), average=None, labels=labels, zero_division=0)
    got = chunked(CLASSES[score](class_index=index), scores, targets)
    assert got == pytest.approx(expected[index], abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(scored(), st.booleans())
def test_balanced_accuracy_matches_sklearn(case: Any, adjusted: bool) -> None:
    scores, targets = case
    if adjusted and len(np.unique(targets)) < 2:
        return  # undefined: tested below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        expected = balanced_accuracy_score(targets, scores.argmax(1), adjusted=adjusted)
    assert chunked(BalancedAccuracy(adjusted=adjusted), scores, targets) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(scored(), st.integers(1, 4))
def test_top_k_accuracy_matches_sklearn_ties_included(case: Any, k: int) -> None:
    scores, targets = case
    labels = list(range(scores.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= n_classes
        expected = top_k_accuracy_score(targets, scores, k=k, labels=labels)
    assert chunked(TopKAccuracy(k=k), scores, targets) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(scored(), st.sampled_from([None, "true", "pred", "all"]))
def test_confusion_matrix_matches_sklearn(case: Any, normalize: str | None) -> None:
    scores, targets = case
    labels = list(range(scores.shape[1]))
    metric = ConfusionMatrix(normalize=normalize)
    value = chunked(metric, scores, targets)
    expected = confusion_matrix(targets, scores.argmax(1), labels=labels, normalize=normalize)
    np.testing.assert_allclose(metric.matrix().numpy(), expected, atol=1e-9)
    assert value == pytest.approx(accuracy_score(targets, scores.argmax(1)), abs=1e-9)


def test_functional_confusion_matrix_rejects_out_of_range_targets() -> None:
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        confusion_counts(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)


def test_class_index_out_of_range_is_a_clear_error() -> None:
    metric = F1(class_index=5)
    metric.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="class_index 5 is out of range for 3 classes"):
        metric.compute()


def test_adjusted_balanced_accuracy_with_one_class_is_nan_with_a_warning() -> None:
    metric = BalancedAccuracy(adjusted=True)
    metric.update(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        assert math.isnan(metric.compute())


def test_binary_outputs_are_rejected_by_class_metrics_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"expects scores of shape \(n, C\)"):
        Accuracy().update(torch.randn(4, 1), torch.tensor([0, 1, 1, 0]))
