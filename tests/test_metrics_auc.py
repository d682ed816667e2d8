"""ROC-AUC (binary, one-vs-rest, one-vs-one) against sklearn.metrics.roc_auc_score."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from torchyard_builtins.metrics.auc import ROCAUC, BinaryROCAUC
from torchyard_builtins.metrics.functional import (
    UndefinedMetricWarning,
    binary_roc_auc,
    multiclass_roc_auc,
)

from .conftest import feed_in_chunks as feed


@st.composite
def binary_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(2, 300))
    levels = draw(st.sampled_from([0, 2, 5]))
    scores = rng.integers(0, levels, n) if levels else rng.normal(size=n)
    targets = rng.integers(0, 2, n)
    targets[:2] = [0, 1]  # both classes present
    return scores.astype(np.float32), targets


@st.composite
def multiclass_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (rows sum to 1) with ties when drawn from few levels;
    every class present, as sklearn needs for one-vs-rest macro."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    classes = draw(st.integers(2, 6))
    n = draw(st.integers(classes, 200))
    levels = draw(st.sampled_from([0, 2, 4]))
    raw = rng.integers(1, levels + 1, (n, classes)) if levels else rng.exponential(size=(n, classes))
    probs = (raw / raw.sum(1, keepdims=True)).astype(np.float32)
    targets = rng.integers(0, classes, n)
    targets[:classes] = np.arange(classes)
    return probs, targets


@settings(max_examples=80, deadline=None)
@given(binary_case(), st.sampled_from([(-1,), (-1, 1)]))
def test_binary_auc_matches_sklearn(case: Any, shape: tuple[int, ...]) -> None:
    scores, targets = case
    expected = roc_auc_score(targets, scores)
    assert feed(BinaryROCAUC(), scores.reshape(shape), targets.astype(np.float32)) == pytest.approx(expected, abs=1e-6)
    assert feed(ROCAUC(), scores.reshape(shape), targets) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(multiclass_case(), st.sampled_from(["ovr", "ovo"]), st.sampled_from(["macro", "weighted"]))
def test_multiclass_auc_matches_sklearn(case: Any, multi_class: str, average: str) -> None:
    probs, targets = case
    classes = probs.shape[1]
    if classes == 2:  # sklearn's binary path: the AUC of the second column
        expected = roc_auc_score(targets, probs[:, 1])
    else:
        expected = roc_auc_score(
            targets, probs, multi_class=multi_class, average=average, labels=list(range(classes))
        )
    metric = ROCAUC(multi_class=multi_class, average=average, outputs="probabilities")
    assert feed(metric, probs, targets) == pytest.approx(expected, abs=1e-6)


def test_logits_go_through_a_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)).astype(np.float32)
    targets = rng.integers(0, 4, 300)
    probs = torch.as_tensor(logits).softmax(-1).numpy()
    expected = roc_auc_score(targets, probs, multi_class="ovr")
    assert feed(ROCAUC(), logits, targets) == pytest.approx(expected, abs=1e-6)
    assert feed(ROCAUC(outputs="probabilities"), logits, targets) != pytest.approx(expected, abs=1e-6)


def test_per_class_auc_via_class_index() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), 400).astype(np.float32)
    targets = rng.integers(0, 4, 400)
    for c in range(4):
        expected = roc_auc_score(targets == c, probs[:, c])
        metric = ROCAUC(class_index=c, outputs="probabilities")
        assert feed(metric, probs, targets) == pytest.approx(expected, abs=1e-6)


def test_absent_class_one_vs_rest_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), 50).astype(np.float32)
    targets = rng.integers(0, 2, 50)  # class 2 never occurs
    labels = [0, 1, 2]
    with pytest.warns(UndefinedMetricWarning, match=r"classes \[2\] are absent"):
        assert math.isnan(multiclass_roc_auc(torch.as_tensor(probs), torch.as_tensor(targets)).item())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for multi_class, average in (("ovr", "weighted"), ("ovo", "macro"), ("ovo", "weighted")):
            expected = roc_auc_score(targets, probs, multi_class=multi_class, average=average, labels=labels)
            got = multiclass_roc_auc(
                torch.as_tensor(probs), torch.as_tensor(targets), multi_class=multi_class, average=average
            )
            assert got.item() == pytest.approx(expected, abs=1e-6)
        per_class = multiclass_roc_auc(torch.as_tensor(probs), torch.as_tensor(targets), average=None)
    assert math.isnan(per_class[2]) and not per_class[:2].isnan().any()


@pytest.mark.parametrize(
    ("metric", "outputs", "match"),
    [
        (BinaryROCAUC(), torch.randn(6), "only one class is present"),
        (ROCAUC(), torch.randn(6, 3), "only one class is present"),
        (ROCAUC(multi_class="ovo"), torch.randn(6, 3), "fewer than two classes"),
        (ROCAUC(class_index=1), torch.randn(6, 3), "class 1"),
    ],
)
def test_one_class_present_is_nan_with_a_warning(metric: Any, outputs: torch.Tensor, match: str) -> None:
    metric.update(outputs, torch.zeros(6, dtype=torch.long))
    with pytest.warns(UndefinedMetricWarning, match=match):
        assert math.isnan(metric.compute())


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="0/1 targets"):
        binary_roc_auc(torch.randn(4), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="for \\(n, C\\) class scores use 'roc_auc'"):
        BinaryROCAUC().update(torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="class_index needs multi_class 'ovr'"):
        ROCAUC(multi_class="ovo", class_index=0)


def test_exact_on_large_heavily_tied_input() -> None:
    """Rank sums are exact integers: no drift over many samples."""
    rng = np.random.default_rng(3)
    probs = rng.integers(1, 4, (200_000, 3)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    targets = rng.integers(0, 3, 200_000)
    expected = roc_auc_score(targets, probs, multi_class="ovr")
    got = multiclass_roc_auc(torch.as_tensor(probs), torch.as_tensor(targets)).item()
    assert got == pytest.approx(expected, abs=1e-9)
