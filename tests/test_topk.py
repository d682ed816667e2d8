"""trainer.save_top_k: the best K checkpoints of a run, kept, resumed and averaged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from torchyard.topk import ranking


def _config(write_config: Any, digits_config: dict[str, Any], epochs: int, **trainer: Any) -> Path:
    digits_config["model"] = {"name": "mlp", "hidden": [16]}
    digits_config["optimizer"] = {"name": "adamw", "lr": 0.003}
    digits_config["trainer"].update(max_epochs=epochs, limit_train_batches=3, device="cpu", **trainer)
    return Path(write_config(digits_config))


def _expected_top(run: Path, k: int) -> list[tuple[int, float]]:
    """The k best epochs by val/accuracy in metrics.csv (ties: the earlier epoch)."""
    metrics = pd.read_csv(run / "metrics.csv")
    pairs = sorted(zip(metrics["epoch"], metrics["val/accuracy"], strict=True), key=lambda p: (-p[1], p[0]))
    return [(int(e), float(v)) for e, v in pairs[:k]]


def test_ranking_keeps_the_best_finite_values_earlier_epochs_first() -> None:
    rows = [{"epoch": e, "val/loss": v} for e, v in enumerate([0.5, float("nan"), 0.3, 0.5, 0.2], start=1)]
    assert [r["epoch"] for r in ranking(rows, "val/loss", "min", 3)] == [5, 3, 1]
    assert [r["epoch"] for r in ranking(rows, "val/loss", "max", 2)] == [1, 4]
    assert ranking(rows, "val/f1", "max", 2) == []


@pytest.mark.slow
def test_save_top_k_keeps_the_k_best_and_predicts_with_their_average(
    cli: Any, tmp_path: Path, write_config: Any, digits_config: dict[str, Any]
) -> None:
    import torchyard
    from torchyard.plugins import get_host

    config = _config(write_config, digits_config, 5, save_top_k=3, predict_with="top_k")
    run = tmp_path / "run"
    result = cli("run", config, "--out", run)
    assert result.exit_code == 0, result.output
    assert "predicting with the 3 best checkpoints, averaged" in result.stdout
    expected = _expected_top(run, 3)
    kept = sorted(p.name for p in (run / "checkpoints" / "top").iterdir())
    assert kept == sorted(f"epoch={e:03d}.pt" for e, _ in expected)  # exactly K files: the others were deleted
    summary = json.loads((run / "summary.json").read_text())
    assert [e["epoch"] for e in summary["top_k"]] == [e for e, _ in expected]
    assert [e["value"] for e in summary["top_k"]] == pytest.approx([v for _, v in expected])
    assert summary["submitted_from"]["epochs"] == [e for e, _ in expected]
    assert (run / "checkpoints" / "best.pt").is_file()  # best.pt as ever
    assert summary["best_epoch"] == expected[0][0]

    # the run's test predictions are the mean of the K checkpoints' probabilities
    host = get_host()
    test = torch_test_inputs()
    each = [torchyard.load(Path(e["checkpoint"]), host=host).predict(test).probabilities for e in summary["top_k"]]
    averaged = torchyard.load(run, host=host).predict(test).probabilities  # as the run did: top_k
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), atol=1e-6)
    kept_predictions = pd.read_csv(run / "test_predictions.csv")
    np.testing.assert_allclose(kept_predictions[[f"prob_{k}" for k in range(10)]].to_numpy(), averaged, atol=1e-6)
    best_only = torchyard.load(run, host=host, checkpoints="best").predict(test).probabilities
    np.testing.assert_allclose(best_only, each[0], atol=1e-6)

    # torchyard predict: --checkpoints top_k averages them again, best uses best.pt
    again = cli("predict", config, "-c", run, "--checkpoints", "top_k", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert "averaging the probabilities of 3 checkpoints" in again.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "submission.csv"), pd.read_csv(run / "submission.csv"))
    wrong = cli("predict", config, "-c", run, "--checkpoints", "top3", "--out", tmp_path / "wrong")
    assert wrong.exit_code == 2 and "--checkpoints: expected 'best' or 'top_k', got 'top3'" in wrong.stderr


def torch_test_inputs() -> Any:
    from torchyard_builtins.datasets.sklearn_toys import digits

    return digits().test


@pytest.mark.slow
def test_top_k_survives_an_exact_resume(
    cli: Any, tmp_path: Path, write_config: Any, digits_config: dict[str, Any]
) -> None:
    config = _config(write_config, digits_config, 4, save_top_k=3)  # so an epoch before the resume is kept
    straight, resumed, moved = tmp_path / "straight", tmp_path / "resumed", tmp_path / "moved"
    assert cli("run", config, "--out", straight).exit_code == 0
    assert cli("run", config, "--out", resumed, "--set", "trainer.max_epochs=2").exit_code == 0
    # resumed into another directory (the kept checkpoints come along), then in place
    result = cli("run", config, "--resume", resumed, "--allow-changes", "--out", moved)
    assert result.exit_code == 0, result.output
    result = cli("run", config, "--resume", resumed, "--allow-changes")
    assert result.exit_code == 0, result.output
    expected = sorted(f"epoch={e:03d}.pt" for e, _ in _expected_top(straight, 3))
    tops = [json.loads((r / "summary.json").read_text())["top_k"] for r in (straight, resumed, moved)]
    for run, top in zip((straight, resumed, moved), tops, strict=True):
        assert sorted(p.name for p in (run / "checkpoints" / "top").iterdir()) == expected
        assert [(e["epoch"], e["value"]) for e in top] == [(e["epoch"], e["value"]) for e in tops[0]]


def test_top_k_needs_kept_checkpoints(cli: Any, tmp_path: Path, write_config: Any, digits_config: dict[str, Any]) -> None:
    config = _config(write_config, digits_config, 1)
    run = tmp_path / "run"
    assert cli("run", config, "--out", run).exit_code == 0
    assert not (run / "checkpoints" / "top").exists()  # save_top_k: 1 keeps best.pt only
    result = cli("predict", config, "-c", run, "--checkpoints", "top_k", "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert f"--checkpoints top_k: {run} has no checkpoints/top/" in result.stderr
