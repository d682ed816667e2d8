"""``torchyard run --resume`` for real: a run killed with SIGKILL part-way
through an epoch, or stopped with Ctrl-C, and resumed, ends exactly where an
uninterrupted run ends (weights, metrics.csv, submission)."""

from __future__ import annotations

import csv
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from torchyard.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# long epochs (batch 4: ~290 steps) with a checkpoint every 5 steps, so that a
# kill lands part-way through an epoch
CONFIG = {
    "model": {"name": "small_cnn", "channels": 8, "dropout": 0.3},
    "data": {"name": "digits"},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "adamw", "lr": 0.003},
    "scheduler": {"name": "cosine_annealing_lr", "T_max": 2},
    "metrics": [{"name": "accuracy"}, {"name": "f1"}],
    "writer": {"name": "csv"},
    "loader": {"batch_size": 4},
    "trainer": {
        "max_epochs": 2,
        "seed": 7,
        "deterministic": True,
        "num_threads": 1,
        "device": "cpu",
        "progress": False,
        "checkpoint_every_n_steps": 5,
    },
}


def torchyard(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "torchyard", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for_checkpoint(path: Path, process: subprocess.Popen[str], epoch: int) -> dict[str, Any]:
    """Poll ``path`` until it holds a part-way checkpoint of ``epoch``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        if path.is_file():
            try:
                progress = load_checkpoint(path)["progress"]
            except Exception:  # noqa: BLE001 - read while being replaced: try again
                progress = None
            if progress and progress["epoch"] == epoch and not progress["epoch_done"]:
                return progress
        time.sleep(0.01)
    raise AssertionError("no part-way checkpoint appeared")


def metrics_without_time(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    assert metrics_without_time(a) == metrics_without_time(b)
    assert (a / "submission.csv").read_text() == (b / "submission.csv").read_text()
    for name in ("last.pt", "best.pt"):
        left = load_checkpoint(a / "checkpoints" / name)["model"]
        right = load_checkpoint(b / "checkpoints" / name)["model"]
        assert all(torch.equal(left[k], right[k]) for k in left), name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    (root / "digits.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def reference(workdir: Path) -> Path:
    """The same config, never interrupted."""
    code, out, err = finish(torchyard("run", "digits.yaml", "--out", "reference", cwd=workdir))
    assert code == 0, err
    return workdir / "reference"


def test_a_run_killed_mid_epoch_resumes_to_the_same_result(workdir: Path, reference: Path) -> None:
    process = torchyard("run", "digits.yaml", "--out", "killed", cwd=workdir)
    wait_for_checkpoint(workdir / "killed" / "checkpoints" / "last.pt", process, epoch=2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    progress = load_checkpoint(workdir / "killed" / "checkpoints" / "last.pt")["progress"]
    assert not (workdir / "killed" / "summary.json").exists()
    assert progress["epoch"] == 2 and not progress["epoch_done"]  # the resume starts part-way

    code, out, err = finish(
        torchyard("run", "digits.yaml", "--resume", "killed/checkpoints/last.pt", cwd=workdir)
    )
    assert code == 0, err
    assert f"resuming epoch 2 at batch {progress['batches'] + 1}" in out
    assert_same_run(reference, workdir / "killed")


def test_ctrl_c_writes_a_checkpoint_and_prints_the_resume_command(workdir: Path, reference: Path) -> None:
    process = torchyard("run", "digits.yaml", "--out", "stopped", cwd=workdir)
    wait_for_checkpoint(workdir / "stopped" / "checkpoints" / "last.pt", process, epoch=1)
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert code == 130, err
    assert "Traceback" not in err
    last = workdir / "stopped" / "checkpoints" / "last.pt"
    assert "interrupted (SIGINT) at epoch 1" in err
    command = next(line for line in err.splitlines() if line.startswith("resume with: "))
    args = shlex.split(command.removeprefix("resume with: "))
    assert args[:3] == ["torchyard", "run", "digits.yaml"] and Path(args[-1]) == Path("stopped/checkpoints/last.pt")
    progress = load_checkpoint(last)["progress"]
    assert progress["epoch"] == 1 and not progress["epoch_done"]

    code, out, err = finish(torchyard(*args[1:], cwd=workdir))  # the printed command, as printed
    assert code == 0, err
    assert_same_run(reference, workdir / "stopped")


def test_resuming_with_a_changed_config_is_refused_unless_allowed(workdir: Path, reference: Path) -> None:
    run_dir = workdir / "reference"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    code, out, err = finish(
        torchyard("run", "digits.yaml", "--resume", "reference", "--set", "optimizer.lr=0.01",
                  "--set", "trainer.progress=true", cwd=workdir)
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --resume reference/checkpoints/last.pt: config changed since the checkpoint: "
        "optimizer.lr: 0.003 -> 0.01 (pass --allow-changes to resume anyway)"
    ]
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


def test_allow_changes_resumes_a_finished_run_for_more_epochs(workdir: Path, reference: Path) -> None:
    import shutil

    shutil.copytree(reference, workdir / "extended")
    code, out, err = finish(
        torchyard("run", "digits.yaml", "--resume", "extended", "--allow-changes",
                  "--set", "trainer.max_epochs=3", cwd=workdir)
    )
    assert code == 0, err
    assert "resuming with a changed config: trainer.max_epochs: 2 -> 3" in out
    rows = metrics_without_time(workdir / "extended")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[:2] == metrics_without_time(reference)
    assert yaml.safe_load((workdir / "extended" / "config.yaml").read_text())["trainer"]["max_epochs"] == 3
