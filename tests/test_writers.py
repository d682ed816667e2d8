"""Submission writers: what they write, what they refuse, and that a failed
write never damages the previous file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard_builtins.writers.csv import CsvWriter
from torchyard_builtins.writers.probabilities import ProbabilitiesWriter
from torchyard_builtins.writers.template import TemplateWriter

from .conftest import EXAMPLES
from .test_cli import assert_user_error

# logits whose argmax is 2, 0, 1, 2 for ids 10, 11, 12, 13
OUTPUTS = np.array(
    [[0.0, 1.0, 3.0], [2.0, 0.0, -1.0], [0.0, 5.0, 1.0], [-1.0, -1.0, 0.5]], dtype=np.float32
)


def predictions(ids: list[Any] | None = None, names: list[str] | None = None) -> Predictions:
    return Predictions(ids=ids or [10, 11, 12, 13], outputs=OUTPUTS, class_names=names)


def template(tmp_path: Path, text: str, name: str = "info.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- csv ------------------------------------------------------------------------------------


def test_csv_writes_indices_or_names(tmp_path: Path) -> None:
    path = CsvWriter(prediction_column="y").write(predictions(), tmp_path)
    assert path == tmp_path / "submission.csv"
    assert path.read_text() == "id,y\n10,2\n11,0\n12,1\n13,2\n"
    named = CsvWriter(class_names=True, filename="named.csv").write(predictions(names=["a", "b", "c"]), tmp_path)
    assert pd.read_csv(named)["label"].tolist() == ["c", "a", "b", "c"]


@pytest.mark.parametrize("writer", [CsvWriter, ProbabilitiesWriter])
@pytest.mark.parametrize("filename", ["../escape.csv", "sub/dir.csv", "/tmp/abs.csv", "a\\b.csv", "..", "."])
def test_writers_refuse_filenames_outside_the_run_dir(writer: Any, filename: str) -> None:
    with pytest.raises(ValueError, match="plain file name inside the run directory"):
        writer(filename=filename)


def test_template_refuses_filenames_outside_the_run_dir(tmp_path: Path) -> None:
    path = template(tmp_path, "id,y\n1,\n")
    with pytest.raises(ValueError, match="plain file name inside the run directory"):
        TemplateWriter(str(path), filename="../info.csv")


# -- template ----------------------------------------------------------------------------------


def test_template_keeps_ids_order_and_columns(tmp_path: Path) -> None:
    path = template(tmp_path, "Usage,ImageID,ans\npublic,13,\nprivate,011,\npublic,12,x\nprivate,10,\n")
    out = tmp_path / "run"
    writer = TemplateWriter(str(path), id_column="ImageID", prediction_column="ans")
    written = writer.write(predictions(ids=[10, "011", 12, 13]), out)
    assert written == out / "info.csv"  # the template's name by default
    assert written.read_text() == "Usage,ImageID,ans\npublic,13,2\nprivate,011,0\npublic,12,1\nprivate,10,2\n"
    assert path.read_text().startswith("Usage,ImageID,ans\npublic,13,\n")  # the template is untouched


def test_template_defaults_to_first_and_other_column_and_writes_names(tmp_path: Path) -> None:
    path = template(tmp_path, "ImageID,ans\n12,\n10,\n13,\n11,\n")
    writer = TemplateWriter(str(path), class_names=True, filename="sub.csv")
    assert (writer.id_column, writer.prediction_column) == ("ImageID", "ans")
    written = writer.write(predictions(names=["cat", "dog", "owl"]), tmp_path / "run")
    assert written.read_text() == "ImageID,ans\n12,dog\n10,owl\n13,owl\n11,cat\n"


def test_template_relative_path_is_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template(tmp_path, "id,label\n10,\n11,\n12,\n13,\n")
    monkeypatch.chdir(tmp_path)
    written = TemplateWriter("info.csv").write(predictions(), tmp_path / "run")
    assert pd.read_csv(written)["label"].tolist() == [2, 0, 1, 2]


def test_template_writes_regression_values(tmp_path: Path) -> None:
    path = template(tmp_path, "id,value\n2,\n1,\n")
    preds = Predictions(ids=[1, 2], outputs=np.array([[0.5], [-1.25]]), task="regression")
    written = TemplateWriter(str(path)).write(preds, tmp_path / "run")
    assert written.read_text() == "id,value\n2,-1.25\n1,0.5\n"


def test_template_missing_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=f"template file not found: {tmp_path / 'nope.csv'}$"):
        TemplateWriter(str(tmp_path / "nope.csv"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"template file not found: nope.csv \(relative to .*\)"):
        TemplateWriter("nope.csv")


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("ImageID,ans\n1,\n", {"prediction_column": "label"}, "has no column 'label' (its columns: ImageID, ans)"),
        ("a,b\n1,\n", {"id_column": "id", "prediction_column": "label"}, "has no column 'id' or 'label'"),
        ("id,a,b\n1,,\n", {}, "has 3 columns (id, a, b): set prediction_column to the one to fill"),
        ("id,y\n1,\n2,\n1,\n3,\n2,\n", {}, "lists 2 ids more than once in column 'id' (first: 1, 2)"),
        ("", {}, "is not a readable CSV"),
    ],
    ids=["no-prediction-column", "no-columns", "ambiguous", "duplicated-ids", "empty"],
)
def test_template_refuses_a_bad_template(tmp_path: Path, text: str, kwargs: dict[str, Any], message: str) -> None:
    path = template(tmp_path, text)
    with pytest.raises(DataError) as info:
        TemplateWriter(str(path), **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_template_id_and_prediction_columns_must_differ(tmp_path: Path) -> None:
    path = template(tmp_path, "id,y\n1,\n")
    with pytest.raises(ValueError, match="must differ"):
        TemplateWriter(str(path), id_column="id", prediction_column="id")


@pytest.mark.parametrize(
    ("ids", "messages"),
    [
        ([10, 11, 12, 99], ["1 template ids have no prediction (first: 13)",
                            "1 predicted ids are not in the template (first: 99)"]),
        ([10, 11, 12, 12], ["1 template ids have no prediction (first: 13)",
                            "1 ids are predicted more than once (first: 12)"]),
        ([20, 21, 22, 23], ["4 template ids have no prediction (first: 10, 11, 12, 13)",
                            "4 predicted ids are not in the template (first: 20, 21, 22, 23)"]),
    ],
    ids=["missing-and-extra", "duplicated", "disjoint"],
)
def test_template_refuses_predictions_that_do_not_match(tmp_path: Path, ids: list[Any], messages: list[str]) -> None:
    path = template(tmp_path, "id,y\n10,\n11,\n12,\n13,\n")
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(DataError) as info:
        TemplateWriter(str(path)).write(predictions(ids=ids), out)
    message = str(info.value)
    assert message.startswith(f"predictions do not match template {path} (column 'id'): ")
    assert "\n" not in message and message.endswith("nothing was written")
    for fragment in messages:
        assert fragment in message
    assert files_in(out) == []


def test_template_shows_only_the_first_few_ids(tmp_path: Path) -> None:
    path = template(tmp_path, "id,y\n" + "".join(f"{i},\n" for i in range(100)))
    preds = Predictions(ids=list(range(40)), outputs=np.zeros((40, 2)))
    with pytest.raises(DataError, match=r"60 template ids have no prediction \(first: 40, 41, 42, 43, 44, \.\.\.\)"):
        TemplateWriter(str(path)).write(preds, tmp_path)


# -- probabilities -------------------------------------------------------------------------------


def test_probabilities_csv_with_class_names(tmp_path: Path) -> None:
    path = ProbabilitiesWriter().write(predictions(names=["cat", "dog", "owl"]), tmp_path)
    assert path == tmp_path / "probabilities.csv"
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "cat", "dog", "owl"]
    assert frame["id"].tolist() == [10, 11, 12, 13]
    np.testing.assert_allclose(frame[["cat", "dog", "owl"]].to_numpy(), predictions().probabilities, rtol=1e-6)
    np.testing.assert_allclose(frame[["cat", "dog", "owl"]].sum(axis=1), 1.0, rtol=1e-6)


def test_probabilities_parquet_round_trip(tmp_path: Path) -> None:
    writer = ProbabilitiesWriter(format="parquet", id_column="ImageID")
    path = writer.write(predictions(ids=["a", "b", "c", "d"]), tmp_path)
    assert path == tmp_path / "probabilities.parquet"
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["ImageID", "prob_0", "prob_1", "prob_2"]
    assert frame["ImageID"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(frame[["prob_0", "prob_1", "prob_2"]].to_numpy(), predictions().probabilities)


def test_probabilities_parquet_without_pyarrow_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with pytest.raises(DataError, match=r"needs pyarrow, which is not installed; run `pip install pyarrow`"):
        ProbabilitiesWriter(format="parquet")


@pytest.mark.parametrize(
    ("preds", "message"),
    [
        (Predictions(ids=[1], outputs=np.zeros((1, 1)), task="regression"), "values have no class probabilities"),
        (predictions(names=["a", "b"]), "the data names 2 classes but the model gives 3 outputs"),
        (predictions(names=["a", "id", "c"]), "column names occur twice (id)"),
        (predictions(names=["a", "b", "a"]), "column names occur twice (a)"),
    ],
    ids=["regression", "names-count", "names-clash-id", "names-repeat"],
)
def test_probabilities_refusals(tmp_path: Path, preds: Predictions, message: str) -> None:
    with pytest.raises(DataError) as info:
        ProbabilitiesWriter().write(preds, tmp_path)
    assert message in str(info.value)
    assert files_in(tmp_path) == []


def test_probabilities_of_one_binary_logit_are_both_classes(tmp_path: Path) -> None:
    preds = Predictions(ids=[1, 2], outputs=np.array([[0.0], [2.0]], dtype=np.float32), task="binary")
    frame = pd.read_csv(ProbabilitiesWriter().write(preds, tmp_path))
    assert list(frame.columns) == ["id", "prob_0", "prob_1"]
    np.testing.assert_allclose(frame["prob_1"], 1 / (1 + np.exp(-np.array([0.0, 2.0]))), rtol=1e-5)


# -- atomicity ---------------------------------------------------------------------------------------


def _writers(tmp_path: Path) -> list[tuple[str, Any]]:
    path = template(tmp_path, "id,label\n10,\n11,\n12,\n13,\n", name="template.csv")
    return [
        ("csv", CsvWriter()),
        ("template", TemplateWriter(str(path), filename="submission.csv")),
        ("probabilities-csv", ProbabilitiesWriter(filename="submission.csv")),
        ("probabilities-parquet", ProbabilitiesWriter(format="parquet", filename="submission.csv")),
    ]


@pytest.mark.parametrize("which", ["csv", "template", "probabilities-csv", "probabilities-parquet"])
def test_a_failed_write_leaves_the_previous_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    writer = dict(_writers(tmp_path))[which]
    out = tmp_path / "run"
    out.mkdir()
    (out / "submission.csv").write_text("previous\n")

    def half_then_crash(self: pd.DataFrame, target: Any, *args: Any, **kwargs: Any) -> None:
        if hasattr(target, "write"):
            target.write("id,label\n10,")
        else:
            Path(target).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        writer.write(predictions(), out)
    assert (out / "submission.csv").read_text() == "previous\n"
    assert files_in(out) == ["submission.csv"]


# -- end to end --------------------------------------------------------------------------------------


def _digits_config(tmp_path: Path, writer: dict[str, Any], **trainer: Any) -> Path:
    data = yaml.safe_load((EXAMPLES / "digits.yaml").read_text())
    data["model"]["channels"] = 8
    data["trainer"].update({"max_epochs": 2, "progress": False, **trainer})
    data["writer"] = writer
    path = tmp_path / "digits-template.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _digits_test_ids() -> list[int]:
    from torchyard_builtins.datasets.sklearn_toys import digits

    ids = digits().test_ids
    assert ids is not None
    return list(ids)


@pytest.mark.slow
def test_run_fills_a_shuffled_template(cli: Any, tmp_path: Path) -> None:
    ids = _digits_test_ids()
    shuffled = np.random.default_rng(0).permutation(ids).tolist()
    sample = tmp_path / "info.csv"
    pd.DataFrame({"ImageID": shuffled, "ans": [""] * len(shuffled)}).to_csv(sample, index=False)
    config = _digits_config(tmp_path, {"name": "template", "path": str(sample),
                                       "id_column": "ImageID", "prediction_column": "ans"})
    out = tmp_path / "run"
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output

    submission = pd.read_csv(out / "info.csv")
    assert list(submission.columns) == ["ImageID", "ans"]
    assert submission["ImageID"].tolist() == shuffled
    assert submission["ans"].between(0, 9).all()
    from sklearn.datasets import load_digits

    truth = load_digits().target[submission["ImageID"]]
    assert (submission["ans"] == truth).mean() > 0.5  # trained, and each row's answer is its own


@pytest.mark.slow
def test_run_with_a_mismatched_template_is_a_one_line_error(cli: Any, tmp_path: Path) -> None:
    ids = _digits_test_ids()
    sample = tmp_path / "info.csv"
    pd.DataFrame({"ImageID": ids[1:], "ans": ""}).to_csv(sample, index=False)
    config = _digits_config(tmp_path, {"name": "template", "path": str(sample)}, max_epochs=1,
                            limit_train_batches=1)
    out = tmp_path / "run"
    result = cli("run", config, "--out", out)
    assert_user_error(result, f"1 predicted ids are not in the template (first: {ids[0]})")
    assert not (out / "info.csv").exists()


def test_run_with_a_missing_template_fails_before_training(cli: Any, tmp_path: Path) -> None:
    config = _digits_config(tmp_path, {"name": "template", "path": str(tmp_path / "none.csv")})
    out = tmp_path / "run"
    assert_user_error(cli("run", config, "--out", out), f"template file not found: {tmp_path / 'none.csv'}")
    assert not out.exists()


def test_single_logit_predictions_are_binary() -> None:
    import numpy as np

    from torchyard.data import Predictions

    predictions = Predictions(ids=[1, 2, 3], outputs=np.array([[2.0], [-1.0], [0.5]], dtype=np.float32))
    assert predictions.labels.tolist() == [1, 0, 1]
    probabilities = predictions.probabilities
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities[0, 1], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
