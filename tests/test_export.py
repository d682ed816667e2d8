"""`torchyard export`: weights, ONNX and torch.export programs of a trained run,
driven through the CLI and loaded back the way a user loads them."""

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
from torchyard import export
from torchyard.errors import ConfigError

from .conftest import EXAMPLES, Cli
from .test_cli import assert_user_error
from .test_images import mask_config, mask_data  # noqa: F401 - the module fixture


def _digits_config(directory: Path, **changes: Any) -> Path:
    data = yaml.safe_load((EXAMPLES / "digits.yaml").read_text())
    data["model"]["channels"] = 8
    data["trainer"].update(max_epochs=1, progress=False)
    data.update(changes)
    path = directory / "digits-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch digits run, trained through the CLI once: (config, run dir)."""
    directory = tmp_path_factory.mktemp("export")
    config = _digits_config(directory)
    run_dir = directory / "run"
    result = Cli()("run", config, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return config, run_dir


def _digit_images(n: int) -> torch.Tensor:
    from torchyard_builtins.datasets.sklearn_toys import digits

    test = digits().test
    return torch.stack([test[i][0] for i in range(n)])


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_weights_export_loads_and_predicts_as_the_run(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    config, run_dir = trained
    out = tmp_path / "weights"
    result = Cli()("export", run_dir, "--format", "weights", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.stdout and "model.safetensors" in result.stdout
    assert "max abs difference from the eager model 0 " in result.stdout
    assert _files(out) == ["config.yaml", "export.json", "model.safetensors"]
    best = run_dir / "checkpoints" / "best.pt"
    assert (out / "model.safetensors").stat().st_size < best.stat().st_size / 2  # no optimizer state

    # the same tensors as the checkpoint's model, readable without torchyard
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    original = torch.load(best, weights_only=True)["model"]
    assert weights.keys() == original.keys()
    assert all(torch.equal(weights[k], original[k]) for k in original)

    manifest = json.loads((out / "export.json").read_text())
    assert manifest["export"] == "weights" and manifest["models"] == ["model.safetensors"]
    assert manifest["class_names"] == [str(d) for d in range(10)] and manifest["input_shape"] == [1, 8, 8]
    assert manifest["check"]["max_abs_diff"] == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["num_classes"] == 10

    # torchyard.load: the directory and the file predict as the run does
    images = _digit_images(20)
    expected = torchyard.load(run_dir).predict(images)
    for source in (out, out / "model.safetensors"):
        got = torchyard.load(source).predict(images)
        np.testing.assert_array_equal(got.outputs, expected.outputs)
        assert got.label_names() == expected.label_names() and got.class_names == expected.class_names

    # torchyard predict -c EXPORT writes the run's submission again
    again = tmp_path / "predicted"
    result = Cli()("predict", out / "config.yaml", "-c", out, "--out", again)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(again / "submission.csv"), pd.read_csv(run_dir / "submission.csv"))


@pytest.mark.slow
def test_onnx_export_matches_the_eager_model(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import onnxruntime

    _, run_dir = trained
    out = tmp_path / "onnx"
    result = Cli()("export", run_dir, "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    assert _files(out) == ["config.yaml", "export.json", "model.onnx"]
    assert (out / "model.onnx").stat().st_size < (run_dir / "checkpoints" / "best.pt").stat().st_size
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "input" and isinstance(given.shape[0], str)  # any batch size
    model = torchyard.load(run_dir).models[0]
    for n in (1, 13):
        images = _digit_images(n)
        (outputs,) = session.run(None, {"input": images.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(outputs, model(images).numpy(), atol=1e-4)
    # an ONNX export is not something torchyard.load reads: it says so
    with pytest.raises(ConfigError, match="export in format 'onnx'.*--format weights"):
        torchyard.load(out)


@pytest.mark.slow
def test_torch_export_program_matches_the_eager_model(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = trained
    result = Cli()("export", run_dir, "--format", "torch-export")  # default: RUN_DIR/export/FORMAT
    assert result.exit_code == 0, result.output
    out = run_dir / "export" / "torch-export"
    assert _files(out) == ["config.yaml", "export.json", "model.pt2"]
    assert (out / "model.pt2").stat().st_size < (run_dir / "checkpoints" / "best.pt").stat().st_size
    program = torch.export.load(out / "model.pt2").module()
    model = torchyard.load(run_dir).models[0]
    for n in (1, 9):
        images = _digit_images(n)
        with torch.no_grad():
            torch.testing.assert_close(program(images), model(images), rtol=1e-5, atol=1e-5)
    # a second export there is refused, and the first one stays as it was
    before = (out / "model.pt2").read_bytes()
    assert_user_error(Cli()("export", run_dir, "--format", "torch-export"), "not empty", "--force")
    assert (out / "model.pt2").read_bytes() == before


def test_export_errors_are_one_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = trained
    cli = Cli()
    assert_user_error(
        cli("export", run_dir, "--format", "torchscript"),
        "--format: expected one of weights, onnx, torch-export, got 'torchscript'",
    )
    assert_user_error(cli("export", tmp_path / "nope"), f"run directory {tmp_path / 'nope'}: not found")
    assert_user_error(cli("export", run_dir, "--checkpoint", "missing.pt"), "--checkpoint missing.pt", "no such file")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert_user_error(cli("export", empty), "no checkpoints/best.pt")
    # an existing, non-empty --out is never written into without --force
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_user_error(cli("export", run_dir, "--out", out), f"--out {out}: directory exists and is not empty")
    assert _files(out) == ["precious.txt"]
    result = cli("export", run_dir, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert _files(out) == ["config.yaml", "export.json", "model.safetensors", "precious.txt"]
    assert (out / "precious.txt").read_text() == "keep me"
    # not even --force writes into a run directory (its config.yaml is the run's)
    assert_user_error(cli("export", run_dir, "--out", run_dir, "--force"), "is a run directory")


def test_last_checkpoint_and_a_checkpoint_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = trained
    cases = {"best": "best.pt", "last": "last.pt", "checkpoints/last.pt": "last.pt", str(run_dir / "checkpoints" / "best.pt"): "best.pt"}
    for n, (checkpoint, name) in enumerate(cases.items()):
        out = tmp_path / f"out{n}"
        result = Cli()("export", run_dir, "--checkpoint", checkpoint, "--out", out)
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "export.json").read_text())
        assert manifest["checkpoint"] == checkpoint
        assert manifest["checkpoints"] == [str((run_dir / "checkpoints" / name).resolve())]


def test_a_failed_check_writes_nothing(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_dir = trained
    monkeypatch.setattr(export, "_check_weights", lambda *args: 0.5)  # as if the weights came back wrong
    out = tmp_path / "bad"
    assert_user_error(
        Cli()("export", run_dir, "--out", out), "differs from the eager model by 0.5", "nothing written"
    )
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]


def test_missing_extra_names_the_install(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert_user_error(
        Cli()("export", trained[1], "--format", "onnx", "--out", tmp_path / "o"),
        "--format onnx: needs onnxruntime: pip install torchyard[export]",
    )
    assert not (tmp_path / "o").exists()


class _DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # a branch on the values: torch.export cannot trace it
            return x * 2
        return x


@pytest.mark.parametrize("save", [export._save_program, export._save_onnx])
def test_a_model_that_cannot_be_exported_is_named(save: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        save(_DataDependent().eval(), torch.randn(4, 3), tmp_path / "m", "model 'branchy' from plugin test")
    (problem,) = caught.value.problems
    assert "model 'branchy' from plugin test cannot be exported" in problem and "data-dependent" in problem


@pytest.mark.slow
def test_kfold_run_exports_every_fold(tmp_path: Path) -> None:
    config = _digits_config(tmp_path, split={"method": "kfold", "folds": 2})
    data = yaml.safe_load(config.read_text())
    data["data"]["val_fraction"] = 0
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "kfold"
    assert Cli()("run", config, "--out", run_dir).exit_code == 0
    out = tmp_path / "weights"
    result = Cli()("export", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 models, averaged when loaded" in result.stdout
    assert _files(out) == ["config.yaml", "export.json", "fold_0.safetensors", "fold_1.safetensors"]
    assert json.loads((out / "export.json").read_text())["folds"] == 2
    images = _digit_images(15)
    expected = torchyard.load(run_dir).predict(images)
    got = torchyard.load(out).predict(images)
    assert len(torchyard.load(out).models) == 2 and got.kind == "probabilities"  # the folds, averaged
    np.testing.assert_allclose(got.outputs, expected.outputs, rtol=1e-6)
    # a program per fold
    result = Cli()("export", run_dir, "--format", "torch-export", "--out", tmp_path / "pt2")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "pt2") == ["config.yaml", "export.json", "fold_0.pt2", "fold_1.pt2"]


@pytest.mark.slow
def test_an_image_model_exports_and_reads_files(mask_data: Path, tmp_path: Path) -> None:  # noqa: F811
    import onnxruntime

    config = tmp_path / "mask.yaml"
    config.write_text(yaml.safe_dump(mask_config(mask_data)))
    run_dir = tmp_path / "mask"
    assert Cli()("run", config, "--out", run_dir).exit_code == 0
    result = Cli()("export", run_dir, "--format", "onnx", "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.output
    assert "test samples of dataset 'image_csv'" in result.stdout  # checked on real photos
    predictor = torchyard.load(run_dir)
    photos = sorted((mask_data / "eval" / "images").iterdir())[:5]
    inputs = torch.stack([torch.as_tensor(predictor.reader(p)) for p in photos])
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {"input": inputs.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(outputs, predictor.models[0](inputs).numpy(), atol=1e-4)
    # the weights export reads the same files through torchyard.load
    assert Cli()("export", run_dir, "--out", tmp_path / "weights").exit_code == 0
    np.testing.assert_array_equal(
        torchyard.load(tmp_path / "weights").predict(photos).outputs, predictor.predict(photos).outputs
    )


@pytest.mark.slow
def test_a_table_run_keeps_its_fitted_preprocessing(tmp_path: Path) -> None:
    from .test_tabular import _diabetes, _diabetes_config

    config = _diabetes_config(tmp_path, _diabetes(tmp_path))
    run_dir = tmp_path / "run"
    assert Cli()("run", config, "--out", run_dir).exit_code == 0
    out = tmp_path / "weights"
    result = Cli()("export", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "test samples of dataset 'table_csv'" in result.stdout  # encoded as the run encoded them
    # the medians, means and category codes learnt on the training part travel with the weights
    fitted = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["fitted"]
    assert export.weights_metadata(out / "model.safetensors")["fitted"] == fitted
    again = tmp_path / "predicted"
    result = Cli()("predict", out / "config.yaml", "-c", out / "model.safetensors", "--out", again)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(again / "submission.csv"), pd.read_csv(run_dir / "submission.csv"))


def test_the_difference_counts_nan_on_one_side_as_infinitely_far() -> None:
    nan = float("nan")
    assert export._diff(torch.tensor([1.0, nan]), torch.tensor([1.0, nan])) == 0
    assert export._diff(torch.tensor([1.0, nan]), torch.tensor([1.0, 2.0])) == float("inf")
    assert export._diff(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0])) == 0.5
    assert export._diff(torch.ones(2, 1), torch.ones(2)) == float("inf")  # another shape


def test_a_model_failing_on_the_sample_is_named() -> None:
    with pytest.raises(ConfigError, match=r"export: model 'm' from plugin p fails on 8 samples: .*shapes"):
        export._eager(torch.nn.Linear(3, 2), torch.randn(8, 5), "model 'm' from plugin p", "8 samples")


@pytest.mark.slow
def test_a_top_k_run_exports_the_checkpoints_of_its_submission(tmp_path: Path) -> None:
    config = _digits_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["trainer"].update(max_epochs=2, save_top_k=2, predict_with="top_k")
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    assert Cli()("run", config, "--out", run_dir).exit_code == 0
    out = tmp_path / "weights"
    result = Cli()("export", run_dir, "--out", out)  # default: as the run made its submission
    assert result.exit_code == 0, result.output
    assert _files(out) == ["config.yaml", "epoch_001.safetensors", "epoch_002.safetensors", "export.json"]
    images = _digit_images(12)
    np.testing.assert_allclose(
        torchyard.load(out).predict(images).outputs, torchyard.load(run_dir).predict(images).outputs, rtol=1e-6
    )
    result = Cli()("export", run_dir, "--checkpoint", "best", "--out", tmp_path / "best")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "best") == ["config.yaml", "export.json", "model.safetensors"]
