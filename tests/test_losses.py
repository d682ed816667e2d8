"""Losses: cross-checked against torch, their defining properties, and a
generic contract run over every registered loss."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from torchyard.params import params_to_kwargs
from torchyard.plugins import PluginHost
from torchyard_builtins.losses.bce import BCEWithLogits
from torchyard_builtins.losses.focal import FocalLoss
from torchyard_builtins.losses.label_smoothing import LabelSmoothingCrossEntropy
from torchyard_builtins.losses.regression import HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from torchyard_builtins.losses.soft_f1 import SoftF1Loss

_host = PluginHost()
_host.load_entrypoints()
LOSSES = _host.registry.records("loss")
CLASSES = 5


def _logits(n: int = 16, c: int = CLASSES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


# -- the generic contract ------------------------------------------------------------


def _inputs(targets: str, scale: float, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Random outputs and targets of the kind a loss declares (see TARGET_KINDS)."""
    g = torch.Generator().manual_seed(1)
    if targets == "classification":
        return torch.randn(n, CLASSES, generator=g) * scale, torch.randint(0, CLASSES, (n,), generator=g)
    if targets == "binary":
        return torch.randn(n, generator=g) * scale, torch.randint(0, 2, (n,), generator=g).float()
    if targets == "multilabel":
        return torch.randn(n, CLASSES, generator=g) * scale, torch.randint(0, 2, (n, CLASSES), generator=g).float()
    if targets == "regression":
        return torch.randn(n, 1, generator=g) * scale, torch.randn(n, generator=g)
    if targets == "ranking":
        return torch.randn(n, 6, generator=g) * scale, torch.randint(0, 4, (n, 6), generator=g).float()
    raise AssertionError(f"no random input for targets {targets!r}: extend _inputs")


@pytest.mark.parametrize("record", LOSSES, ids=[r.name for r in LOSSES])
@pytest.mark.parametrize("scale", [1.0, 50.0], ids=["plain", "confident"])
def test_every_loss_gives_a_finite_scalar_and_finite_gradients(record: Any, scale: float) -> None:
    kwargs = params_to_kwargs(record.params())  # every default
    context = {"num_classes": CLASSES}  # what a run offers factories that ask
    accepted = inspect.signature(record.factory).parameters
    kwargs.update({k: v for k, v in context.items() if k in accepted})
    loss_fn = record.build(**kwargs)
    outputs, targets = _inputs(record.targets, scale)
    outputs.requires_grad_(True)
    loss = loss_fn(outputs, targets)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, f"{record.name}: not a scalar"
    assert torch.isfinite(loss), f"{record.name}: loss is {loss.item()}"
    loss.backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad).all(), f"{record.name}: gradient"


def test_every_builtin_loss_is_covered() -> None:
    names = {r.name for r in LOSSES}
    assert {"cross_entropy", "focal", "label_smoothing", "f1", "bce", "mse", "l1", "smooth_l1", "huber"} <= names


# -- focal ------------------------------------------------------------------------------


def test_focal_with_gamma_0_is_cross_entropy() -> None:
    logits, targets = _logits()
    expected = nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, targets), expected)


def test_focal_alpha_with_gamma_0_is_weighted_cross_entropy() -> None:
    logits, targets = _logits()
    alpha = [0.5, 1.0, 2.0, 0.1, 3.0]
    expected = nn.functional.cross_entropy(logits, targets, weight=torch.tensor(alpha), reduction="sum")
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=alpha, reduction="sum")(logits, targets), expected)


def test_focal_down_weights_easy_examples_more_than_hard_ones() -> None:
    targets = torch.tensor([0, 0])
    logits = torch.tensor([[4.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])  # easy (p~0.96), hard (p~0.24)
    ce = nn.functional.cross_entropy(logits, targets, reduction="none")
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, targets)
    assert (focal < ce).all()
    easy_ratio, hard_ratio = (focal / ce).tolist()
    assert easy_ratio < 0.01 and hard_ratio > 0.5
    assert focal[0] < 0.01 * focal[1]


def test_focal_reductions_and_ignore_index() -> None:
    logits, targets = _logits()
    per_sample = FocalLoss(reduction="none")(logits, targets)
    assert per_sample.shape == (16,)
    torch.testing.assert_close(FocalLoss(reduction="sum")(logits, targets), per_sample.sum())
    torch.testing.assert_close(FocalLoss()(logits, targets), per_sample.mean())
    masked = targets.clone()
    masked[:4] = -100
    torch.testing.assert_close(FocalLoss()(logits, masked), per_sample[4:].mean())


def test_focal_alpha_must_match_the_classes() -> None:
    logits, targets = _logits()
    with pytest.raises(ValueError, match="alpha has 2 values but the model gives 5 classes"):
        FocalLoss(alpha=[1.0, 2.0])(logits, targets)


def test_negative_gamma_and_alpha_are_config_errors() -> None:
    params = _host.registry.get("loss", "focal").params
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        params(gamma=-1)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        params(alpha=[1.0, -0.5])


