"""The CLI, driven as a user drives it, reading what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import torchyard

from .conftest import EXAMPLES, ROOT, fake_entry_points


def assert_user_error(result: Any, *fragments: str) -> None:
    """Exit code 2, every line an 'error: ...', no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_version(cli: Any) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"torchyard {torchyard.__version__}"


def test_help_lists_every_command(cli: Any) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("list", "show", "plugins", "check", "run", "predict", "schema"):
        assert command in result.stdout


def test_list_json(cli: Any) -> None:
    rows = json.loads(cli("list", "--json").stdout)
    entry = next(r for r in rows if r["name"] == "cross_entropy")
    assert entry == {
        "kind": "loss",
        "name": "cross_entropy",
        "qualified_name": "builtin-losses:cross_entropy",
        "description": entry["description"],
        "plugin": "builtin-losses",
        "distribution": "torchyard",
        "version": torchyard.__version__,
        "options": {"soft_targets": True},
    }
    assert {r["kind"] for r in rows} == {
        "model", "dataset", "loss", "optimizer", "scheduler", "metric", "writer", "transform", "task", "callback", "logger"
    }
    plateau = next(r for r in rows if r["name"] == "reduce_lr_on_plateau")
    assert plateau["options"] == {"interval": "metric", "durations": []}
    cosine = next(r for r in rows if r["name"] == "cosine_annealing_lr")
    assert cosine["options"] == {"interval": "epoch", "durations": ["T_max"]}


@pytest.mark.parametrize("kind", ["optimizer", "optimizers", "Optimizers"])
def test_list_one_kind(cli: Any, kind: str) -> None:
    rows = json.loads(cli("list", kind, "--json").stdout)
    assert {r["kind"] for r in rows} == {"optimizer"}
    assert {"sgd", "adam", "adamw"} <= {r["name"] for r in rows}


def test_list_table(cli: Any) -> None:
    result = cli("list")
    assert result.exit_code == 0
    assert "cross_entropy" in result.stdout and "builtin-losses" in result.stdout


def test_list_unknown_kind(cli: Any) -> None:
    assert_user_error(cli("list", "lossez"), "unknown component kind 'lossez'; did you mean 'loss'?")
    assert_user_error(
        cli("show", "zzz", "x"),
        "unknown component kind 'zzz'; kinds are model, dataset, loss, optimizer, scheduler, metric, writer, transform",
    )


@pytest.mark.parametrize("command", ["list", "show"])
def test_kind_help_names_every_kind(cli: Any, command: str) -> None:
    from torchyard import kinds

    result = cli(command, "--help", env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert ", ".join(kinds.names()) in result.stdout


def test_show_takes_a_plural(cli: Any) -> None:
    data = json.loads(cli("show", "Transforms", "random_crop", "--json").stdout)
    assert (data["kind"], data["name"]) == ("transform", "random_crop")


def test_show_json(cli: Any) -> None:
    data = json.loads(cli("show", "optimizer", "AdamW", "--json").stdout)
    assert data["name"] == "adamw" and data["plugin"] == "builtin-optimizers"
    params = {p["name"]: p for p in data["params"]}
    assert params["lr"]["type"] == "float"
    assert params["lr"]["default"] == pytest.approx(1e-3)
    assert params["lr"]["constraints"] == "> 0"
    assert params["lr"]["description"] == "Learning rate."
    assert params["betas"]["type"] == "[float, float]"
    assert "foreach" not in params


def test_show_table(cli: Any) -> None:
    result = cli("show", "scheduler", "multi_step_lr")
    assert result.exit_code == 0
    assert "interval: epoch" in result.stdout and "durations: milestones" in result.stdout
    assert "milestones" in result.stdout and "required" in result.stdout and "warmup" in result.stdout


def test_show_unknown_component(cli: Any) -> None:
    assert_user_error(cli("show", "optimizer", "adamx"), "unknown optimizer 'adamx'; did you mean")


def test_plugins_json(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"broken": "tests.plugins.broken_import"})
    data = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert data["builtin-losses"]["status"] == "ok"
    assert {"kind": "loss", "name": "cross_entropy"} in data["builtin-losses"]["components"]
    assert data["broken"]["status"] == "failed"
    assert "ModuleNotFoundError" in data["broken"]["error"]


