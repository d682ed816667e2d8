"""Run directories are owned: created atomically, locked for a run's life,
emptied by ``--overwrite``, and ``predict -c DIR`` uses only the run's own
checkpoints. Concurrency is tested with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from torchyard.errors import ConfigError
from torchyard.rundirs import (
    LOCK_NAME,
    check_unlocked,
    choose_run_dir,
    claim_run_dir,
    empty_owned,
    run_checkpoints,
)

needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl.flock on Windows")


# -- helpers: other processes ---------------------------------------------------------


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from torchyard.rundirs import claim_run_dir
    held = claim_run_dir(Path(sys.argv[1]), sys.argv[2])
    print(held.path, flush=True)
    time.sleep(float(sys.argv[3]))
    held.release()
    """
)


def hold(path: Path, how: str = "exclusive", seconds: float = 60) -> tuple[subprocess.Popen[str], Path]:
    """Another process that claims ``path`` and holds it; returns it once it does."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), how, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line, process.stderr.read() if process.stderr else ""
    return process, Path(line)


def torchyard(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "torchyard", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate()


# -- the directory itself -------------------------------------------------------------


def test_default_names_are_unique_for_runs_started_together(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "digits" / "20250101-120000"
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(base), "unique", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    paths = []
    for process in holders:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        paths.append(out.strip())
    assert sorted(paths) == sorted(
        [str(base)] + [f"{base}-{n}" for n in (2, 3, 4)]
    )


@needs_flock
def test_a_held_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process, _ = hold(out)
    try:
        assert (out / LOCK_NAME).read_text().strip() == str(process.pid)
        message = f"in use by another torchyard process (pid {process.pid})"
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            claim_run_dir(out, "continue")
        with pytest.raises(ConfigError, match="in use by another torchyard process"):
            claim_run_dir(out, "exclusive", overwrite=True)
        with pytest.raises(ConfigError, match="in use by another torchyard process"):
            choose_run_dir(out, None, overwrite=True)
        with pytest.raises(ConfigError, match=r"^--resume .*in use"):
            check_unlocked(out, "--resume")
    finally:
        kill(process)


@needs_flock
def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process, _ = hold(out)
    kill(process)  # SIGKILL: no clean-up ran
    assert (out / LOCK_NAME).is_file()  # the file stays, the lock went with the process
    check_unlocked(out)
    with claim_run_dir(out, "continue") as held:
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert held.path == out and not (out / LOCK_NAME).exists()  # released: the file goes too


def test_the_probe_writes_nothing(tmp_path: Path) -> None:
    check_unlocked(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_exclusive_refuses_a_non_empty_directory_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="directory exists and is not empty"):
        claim_run_dir(out, "exclusive")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    fresh = tmp_path / "fresh"
    with claim_run_dir(fresh, "exclusive") as held:
        assert held.path == fresh
    assert list(fresh.iterdir()) == []


def test_overwrite_deletes_what_a_run_owns_and_keeps_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for folder in ("fold_0/checkpoints", "fold_11", "report", "checkpoints", "notes"):
        (out / folder).mkdir(parents=True)
    for name in ("config.yaml", "metrics.csv", "oof.csv", "preds.csv", "mine.txt", ".summary.json.abc.tmp"):
        (out / name).write_text("x")
    (out / "summary.json").write_text('{"submission": "%s"}' % (out / "preds.csv"))
    with claim_run_dir(out, "exclusive", overwrite=True, keep_out=["submission.csv"]):
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "mine.txt", "notes"]
    assert empty_owned(out) == []


# -- which checkpoints belong to the run -------------------------------------------------


def _run_dir(root: Path, split: dict[str, Any] | None, folds: list[int], single: bool) -> Path:
    root.mkdir()
    config: dict[str, Any] = {"model": {"name": "small_cnn"}}
    if split is not None:
        config["split"] = split
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for k in folds:
        (root / f"fold_{k}" / "checkpoints").mkdir(parents=True)
        (root / f"fold_{k}" / "checkpoints" / "best.pt").write_bytes(b"")
    if single:
        (root / "checkpoints").mkdir()
        (root / "checkpoints" / "best.pt").write_bytes(b"")
    return root


def test_run_checkpoints_follow_the_run_config(tmp_path: Path) -> None:
    kfold = {"method": "kfold", "folds": 3, "fold": None}
    run = _run_dir(tmp_path / "a", kfold, [0, 1, 2], single=False)
    assert run_checkpoints(run) == [run / f"fold_{k}" / "checkpoints" / "best.pt" for k in range(3)]

    run = _run_dir(tmp_path / "b", kfold, [0, 2, 3], single=False)
    with pytest.raises(ConfigError) as caught:
        run_checkpoints(run)
    assert str(caught.value) == (
        f"--checkpoint {run}: config.yaml describes a 3-fold run, but it has fold_1 without "
        "checkpoints/best.pt and fold_3 not part of it (left by an earlier run?)"
    )

    # a single run (or one fold of a k-fold split) ignores stale fold folders
    for name, split in (("c", None), ("d", {**kfold, "fold": 1})):
        run = _run_dir(tmp_path / name, split, [0, 1], single=True)
        assert run_checkpoints(run) == [run / "checkpoints" / "best.pt"]
    run = _run_dir(tmp_path / "e", None, [0, 1], single=False)
    with pytest.raises(ConfigError, match="fold_\\* folders are not that run's"):
        run_checkpoints(run)

    # no config.yaml: every fold, in fold order
    run = tmp_path / "f"
    for k in (10, 2):
        (run / f"fold_{k}" / "checkpoints").mkdir(parents=True)
        (run / f"fold_{k}" / "checkpoints" / "best.pt").write_bytes(b"")
    assert [p.parent.parent.name for p in run_checkpoints(run)] == ["fold_2", "fold_10"]


# -- end to end, with real torchyard processes ------------------------------------------


CONFIG = {
    "model": {"name": "small_cnn", "channels": 4},
    "data": {"name": "digits"},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "adamw", "lr": 0.01},
    "metrics": [{"name": "accuracy"}],
    "writer": {"name": "csv"},
    "loader": {"batch_size": 16},
    "trainer": {"max_epochs": 1, "limit_train_batches": 4, "progress": False, "seed": 0,
                "device": "cpu", "num_threads": 1},
}


def write(workdir: Path, name: str, **changes: Any) -> Path:
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    for section, values in changes.items():
        if isinstance(config.get(section), dict) and isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_runs_started_together_get_their_own_directories(tmp_path: Path) -> None:
    write(tmp_path, "digits.yaml")
    processes = [torchyard("run", "digits.yaml", cwd=tmp_path) for _ in range(3)]
    for process in processes:
        code, out, err = finish(process)
        assert code == 0, err
    runs = sorted((tmp_path / "runs" / "digits").iterdir())
    assert len(runs) == 3
    for run in runs:
        assert (run / "submission.csv").is_file() and not (run / LOCK_NAME).exists()
        assert len(yaml.safe_load((run / "config.yaml").read_text())) > 0


@pytest.mark.slow
@needs_flock
def test_two_runs_into_one_out_the_second_is_refused(tmp_path: Path) -> None:
    # long enough (a few seconds) that the two overlap
    write(tmp_path, "digits.yaml", loader={"batch_size": 4}, trainer={"limit_train_batches": None})
    processes = [torchyard("run", "digits.yaml", "--out", "shared", cwd=tmp_path) for _ in range(2)]
    results = [finish(p) for p in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    (winner, _, _), (loser, _, err) = sorted(
        ((p, code, err) for p, (code, _, err) in zip(processes, results, strict=True)),
        key=lambda t: t[1],
    )
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: --out shared: in use by another torchyard process (pid ")
    assert f"(pid {winner.pid})" in lines[0]
    summary = tmp_path / "shared" / "summary.json"
    assert summary.is_file() and not (tmp_path / "shared" / LOCK_NAME).exists()


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
@needs_flock
def test_resume_into_a_training_run_is_refused_until_it_dies(tmp_path: Path) -> None:
    write(tmp_path, "digits.yaml", loader={"batch_size": 4},
          trainer={"limit_train_batches": None, "max_epochs": 20, "checkpoint_every_n_steps": 5})
    training = torchyard("run", "digits.yaml", "--out", "R", cwd=tmp_path)
    try:
        wait_for(tmp_path / "R" / "checkpoints" / "last.pt", training)
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*.yaml")}
        code, out, err = finish(torchyard("run", "digits.yaml", "--resume", "R", cwd=tmp_path))
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --resume "), err
        assert lines[0].endswith(
            f"R: in use by another torchyard process (pid {training.pid}); "
            "wait for it to end or stop it, or choose another directory"
        )
        assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*.yaml")}
    finally:
        kill(training)  # SIGKILL: the lock file stays, the lock does not
    assert (tmp_path / "R" / LOCK_NAME).is_file()
    code, out, err = finish(
        torchyard("run", "digits.yaml", "--resume", "R", "--allow-changes",
                  "--set", "trainer.max_epochs=1", cwd=tmp_path)
    )
    assert code == 0, err
    assert (tmp_path / "R" / "summary.json").is_file() and not (tmp_path / "R" / LOCK_NAME).exists()


@pytest.mark.slow
def test_overwrite_after_a_kfold_run_leaves_no_stale_folds(tmp_path: Path) -> None:
    data = {"name": "digits", "val_fraction": 0}
    write(tmp_path, "three.yaml", data=data, split={"method": "kfold", "folds": 3})
    write(tmp_path, "two.yaml", data=data, split={"method": "kfold", "folds": 2})
    code, _, err = finish(torchyard("run", "three.yaml", "--out", "X", cwd=tmp_path))
    assert code == 0, err
    (tmp_path / "X" / "notes.txt").write_text("mine")
    assert sorted(p.name for p in (tmp_path / "X").glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]

    code, _, err = finish(torchyard("run", "two.yaml", "--out", "X", "--overwrite", cwd=tmp_path))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "X").glob("fold_*")) == ["fold_0", "fold_1"]
    assert (tmp_path / "X" / "notes.txt").read_text() == "mine"  # not the run's: kept

    code, out, err = finish(torchyard("predict", "two.yaml", "-c", "X", "--out", "P", cwd=tmp_path))
    assert code == 0, err
    assert "averaging the probabilities of 2 checkpoints" in out
    assert (tmp_path / "P" / "submission.csv").read_text() == (tmp_path / "X" / "submission.csv").read_text()

    # a fold folder the run does not describe is refused, not averaged in
    stale = tmp_path / "X" / "fold_2" / "checkpoints"
    stale.mkdir(parents=True)
    (stale / "best.pt").write_bytes((tmp_path / "X" / "fold_0" / "checkpoints" / "best.pt").read_bytes())
    code, out, err = finish(torchyard("predict", "two.yaml", "-c", "X", "--out", "Q", cwd=tmp_path))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: --checkpoint X: config.yaml describes a 2-fold run, but it has fold_2 not part of it "
        "(left by an earlier run?)"
    ]
    assert not (tmp_path / "Q").exists()
