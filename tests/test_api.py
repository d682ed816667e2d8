"""The Python API: torchyard.train, torchyard.predict, torchyard.load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import torchyard
from torchyard.api import load_run_config
from torchyard.errors import ConfigError

from .conftest import EXAMPLES
from .test_images import mask_config, mask_data  # noqa: F401 - the fixture

TINY = {"max_epochs": 2, "progress": False, "seed": 0, "limit_train_batches": 6}


def _digits(digits_config: dict[str, Any], **trainer: Any) -> dict[str, Any]:
    digits_config["trainer"].update(TINY, **trainer)
    return digits_config


def test_train_returns_what_the_run_wrote(digits_config: dict[str, Any], tmp_path: Path) -> None:
    result = torchyard.train(_digits(digits_config), out=tmp_path / "run")
    assert result.run_dir == tmp_path / "run"
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.summary == summary
    assert (result.monitor, result.mode) == ("val/accuracy", "max")
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert [r["epoch"] for r in result.rows] == metrics["epoch"].tolist() == [1, 2]
    assert result.best_value == pytest.approx(metrics["val/accuracy"].max())
    assert result.best_epoch == int(metrics["epoch"][metrics["val/accuracy"].idxmax()])
    assert result.submission == result.run_dir / "submission.csv" and result.submission.is_file()


def test_train_takes_overrides_and_refuses_with_the_cli_messages(
    digits_config: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^optimizer\.lr: expected a number > 0, got -1$"):
        torchyard.train(_digits(digits_config), out=tmp_path / "x", overrides=["optimizer.lr=-1"])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="--out .*directory exists and is not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep.txt").write_text("mine")
        torchyard.train(_digits(digits_config), out=tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_relative_paths_of_a_dict_config_resolve_against_base_dir(
    mask_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    config = mask_config(mask_data)
    config["data"].update(csv="train/train.csv", root="train/images", test_csv="eval/info.csv", test_root="eval/images")
    config["writer"]["path"] = "eval/info.csv"
    monkeypatch.chdir(tmp_path)  # nothing is relative to here
    validated, _ = load_run_config(config, base_dir=mask_data)
    assert validated.data.csv == mask_data / "train" / "train.csv"  # type: ignore[attr-defined]
    result = torchyard.train(config, out=tmp_path / "run", base_dir=mask_data)
    assert result.submission is not None and result.submission.is_file()
    # without base_dir: against the working directory, where there is no such file
    # (the writer's template is the first file a run reads)
    with pytest.raises(torchyard.TorchyardError, match="eval/info.csv"):
        torchyard.train(config, out=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_load_predicts_what_the_submission_says(digits_config: dict[str, Any], tmp_path: Path) -> None:
    from torchyard.plugins import get_host
    from torchyard.run import build_run

    result = torchyard.train(_digits(digits_config), out=tmp_path / "run")
    predictor = torchyard.load(result.run_dir)
    assert isinstance(predictor, torchyard.Predictor) and len(predictor.models) == 1
    # the test split, as the run saw it
    config, _ = load_run_config(digits_config)
    run = build_run(config, get_host(), tmp_path / "scratch", train=False)
    inputs = torch.cat([batch[0] for batch in run.loader("test")])
    predictions = predictor.predict(inputs)
    submission = pd.read_csv(result.submission)
    assert predictions.label_names() == submission["label"].astype(str).tolist()
    assert predictions.kind == "logits" and predictions.probabilities.shape == (len(inputs), 10)
    np.testing.assert_allclose(predictions.probabilities.sum(1), 1, rtol=1e-5)
    # a Dataset gives the same, and a checkpoint file as well as its run directory
    same = torchyard.load(result.run_dir / "checkpoints" / "best.pt").predict(run.data.test)
    np.testing.assert_allclose(same.outputs, predictions.outputs, rtol=1e-5, atol=1e-6)


def test_load_a_kfold_run_averages_its_folds(digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["data"] = {"name": "digits", "val_fraction": 0}
    digits_config["split"] = {"method": "kfold", "folds": 2}
    result = torchyard.train(_digits(digits_config, max_epochs=1), out=tmp_path / "kfold")
    assert sorted({r["fold"] for r in result.rows}) == [0, 1]
    assert result.best_value == pytest.approx(result.summary["oof"]["val/accuracy"])
    predictor = torchyard.load(result.run_dir)
    assert len(predictor.models) == 2
    predicted = torchyard.predict(digits_config, result.run_dir, out=tmp_path / "predicted")
    assert predicted is not None
    from torchyard.plugins import get_host
    from torchyard.run import build_run

    config, _ = load_run_config(digits_config)
    test = build_run(config, get_host(), tmp_path / "scratch", train=False).data.test
    predictions = predictor.predict(test)
    assert predictions.kind == "probabilities"  # two folds averaged
    assert predictions.label_names() == pd.read_csv(predicted)["label"].astype(str).tolist()


def test_load_reads_image_files_as_the_dataset_does(
    mask_data: Path, tmp_path: Path  # noqa: F811
) -> None:
    config = mask_config(mask_data)
    result = torchyard.train(config, out=tmp_path / "mask")
    assert result.submission is not None
    info = pd.read_csv(mask_data / "eval" / "info.csv", dtype=str, keep_default_na=False)
    files = [mask_data / "eval" / "images" / name for name in info["ImageID"]]
    predictions = torchyard.load(result.run_dir).predict(files)
    submission = pd.read_csv(result.submission, dtype=str, keep_default_na=False)
    # the template writer fills 'ans' with class indices
    assert [str(i) for i in predictions.labels.tolist()] == submission["ans"].tolist()
    assert len(predictions.label_names()[0].split("/")) == 3  # mask/gender/age
    with pytest.raises(ConfigError, match="a single path"):
        torchyard.load(result.run_dir).predict(files[0])  # type: ignore[arg-type]


def test_load_of_a_digits_run_refuses_files(digits_config: dict[str, Any], tmp_path: Path) -> None:
    result = torchyard.train(_digits(digits_config, max_epochs=1), out=tmp_path / "run")
    with pytest.raises(ConfigError, match="dataset 'digits' declares no reader for files"):
        torchyard.load(result.run_dir).predict(["a.png"])


def test_load_of_nothing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoints/best.pt"):
        torchyard.load(tmp_path)
    with pytest.raises(ConfigError, match="file not found"):
        torchyard.load(tmp_path / "missing.pt")


def test_a_command_joins_the_process_group_once(
    cli: Any, digits_config: dict[str, Any], write_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchyard import distributed

    calls: list[str] = []
    real = distributed.setup
    monkeypatch.setattr(distributed, "setup", lambda spec: calls.append(spec) or real(spec))
    result = cli("run", write_config(_digits(digits_config, max_epochs=1)), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert calls == ["auto"]


def test_kfold_builds_each_fold_once_and_ends_like_a_single_run(
    digits_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.plugins import recorder
    from torchyard import run as run_module
    from torchyard.plugins import get_host

    built: list[int] = []
    real = run_module.build_run

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("fold", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "build_run", counting)
    host = get_host()
    host.add_plugin(recorder, "recorder")
    recorder.CALLS.clear()
    digits_config["data"] = {"name": "digits", "val_fraction": 0}
    digits_config["split"] = {"method": "kfold", "folds": 3}
    kfold = torchyard.train(_digits(digits_config, max_epochs=1), out=tmp_path / "kfold", host=host)
    assert built == [0, 1, 2]
    ends = [kwargs for name, kwargs in recorder.CALLS if name == "on_run_end"]
    assert len(ends) == 1 and ends[0] == kfold.summary
    single = json.loads((tmp_path / "kfold" / "summary.json").read_text())
    shared = {"monitor", "mode", "best_value", "best_epoch", "submission", "report"}
    assert shared <= set(single) and (tmp_path / "kfold" / "submission.csv").is_file()
    assert single["report"]["per_class"] == str(tmp_path / "kfold" / "report" / "per_class.csv")


def test_lr_builds_no_model(
    cli: Any, digits_config: dict[str, Any], write_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchyard import factories
    from torchyard import run as run_module

    digits_config["scheduler"] = {"name": "step_lr", "step_size": 1, "gamma": 0.5}
    digits_config["optimizer"]["param_groups"] = [{"prefix": "features", "lr_scale": 0.1}]
    config = write_config(_digits(digits_config))
    built: list[str] = []
    real = factories.build_component

    def recording(spec: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(spec.record.kind)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(run_module, "build_component", recording)
    monkeypatch.setattr(factories, "build_component", recording)
    result = cli("lr", config)
    assert result.exit_code == 0, result.output
    assert "model" not in built and {"dataset", "optimizer", "scheduler"} <= set(built)
    assert "lr group 0" in result.stdout and "lr group 1" in result.stdout
    assert "1.0000e-03" in result.stdout and "1.0000e-02" in result.stdout  # 0.1 x 0.01, and 0.01


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py")], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    correct = int(done.stdout.rsplit("/8 correct", 1)[0].rsplit("\n", 1)[-1])
    assert correct >= 6, done.stdout[-2000:]


def test_the_progress_bar_is_on_in_a_notebook() -> None:
    from rich.console import Console

    from torchyard.console import Reporter

    assert Reporter(console=Console(force_jupyter=True), progress=True).enabled
    assert not Reporter(console=Console(force_jupyter=True), progress=False).enabled
    assert not Reporter(console=Console(force_terminal=False, force_jupyter=False), progress=True).enabled
