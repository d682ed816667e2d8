"""`torchyard runs`: the table of runs under a folder, read from their run
directories, with the config keys that differ between them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from torchyard.rundirs import LOCK_NAME, claim_run_dir
from torchyard.runs_table import SORT_KEYS, config_columns, filter_runs, find_runs, sort_runs

from .conftest import EXAMPLES, ROOT, Cli
from .test_cli import assert_user_error

#: the three real runs: name -> (--set overrides)
REAL = {
    "cnn-fast": ["optimizer.lr=0.01"],
    "cnn-slow": ["optimizer.lr=0.0005"],
    "mlp": ["optimizer.lr=0.01", "model={name: mlp, hidden: [16]}"],
}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """The test's own flattening of a config (not the module's)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three tiny digits runs made through the CLI, plus a crashed, a
    running and two corrupt run directories written by hand."""
    root = tmp_path_factory.mktemp("yard") / "runs"
    data = yaml.safe_load((EXAMPLES / "digits.yaml").read_text())
    data["model"]["channels"] = 8
    data["trainer"].update({"max_epochs": 1, "limit_train_batches": 2, "progress": False})
    data.pop("scheduler", None)
    config = root.parent / "digits.yaml"
    config.write_text(yaml.safe_dump(data))
    cli = Cli()
    for name, overrides in REAL.items():
        args = ["run", config, "--out", root / name]
        for override in overrides:
            args += ["--set", override]
        result = cli(*args)
        assert result.exit_code == 0, result.output
    for offset, name in enumerate(REAL):  # start times one minute apart, in REAL's order
        stamp = 1_700_000_000 + 60 * offset
        os.utime(root / name / "config.yaml", (stamp, stamp))

    # crashed after two epochs: metrics.csv and last.pt, no summary.json
    crashed = root / "later" / "crashed"
    (crashed / "checkpoints").mkdir(parents=True)
    shutil.copy(root / "cnn-fast" / "config.yaml", crashed / "config.yaml")
    (crashed / "checkpoints" / "last.pt").write_bytes(b"")
    with (crashed / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "train/loss", "val/loss", "val/accuracy", "val/f1", "lr", "time_s"])
        writer.writerow([1, 2, 2.2, 2.1, 0.375, 0.2, 0.01, 1.25])
        writer.writerow([2, 4, 2.0, 1.9, 0.25, 0.3, 0.01, 2.5])

    # a run a process holds right now (this one, through the run's own lock)
    running = root / "later" / "running"
    running.mkdir(parents=True)
    shutil.copy(root / "cnn-slow" / "config.yaml", running / "config.yaml")
    handle_ = claim_run_dir(running, "continue")
    # resumed in its own directory: the summary.json of before is stale
    (running / "summary.json").write_text(json.dumps({"monitor": "val/accuracy", "mode": "max", "best_value": 0.99}))
    (running / "metrics.csv").write_text("epoch,step,val/accuracy,time_s\n1,2,0.5,1.0\n")

    # corrupt files: the row says so, the other rows stay
    bad_summary = root / "bad-summary"
    bad_summary.mkdir()
    shutil.copy(root / "cnn-slow" / "config.yaml", bad_summary / "config.yaml")
    (bad_summary / "summary.json").write_text('{"monitor": ')
    bad_config = root / "bad-config"
    bad_config.mkdir()
    (bad_config / "config.yaml").write_text("model: [unclosed\n")
    for offset, path in enumerate((crashed, running, bad_summary, bad_config), start=3):
        stamp = 1_700_000_000 + 60 * offset
        os.utime(path / "config.yaml", (stamp, stamp))
    try:
        yield root
    finally:
        handle_.release()


def _json(cli: Cli, *args: Any) -> list[dict[str, Any]]:
    result = cli("runs", *args, "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_json_rows_match_the_run_files(runs_root: Path) -> None:
    cli = Cli()
    rows = {row["run"]: row for row in _json(cli, runs_root)}
    assert set(rows) == {*REAL, "later/crashed", "later/running", "bad-summary", "bad-config"}
    for name in REAL:
        summary = json.loads((runs_root / name / "summary.json").read_text())
        with (runs_root / name / "metrics.csv").open() as handle:
            metrics = list(csv.DictReader(handle))
        row = rows[name]
        assert row["status"] == "done" and row["problems"] == []
        assert row["best"] == summary["best_value"] and row["best_epoch"] == summary["best_epoch"]
        assert (row["monitor"], row["mode"]) == ("val/accuracy", "max")
        assert row["epochs"] == summary["epochs"] == 1
        assert row["time_s"] == pytest.approx(sum(float(m["time_s"]) for m in metrics))

    # the config keys shown are exactly those whose values differ between the runs
    configs = [_flat(yaml.safe_load((runs_root / n / "config.yaml").read_text())) for n in REAL]
    differing = {
        key for key in set().union(*configs) if len({json.dumps(c.get(key, "<unset>")) for c in configs}) > 1
    }
    assert {"optimizer.lr", "model.name", "model.hidden"} <= differing
    assert set(rows["mlp"]["config"]) == differing
    assert rows["mlp"]["config"]["model.name"] == "mlp"
    assert rows["cnn-slow"]["config"]["optimizer.lr"] == 0.0005
    assert rows["cnn-fast"]["config"]["model.hidden"] is None  # unset for a small_cnn

    crashed = rows["later/crashed"]
    assert crashed["status"] == "unfinished" and crashed["resumable"] is True
    # trainer.mode auto: accuracy is maximised, so epoch 1's 0.375 is the best
    assert (crashed["best"], crashed["best_epoch"], crashed["epochs"]) == (0.375, 1, 2)
    assert crashed["time_s"] == pytest.approx(3.75)
    assert (rows["later/running"]["status"], rows["later/running"]["best"]) == ("running", 0.5)

    assert rows["bad-summary"]["status"] == "broken"
    assert rows["bad-summary"]["problems"] == [
        "summary.json: not valid JSON: Expecting value: line 1 column 13 (char 12)"
    ]
    assert rows["bad-config"]["status"] == "broken"
    assert rows["bad-config"]["problems"][0].startswith("config.yaml:2:1: invalid YAML")


def test_table_text(runs_root: Path) -> None:
    result = Cli()("runs", runs_root, "--filter", "status=done")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:8] == ["run", "when", "status", "epochs", "monitor", "best", "epoch", "time"]
    assert {"optimizer.lr", "model.name"} <= set(header[8:]) and "trainer.max_epochs" not in header
    # newest first: the runs started one minute apart
    assert [line.split()[0] for line in lines[1:]] == ["mlp", "cnn-slow", "cnn-fast"]
    summary = json.loads((runs_root / "mlp" / "summary.json").read_text())
    assert f"{summary['best_value']:.4f}" in lines[1] and " mlp " in f" {lines[1]} "

    everything = Cli()("runs", runs_root, "--limit", "0")
    assert "bad-summary: summary.json: not valid JSON" in everything.stdout
    assert "unfinished (resumable)" in everything.stdout and "running" in everything.stdout


def test_sorting_and_filtering(runs_root: Path) -> None:
    cli = Cli()
    best = [r for r in _json(cli, runs_root, "--sort", "best") if r["best"] is not None]
    values = [r["best"] for r in best]
    assert values == sorted(values, reverse=True)  # one monitor, maximised: best first
    by_lr = [r["run"] for r in _json(cli, runs_root, "--sort", "optimizer.lr", "--filter", "status=done")]
    assert by_lr[0] == "cnn-slow"
    assert [r["run"] for r in _json(cli, runs_root, "--sort", "time", "--filter", "status=done")] == sorted(
        REAL, key=lambda n: (_json_time(runs_root / n), n)
    )
    assert [r["run"] for r in _json(cli, runs_root, "--filter", "model.name=mlp")] == ["mlp"]
    assert {r["run"] for r in _json(cli, runs_root, "--filter", "optimizer.lr=1e-2")} == {
        "cnn-fast", "mlp", "later/crashed"
    }
    two = _json(cli, runs_root, "--limit", "2")
    assert [r["run"] for r in two] == ["bad-config", "bad-summary"]
    assert _json(cli, runs_root, "--monitor", "val/loss") == []


def _json_time(run: Path) -> float:
    with (run / "metrics.csv").open() as handle:
        return sum(float(row["time_s"]) for row in csv.DictReader(handle))


def test_best_never_ranks_across_monitors(tmp_path: Path) -> None:
    for name, monitor, mode, value in (
        ("acc-low", "val/accuracy", "max", 0.5), ("loss-low", "val/loss", "min", 0.2),
        ("acc-high", "val/accuracy", "max", 0.9), ("loss-high", "val/loss", "min", 0.7),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(
            json.dumps({"monitor": monitor, "mode": mode, "best_value": value, "best_epoch": 1})
        )
    runs = sort_runs(find_runs(tmp_path), "best")
    assert [r.run for r in runs] == ["acc-high", "acc-low", "loss-low", "loss-high"]
    assert [r.run for r in sort_runs(find_runs(tmp_path), "best", reverse=True)] == [
        "acc-low", "acc-high", "loss-high", "loss-low"
    ]
    result = Cli()("runs", tmp_path, "--sort", "best")
    assert "ranked by best within each monitor (val/accuracy, val/loss)" in result.stdout


def test_kfold_run_reads_its_folds(tmp_path: Path) -> None:
    run = tmp_path / "kf"
    for k, times in ((0, [1.0, 2.0]), (1, [1.5, 0.5, 1.0])):
        (run / f"fold_{k}").mkdir(parents=True)
        rows = [f"{e},{e},0.5,{t}" for e, t in enumerate(times, start=1)]
        (run / f"fold_{k}" / "metrics.csv").write_text("epoch,step,val/accuracy,time_s\n" + "\n".join(rows) + "\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"split": {"method": "kfold", "folds": 2, "fold": None}}))
    (info,) = find_runs(tmp_path)
    assert (info.status, info.folds, info.epochs, info.best) == ("unfinished", 2, 3, None)
    assert info.time_s == pytest.approx(6.0)
    (run / "summary.json").write_text(json.dumps({
        "monitor": "val/accuracy", "mode": "max", "best_value": 0.8, "best_epoch": None,
        "folds": [{"fold": 0, "best_value": 0.7}, {"fold": 1, "best_value": 0.9}],
    }))
    (info,) = find_runs(tmp_path)
    assert (info.status, info.best, info.fold_best) == ("done", 0.8, [0.7, 0.9])


def test_differences_collapse_a_null_section(tmp_path: Path) -> None:
    for name, split in (("a", None), ("b", {"method": "kfold", "folds": 5})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"split": split, "trainer": {"progress": name == "a"}}))
    runs = find_runs(tmp_path)
    assert config_columns(runs) == ["split.folds", "split.method"]  # trainer.progress changes no result
    assert [r.run for r in filter_runs(runs, ["split.folds=5"])] == ["b"]


def test_writes_nothing(runs_root: Path) -> None:
    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            p.relative_to(runs_root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in runs_root.rglob("*")
        }

    before = snapshot()
    assert Cli()("runs", runs_root, "--limit", "0").exit_code == 0
    assert snapshot() == before
    assert (runs_root / "later" / "running" / LOCK_NAME).is_file()


def test_bad_input(tmp_path: Path) -> None:
    cli = Cli()
    assert_user_error(cli("runs", tmp_path / "nope"), f"{tmp_path / 'nope'}: no such directory")
    (tmp_path / "file.txt").write_text("x")
    assert_user_error(cli("runs", tmp_path / "file.txt"), "not a directory")
    for result in (cli("runs", tmp_path / "nope"), cli("runs", tmp_path / "file.txt")):
        assert len(result.stderr.strip().splitlines()) == 1
    empty = cli("runs", tmp_path)
    assert empty.exit_code == 0 and empty.stdout.startswith(f"no runs under {tmp_path}")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump({"optimizer": {"lr": 0.1}}))
    assert_user_error(cli("runs", tmp_path, "--filter", "optimizer.lrr=1"), "did you mean 'optimizer.lr'")
    assert_user_error(cli("runs", tmp_path, "--filter", "optimizer.lr"), "expected KEY=VALUE")
    assert_user_error(cli("runs", tmp_path, "--sort", "nonsense"), "--sort 'nonsense'")


def test_listing_does_not_import_torch(runs_root: Path) -> None:
    code = (
        "import sys\n"
        "from torchyard.cli import app\n"
        "try:\n"
        f"    app(['runs', {str(runs_root / 'mlp')!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'pandas', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith(".  ")  # DIR itself is the run


def test_docs_name_every_option() -> None:
    import typer.main

    from torchyard.cli import app

    command = typer.main.get_command(app).commands["runs"]  # type: ignore[attr-defined]
    section = (ROOT / "docs" / "cli.md").read_text().split("## torchyard runs")[1].split("\n## ")[0]
    for param in command.params:
        for name in param.opts:
            if name.startswith("--") and name != "--help":
                assert f"`{name}" in section, f"docs/cli.md's torchyard runs does not document {name}"
    for key in SORT_KEYS:
        assert f"`{key}`" in section
