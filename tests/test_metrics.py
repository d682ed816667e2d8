"""Metrics: the update/compute/reset contract, cross-checked against scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score

from torchyard.plugins import PluginHost
from torchyard_builtins.metrics.classification import F1, Accuracy


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
    assert feed(F1(average=average), preds, targets, classes) == pytest.approx(expected, abs=1e-6)  # type: ignore[arg-type]


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
