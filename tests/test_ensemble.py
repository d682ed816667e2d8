"""Ensembles across runs: `torchyard ensemble RUN_DIR... --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two digits runs with different models (an MLP and a small CNN)."""
    import yaml
    from typer.testing import CliRunner

    from torchyard.cli import app
    from torchyard.plugins import reset_host

    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for name, model in (("mlp", {"name": "mlp", "hidden": [32]}), ("cnn", {"name": "small_cnn", "channels": 8})):
        config = root / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "model": model, "data": {"name": "digits"}, "loss": {"name": "cross_entropy"},
            "optimizer": {"name": "adamw", "lr": 0.01}, "metrics": [{"name": "accuracy"}],
            "writer": {"name": "csv"}, "loader": {"batch_size": 64},
            "trainer": {"max_epochs": 2, "progress": False, "seed": 0, "device": "cpu"},
        }))
        reset_host()
        result = CliRunner().invoke(app, ["run", str(config), "--out", str(root / name)])
        assert result.exit_code == 0, result.output
        runs.append(root / name)
    reset_host()
    return runs[0], runs[1], root


@pytest.mark.slow
def test_runs_keep_their_test_predictions(two_runs: tuple[Path, Path, Path]) -> None:
    mlp, _, _ = two_runs
    kept = pd.read_csv(mlp / "test_predictions.csv")
    submission = pd.read_csv(mlp / "submission.csv")
    assert list(kept.columns) == ["id"] + [f"prob_{k}" for k in range(10)]
    assert kept["id"].tolist() == submission["id"].tolist()
    np.testing.assert_allclose(kept.iloc[:, 1:].sum(axis=1), 1, rtol=1e-5)
    assert (kept.iloc[:, 1:].to_numpy().argmax(1) == submission["label"]).all()


@pytest.mark.slow
def test_ensemble_averages_the_runs_and_writes_the_submission(cli: Any, two_runs: tuple[Path, Path, Path]) -> None:
    mlp, cnn, root = two_runs
    out = root / "both"
    result = cli("ensemble", mlp, cnn, "--out", out, "--weights", "3,1")
    assert result.exit_code == 0, result.output
    a = pd.read_csv(mlp / "test_predictions.csv").iloc[:, 1:].to_numpy()
    b = pd.read_csv(cnn / "test_predictions.csv").iloc[:, 1:].to_numpy()
    expected = (3 * a + b) / 4
    np.testing.assert_allclose(pd.read_csv(out / "test_predictions.csv").iloc[:, 1:].to_numpy(), expected, rtol=1e-6)
    assert (pd.read_csv(out / "submission.csv")["label"] == expected.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weights", "1"], "--weights: one number >= 0 per run (2)"),
        (["--weights", "a,b"], "--weights: expected numbers separated by commas"),
    ],
)
def test_bad_ensembles_are_one_line(cli: Any, two_runs: tuple[Path, Path, Path], args: list[str], message: str) -> None:
    mlp, cnn, root = two_runs
    result = cli("ensemble", mlp, cnn, "--out", root / "bad", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (root / "bad").exists()


def test_an_ensemble_of_unlike_runs_is_refused(cli: Any, tmp_path: Path) -> None:
    for name, ids in (("a", [1, 2, 3]), ("b", [1, 2, 4])):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(
            "model: {name: mlp}\ndata: {name: digits}\nloss: {name: cross_entropy}\noptimizer: {name: adamw}\n"
            "writer: {name: csv}\n"
        )
        (run / "summary.json").write_text("{}")
        pd.DataFrame({"id": ids, "prob_0": [0.5] * 3, "prob_1": [0.5] * 3}).to_csv(run / "test_predictions.csv", index=False)
    result = cli("ensemble", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"ensemble: {tmp_path / 'b'}: predicts other test ids than the first run" in result.stderr
    missing = cli("ensemble", tmp_path / "a", tmp_path, "--out", tmp_path / "out")
    assert missing.exit_code == 2 and "no config.yaml (not a finished torchyard run" in missing.stderr
