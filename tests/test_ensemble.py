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


# -- prediction files with ids, fitted weights (k-fold and holdout) -----------------------------


def _kfold_config(root: Path, name: str, model: dict[str, Any]) -> Path:
    import yaml

    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "model": model, "data": {"name": "digits", "val_fraction": 0}, "loss": {"name": "cross_entropy"},
        "split": {"method": "kfold", "folds": 2}, "optimizer": {"name": "adamw", "lr": 0.01},
        "metrics": [{"name": "accuracy"}], "writer": {"name": "csv"}, "loader": {"batch_size": 64},
        "trainer": {"max_epochs": 1, "limit_train_batches": 4, "progress": False, "seed": 0, "device": "cpu"},
    }))
    return config


@pytest.fixture(scope="module")
def kfold_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two 2-fold digits runs (MLPs of one and two layers), the rows each
    run's curves were drawn from, and the output of the first."""
    from typer.testing import CliRunner

    import torchyard.report
    from torchyard.cli import app
    from torchyard.plugins import reset_host

    root = tmp_path_factory.mktemp("kfold")
    drawn: list[list[dict[str, Any]]] = []
    original = torchyard.report.write_curves

    def spy(directory: Path, rows: Any) -> dict[str, str]:
        drawn.append([dict(r) for r in rows])
        return original(directory, rows)

    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torchyard.report, "write_curves", spy)
        for name, model in (("mlp", {"name": "mlp", "hidden": [32]}), ("cnn", {"name": "mlp", "hidden": [64, 32]})):
            reset_host()
            result = CliRunner().invoke(app, ["run", str(_kfold_config(root, name, model)), "--out", str(root / name)])
            assert result.exit_code == 0, result.output
            outputs.append(result.output)
    reset_host()
    return {"mlp": root / "mlp", "cnn": root / "cnn", "root": root, "curves": drawn, "output": outputs[0]}


@pytest.mark.slow
def test_oof_rows_carry_the_datasets_ids_and_targets(kfold_runs: dict[str, Any]) -> None:
    from sklearn.datasets import load_digits

    from torchyard_builtins.datasets.sklearn_toys import digits

    oof = pd.read_csv(kfold_runs["mlp"] / "oof.csv")
    assert list(oof.columns[:3]) == ["id", "target", "predicted"]
    assert list(oof.columns[3:]) == [f"prob_{k}" for k in range(10)]
    labelled = digits(val_fraction=0).train_ids
    assert sorted(oof["id"]) == sorted(labelled) and oof["id"].is_unique  # type: ignore[arg-type]
    # the ids are load_digits() indices: each row's target is that image's digit
    assert (oof["target"].to_numpy() == load_digits().target[oof["id"].to_numpy()]).all()
    assert (oof["predicted"] == oof[[f"prob_{k}" for k in range(10)]].to_numpy().argmax(1)).all()


@pytest.mark.slow
def test_kfold_folds_are_0_based_and_every_fold_is_plotted(kfold_runs: dict[str, Any]) -> None:
    from torchyard.report import curve_series

    output = kfold_runs["output"]
    assert "fold 0 (of 0..1)" in output and "fold 1 (of 0..1)" in output and "fold 2" not in output
    rows = kfold_runs["curves"][0]  # what the mlp run's curves.png was drawn from
    series = curve_series(rows)
    labels = [label for label, _, _ in series["validation metrics"]]
    assert labels == ["fold 0 val/accuracy", "fold 1 val/accuracy"]
    for k, (_, epochs, values) in enumerate(series["validation metrics"]):
        written = pd.read_csv(kfold_runs["mlp"] / f"fold_{k}" / "metrics.csv")
        assert epochs == written["epoch"].tolist()
        np.testing.assert_allclose(values, written["val/accuracy"])
    assert [label for label, _, _ in series["loss"]] == [
        "fold 0 train/loss", "fold 0 val/loss", "fold 1 train/loss", "fold 1 val/loss"
    ]
    assert (kfold_runs["mlp"] / "report" / "curves.png").is_file()


def test_curve_series_of_a_single_run_is_unlabelled_by_fold() -> None:
    from torchyard.report import curve_series

    rows = [{"epoch": e, "train/loss": 1 / e, "val/loss": 2 / e, "val/f1": e / 10, "lr": 0.1} for e in (1, 2)]
    series = curve_series(rows)
    assert [label for label, _, _ in series["loss"]] == ["train/loss", "val/loss"]
    assert series["validation metrics"] == [("val/f1", [1, 2], [0.1, 0.2])]
    assert series["learning rate"] == [("", [1, 2], [0.1, 0.1])]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
