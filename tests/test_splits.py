"""Validation splits: group-aware, stratified, k-fold; and k-fold runs end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.plugins import PluginHost
from torchyard.run import build_run
from torchyard.splits import SplitConfig, make_splits


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(0, 30), min_size=20, max_size=120),
    method=st.sampled_from(["holdout", "kfold"]),
    stratify=st.booleans(),
    seed=st.integers(0, 5),
)
def test_a_group_never_lands_on_both_sides(groups: list[int], method: str, stratify: bool, seed: int) -> None:
    n_groups = len(set(groups))
    config = SplitConfig(method=method, folds=3, val_fraction=0.34, stratify=stratify, seed=seed)  # type: ignore[arg-type]
    labels = [g % 3 for g in groups]  # a group's samples share a label, as a person's attributes do
    if n_groups < 3:
        with pytest.raises(ConfigError, match="groups cannot make 3 folds"):
            make_splits(config, labels, groups, len(groups))
        return
    pairs, warnings = make_splits(config, labels, groups, len(groups))
    assert len(pairs) == (3 if method == "kfold" else 1)
    g = np.asarray(groups)
    for train, val in pairs:
        assert set(g[train]).isdisjoint(g[val])
        assert len(train) + len(val) == len(groups)
    if method == "kfold":  # every sample validated exactly once
        assert sorted(np.concatenate([val for _, val in pairs]).tolist()) == list(range(len(groups)))


def test_stratified_holdout_keeps_proportions() -> None:
    labels = [0] * 80 + [1] * 20
    (train, val), = make_splits(SplitConfig(val_fraction=0.2), labels, None, 100)[0]
    assert len(val) == 20 and sum(labels[i] for i in val) == 4


def test_ungrouped_split_of_grouped_data_warns() -> None:
    groups = [i // 4 for i in range(40)]
    _, warnings = make_splits(SplitConfig(group=False), [0, 1] * 20, groups, 40)
    assert any("leaking split" in w for w in warnings)


def test_fold_out_of_range() -> None:
    with pytest.raises(ConfigError, match="split.fold: 7 is out of range for 5 folds"):
        make_splits(SplitConfig(method="kfold", fold=7), [0, 1] * 10, None, 20)


def test_dataset_with_its_own_validation_refuses_a_split(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["split"] = {"method": "holdout"}
    config = validate_config(digits_config, builtin_host.registry)
    with pytest.raises(ConfigError, match="makes its own validation split"):
        build_run(config, builtin_host, tmp_path)


def test_split_carves_validation_from_the_labelled_data(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["data"] = {"name": "digits", "val_fraction": 0}
    digits_config["split"] = {"method": "kfold", "folds": 4, "fold": 2}
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path)
    assert run.extras["folds"] == 1 and run.extras["fold"] == 2
    assert len(run.data.train) + len(run.data.val) == 1437  # type: ignore[arg-type]


@pytest.mark.slow
def test_kfold_run_end_to_end(cli: Any, tmp_path: Path, write_config: Any, digits_config: dict[str, Any]) -> None:
    digits_config["data"] = {"name": "digits", "val_fraction": 0}
    digits_config["split"] = {"method": "kfold", "folds": 3}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=6)
    out = tmp_path / "kfold"
    result = cli("run", write_config(digits_config), "--out", out)
    assert result.exit_code == 0, result.output
    assert "out-of-fold val/accuracy" in result.stdout
    for k in range(3):
        assert (out / f"fold_{k}" / "checkpoints" / "best.pt").is_file()
        assert (out / f"fold_{k}" / "metrics.csv").is_file()
    oof = pd.read_csv(out / "oof.csv")
    assert len(oof) == 1437 and oof["target"].min() >= 0  # every labelled sample predicted once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oof"]["val/accuracy"] == pytest.approx((oof["target"] == oof["predicted"]).mean())
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]
    submission = pd.read_csv(out / "submission.csv")
    assert len(submission) == 360
    for name in ("per_class.csv", "confusion_matrix.png", "curves.png"):
        assert (out / "report" / name).is_file()


@pytest.mark.slow
def test_predict_with_a_kfold_run_directory_averages_the_folds(
    cli: Any, tmp_path: Path, write_config: Any, digits_config: dict[str, Any]
) -> None:
    digits_config["data"] = {"name": "digits", "val_fraction": 0}
    digits_config["split"] = {"method": "kfold", "folds": 2}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=4)
    config = write_config(digits_config)
    out = tmp_path / "kfold"
    assert cli("run", config, "--out", out).exit_code == 0
    predicted = tmp_path / "predicted"
    result = cli("predict", config, "--checkpoint", out, "--out", predicted)
    assert result.exit_code == 0, result.output
    assert "averaging the probabilities of 2 checkpoints" in result.stdout
    pd.testing.assert_frame_equal(pd.read_csv(predicted / "submission.csv"), pd.read_csv(out / "submission.csv"))


def test_tta_averages_probabilities_over_views(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    import torch

    import torchyard
    from torchyard.loop import Trainer

    class Flip:
        @torchyard.hookimpl
        def register_transforms(self, register: Any) -> None:
            register("flip_width", lambda: (lambda x: x.flip(-1)), description="Mirror.")

    builtin_host.add_plugin(Flip(), "flip")
    digits_config["tta"] = [[{"name": "flip_width"}]]
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path)
    loader = run.loader("test")
    got = Trainer(run).predict(loader, views=run.tta)
    inputs = torch.cat([batch[0] for batch in loader])
    with torch.inference_mode():
        run.model.eval()
        expected = (torch.softmax(run.model(inputs), -1) + torch.softmax(run.model(inputs.flip(-1)), -1)) / 2
    assert got.kind == "probabilities"  # averaged views are probabilities, never put through softmax again
    np.testing.assert_allclose(got.outputs, expected.numpy(), rtol=1e-5, atol=1e-6)
