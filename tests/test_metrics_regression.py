"""Regression metrics against scikit-learn's mean_absolute_error, mean_squared_error, r2_score."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics.functional import UndefinedMetricWarning
from torchyard_builtins.metrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    RootMeanSquaredError,
)

from .conftest import feed_in_chunks as feed

REFERENCES: dict[str, tuple[type, Any]] = {
    "mae": (MeanAbsoluteError, mean_absolute_error),
    "mse": (MeanSquaredError, mean_squared_error),
    "rmse": (RootMeanSquaredError, lambda t, p: math.sqrt(mean_squared_error(t, p))),
    "r2": (R2Score, r2_score),
}


@st.composite
def regression_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(2, 200))
    scale = draw(st.sampled_from([0.1, 1.0, 1e3]))  # spread >= 1e-4 of the magnitude
    offset = draw(st.sampled_from([0.0, 10.0, -1e3]))
    targets = (rng.normal(size=n) * scale + offset).astype(np.float32)
    outputs = (targets + rng.normal(size=n) * scale * draw(st.sampled_from([0.0, 0.1, 2.0])))
    return outputs.astype(np.float32), targets


@settings(max_examples=60, deadline=None)
@given(regression_case(), st.sampled_from(sorted(REFERENCES)), st.booleans())
def test_regression_metrics_match_sklearn(case: Any, name: str, column: bool) -> None:
    outputs, targets = case
    cls, reference = REFERENCES[name]
    expected = reference(targets.astype(np.float64), outputs.astype(np.float64))
    shaped = outputs.reshape(-1, 1) if column else outputs
    got = feed(cls(), shaped, targets)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_functions_match_the_metrics() -> None:
    rng = np.random.default_rng(0)
    p, t = torch.as_tensor(rng.normal(size=50)), torch.as_tensor(rng.normal(size=50))
    assert F.mean_absolute_error(p, t).item() == pytest.approx(mean_absolute_error(t, p))
    assert F.mean_squared_error(p, t).item() == pytest.approx(mean_squared_error(t, p))
    assert F.root_mean_squared_error(p, t).item() == pytest.approx(mean_squared_error(t, p) ** 0.5)
    assert F.r2_score(p, t).item() == pytest.approx(r2_score(t, p))


@pytest.mark.parametrize(("outputs", "expected"), [([3.0, 3.0, 3.0], 1.0), ([3.0, 2.0, 3.0], 0.0)])
def test_r2_on_constant_targets_is_finite_like_sklearn(outputs: list[float], expected: float) -> None:
    targets = np.full(3, 3.0, dtype=np.float32)
    assert r2_score(targets, outputs) == expected
    assert feed(R2Score(), np.array(outputs, dtype=np.float32), targets) == expected


def test_r2_with_one_sample_is_nan_with_a_warning() -> None:
    metric = R2Score()
    metric.update(torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.warns(UndefinedMetricWarning, match="fewer than two samples"):
        assert math.isnan(metric.compute())


def test_directions() -> None:
    assert not MeanAbsoluteError.higher_is_better
    assert not MeanSquaredError.higher_is_better
    assert not RootMeanSquaredError.higher_is_better
    assert R2Score.higher_is_better


def test_multi_column_outputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"outputs of shape \(n,\) or \(n, 1\)"):
        MeanSquaredError().update(torch.randn(4, 2), torch.randn(4))
    with pytest.raises(ValueError, match="4 outputs but 3 targets"):
        F.mean_squared_error(torch.randn(4), torch.randn(3))