def test_broken_plugin_does_not_break_the_cli(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"broken": "tests.plugins.broken_import"})
    result = cli("list", "loss")
    assert result.exit_code == 0 and "cross_entropy" in result.stdout
    assert "warning: plugin 'broken' failed to load" in result.stderr
    assert cli("plugins").exit_code == 0


def test_schema_is_json(cli: Any) -> None:
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "RunConfig"
    assert {"model", "data", "trainer", "loader"} <= set(schema["properties"])


def test_check_ok(cli: Any) -> None:
    result = cli("check", EXAMPLES / "digits.yaml")
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and "optimizer: adamw" in result.stdout


def test_check_reports_every_problem(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "model: {name: small_cnn, chanels: 3}\n"
        "data: {name: digits}\n"
        "loss: {name: cross_entropy}\n"
        "optimizer: {name: adamw, lr: -1}\n"
    )
    assert_user_error(
        cli("check", config),
        "error: model.chanels: unknown key; did you mean 'channels' or 'in_channels'?",
        "error: optimizer.lr: expected a number > 0, got -1",
    )
    assert len(cli("check", config).stderr.strip().splitlines()) == 2


def test_check_with_overrides(cli: Any) -> None:
    assert_user_error(
        cli("check", EXAMPLES / "digits.yaml", "--set", "optimizer.lr=-0.1", "--set", "loader.batch_size=0"),
        "optimizer.lr: expected a number > 0, got -0.1",
        "loader.batch_size: expected a number >= 1, got 0",
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("model: [", "invalid YAML"),
        ("just a string", "a config is a mapping of sections"),
    ],
)
def test_check_bad_files(cli: Any, tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    assert_user_error(cli("check", path), fragment)


def test_check_missing_file(cli: Any, tmp_path: Path) -> None:
    assert_user_error(cli("check", tmp_path / "nope.yaml"), "config file not found")


def _small_config(tmp_path: Path, **trainer: Any) -> Path:
    data = yaml.safe_load((EXAMPLES / "digits.yaml").read_text())
    data["model"]["channels"] = 8
    data["trainer"].update({"max_epochs": 2, **trainer})
    path = tmp_path / "digits-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_run_then_predict_end_to_end(cli: Any, tmp_path: Path) -> None:
    config = _small_config(tmp_path)
    out = tmp_path / "run"
    result = cli("run", config, "--out", out, "--set", "writer.prediction_column=digit")
    assert result.exit_code == 0, result.output
    assert "best val/accuracy" in result.stdout

    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "config.yaml",
        "metrics.csv",
        "report/confusion_matrix.png",
        "report/curves.png",
        "report/per_class.csv",
        "steps.csv",
        "submission.csv",
        "summary.json",
        "test_predictions.csv",
        "val_predictions.csv",
    ]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["writer"]["prediction_column"] == "digit"
    # num_workers: auto, written as the number used: none, digits are in memory
    assert resolved["trainer"]["max_epochs"] == 2 and resolved["loader"]["num_workers"] == 0

    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_value"] == pytest.approx(metrics["val/accuracy"].max())

    # the submission covers exactly the held-out test images, in id order
    from torchyard_builtins.datasets.sklearn_toys import digits

    bundle = digits()
    submission = pd.read_csv(out / "submission.csv")
    assert list(submission.columns) == ["id", "digit"]
    assert list(submission["id"]) == list(bundle.test_ids)  # type: ignore[arg-type]
    assert submission["digit"].between(0, 9).all()
    from sklearn.datasets import load_digits

    truth = load_digits().target[submission["id"]]
    assert (submission["digit"] == truth).mean() > 0.5  # 2 short epochs: trained, not noise (0.1)

    # predicting with the best checkpoint reproduces the submission
    again = tmp_path / "predicted"
    result = cli("predict", config, "--checkpoint", out / "checkpoints" / "best.pt", "--out", again,
                 "--set", "writer.prediction_column=digit")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(again / "submission.csv"), submission)