def test_weights_fitted_on_out_of_fold_predictions(cli: Any, kfold_runs: dict[str, Any]) -> None:
    import json

    from sklearn.metrics import log_loss

    mlp, cnn, root = kfold_runs["mlp"], kfold_runs["cnn"], kfold_runs["root"]
    out = root / "fitted"
    result = cli("ensemble", mlp, cnn, "--out", out, "--weights", "fit")
    assert result.exit_code == 0, result.output
    assert "weights fitted on oof.csv (1437 samples, log_loss)" in result.stdout
    record = json.loads((out / "ensemble.json").read_text())
    weights, fit = np.asarray(record["weights"]), record["fit"]
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert fit["blend_loss"] <= min(fit["run_losses"]) + 1e-12
    # cross-checked with scikit-learn, the OOF files matched by id
    columns = [f"prob_{k}" for k in range(10)]
    a = pd.read_csv(mlp / "oof.csv").set_index("id").sort_index()
    b = pd.read_csv(cnn / "oof.csv").set_index("id").sort_index()
    assert (a["target"] == b["target"]).all()
    for frame, loss in zip((a, b), fit["run_losses"], strict=True):
        assert loss == pytest.approx(log_loss(frame["target"], frame[columns], labels=range(10)), rel=1e-6)
    blend = weights[0] * a[columns].to_numpy() + weights[1] * b[columns].to_numpy()
    assert fit["blend_loss"] == pytest.approx(log_loss(a["target"], blend, labels=range(10)), rel=1e-5)
    # the submission is the fitted weighting of the kept test predictions
    expected = weights[0] * pd.read_csv(mlp / "test_predictions.csv")[columns].to_numpy() + weights[1] * pd.read_csv(
        cnn / "test_predictions.csv"
    )[columns].to_numpy()
    np.testing.assert_allclose(pd.read_csv(out / "test_predictions.csv")[columns].to_numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_holdout_runs_keep_their_validation_predictions(cli: Any, two_runs: tuple[Path, Path, Path]) -> None:
    import json

    import torchyard
    from torchyard.config import read_config_file, validate_config
    from torchyard.plugins import get_host
    from torchyard.run import build_data, build_task

    mlp, cnn, root = two_runs
    kept = pd.read_csv(mlp / "val_predictions.csv")
    host = get_host()
    config = validate_config(read_config_file(mlp / "config.yaml"), host.registry)
    data, _ = build_data(config, build_task(config))
    assert kept["id"].tolist() == list(data.val_ids)  # type: ignore[arg-type]
    assert kept["target"].tolist() == [int(t) for _, t in data.val]  # type: ignore[union-attr, attr-defined]
    # the best checkpoint's predictions of the validation split, predicted again
    again = torchyard.load(mlp, host=host).predict(data.val)  # type: ignore[arg-type]
    np.testing.assert_allclose(kept[[f"prob_{k}" for k in range(10)]].to_numpy(), again.probabilities, atol=1e-6)
    summary = json.loads((mlp / "summary.json").read_text())
    metrics = pd.read_csv(mlp / "metrics.csv")
    best = metrics[metrics["epoch"] == summary["best_epoch"]].iloc[0]
    assert summary["submitted_from"]["epochs"] == [summary["best_epoch"]]
    assert summary["submitted_from"]["checkpoints"] == [summary["best_checkpoint"]]
    assert summary["submitted_from"]["metrics"]["val/accuracy"] == pytest.approx(best["val/accuracy"])
    assert summary["last"]["epoch"] == metrics["epoch"].iloc[-1]
    assert summary["last"]["val/loss"] == pytest.approx(metrics["val/loss"].iloc[-1])
    assert summary["final"] == {k: v for k, v in summary["last"].items() if k != "epoch"}
    # holdout runs sharing one validation split: weights fitted on it
    result = cli("ensemble", mlp, cnn, "--out", root / "fitted", "--weights", "fit")
    assert result.exit_code == 0, result.output
    assert f"weights fitted on val_predictions.csv ({len(kept)} samples" in result.stdout


def _fake_run(run: Path, files: dict[str, pd.DataFrame]) -> Path:
    run.mkdir()
    (run / "config.yaml").write_text(
        "model: {name: mlp}\ndata: {name: digits}\nloss: {name: cross_entropy}\noptimizer: {name: adamw}\n"
        "writer: {name: csv}\n"
    )
    (run / "summary.json").write_text("{}")
    for name, frame in files.items():
        frame.to_csv(run / name, index=False)
    return run


def test_weights_cannot_be_fitted_without_matching_labelled_predictions(cli: Any, tmp_path: Path) -> None:
    test = pd.DataFrame({"id": [7, 8], "prob_0": [0.5, 0.2], "prob_1": [0.5, 0.8]})
    oof = pd.DataFrame({"id": [1, 2, 3], "target": [0, 1, 1], "prob_0": [0.9, 0.2, 0.4], "prob_1": [0.1, 0.8, 0.6]})
    a = _fake_run(tmp_path / "a", {"test_predictions.csv": test, "oof.csv": oof})
    bare = _fake_run(tmp_path / "bare", {"test_predictions.csv": test})
    other = _fake_run(tmp_path / "other", {"test_predictions.csv": test, "oof.csv": oof.assign(id=[1, 2, 4])})
    old = _fake_run(tmp_path / "old", {"test_predictions.csv": test, "oof.csv": oof.rename(columns={"id": "index"})})
    for run, message in (
        (bare, f"ensemble --weights fit: {bare}: no oof.csv or val_predictions.csv to fit on"),
        (other, f"ensemble --weights fit: {other}: its oof.csv has other sample ids than {a}'s oof.csv"),
        (old, f"ensemble --weights fit: {old}: oof.csv has no id column (written by an older torchyard?)"),
    ):
        result = cli("ensemble", a, run, "--out", tmp_path / "out", "--weights", "fit")
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # a copy of the same run: every weighting ties, equal weights are kept
    twin = _fake_run(tmp_path / "twin", {"test_predictions.csv": test, "oof.csv": oof})
    result = cli("ensemble", a, twin, "--out", tmp_path / "out", "--weights", "fit")
    assert result.exit_code == 0, result.output


def test_ranking_weights_are_not_fitted(tmp_path: Path) -> None:
    from torchyard.blend import fit_weights
    from torchyard.errors import ConfigError

    with pytest.raises(ConfigError, match="the ranking task is not supported"):
        fit_weights("ranking", [tmp_path, tmp_path])


def test_fitted_weights_beat_each_run_on_synthetic_predictions(tmp_path: Path) -> None:
    """Two runs each right on half the samples: the fit finds the mix."""
    from sklearn.metrics import log_loss, mean_squared_error

    from torchyard.blend import fit_weights

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 200)
    runs = []
    for half in (0, 1):
        probs = np.full((200, 3), 1 / 3)
        good = np.arange(200) % 2 == half
        probs[good] = 0.1
        probs[good, targets[good]] = 0.8
        frame = pd.DataFrame({"id": np.arange(200)[::-1], "target": targets[::-1]})
        for k in range(3):
            frame[f"prob_{k}"] = probs[::-1, k]
        run = tmp_path / f"run{half}"
        run.mkdir()
        frame.to_csv(run / "oof.csv", index=False)
        runs.append((run, probs))
    fit = fit_weights("classification", [r for r, _ in runs])
    assert fit.weights == pytest.approx([0.5, 0.5], abs=0.02)
    blend = fit.weights[0] * runs[0][1] + fit.weights[1] * runs[1][1]
    assert fit.blend_loss == pytest.approx(log_loss(targets, blend), rel=1e-6)
    assert fit.blend_loss < min(fit.run_losses)
    # regression: mean squared error
    values = rng.normal(size=100)
    for i, noise in enumerate((0.3, 0.6)):
        frame = pd.DataFrame({"id": range(100), "target": values, "value_0": values + rng.normal(0, noise, 100)})
        (tmp_path / f"reg{i}").mkdir()
        frame.to_csv(tmp_path / f"reg{i}" / "val_predictions.csv", index=False)
    fit = fit_weights("regression", [tmp_path / "reg0", tmp_path / "reg1"])
    assert fit.loss == "mse" and fit.weights[0] > fit.weights[1] and sum(fit.weights) == pytest.approx(1)
    first = pd.read_csv(tmp_path / "reg0" / "val_predictions.csv")
    assert fit.run_losses[0] == pytest.approx(mean_squared_error(first["target"], first["value_0"]))
    assert fit.blend_loss <= min(fit.run_losses)
