"""Multi-label and binary metrics against scikit-learn: f1/precision/recall
(micro, macro, weighted, samples), average precision, subset accuracy,
Hamming loss; chunked updates, reset, thresholds, undefined and bad input."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from torchyard.plugins import get_host
from torchyard_builtins.metrics.binary import (
    BinaryAccuracy,
    BinaryF1,
    BinaryPrecision,
    BinaryRecall,
)
from torchyard_builtins.metrics.functional import UndefinedMetricWarning
from torchyard_builtins.metrics.functional_multilabel import (
    multilabel_average_precision,
    predict_labels,
)
from torchyard_builtins.metrics.multilabel import (
    HammingLoss,
    MultilabelAveragePrecision,
    MultilabelF1,
    MultilabelPrecision,
    MultilabelRecall,
    SubsetAccuracy,
)

from .conftest import feed_in_chunks as feed

SCORES = {
    "f1": (MultilabelF1, skm.f1_score),
    "precision": (MultilabelPrecision, skm.precision_score),
    "recall": (MultilabelRecall, skm.recall_score),
}
BINARY = {
    "f1": (BinaryF1, skm.f1_score),
    "precision": (BinaryPrecision, skm.precision_score),
    "recall": (BinaryRecall, skm.recall_score),
}


@st.composite
def multilabel_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, C) with ties when drawn from few levels, multi-hot targets
    from sparse to dense (labels without positives included)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = draw(st.integers(2, 6))
    n = draw(st.integers(1, 120))
    levels = draw(st.sampled_from([0, 3]))
    logits = rng.integers(-1, levels, (n, labels)) if levels else rng.normal(size=(n, labels))
    targets = rng.random((n, labels)) < draw(st.floats(0.0, 1.0))
    return logits.astype(np.float32), targets.astype(np.float32)


def sk_predictions(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """What sklearn users write: the sigmoid's probability at or above the threshold."""
    return (1 / (1 + np.exp(-logits.astype(np.float64))) >= threshold).astype(int)


@settings(max_examples=60, deadline=None)
@given(multilabel_case(), st.sampled_from(["micro", "macro", "weighted", "samples"]))
def test_scores_match_sklearn(case: Any, average: str) -> None:
    logits, targets = case
    predicted = sk_predictions(logits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's zero-division warnings
        for metric, reference in SCORES.values():
            expected = reference(targets.astype(int), predicted, average=average, zero_division=0)
            assert feed(metric(average=average), logits, targets) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(multilabel_case())
def test_subset_accuracy_and_hamming_loss_match_sklearn(case: Any) -> None:
    logits, targets = case
    predicted = sk_predictions(logits)
    truth = targets.astype(int)
    assert feed(SubsetAccuracy(), logits, targets) == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
    assert feed(HammingLoss(), logits, targets) == pytest.approx(skm.hamming_loss(truth, predicted), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(multilabel_case())
def test_average_precision_matches_sklearn_over_labels_with_positives(case: Any) -> None:
    logits, targets = case
    positive = targets.sum(0) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = feed(MultilabelAveragePrecision(), logits, targets)
    if not positive.any():
        assert math.isnan(value)
        return
    per_label = [skm.average_precision_score(targets[:, j], logits[:, j]) for j in np.flatnonzero(positive)]
    assert value == pytest.approx(float(np.mean(per_label)), abs=1e-6)
    if positive.all():  # then sklearn's own macro average is the same number
        assert value == pytest.approx(skm.average_precision_score(targets, logits, average="macro"), abs=1e-6)


def test_average_precision_skips_labels_without_positives_with_a_warning() -> None:
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.5, 0.3], [0.4, 0.3, 0.8]])
    targets = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 0, 0]])
    with pytest.warns(UndefinedMetricWarning, match=r"labels \[1\] have no positive target"):
        value = multilabel_average_precision(scores, targets)
    assert float(value) == pytest.approx((1.0 + 1 / 3) / 2)  # label 2: its positive ranks third
    per_label = multilabel_average_precision(scores, targets, average=None)
    assert per_label[0] == 1.0 and math.isnan(float(per_label[1]))
    with pytest.warns(UndefinedMetricWarning, match="no label has a positive"):
        assert math.isnan(float(multilabel_average_precision(scores, torch.zeros(3, 3))))