@pytest.mark.slow
def test_run_refuses_a_non_empty_out_dir(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_user_error(cli("run", _small_config(tmp_path), "--out", out), "directory exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "keep me"


def test_run_with_bad_config_writes_nothing(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "never"
    assert_user_error(cli("run", _small_config(tmp_path), "--out", out, "--set", "optimizer.lr=0"))
    assert not out.exists()


def test_run_default_out_dir_is_under_runs(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _small_config(tmp_path, max_epochs=1, limit_train_batches=2)
    assert cli("run", config).exit_code == 0
    assert cli("run", config).exit_code == 0
    runs = sorted((tmp_path / "runs" / "digits-small").iterdir())
    assert len(runs) == 2 and all((r / "submission.csv").is_file() for r in runs)


def test_predict_refuses_an_unsafe_checkpoint(cli: Any, tmp_path: Path) -> None:
    """A checkpoint whose unpickling would run code is refused; the code never runs."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    import torch

    bad = tmp_path / "evil.pt"
    torch.save({"format": "torchyard-checkpoint", "model": Evil()}, bad)
    assert_user_error(
        cli("predict", EXAMPLES / "digits.yaml", "--checkpoint", bad, "--out", tmp_path / "p"),
        "refused to load it safely (weights_only=True)",
    )
    assert not marker.exists()
    assert not (tmp_path / "p").exists()


def test_predict_missing_checkpoint(cli: Any, tmp_path: Path) -> None:
    assert_user_error(
        cli("predict", EXAMPLES / "digits.yaml", "--checkpoint", tmp_path / "none.pt"), "file not found"
    )


def test_python_dash_m_and_no_torch_for_listing(tmp_path: Path) -> None:
    """`torchyard list` (and --help) must not import torch: it takes seconds."""
    code = (
        "import sys\n"
        "from torchyard.cli import app\n"
        "for args in (['list'], ['--help'], ['plugins'], ['list', 'loss', '--json']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pandas', 'sklearn', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    version = subprocess.run(
        [sys.executable, "-m", "torchyard", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.stdout.strip() == f"torchyard {torchyard.__version__}"


@pytest.mark.slow
def test_a_runs_config_yaml_runs_again(cli: Any, tmp_path: Path) -> None:
    """config.yaml states what ran, filled-in values included, so it reruns."""
    first = tmp_path / "first"
    config = _small_config(tmp_path, max_epochs=1, limit_train_batches=3)
    result = cli("run", config, "--out", first, "--set", "scheduler={name: reduce_lr_on_plateau}")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((first / "config.yaml").read_text())
    assert list(resolved["model"])[0] == "name"
    assert resolved["model"]["num_classes"] == 10 and resolved["model"]["in_channels"] == 1
    assert resolved["scheduler"]["mode"] == "max"  # follows val/accuracy
    again = cli("run", first / "config.yaml", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    predicted = cli("predict", first / "config.yaml", "-c", first / "checkpoints" / "best.pt", "--out", tmp_path / "p")
    assert predicted.exit_code == 0, predicted.output
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "p" / "submission.csv"), pd.read_csv(first / "submission.csv")
    )


def test_debug_env_shows_the_traceback(cli: Any, tmp_path: Path) -> None:
    result = cli("check", tmp_path / "nope.yaml", env={"TORCHYARD_DEBUG": "1"})
    assert result.exit_code == 1
    assert "config file not found" in str(result.exception)
