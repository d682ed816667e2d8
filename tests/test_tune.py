"""``torchyard tune``: the space and its up-front validation, a study through
the CLI (trial run directories, best.yaml, plots, resume), pruning, several
workers on one SQLite file, and a killed worker's trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from torchyard.errors import ConfigError
from torchyard.space import apply_params, parse_space

optuna = pytest.importorskip("optuna")

# a study on this takes ~1 s a trial: 1 epoch of 3 small batches
TINY = {
    "model": {"name": "small_cnn", "channels": 4},
    "data": {"name": "digits"},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "adamw", "lr": 0.01},
    "metrics": [{"name": "accuracy"}],
    "writer": {"name": "csv"},
    "loader": {"batch_size": 32},
    "trainer": {"max_epochs": 1, "progress": False, "seed": 0, "limit_train_batches": 3, "device": "cpu"},
}
SPACE = {
    "optimizer.lr": {"log_float": [1.0e-3, 3.0e-2]},
    "model.channels": {"int": [4, 8], "step": 4},
    "loss": {"choice": [{"name": "cross_entropy"}, {"name": "focal", "gamma": 2}]},
}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_study(out: Path, name: str) -> Any:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


# -- the space -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"optimizer.lr": [1, 2]}, "optimizer.lr: expected a mapping with one of float"),
        ({"optimizer.lr": {"flaot": [0.1, 1]}}, "unknown key 'flaot'; did you mean 'float'?"),
        ({"optimizer.lr": {"float": [2, 1]}}, "optimizer.lr: float: expected low < high, got [2, 1]"),
        ({"optimizer.lr": {"log_float": [0, 1]}}, "a log range needs low > 0"),
        ({"model.channels": {"int": [1, 8.5]}}, "model.channels: int: high must be an integer, got 8.5"),
        ({"model.channels": {"int": [1, 8], "step": 2}}, "high - low (7) is not a multiple of step 2"),
        ({"optimizer.lr": {"float": [0.1, 1], "steps": 1}}, "'steps' is not an option of float"),
        ({"optimizer.lr": {"choice": []}}, "choice: expected a non-empty list"),
        ({"loss": {"choice": [{"name": "focal"}, {"name": "focal"}]}}, "is listed twice"),
        ({"loss": {"choice": [{"name": "focal"}]}, "loss.gamma": {"float": [0, 1]}}, "loss.gamma: lies inside loss"),
    ],
)
def test_space_mistakes_are_one_line_naming_the_key(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space(space, "s.yaml")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("s.yaml: ")
    assert message in info.value.problems[0]


def test_a_choice_of_sections_replaces_the_whole_section() -> None:
    (dim,) = parse_space({"loss": {"choice": [{"name": "cross_entropy"}, {"name": "focal", "gamma": 2}]}})
    assert dim.labels == ("cross_entropy", "focal(gamma=2)")
    data = {"loss": {"name": "cross_entropy", "label_smoothing": 0.1}, "optimizer": {"lr": 1}}
    changed = apply_params(data, {"loss": dim.value_of("focal(gamma=2)"), "optimizer.lr": 0.5})
    assert changed == {"loss": {"name": "focal", "gamma": 2}, "optimizer": {"lr": 0.5}}
    assert data["loss"]["name"] == "cross_entropy"  # the base is not changed


@pytest.mark.parametrize(
    ("space", "message"),
    [
        # a bad path, a range end the config rejects, a bad branch
        ({"optimzer.lr": {"float": [0.1, 0.2]}}, "optimzer.lr: low end 0.1: optimzer: unknown key; did you mean 'optimizer'?"),
        ({"model.channels": {"int": [0, 8]}}, "model.channels: low end 0: model.channels: expected a number >= 1, got 0"),
        (
            {"loss": {"choice": [{"name": "cross_entropy"}, {"name": "focal", "gamma": -1}]}},
            'loss: choice 2 of 2 {"name": "focal", "gamma": -1}: loss.gamma: expected a number >= 0, got -1',
        ),
        ({"loss": {"choice": [{"name": "focl"}]}}, """loss: choice 1 of 1 {"name": "focl"}: loss: unknown loss 'focl'; did you mean 'focal'?"""),
    ],
)
def test_cli_validates_every_branch_and_range_end_before_any_trial(
    cli: Any, tmp_path: Path, space: dict[str, Any], message: str
) -> None:
    config, space_file = write(tmp_path / "c.yaml", TINY), write(tmp_path / "s.yaml", space)
    result = cli("tune", config, "--space", space_file, "--trials", "2", "-o", tmp_path / "study")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {space_file}: {message}"]
    assert not (tmp_path / "study").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pruner", "medain"), "error: --pruner: expected one of median, hyperband, none, got 'medain'"),
        (("--storage", "foo://bar"), "error: --storage foo://bar: Can't load plugin: sqlalchemy.dialects:foo"),
        (("--trials", "0"), "error: --trials: expected at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(cli: Any, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    config, space_file = write(tmp_path / "c.yaml", TINY), write(tmp_path / "s.yaml", SPACE)
    result = cli("tune", config, "--space", space_file, "--trials", "2", "-o", tmp_path / "study", *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not (tmp_path / "study").exists()


def test_without_optuna_one_line_names_the_extra(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    config, space_file = write(tmp_path / "c.yaml", TINY), write(tmp_path / "s.yaml", SPACE)
    result = cli("tune", config, "--space", space_file, "--trials", "2")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: torchyard tune needs Optuna: pip install 'torchyard[tune]'"


# -- a study ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_study_through_the_cli_and_its_resume(cli: Any, tmp_path: Path) -> None:
    config, space_file = write(tmp_path / "c.yaml", TINY), write(tmp_path / "s.yaml", SPACE)
    out = tmp_path / "study"
    args = ("tune", config, "--space", space_file, "-o", out, "--seed", "1", "--pruner", "none")
    result = cli(*args, "--trials", "2")
    assert result.exit_code == 0, result.output + result.stderr
    study = load_study(out, "c-s")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:  # each trial an ordinary run in its own directory, with its values
        run_dir = out / f"trial_{t.number:04d}"
        assert t.user_attrs["run_dir"] == str(run_dir)
        assert (run_dir / "metrics.csv").is_file() and (run_dir / "submission.csv").is_file()
        ran = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert ran["optimizer"]["lr"] == pytest.approx(t.params["optimizer.lr"])
        assert ran["model"]["channels"] == t.params["model.channels"]
        assert ran["loss"]["name"] == t.params["loss"].partition("(")[0]
    # the table: one row per trial with its state and value
    for t in study.trials:
        assert any(line.split()[:3] == [str(t.number), "COMPLETE", f"{t.value:.6g}"] for line in result.output.splitlines())
    best = out / "best.yaml"
    assert f"best: trial {study.best_trial.number}, value {study.best_value:.6g}" in result.output
    written = yaml.safe_load(best.read_text())
    assert written["optimizer"]["lr"] == pytest.approx(study.best_params["optimizer.lr"])
    checked = cli("check", best)
    assert checked.exit_code == 0, checked.stderr  # `torchyard run` takes it as is
    for png in ("optimization_history.png", "param_importances.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # re-running continues the study: the count goes on, nothing is redone
    again = cli(*args, "--trials", "3")
    assert again.exit_code == 0, again.stderr
    assert [t.number for t in load_study(out, "c-s").trials] == [0, 1, 2]
    assert sorted(p.name for p in out.glob("trial_*")) == ["trial_0000", "trial_0001", "trial_0002"]
    done = cli(*args, "--trials", "3")
    assert done.exit_code == 0 and "trial 3" not in done.output
    # another space is not the same study
    write(space_file, {"optimizer.lr": {"float": [0.001, 0.01]}})
    changed = cli(*args, "--trials", "4")
    assert changed.exit_code == 2
    assert "was started with another space" in changed.stderr


def test_a_pruner_that_prunes_stops_the_run_at_the_epoch(tmp_path: Path, builtin_host: Any) -> None:
    from torchyard.tune import tune

    config = write(tmp_path / "c.yaml", {**TINY, "trainer": {**TINY["trainer"], "max_epochs": 3}})
    space_file = write(tmp_path / "s.yaml", {"optimizer.lr": {"log_float": [1e-3, 1e-2]}})
    lines: list[str] = []
    result = tune(
        config, space_file, trials=2, out=tmp_path / "study", host=builtin_host, echo=lines.append,
        pruner=optuna.pruners.ThresholdPruner(lower=1.5),  # accuracy is never above 1.5: prune at once
    )
    assert [r["state"] for r in result.trials] == ["PRUNED", "PRUNED"]
    study = load_study(tmp_path / "study", "c-s")
    for t in study.trials:
        assert list(t.intermediate_values) == [1]  # reported after epoch 1, then stopped
        rows = (tmp_path / "study" / f"trial_{t.number:04d}" / "metrics.csv").read_text().splitlines()
        assert len(rows) == 2  # the header and epoch 1 of 3
        assert t.intermediate_values[1] == pytest.approx(float(rows[1].split(",")[rows[0].split(",").index("val/accuracy")]))
    assert result.best_config is None and not (tmp_path / "study" / "best.yaml").exists()
    assert "no complete trial: no best.yaml" in result.notes
    assert "note: no complete trial: no best.yaml" in lines
    assert builtin_host.implementations("on_epoch_end") == []  # the trial's hook is gone


# -- several workers ---------------------------------------------------------------


def torchyard(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "torchyard", *map(str, args)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finished_lines(text: str) -> list[int]:
    """The trial numbers a worker says it ran to the end."""
    return [int(line.split()[1].rstrip(":")) for line in text.splitlines()
            if line.startswith("trial ") and line.split()[2] in ("COMPLETE", "PRUNED", "FAIL")]


@pytest.mark.slow
def test_three_workers_on_one_sqlite_file_run_exactly_the_total(tmp_path: Path) -> None:
    config, space_file = write(tmp_path / "c.yaml", TINY), write(tmp_path / "s.yaml", SPACE)
    args = ("tune", config, "--space", space_file, "--trials", "6", "-o", tmp_path / "study", "--pruner", "none")
    workers = [torchyard(*args, cwd=tmp_path) for _ in range(3)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    trials = load_study(tmp_path / "study", "c-s").trials
    assert [t.number for t in trials] == list(range(6))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    ran = [n for out, _ in outputs for n in finished_lines(out)]
    assert sorted(ran) == list(range(6))  # each trial run by exactly one worker
    assert sum(1 for out, _ in outputs if finished_lines(out)) >= 2  # the work was shared
    assert sorted(p.name for p in (tmp_path / "study").glob("trial_*")) == [f"trial_{i:04d}" for i in range(6)]


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_run_again(tmp_path: Path) -> None:
    from optuna.storages import RetryFailedTrialCallback

    slow = {**TINY, "trainer": {**TINY["trainer"], "max_epochs": 6, "limit_train_batches": None}}
    config, space_file = write(tmp_path / "c.yaml", slow), write(tmp_path / "s.yaml", SPACE)
    out = tmp_path / "study"
    args = ("tune", config, "--space", space_file, "--trials", "1", "-o", out, "--heartbeat", "1", "--pruner", "none")
    worker = torchyard(*args, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (out / "trial_0000" / "metrics.csv").is_file():  # killed after its first epoch
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    assert [t.state.name for t in load_study(out, "c-s").trials] == ["RUNNING"]  # as the dead worker left it

    # the same command again: the dead worker's trial is failed once its
    # heartbeat is 3 s old, queued again with its values, and run
    again = torchyard(*args, cwd=tmp_path)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    trials = load_study(out, "c-s").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trials[0].params
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        assert RetryFailedTrialCallback.retried_trial_number(trials[1]) == 0
    assert finished_lines(stdout) == [1]


# -- the example ----------------------------------------------------------------


def test_the_example_space_holds_the_example_config_and_validates(builtin_host: Any) -> None:
    from torchyard.config_io import read_config_file
    from torchyard.space import check_space, read_space

    root = Path(__file__).parents[1] / "examples"
    data = read_config_file(root / "digits.yaml")
    dims = read_space(root / "digits_sweep.yaml")
    check_space(dims, data, builtin_host.registry)
    for dim in dims:  # every value examples/digits.yaml uses lies inside the space
        node: Any = data
        for part in dim.path.split("."):
            node = node[part]
        if dim.kind == "categorical":
            assert node in dim.choices, dim.path
        else:
            assert dim.low <= node <= dim.high, dim.path
            assert dim.step is None or (node - dim.low) / dim.step == pytest.approx(round((node - dim.low) / dim.step))


def test_score_digits_scores_the_submission_against_sklearns_labels(tmp_path: Path) -> None:
    import json

    from sklearn.datasets import load_digits

    target = load_digits().target
    ids = [3, 10, 42, 99]
    predicted = [int(target[3]), int(target[10]), int(target[42]), (int(target[99]) + 1) % 10]  # 3 of 4 right
    (tmp_path / "summary.json").write_text(json.dumps({"monitor": "val/accuracy", "best_value": 0.5}))
    (tmp_path / "submission.csv").write_text("id,label\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, predicted, strict=True)))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "examples" / "score_digits.py"), str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    assert "val/accuracy 0.5000  test/accuracy 0.7500" in done.stdout
    assert "test_images 4" in done.stdout


def test_the_space_in_the_docs_validates_against_the_example_config(builtin_host: Any) -> None:
    from torchyard.config_io import read_config_file
    from torchyard.space import check_space

    root = Path(__file__).parents[1]
    text = (root / "docs" / "experiments.md").read_text()
    section = text[text.index("### The search space"):]
    block = section[section.index("```yaml\n") + 8:]
    space = yaml.safe_load(block[: block.index("```")])
    assert {"optimizer.lr", "loss", "metrics.1.average"} <= set(space)
    check_space(parse_space(space), read_config_file(root / "examples" / "digits.yaml"), builtin_host.registry)


@pytest.mark.parametrize(
    ("trainer", "direction"),
    [({}, "maximize"), ({"monitor": "val/loss"}, "minimize"), ({"monitor": "val/accuracy", "mode": "min"}, "minimize")],
)
def test_the_study_direction_is_the_runs_monitor_mode(builtin_host: Any, trainer: dict[str, Any], direction: str) -> None:
    from torchyard.config import validate_config
    from torchyard.tune import _direction

    config = validate_config({**TINY, "trainer": {**TINY["trainer"], **trainer}}, builtin_host.registry)
    assert _direction(config, builtin_host) == direction


def test_without_a_lock_a_trial_asked_past_the_total_is_failed_unrun(tmp_path: Path, builtin_host: Any) -> None:
    """Workers on a database server count and ask without a lock: the trial
    whose number comes after the total's is told FAIL, marked surplus."""
    from torchyard.tune import _Worker

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", direction="maximize")
    asked = [study.ask() for _ in range(3)]  # three workers asked at once for a study of 2
    worker = _Worker(optuna, study, [], {}, tmp_path, tmp_path, 2, 30, builtin_host, print, "postgresql://h/db")
    assert worker.lock_path is None
    assert [worker._surplus(t) for t in asked] == [False, False, True]
    states = [t.state.name for t in study.get_trials()]
    assert states == ["RUNNING", "RUNNING", "FAIL"]
    assert study.get_trials()[2].user_attrs == {"surplus": True}