def test_average_precision_is_the_same_on_probabilities() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(80, 4)).astype(np.float32)
    targets = (rng.random((80, 4)) < 0.3).astype(np.float32)
    targets[0] = 1
    probabilities = torch.sigmoid(torch.as_tensor(logits)).numpy()
    assert feed(MultilabelAveragePrecision(), logits, targets) == pytest.approx(
        feed(MultilabelAveragePrecision(), probabilities, targets), abs=1e-6
    )


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.7])
def test_threshold_on_logits_and_probabilities(threshold: float) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 5)).astype(np.float32)
    targets = (rng.random((200, 5)) < 0.4).astype(np.float32)
    probabilities = (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    expected = skm.f1_score(targets.astype(int), sk_predictions(logits, threshold), average="micro")
    from_logits = feed(MultilabelF1(average="micro", threshold=threshold), logits, targets)
    from_probabilities = feed(
        MultilabelF1(average="micro", threshold=threshold, outputs="probabilities"), probabilities, targets
    )
    assert from_logits == pytest.approx(expected, abs=1e-12)
    assert from_probabilities == pytest.approx(expected, abs=1e-12)


def test_a_probability_at_the_threshold_is_predicted() -> None:
    assert predict_labels(torch.tensor([-1e-3, 0.0, 1e-3])).tolist() == [False, True, True]
    assert predict_labels(torch.tensor([0.29, 0.3, 0.31]), 0.3, "probabilities").tolist() == [False, True, True]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        predict_labels(torch.zeros(2), 1.0)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: MultilabelF1(average="samples"),
        lambda: MultilabelRecall(average="weighted"),
        SubsetAccuracy,
        HammingLoss,
        MultilabelAveragePrecision,
        BinaryF1,
        BinaryAccuracy,
    ],
)
def test_chunked_updates_equal_one_update_and_reset_starts_over(factory: Any) -> None:
    rng = np.random.default_rng(2)
    binary = isinstance(factory(), BinaryAccuracy | BinaryF1)
    shape = (97,) if binary else (97, 4)
    logits = rng.normal(size=shape).astype(np.float32)
    targets = (rng.random(shape) < 0.5).astype(np.float32)
    whole = feed(factory(), logits, targets, chunks=1)
    metric = factory()
    assert feed(metric, logits, targets, chunks=7) == pytest.approx(whole, abs=1e-12)
    metric.reset()
    assert feed(metric, logits[:40], targets[:40]) == pytest.approx(feed(factory(), logits[:40], targets[:40]), abs=1e-12)


# -- binary --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 150), st.sampled_from([(-1,), (-1, 1)]), st.sampled_from([0.3, 0.5]))
def test_binary_metrics_match_sklearn(seed: int, n: int, shape: tuple[int, ...], threshold: float) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=n).astype(np.float32)
    targets = (rng.random(n) < rng.random()).astype(np.float32)
    predicted = sk_predictions(logits, threshold)
    outputs = logits.reshape(shape)
    accuracy = feed(BinaryAccuracy(threshold=threshold), outputs, targets)
    assert accuracy == pytest.approx(skm.accuracy_score(targets.astype(int), predicted), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric, reference in BINARY.values():
            expected = reference(targets.astype(int), predicted, zero_division=0)
            assert feed(metric(threshold=threshold), outputs, targets) == pytest.approx(expected, abs=1e-12)


def test_binary_metrics_take_probabilities() -> None:
    probabilities = np.array([0.1, 0.6, 0.5, 0.9, 0.4], dtype=np.float32)
    targets = np.array([0, 1, 0, 1, 1], dtype=np.float32)
    assert feed(BinaryAccuracy(outputs="probabilities"), probabilities, targets) == pytest.approx(0.6)
    assert feed(BinaryRecall(outputs="probabilities"), probabilities, targets) == pytest.approx(2 / 3)


def test_binary_metrics_refuse_class_scores() -> None:
    with pytest.raises(ValueError, match=r"binary_f1 expects one score per sample.*\(4, 3\)"):
        BinaryF1().update(torch.zeros(4, 3), torch.zeros(4))


# -- bad input and undefined values ----------------------------------------------------------


@pytest.mark.parametrize("metric", [MultilabelF1(), SubsetAccuracy(), MultilabelAveragePrecision(), BinaryAccuracy()])
def test_targets_other_than_0_1_are_refused_at_compute(metric: Any) -> None:
    shape = (4,) if isinstance(metric, BinaryAccuracy) else (4, 3)
    metric.update(torch.zeros(shape), torch.full(shape, 2.0))
    with pytest.raises(ValueError, match=r"needs 0/1 targets, got \d+ other values"):
        metric.compute()


def test_shapes_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"multilabel_f1 expects outputs \(n, C\) and 0/1 targets of the same shape"):
        MultilabelF1().update(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="4 labels, not num_classes=3"):
        HammingLoss(num_classes=3).update(torch.zeros(2, 4), torch.zeros(2, 4))
    metric = MultilabelPrecision()
    metric.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="outputs with 4 labels after ones with 3"):
        metric.update(torch.zeros(2, 4), torch.zeros(2, 4))


def test_nan_outputs_and_no_samples_give_nan_with_a_warning() -> None:
    metric = MultilabelF1()
    with pytest.warns(UndefinedMetricWarning, match="no samples"):
        assert math.isnan(metric.compute())
    outputs = torch.zeros(3, 2)
    outputs[1, 0] = float("nan")
    metric.update(outputs, torch.ones(3, 2))
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 samples are NaN"):
        assert math.isnan(metric.compute())


def test_num_classes_allocates_the_counts_up_front() -> None:
    metric = MultilabelF1(average="micro", num_classes=3)
    assert metric.counts.shape == (3, 3)
    metric.update(torch.tensor([[1.0, -1, 1]]), torch.tensor([[1.0, 0, 0]]))
    assert metric.compute() == pytest.approx(skm.f1_score([[1, 0, 0]], [[1, 0, 1]], average="micro"))


def test_registered_with_their_tasks_and_directions() -> None:
    registry = get_host().registry
    for name in ("multilabel_f1", "multilabel_precision", "multilabel_recall", "multilabel_map",
                 "subset_accuracy", "hamming_loss"):
        assert registry.get("metric", name).tasks == ("multilabel",)
    for name in ("binary_accuracy", "binary_f1", "binary_precision", "binary_recall"):
        assert registry.get("metric", name).tasks == ("binary",)
    assert registry.get("loss", "bce").tasks == ("binary", "multilabel")
    assert HammingLoss.higher_is_better is False
    assert MultilabelAveragePrecision.higher_is_better is True
