"""Every registered metric keeps the torchmetrics contract, fed input of its declared targets."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from torchyard.metric import Metric
from torchyard.plugins import PluginHost
from torchyard.registry import ComponentRecord
from torchyard_builtins.metrics.functional import UndefinedMetricWarning


def metric_records() -> list[ComponentRecord]:
    host = PluginHost()
    host.load_entrypoints()
    return host.registry.records("metric")


RECORDS = metric_records()


def build(record: ComponentRecord) -> Metric:
    metric = record.build(**dict(record.params()))
    assert isinstance(metric, Metric)
    return metric


def batch(kind: str, seed: int, n: int = 240) -> tuple[torch.Tensor, torch.Tensor]:
    """Random outputs and targets of a targets kind, every class present."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    if kind == "classification":
        return torch.randn(n, 7, generator=g), order % 7
    if kind == "binary":
        return torch.randn(n, 1, generator=g), (order % 2).float()
    if kind == "multilabel":
        return torch.randn(n, 4, generator=g), (torch.rand(n, 4, generator=g) < 0.5).float()
    if kind == "regression":
        return torch.randn(n, 1, generator=g), torch.randn(n, generator=g) * 3 + 1
    if kind == "ranking":
        return torch.randn(n, 12, generator=g), torch.randint(0, 4, (n, 12), generator=g).float()
    raise AssertionError(f"no generator for targets kind {kind!r}")


def test_every_metric_is_registered() -> None:
    names = {r.name for r in RECORDS}
    assert names >= {
        "accuracy", "balanced_accuracy", "top_k_accuracy", "precision", "recall", "f1",
        "confusion_matrix", "roc_auc", "binary_roc_auc", "mae", "mse", "rmse", "r2",
        "mrr", "ndcg", "map",
    }  # fmt: skip


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_chunked_updates_equal_one_update_and_reset_starts_over(record: ComponentRecord) -> None:
    outputs, targets = batch(record.targets, seed=0)
    whole = build(record)
    whole.update(outputs, targets)
    expected = whole.compute()
    assert isinstance(expected, float) and math.isfinite(expected), record.name

    chunked = build(record)
    for part_outputs, part_targets in zip(
        outputs.split([1, 7, 100, 132]), targets.split([1, 7, 100, 132]), strict=True
    ):
        chunked.update(part_outputs, part_targets)
    assert chunked.compute() == pytest.approx(expected, rel=1e-9, abs=1e-12)

    other_outputs, other_targets = batch(record.targets, seed=1)
    fresh = build(record)
    fresh.update(other_outputs, other_targets)
    chunked.reset()
    chunked.update(other_outputs, other_targets)
    assert chunked.compute() == pytest.approx(fresh.compute(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_no_samples_and_nan_outputs_are_nan_with_a_warning(record: ComponentRecord) -> None:
    metric = build(record).to("cpu")
    with pytest.warns(UndefinedMetricWarning, match="no samples"):
        assert math.isnan(metric.compute())
    outputs, targets = batch(record.targets, seed=2)
    outputs[3] = float("nan")
    metric.update(outputs, targets)
    with pytest.warns(UndefinedMetricWarning, match="of 1 of 240 samples are NaN"):
        assert math.isnan(metric.compute())


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_metrics_declare_direction_description_and_documented_params(record: ComponentRecord) -> None:
    metric = build(record)
    declared = [c for c in type(metric).__mro__ if c is not Metric and "higher_is_better" in vars(c)]
    assert declared, f"{record.name} does not state higher_is_better"
    assert record.description, record.name
    for name, field in record.params.model_fields.items():
        assert field.description, f"{record.name}.{name} has no description"


def test_registering_metrics_imports_no_torch() -> None:
    code = "import sys, torchyard_builtins.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
