"""Multi-label writers (label_list, label_columns): files read back, with
the predictions decoded by a task's rules."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import torchyard
from torchyard.data import Predictions
from torchyard.errors import ConfigError, DataError
from torchyard.plugins import get_host, reset_host
from torchyard_builtins.writers.labels import LabelColumnsWriter, LabelListWriter

from .test_cli import assert_user_error

# logits for ids 10..13: labels {a, c}, {}, {b}, {a, b, c}
LOGITS = np.array(
    [[2.0, -1.0, 0.5], [-3.0, -0.1, -2.0], [-1.0, 4.0, -0.5], [1.0, 1.0, 3.0]], dtype=np.float32
)
MULTI_HOT = [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]]


class FakeMultilabelRules:
    """The multi-label decoding contract: sigmoid probabilities, labels at or
    above 0.5, and one list of names per sample."""

    def probabilities(self, outputs: np.ndarray, kind: str) -> np.ndarray:
        return outputs if kind == "probabilities" else 1 / (1 + np.exp(-outputs))

    def labels(self, outputs: np.ndarray, kind: str) -> np.ndarray:
        return (self.probabilities(outputs, kind) >= 0.5).astype(np.int64)

    def label_names(self, labels: np.ndarray, class_names: Sequence[str] | None) -> list[Any]:
        names = list(class_names) if class_names else [str(i) for i in range(labels.shape[1])]
        return [[names[j] for j in np.flatnonzero(row)] for row in labels]


def multilabel(names: list[str] | None = ["a", "b", "c"], rules: Any = None) -> Predictions:  # noqa: B006
    return Predictions(
        ids=[10, 11, 12, 13], outputs=LOGITS, task="multilabel", class_names=names,
        rules=rules or FakeMultilabelRules(),
    )  # fmt: skip


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# -- label_list -----------------------------------------------------------------------------


def test_label_list_joins_names_and_writes_empty_sets_as_empty(tmp_path: Path) -> None:
    path = LabelListWriter().write(multilabel(), tmp_path)
    assert path == tmp_path / "submission.csv"
    frame = read(path)
    assert list(frame.columns) == ["id", "labels"]
    assert frame["id"].tolist() == ["10", "11", "12", "13"]
    assert frame["labels"].tolist() == ["a c", "", "b", "a b c"]
    assert path.read_text().splitlines()[2] == "11,"


def test_label_list_columns_delimiter_and_indices_without_names(tmp_path: Path) -> None:
    writer = LabelListWriter(filename="out.csv", id_column="image", prediction_column="tags", delimiter="|")
    frame = read(writer.write(multilabel(names=None), tmp_path))
    assert list(frame.columns) == ["image", "tags"]
    assert frame["tags"].tolist() == ["0|2", "", "1", "0|1|2"]


def test_label_list_refuses_names_holding_the_delimiter(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"label names contain the delimiter ' ' \(big cat\)"):
        LabelListWriter().write(multilabel(names=["big cat", "b", "c"]), tmp_path)
    assert not list(tmp_path.iterdir())


def test_label_list_writes_single_labels_as_one_label_sets(tmp_path: Path) -> None:
    classification = Predictions(ids=[1, 2], outputs=np.array([[0.0, 2.0], [3.0, 1.0]]), class_names=["x", "y"])
    assert read(LabelListWriter().write(classification, tmp_path))["labels"].tolist() == ["y", "x"]


# -- label_columns --------------------------------------------------------------------------


def test_label_columns_writes_one_0_1_column_per_label(tmp_path: Path) -> None:
    path = LabelColumnsWriter().write(multilabel(), tmp_path)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "a", "b", "c"]
    assert frame["id"].tolist() == [10, 11, 12, 13]
    assert frame[["a", "b", "c"]].to_numpy().tolist() == MULTI_HOT


def test_label_columns_writes_probabilities(tmp_path: Path) -> None:
    path = LabelColumnsWriter(probabilities=True, id_column="key").write(multilabel(names=None), tmp_path)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["key", "label_0", "label_1", "label_2"]
    expected = 1 / (1 + np.exp(-LOGITS.astype(np.float64)))
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected, rtol=1e-6)


def test_label_columns_refuses_names_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="names 2 labels but the predictions have 3"):
        LabelColumnsWriter().write(multilabel(names=["a", "b"]), tmp_path)
    with pytest.raises(DataError, match=r"column names occur twice \(id\)"):
        LabelColumnsWriter().write(multilabel(names=["id", "b", "c"]), tmp_path)
    assert not list(tmp_path.iterdir())


def test_label_columns_writes_a_class_as_a_one_hot_row(tmp_path: Path) -> None:
    classification = Predictions(ids=[1, 2], outputs=np.array([[0.0, 2.0, 1.0], [3.0, 1.0, 0.0]]))
    frame = pd.read_csv(LabelColumnsWriter().write(classification, tmp_path))
    assert frame.iloc[:, 1:].to_numpy().tolist() == [[0, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("writer", [LabelListWriter, LabelColumnsWriter])
@pytest.mark.parametrize("filename", ["../escape.csv", "sub/x.csv", ".."])
def test_refuse_filenames_outside_the_run_dir(writer: Any, filename: str) -> None:
    with pytest.raises(ValueError, match="plain file name inside the run directory"):
        writer(filename=filename)


# -- with the core's multi-label task, once it exists ----------------------------------------


def test_with_the_builtin_multilabel_task(tmp_path: Path) -> None:
    try:
        record = get_host().registry.get("task", "multilabel")
    except ConfigError:  # an unknown kind or name: the core's tasks have not landed
        pytest.skip("no built-in multilabel task registered yet")
    task = record.build()
    task.setup(3, ["a", "b", "c"])
    predictions = multilabel(rules=task)
    assert read(LabelListWriter().write(predictions, tmp_path))["labels"].tolist() == ["a c", "", "b", "a b c"]
    frame = pd.read_csv(LabelColumnsWriter(filename="cols.csv").write(predictions, tmp_path))
    assert frame[["a", "b", "c"]].to_numpy().tolist() == MULTI_HOT


def test_writers_declare_the_tasks_they_write() -> None:
    registry = get_host().registry
    assert registry.get("writer", "label_list").tasks == ("multilabel",)
    assert registry.get("writer", "label_columns").tasks == ("multilabel",)
    assert registry.get("writer", "probabilities").tasks == ("classification", "binary", "multilabel")
    for name in ("csv", "template"):
        assert {"classification", "binary", "regression"} <= set(registry.get("writer", name).tasks)
        assert "multilabel" not in registry.get("writer", name).tasks


# -- end to end: train on digits as a multi-label and a binary task --------------------------

LABELS = ["even", "big", "prime"]  # of the digit: even, >= 5, prime


def digits_labels(kind: str = "multilabel") -> Any:
    """Digits relabelled: three labels per image, or even/odd; ids 1500.. are the test part."""
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import TensorDataset

    from torchyard.data import DataBundle

    bunch = load_digits()
    x = torch.from_numpy((bunch.data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    digit = bunch.target
    if kind == "multilabel":
        y = np.stack([digit % 2 == 0, digit >= 5, np.isin(digit, [2, 3, 5, 7])], 1)
        names, count = LABELS, 3
    else:
        y, names, count = digit % 2 == 0, ["odd", "even"], 2
    targets = torch.from_numpy(y.astype(np.float32))
    train, val, test = np.arange(0, 400), np.arange(400, 600), np.arange(1500, 1560)
    return DataBundle(
        train=TensorDataset(x[train], targets[train]), val=TensorDataset(x[val], targets[val]),
        test=TensorDataset(x[test]), test_ids=test.tolist(), task=kind, num_classes=count,
        class_names=names, input_shape=(1, 8, 8), train_targets=targets[train].numpy(),
    )  # fmt: skip


def _task_of(kind: str = "multilabel", **_: Any) -> str:
    return kind


class _LabelsPlugin:
    @torchyard.hookimpl
    def register_datasets(self, register: Any) -> None:
        register("digits_labels", digits_labels, task=_task_of)


LABELS_PLUGIN = _LabelsPlugin()


@pytest.fixture
def labels_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed plugins plus digits_labels; skips until the core's tasks are registered."""
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        found = real(**kwargs)
        if kwargs.get("group") != "torchyard":  # e.g. triton's entry_points().select(...)
            return found
        plugin = "tests.test_writers_labels:LABELS_PLUGIN"
        return [*found, importlib.metadata.EntryPoint("labels-test", plugin, "torchyard")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    reset_host()
    try:
        get_host().registry.get("task", "multilabel")
    except ConfigError:
        pytest.skip("no built-in multilabel task registered yet")
    finally:
        reset_host()


def labels_config(kind: str, metrics: list[dict[str, Any]], writer: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {"name": "small_cnn", "channels": 4},
        "data": {"name": "digits_labels", "kind": kind},
        "loss": {"name": "bce"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "metrics": metrics,
        "writer": writer,
        "loader": {"batch_size": 100},
        "trainer": {"max_epochs": 1, "progress": False, "seed": 0, "device": "cpu"},
    }


@pytest.mark.slow
def test_multilabel_run_logs_the_metrics_and_writes_label_lists(
    labels_host: None, cli: Any, write_config: Any, tmp_path: Path
) -> None:
    metrics = [
        {"name": "multilabel_f1", "average": "micro"},
        {"name": "multilabel_map"},
        {"name": "hamming_loss"},
        {"name": "subset_accuracy"},
    ]
    config = write_config(labels_config("multilabel", metrics, {"name": "label_list"}))
    out = tmp_path / "run"
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output
    logged = pd.read_csv(out / "metrics.csv")
    for key in ("val/multilabel_f1", "val/multilabel_map", "val/hamming_loss", "val/subset_accuracy"):
        assert 0 <= logged[key].iloc[-1] <= 1
    frame = read(out / "submission.csv")
    assert list(frame.columns) == ["id", "labels"]
    assert frame["id"].tolist() == [str(i) for i in range(1500, 1560)]
    assert all(set(cell.split()) <= set(LABELS) for cell in frame["labels"])


@pytest.mark.slow
def test_binary_run_with_binary_metrics_and_label_columns_refused(
    labels_host: None, cli: Any, write_config: Any, tmp_path: Path
) -> None:
    metrics = [{"name": "binary_f1"}, {"name": "binary_accuracy", "threshold": 0.4}]
    config = write_config(labels_config("binary", metrics, {"name": "csv", "class_names": True}))
    out = tmp_path / "run"
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output
    assert {"val/binary_f1", "val/binary_accuracy"} <= set(pd.read_csv(out / "metrics.csv").columns)
    assert set(read(out / "submission.csv")["label"]) <= {"odd", "even"}
    wrong = write_config(labels_config("binary", metrics, {"name": "label_columns"}), "wrong.yaml")
    assert_user_error(cli("check", wrong), "label_columns")


def test_check_refuses_multilabel_metrics_on_a_classification_task(
    labels_host: None, cli: Any, write_config: Any, digits_config: dict[str, Any]
) -> None:
    config = write_config({**digits_config, "metrics": [{"name": "multilabel_f1"}]})
    assert_user_error(cli("check", config), "metrics.0", "multilabel_f1")
