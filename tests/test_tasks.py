"""Tasks through the whole run: multi-head end to end, and the rules each task owns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import torchyard
from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.plugins import PluginHost

from .conftest import EXAMPLES
from .test_images import mask_data  # noqa: F401 - the fixture


def heads_config(data: Path) -> dict[str, Any]:
    """examples/mask_heads.yaml, pointed at ``data`` and made tiny."""
    config = yaml.safe_load((EXAMPLES / "mask_heads.yaml").read_text())
    config["data"].update(csv=str(data / "train" / "train.csv"), root=str(data / "train" / "images"),
                          test_csv=str(data / "eval" / "info.csv"), test_root=str(data / "eval" / "images"),
                          image_size=16)  # fmt: skip
    config["writer"]["path"] = str(data / "eval" / "info.csv")
    config["split"].update(val_fraction=0.25)
    config["model"]["channels"] = 4
    config["trainer"].update(max_epochs=1, progress=False)
    return config


# -- the multihead task ------------------------------------------------------------


def test_multihead_splits_fused_targets_and_combines_labels() -> None:
    from torchyard_builtins.tasks.multihead import MultiHead

    task = MultiHead(heads={"mask": {"classes": 3}, "gender": {"classes": 2}, "age": {"classes": 3}},
                     combine=["mask", "gender", "age"])  # fmt: skip
    fused = torch.tensor([0, 5, 6, 17])
    assert task.head_targets(fused).tolist() == [[0, 0, 0], [0, 1, 2], [1, 0, 0], [2, 1, 2]]
    # outputs whose argmax per head is (2, 1, 2) -> 2 * 6 + 1 * 3 + 2 = 17
    outputs = np.zeros((1, 8), dtype=np.float32)
    outputs[0, [2, 4, 7]] = 5
    assert task.labels(outputs, "logits").tolist() == [17]
    assert task.context() == {"num_classes": 8}


def test_multihead_loss_is_the_weighted_sum_of_head_losses(builtin_host: PluginHost, mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    from torchyard.run import build_run

    run = build_run(validate_config(heads_config(mask_data), builtin_host.registry), builtin_host, tmp_path)
    outputs = torch.randn(6, 8)
    fused = torch.tensor([0, 5, 6, 17, 9, 3])
    heads = run.task.head_targets(fused)  # type: ignore[attr-defined]
    ce = torch.nn.functional.cross_entropy
    expected = ce(outputs[:, 0:3], heads[:, 0]) + ce(outputs[:, 3:5], heads[:, 1]) + 1.5 * ce(outputs[:, 5:8], heads[:, 2])
    assert float(run.loss_fn(outputs, fused)) == pytest.approx(float(expected), rel=1e-6)
    assert {"mask/accuracy", "gender/accuracy", "age/accuracy", "accuracy", "age/f1", "f1"} <= set(run.metrics)


def test_multihead_metrics_are_per_head_and_their_mean(builtin_host: PluginHost, mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    from sklearn.metrics import accuracy_score

    from torchyard.run import build_run

    run = build_run(validate_config(heads_config(mask_data), builtin_host.registry), builtin_host, tmp_path)
    g = torch.Generator().manual_seed(0)
    outputs, fused = torch.randn(40, 8, generator=g), torch.randint(0, 18, (40,), generator=g)
    heads = run.task.head_targets(fused)  # type: ignore[attr-defined]
    for metric in run.metrics.values():
        metric.reset()
        metric.update(outputs, fused)
    expected = {}
    for name, block, column in (("mask", slice(0, 3), 0), ("gender", slice(3, 5), 1), ("age", slice(5, 8), 2)):
        expected[name] = accuracy_score(heads[:, column], outputs[:, block].argmax(1))
        assert run.metrics[f"{name}/accuracy"].compute() == pytest.approx(expected[name])
    assert run.metrics["accuracy"].compute() == pytest.approx(np.mean(list(expected.values())))


def test_heads_that_do_not_multiply_to_the_classes_are_refused(builtin_host: PluginHost, mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    from torchyard.run import build_run

    config = heads_config(mask_data)
    config["task"]["heads"]["age"]["classes"] = 4
    with pytest.raises(torchyard.DataError, match=r"18 classes cannot be split into heads mask\(3\) x gender\(2\) x age\(4\) = 24"):
        build_run(validate_config(config, builtin_host.registry), builtin_host, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"combine": ["mask", "hair"]}, "combine: no head named 'hair'"),
        ({"heads": {"mask": {"task": "classification"}}}, "a classification head needs classes"),
        ({"heads": {}}, "heads"),
    ],
)
def test_bad_heads_are_one_line_config_errors(builtin_host: PluginHost, mask_data: Path, change: dict[str, Any], message: str) -> None:  # noqa: F811
    config = heads_config(mask_data)
    config["task"].update(change)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, builtin_host.registry)


@pytest.mark.slow
def test_multihead_run_end_to_end(cli: Any, write_config: Any, mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "heads"
    config = write_config(heads_config(mask_data))
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    for head in ("mask", "gender", "age"):
        assert f"val/{head}/accuracy" in metrics and f"val/{head}/f1" in metrics
    mean = metrics[["val/mask/f1", "val/gender/f1", "val/age/f1"]].mean(axis=1)
    np.testing.assert_allclose(metrics["val/f1"], mean, rtol=1e-6)
    submission = pd.read_csv(out / "info.csv", dtype=str, keep_default_na=False)
    assert submission["ans"].astype(int).between(0, 17).all()
    assert (out / "report" / "mask_per_class.csv").is_file() and (out / "report" / "age_per_class.csv").is_file()
    # predict from the run directory, and from Python on the files: the same classes
    predicted = tmp_path / "predicted"
    assert cli("predict", config, "-c", out, "--out", predicted).exit_code == 0
    assert pd.read_csv(predicted / "info.csv", dtype=str).equals(pd.read_csv(out / "info.csv", dtype=str))
    info = pd.read_csv(mask_data / "eval" / "info.csv", dtype=str, keep_default_na=False)
    files = [mask_data / "eval" / "images" / name for name in info["ImageID"]]
    predictions = torchyard.load(out).predict(files)
    assert [str(v) for v in predictions.labels.tolist()] == submission["ans"].tolist()
    assert predictions.label_names()[0].count("/") == 2  # 'wear/male/<30'


# -- the task check ----------------------------------------------------------------


def test_check_refuses_a_loss_a_metric_and_a_writer_of_another_task(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["task"] = {"name": "regression"}
    digits_config["writer"] = {"name": "label_list"}
    with pytest.raises(ConfigError) as caught:
        validate_config(digits_config, builtin_host.registry)
    problems = caught.value.problems
    assert any(p.startswith("task: 'regression' does not fit dataset 'digits', which yields classification") for p in problems)
    assert any(p.startswith("loss: 'cross_entropy' takes classification targets, but the task is regression; losses for regression:") and "mse" in p for p in problems)
    assert any(p.startswith("metrics.0: 'accuracy' takes classification targets") for p in problems)
    assert any(p.startswith("writer: 'label_list' takes multilabel targets") for p in problems)


def test_the_dataset_declares_the_task(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = validate_config(digits_config, builtin_host.registry)
    assert config.task is not None and config.task.record.name == "classification"
    written = json.dumps(torchyard.config.jsonable_config(config))
    assert '"task": {"name": "classification"}' in written


def test_regression_values_are_never_softmaxed() -> None:
    from torchyard.inference import Outputs, ensemble
    from torchyard_builtins.tasks.values import Regression

    task = Regression()
    parts = [Outputs(np.array([[1.0], [3.0]], dtype=np.float32), "values"), Outputs(np.array([[3.0], [5.0]], dtype=np.float32), "values")]
    mean = ensemble(parts, task)
    assert mean.kind == "values" and mean.outputs.tolist() == [[2.0], [4.0]]
    with pytest.raises(ValueError, match="not class probabilities"):
        task.probabilities(mean.outputs, mean.kind)


def test_regression_splits_stratify_by_binned_values() -> None:
    from torchyard.splits import SplitConfig, make_splits
    from torchyard_builtins.tasks.values import Regression

    values = np.random.default_rng(0).normal(size=200)
    labels = Regression(stratify_bins=5).stratify(values.tolist())
    assert labels is not None and set(np.unique(labels)) == {0, 1, 2, 3, 4}
    pairs, warnings = make_splits(SplitConfig(method="kfold", folds=4), labels, None, 200)
    assert not warnings
    for _, val in pairs:  # every fold sees low and high values alike
        assert abs(values[val].mean() - values.mean()) < 0.25


def test_a_tuned_threshold_maximizes_f1() -> None:
    from sklearn.metrics import f1_score

    from torchyard_builtins.tasks.labels import Binary

    rng = np.random.default_rng(1)
    targets = (rng.random(300) < 0.3).astype(float)
    logits = (targets * 1.5 + rng.normal(size=300)).astype(np.float32).reshape(-1, 1)
    task = Binary(threshold="tune")
    state = task.tune(logits, "logits", targets)
    best = max(f1_score(targets, task.positive(logits, "logits") >= t) for t in np.linspace(0.01, 0.99, 99))
    assert f1_score(targets, task.labels(logits, "logits")) >= best - 1e-9
    fresh = Binary(threshold="tune")
    fresh.load_state(state)
    assert fresh.threshold == task.threshold


# -- every task through the CLI: train, k-fold, TTA, predict, load -------------------


TASK_RECIPES: dict[str, dict[str, Any]] = {
    "binary": {
        "loss": {"name": "bce"}, "metrics": [{"name": "binary_f1"}, {"name": "binary_accuracy"}],
        "writer": {"name": "csv"}, "task": {"name": "binary", "threshold": "tune"},
    },
    "multilabel": {
        "loss": {"name": "bce"}, "metrics": [{"name": "multilabel_f1"}, {"name": "subset_accuracy"}],
        "writer": {"name": "label_list"},
    },
    "regression": {
        "loss": {"name": "mse"}, "metrics": [{"name": "mae"}, {"name": "r2"}], "writer": {"name": "csv"},
    },
}


def _task_config(task: str, digits_config: dict[str, Any]) -> dict[str, Any]:
    config = {**digits_config, **TASK_RECIPES[task]}
    config["data"] = {"name": "digits_as", "task": task}
    config["model"] = {"name": "mlp", "hidden": [64]}
    config["trainer"] = {**digits_config["trainer"], "max_epochs": 3, "limit_train_batches": None}
    config["tta"] = [[{"name": "random_horizontal_flip", "p": 1.0}]]
    return config


@pytest.mark.slow
@pytest.mark.parametrize("task", ["binary", "multilabel", "regression"])
def test_every_task_end_to_end(
    task: str, cli: Any, write_config: Any, digits_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import fake_entry_points

    fake_entry_points(monkeypatch, {"task-digits": "tests.plugins.task_digits"})
    config = _task_config(task, digits_config)
    path = write_config(config)
    assert cli("check", path).exit_code == 0
    out = tmp_path / "run"
    result = cli("run", path, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    metrics = pd.read_csv(out / "metrics.csv")
    first = config["metrics"][0]["name"]
    assert summary["monitor"] == f"val/{first}"
    assert summary["mode"] == ("min" if task == "regression" else "max")  # mae: lower is better
    good = {"binary": lambda v: v > 0.8, "multilabel": lambda v: v > 0.6, "regression": lambda v: v < 2.2}[task]  # predicting the mean: MAE 2.5
    assert good(summary["best_value"]), summary["best_value"]  # it learnt
    assert len(metrics) == 3
    submission = pd.read_csv(out / "submission.csv", keep_default_na=False)
    assert len(submission) == 360
    if task == "regression":
        assert submission["label"].dtype.kind == "f" and submission["label"].between(-3, 12).all()
    if task == "binary":
        assert set(submission["label"]) <= {0, 1} and 0 < summary["task_state"]["threshold"] < 1
    # predict from the run directory: the same file
    predicted = tmp_path / "predicted"
    assert cli("predict", path, "-c", out, "--out", predicted).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(predicted / "submission.csv", keep_default_na=False), submission)
    # and from Python, on the test images as tensors (TTA as the run did)
    from torchyard_builtins.datasets.sklearn_toys import digits

    test = digits().test
    assert test is not None
    from torchyard.plugins import get_host

    predictions = torchyard.load(out, host=get_host()).predict(test)
    if task == "multilabel":
        assert [" ".join(names) for names in predictions.label_names()] == submission["labels"].tolist()
    else:
        np.testing.assert_allclose(np.asarray(predictions.labels, dtype=float), submission["label"].to_numpy(dtype=float), rtol=1e-5, atol=1e-6)
    # k-fold: out-of-fold predictions with the task's columns (regression: float targets kept)
    kfold = tmp_path / "kfold"
    config["data"] = {"name": "digits_as", "task": task, "val_fraction": 0}
    config["split"] = {"method": "kfold", "folds": 2}
    config["trainer"]["max_epochs"] = 1
    result = cli("run", write_config(config), "--out", kfold)
    assert result.exit_code == 0, result.output
    oof = pd.read_csv(kfold / "oof.csv", keep_default_na=False)
    assert len(oof) == 1437 and (kfold / "submission.csv").is_file()
    if task == "regression":
        assert oof["target"].between(0, 9).all() and oof["predicted"].dtype.kind == "f"
        assert json.loads((kfold / "summary.json").read_text())["oof"]["val/mae"] == pytest.approx(
            (oof["predicted"] - oof["target"]).abs().mean(), rel=1e-4
        )


@pytest.mark.slow
def test_a_leaking_split_is_warned_by_check_and_again_at_the_end(
    cli: Any, write_config: Any, mask_data: Path, tmp_path: Path  # noqa: F811
) -> None:
    from .test_images import mask_config

    config = mask_config(mask_data, group=False)
    path = write_config(config)
    checked = cli("check", path)
    assert checked.exit_code == 0 and "warning: split.group is false" in checked.stderr
    out = tmp_path / "leaky"
    result = cli("run", path, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("leaking split") == 2  # before training, and again at the end
    assert any("leaking split" in w for w in json.loads((out / "summary.json").read_text())["warnings"])


def test_a_fused_label_is_also_scored_per_column(builtin_host: PluginHost, mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    from sklearn.metrics import accuracy_score

    from torchyard.run import build_run

    from .test_images import mask_config

    run = build_run(validate_config(mask_config(mask_data), builtin_host.registry), builtin_host, tmp_path)
    assert run.data.label_parts == ["mask", "gender", "age"]
    assert {"mask/accuracy", "gender/accuracy", "age/accuracy", "mask/f1"} <= set(run.metrics)
    g = torch.Generator().manual_seed(0)
    outputs, fused = torch.randn(50, 18, generator=g), torch.randint(0, 18, (50,), generator=g)
    metric = run.metrics["gender/accuracy"]
    metric.reset()
    metric.update(outputs, fused)
    # the gender part's prediction: the larger marginal probability over the 9 classes of each gender
    probabilities = torch.softmax(outputs, -1).reshape(50, 3, 2, 3).sum(dim=(1, 3))
    assert metric.compute() == pytest.approx(accuracy_score((fused // 3) % 2, probabilities.argmax(1)))