# -- label smoothing ----------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 0.9])
def test_label_smoothing_equals_torch(epsilon: float) -> None:
    logits, targets = _logits()
    expected = nn.CrossEntropyLoss(label_smoothing=epsilon)(logits, targets)
    torch.testing.assert_close(LabelSmoothingCrossEntropy(epsilon)(logits, targets), expected)


# -- soft F1 --------------------------------------------------------------------------------


def test_soft_f1_is_0_when_perfect_and_confident() -> None:
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    logits = nn.functional.one_hot(targets, CLASSES).float() * 30
    assert SoftF1Loss()(logits, targets).item() == pytest.approx(0.0, abs=1e-5)


def test_soft_f1_is_0_when_perfect_even_if_classes_are_absent() -> None:
    targets = torch.tensor([1, 1, 3])
    logits = nn.functional.one_hot(targets, CLASSES).float() * 30
    assert SoftF1Loss()(logits, targets).item() == pytest.approx(0.0, abs=1e-5)


def test_soft_f1_is_near_1_when_confidently_wrong() -> None:
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    logits = nn.functional.one_hot((targets + 1) % CLASSES, CLASSES).float() * 30
    assert SoftF1Loss()(logits, targets).item() == pytest.approx(1.0, abs=1e-5)


def test_soft_f1_matches_hard_f1_for_one_hot_probabilities() -> None:
    from sklearn.metrics import f1_score

    targets = torch.tensor([0, 0, 1, 1, 2, 2, 2, 1])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 2, 2])
    logits = nn.functional.one_hot(preds, 3).float() * 40
    expected = 1 - f1_score(targets, preds, average="macro")
    assert SoftF1Loss()(logits, targets).item() == pytest.approx(expected, abs=1e-5)


# -- bce ----------------------------------------------------------------------------------------


def test_bce_multilabel_equals_torch_with_pos_weight() -> None:
    logits, _ = _logits()
    targets = (torch.rand(16, CLASSES, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    pos_weight = [1.0, 2.0, 0.5, 3.0, 1.5]
    expected = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))(logits, targets)
    torch.testing.assert_close(BCEWithLogits(pos_weight=pos_weight)(logits, targets), expected)
    torch.testing.assert_close(BCEWithLogits()(logits, targets), nn.BCEWithLogitsLoss()(logits, targets))


@pytest.mark.parametrize("shape", [(16,), (16, 1)])
def test_bce_binary_accepts_n_and_n1_logits_with_integer_targets(shape: tuple[int, ...]) -> None:
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    targets = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(5))
    expected = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))(logits.reshape(16), targets.float())
    torch.testing.assert_close(BCEWithLogits(pos_weight=[2.0])(logits, targets), expected)


def test_bce_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"outputs of shape \(4, 3\) do not match targets of shape \(4,\)"):
        BCEWithLogits()(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="pos_weight has 2 values but the model gives 3 labels"):
        BCEWithLogits(pos_weight=[1.0, 2.0])(torch.zeros(4, 3), torch.zeros(4, 3))


# -- regression ---------------------------------------------------------------------------------------


REGRESSION: list[tuple[Callable[[], nn.Module], nn.Module]] = [
    (MSELoss, nn.MSELoss()),
    (L1Loss, nn.L1Loss()),
    (lambda: SmoothL1Loss(beta=0.5), nn.SmoothL1Loss(beta=0.5)),
    (lambda: HuberLoss(delta=0.7), nn.HuberLoss(delta=0.7)),
]


@pytest.mark.parametrize(("make", "reference"), REGRESSION, ids=["mse", "l1", "smooth_l1", "huber"])
@pytest.mark.parametrize("output_shape", [(16,), (16, 1)])
def test_regression_losses_equal_torch(make: Any, reference: nn.Module, output_shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(6)
    outputs = torch.randn(output_shape, generator=g) * 2
    targets = torch.randn(16, generator=g) * 2
    torch.testing.assert_close(make()(outputs, targets), reference(outputs.reshape(16), targets))


def test_regression_targets_n1_and_multi_output() -> None:
    outputs, targets = torch.randn(8), torch.randn(8, 1)
    torch.testing.assert_close(MSELoss()(outputs, targets), nn.MSELoss()(outputs, targets.reshape(8)))
    outputs, targets = torch.randn(8, 3), torch.randn(8, 3)
    torch.testing.assert_close(L1Loss()(outputs, targets), nn.L1Loss()(outputs, targets))
    assert MSELoss(reduction="none")(torch.randn(8, 1), torch.randn(8)).shape == (8,)


def test_regression_integer_targets_are_cast() -> None:
    outputs = torch.tensor([[1.0], [2.0]])
    assert MSELoss()(outputs, torch.tensor([1, 4])).item() == pytest.approx(2.0)


def test_regression_refuses_broadcasting() -> None:
    with pytest.raises(ValueError, match=r"mse: model outputs of shape \(8, 2\) do not match"):
        MSELoss()(torch.randn(8, 2), torch.randn(8))


def test_losses_move_with_to() -> None:
    loss = FocalLoss(alpha=[1.0, 2.0])
    assert "alpha" in dict(loss.named_buffers())
    assert "pos_weight" in dict(BCEWithLogits(pos_weight=[2.0]).named_buffers())
