"""Class imbalance: balanced class weights and a balanced sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.plugins import PluginHost
from torchyard.run import BalancedSampler, build_run


def test_balanced_weights_are_scikit_learns() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    from torchyard_builtins.losses.balance import class_weights

    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    got = class_weights("balanced", np.bincount(labels).tolist(), loss="x")
    np.testing.assert_allclose(got, expected)
    with pytest.raises(ValueError, match="'balanced' weights need the training split's class counts"):
        class_weights("balanced", None, loss="x")


def test_a_run_with_balanced_weights_weighs_the_split_it_trains_on(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["loss"] = {"name": "cross_entropy", "weight": "balanced"}
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path)
    counts = np.bincount(np.asarray(run.data.train_targets), minlength=10)
    expected = counts.sum() / (10 * counts)
    np.testing.assert_allclose(run.loss_fn.weight.numpy(), expected, rtol=1e-6)
    assert "class_counts" not in run.resolved.get("loss", {})  # the split's, not the config's


def test_the_balanced_sampler_draws_classes_equally_often() -> None:
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    weights = 1.0 / np.bincount(labels)[labels]
    sampler = BalancedSampler(weights, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert len(first) == 1000
    share = np.bincount(labels[first], minlength=3) / 1000
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.05)
    assert list(sampler) == first  # the same epoch draws the same order (a resume needs it)
    sampler.set_epoch(2)
    assert list(sampler) != first
    # under torch.distributed: every process draws the same sequence and takes its share
    shares = [BalancedSampler(weights, rank=r, world=3, seed=3) for r in range(3)]
    for s in shares:
        s.set_epoch(1)
    drawn = [list(s) for s in shares]
    assert all(len(d) == 334 for d in drawn)
    interleaved = [i for triple in zip(*drawn, strict=True) for i in triple]
    full = BalancedSampler(weights, world=1, seed=3)
    full.per_process = 1002  # the same total the three processes drew
    full.set_epoch(1)
    assert interleaved == list(full)


def test_the_run_trains_on_balanced_batches(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["loader"]["sampler"] = "balanced"
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path)
    loader = run.loader("train")
    assert loader is not None
    loader.sampler.set_epoch(1)  # type: ignore[attr-defined]
    targets = torch.cat([batch[1] for batch in loader])
    assert len(targets) == len(run.data.train)  # type: ignore[arg-type]


def test_a_balanced_sampler_needs_classes_to_balance(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.plugins import task_digits

    builtin_host.add_plugin(task_digits, "task-digits")
    digits_config.update(
        data={"name": "digits_as", "task": "multilabel"}, loss={"name": "bce"}, metrics=[{"name": "subset_accuracy"}],
        writer={"name": "label_list"}, loader={"batch_size": 64, "sampler": "balanced"},
    )
    with pytest.raises(ConfigError, match="loader.sampler: 'balanced' needs classes"):
        build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path)
