"""Experiment loggers: the logger kind, its failure rule, and the built-in
tensorboard, mlflow and wandb loggers, each read back from what it wrote."""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import torchyard
from torchyard import distributed
from torchyard.callbacks import RunHooks
from torchyard.config import validate_config
from torchyard.loggers import build_loggers, flatten, hyperparameters
from torchyard.plugins import PluginHost
from torchyard.registry import ComponentRecord

from .conftest import Cli


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- a logger that fails, and one that records --------------------------------------


class Flaky:
    """Raises in the hook named ``fail_in``; counts the calls it gets."""

    def __init__(self, fail_in: str = "on_step_logged") -> None:
        self.fail_in = fail_in
        self.calls: list[str] = []

    def _hook(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_in:
            raise OSError(28, "No space left on device")

    @torchyard.hookimpl
    def on_run_start(self) -> None:
        self._hook("on_run_start")

    @torchyard.hookimpl
    def on_step_logged(self) -> None:
        self._hook("on_step_logged")

    @torchyard.hookimpl
    def on_epoch_end(self) -> None:
        self._hook("on_epoch_end")

    @torchyard.hookimpl
    def on_run_end(self) -> None:
        self._hook("on_run_end")


class Unreachable:
    """A logger whose store cannot be reached when it is built."""

    def __init__(self) -> None:
        raise ConnectionError("tracking server http://nowhere:5000 refused the connection")


class LoggerPlugin:
    @torchyard.hookimpl
    def register_loggers(self, register: Any) -> None:
        register("flaky", Flaky)
        register("unreachable", Unreachable)


def _record(name: str) -> ComponentRecord:
    host = PluginHost()
    host.add_plugin(LoggerPlugin(), "tests")
    return host.registry.get("logger", name)


def test_a_failing_logger_warns_once_and_is_switched_off() -> None:
    flaky = Flaky("on_step_logged")
    hooks = RunHooks(PluginHost(), loggers=[("loggers.0", _record("flaky"), flaky)])
    warnings: list[str] = []
    hooks.warn = warnings.append
    hooks.call("on_run_start", run=None)
    for step in (1, 2, 3):
        hooks.call("on_step_logged", run=None, step=step, metrics={})
    hooks.call("on_epoch_end", run=None, epoch=1, metrics={})
    assert flaky.calls == ["on_run_start", "on_step_logged"]  # nothing after the failure
    assert warnings == [
        "logger 'flaky' (loggers.0, plugin 'tests') failed in on_step_logged: OSError: "
        "[Errno 28] No space left on device; it is switched off, the run goes on"
    ]
    assert hooks.failed == {"logger 'flaky' (loggers.0, plugin 'tests')": "on_step_logged"}


def test_the_warning_is_one_plain_line_on_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    from torchyard.console import Reporter

    class Markup(Flaky):
        def _hook(self, name: str) -> None:
            raise OSError(
                "[/mnt/tracker] is read-only " + "x" * 120
            )  # rich would take it for a tag

    hooks = RunHooks(PluginHost(), loggers=[("loggers.0", _record("flaky"), Markup())])
    hooks.report_to(Reporter(progress=False).warn)
    hooks.call("on_run_start", run=None)
    (line,) = capsys.readouterr().out.splitlines()  # not wrapped at the console's width
    assert line.startswith(
        "warning: logger 'flaky' (loggers.0, plugin 'tests') failed in on_run_start: "
    )
    assert "OSError: [/mnt/tracker] is read-only xxx" in line


def test_a_kfold_fold_ends_its_loggers_and_a_failing_end_warns() -> None:
    class Ending(Flaky):
        def end(self) -> None:
            self.calls.append("end")

    class Broken(Flaky):
        def end(self) -> None:
            raise ConnectionError("gone")

    ending, broken = Ending(), Broken()
    hooks = RunHooks(
        PluginHost(),
        loggers=[("loggers.0", _record("flaky"), ending), ("loggers.1", _record("flaky"), broken)],
    )
    warnings: list[str] = []
    hooks.report_to(warnings.append)
    hooks.end_loggers()
    assert ending.calls == ["end"]
    assert warnings == [
        "logger 'flaky' (loggers.1, plugin 'tests') failed in end: ConnectionError: gone; "
        "it is switched off, the run goes on"
    ]


def test_overwrite_removes_the_loggers_default_folders(tmp_path: Path) -> None:
    from torchyard.files import check_output_name
    from torchyard.rundirs import empty_owned

    for name in ("tensorboard", "wandb", "notes"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    assert empty_owned(tmp_path) == ["tensorboard", "wandb"]  # a user's folder stays
    with pytest.raises(ValueError, match="reserve|run"):
        check_output_name("wandb")  # no writer may take them


def test_only_process_0_builds_loggers(
    builtin_host: PluginHost, digits_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    builtin_host.add_plugin(LoggerPlugin(), "test-loggers")
    digits_config["loggers"] = [{"name": "flaky"}, {"name": "tensorboard"}]
    config = validate_config(digits_config, builtin_host.registry)
    assert [name for _, name, _ in ((w, r.name, o) for w, r, o in build_loggers(config.loggers))] == [
        "flaky", "tensorboard",
    ]  # fmt: skip
    monkeypatch.setattr(distributed, "is_main", lambda: False)  # rank 1 under torchrun
    assert build_loggers(config.loggers) == []


def test_a_logger_that_cannot_start_is_a_warning(
    builtin_host: PluginHost, digits_config: dict[str, Any]
) -> None:
    builtin_host.add_plugin(LoggerPlugin(), "test-loggers")
    digits_config["loggers"] = [{"name": "unreachable"}, {"name": "flaky"}]
    config = validate_config(digits_config, builtin_host.registry)
    warnings: list[str] = []
    built = build_loggers(config.loggers, warnings.append)
    assert [where for where, _, _ in built] == ["loggers.1"]
    assert warnings == [
        "logger 'unreachable' (loggers.0, plugin 'test-loggers') could not start: ConnectionError: "
        "tracking server http://nowhere:5000 refused the connection; the run goes on without it"
    ]


@pytest.mark.parametrize(
    ("name", "module"), [("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "tensorboard")]
)
def test_check_refuses_a_logger_whose_package_is_missing(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails, find_spec says None
    result = cli("check", "examples/digits.yaml", "-s", f"loggers=[{{name: {name}}}]")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: loggers.0: logger '{name}' needs {module}: pip install 'torchyard[{name}]'"
    ]


def test_check_refuses_a_bad_logger_param(cli: Cli) -> None:
    result = cli("check", "examples/digits.yaml", "-s", "loggers=[{name: wandb, mode: onlin}]")
    assert result.exit_code == 2, result.output
    assert "loggers.0.mode" in result.output and "Traceback" not in result.output


def test_hyperparameters_are_the_resolved_config_flat() -> None:
    assert flatten({"a": {"b": 1, "c": [{"d": 2}, 3]}, "e": [], "f": None}) == {
        "a.b": 1, "a.c.0.d": 2, "a.c.1": 3, "e": [], "f": None,
    }  # fmt: skip

    class FakeRun:
        config = validate_config(
            yaml.safe_load((Path(__file__).parents[1] / "examples" / "digits.yaml").read_text()),
            torchyard.plugins.get_host().registry,
        )
        resolved = {"model": {"num_classes": 10}}

    hp = hyperparameters(FakeRun())
    assert hp["optimizer.lr"] == 0.003 and hp["metrics.1.average"] == "macro"
    assert hp["model.num_classes"] == 10 and hp["trainer.max_epochs"] == 12


@pytest.mark.slow
def test_a_failing_logger_never_costs_the_run(
    builtin_host: PluginHost,
    digits_config: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builtin_host.add_plugin(LoggerPlugin(), "test-loggers")
    # the mlflow logger sets it from max_retries: restored after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    digits_config["loggers"] = [
        {"name": "flaky", "fail_in": "on_step_logged"},
        {"name": "unreachable"},
        {
            "name": "mlflow",
            "tracking_uri": "http://127.0.0.1:9",
            "max_retries": 0,
        },  # nothing listens
    ]
    digits_config["trainer"].update(max_epochs=2, limit_train_batches=3, log_every_n_steps=1)
    out = tmp_path / "run"
    result = torchyard.train(digits_config, out=out, host=builtin_host)
    printed = capsys.readouterr()
    text = " ".join((printed.out + printed.err).split())  # the console wraps long lines
    assert text.count("warning:") == 3, text  # one per logger, not one per call
    assert (
        "warning: logger 'unreachable' (loggers.1, plugin 'test-loggers') could not start" in text
    )
    assert (
        "warning: logger 'flaky' (loggers.0, plugin 'test-loggers') failed in on_step_logged"
        in text
    )
    assert (
        "warning: logger 'mlflow' (loggers.2, plugin 'builtin-loggers') failed in on_run_start: "
        "MlflowException: API request to http://127.0.0.1:9/" in text
    )
    assert result.summary["best_epoch"] is not None
    assert len(_rows(out / "metrics.csv")) == 2 and len(_rows(out / "steps.csv")) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["submission"]).is_file() and (out / "checkpoints" / "best.pt").is_file()


# -- the built-in loggers, end to end through the CLI --------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One digits run with all three loggers (3 epochs, a steps.csv row every 4 steps)."""
    root = tmp_path_factory.mktemp("loggers")
    env = {
        "WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"), "WANDB_DATA_DIR": str(root / "wandb-data"),
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        out = root / "runs" / "digits" / "run1"
        result = Cli()(
            "run", "examples/digits.yaml", "-o", out,
            "-s", "loggers=[{name: tensorboard}, {name: mlflow}, {name: wandb}]",
            "-s", "trainer.max_epochs=3", "-s", "trainer.limit_train_batches=8", "-s", "trainer.log_every_n_steps=4",
            "-s", "model.channels=8", "-s", "trainer.progress=false",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output, result.output
        yield out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _expected(out: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return _rows(out / "steps.csv"), _rows(out / "metrics.csv")


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_run(logged: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    steps, epochs = _expected(logged)
    assert [int(r["step"]) for r in steps] == [4, 8, 12, 16, 20, 24]
    acc = EventAccumulator(
        str(logged / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    loss = acc.Scalars("step/loss")
    assert [e.step for e in loss] == [4, 8, 12, 16, 20, 24]
    assert [e.value for e in loss] == pytest.approx([float(r["loss"]) for r in steps], rel=1e-6)
    accuracy = acc.Scalars("val/accuracy")
    assert [e.step for e in accuracy] == [int(r["step"]) for r in epochs] == [8, 16, 24]
    assert [e.value for e in accuracy] == pytest.approx(
        [float(r["val/accuracy"]) for r in epochs], rel=1e-6
    )
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx(
        [float(r["lr"]) for r in epochs], rel=1e-6
    )
    assert [e.value for e in acc.Scalars("epoch")] == [1, 2, 3]
    # hparams: the resolved config, flat
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    hp = {k: v.number_value or v.string_value for k, v in data.session_start_info.hparams.items()}
    assert hp["optimizer.lr"] == pytest.approx(0.003) and hp["model.name"] == "small_cnn"
    assert hp["trainer.max_epochs"] == 3 and hp["model.num_classes"] == 10
    # the report's PNGs, as images of their size
    summary = json.loads((logged / "summary.json").read_text())
    images = sorted(acc.Tags()["images"])
    assert images == sorted(
        f"report/{n}" for n, p in summary["report"].items() if p.endswith(".png")
    )
    from matplotlib.image import imread

    matrix = acc.Images("report/confusion_matrix")[0]
    height, width = imread(summary["report"]["confusion_matrix"]).shape[:2]
    assert (matrix.height, matrix.width) == (height, width)
    assert acc.Scalars("summary/best_value")[0].value == pytest.approx(summary["best_value"])


@pytest.mark.slow
def test_mlflow_store_holds_the_run(logged: Path) -> None:
    from mlflow.tracking import MlflowClient

    steps, epochs = _expected(logged)
    store = logged.parent / "mlflow.db"  # beside the config's runs
    assert store.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run1" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["optimizer.lr"] == "0.003" and params["model.num_classes"] == "10"
    history = client.get_metric_history(run.info.run_id, "step/loss")
    assert [(m.step, m.value) for m in history] == [
        (int(r["step"]), pytest.approx(float(r["loss"]))) for r in steps
    ]
    history = client.get_metric_history(run.info.run_id, "val/f1")
    assert [(m.step, m.value) for m in history] == [
        (int(r["step"]), pytest.approx(float(r["val/f1"]))) for r in epochs
    ]
    summary = json.loads((logged / "summary.json").read_text())
    assert run.data.metrics["summary/best_value"] == pytest.approx(summary["best_value"])
    assert run.data.tags["torchyard.best_checkpoint"] == summary["best_checkpoint"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "submission.csv", "report"} <= artifacts
    report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert report == {
        f"report/{Path(p).name}" for p in summary["report"].values() if p.endswith(".png")
    }
    local = Path(
        client.download_artifacts(run.info.run_id, "summary.json", str(logged.parent / "dl"))
    )
    assert json.loads(local.read_text()) == summary
    assert (logged.parent / "mlartifacts").is_dir()  # artifacts beside the store, not in the cwd


def _wandb_records(path: Path) -> Iterator[Any]:
    """The records of a ``.wandb`` file: wandb's LevelDB-style log of
    protobuf ``Record`` messages (32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            yield wandb_internal_pb2.Record.FromString(parts)
            parts = b""


@pytest.mark.slow
def test_wandb_offline_run_holds_the_run(logged: Path) -> None:
    steps, epochs = _expected(logged)
    (offline,) = (logged / "wandb").glob("offline-run-*")
    (records_file,) = offline.glob("run-*.wandb")
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for record in _wandb_records(records_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            assert record.run.project == "digits" and record.run.display_name == "run1"
            config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "history":
            history.append(
                {
                    "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                    for i in record.history.item
                }
            )
        elif kind == "summary":
            summary.update(
                {
                    "/".join(u.nested_key) or u.key: json.loads(u.value_json)
                    for u in record.summary.update
                }
            )
    assert config["optimizer.lr"] == 0.003 and config["model.num_classes"] == 10
    step_rows = [h for h in history if "step/loss" in h]
    assert [h["_step"] for h in step_rows] == [int(r["step"]) for r in steps]
    assert [h["step/loss"] for h in step_rows] == pytest.approx([float(r["loss"]) for r in steps])
    epoch_rows = [h for h in history if "val/accuracy" in h]
    assert [h["_step"] for h in epoch_rows] == [int(r["step"]) for r in epochs]
    assert [h["val/accuracy"] for h in epoch_rows] == pytest.approx(
        [float(r["val/accuracy"]) for r in epochs]
    )
    written = json.loads((logged / "summary.json").read_text())
    assert summary["best_value"] == pytest.approx(written["best_value"])
    assert summary["files/best_checkpoint"] == written["best_checkpoint"]
    # an image's fields are nested keys: report/confusion_matrix/_type, .../path
    (images,) = [h for h in history if "report/confusion_matrix/_type" in h]
    assert images["report/confusion_matrix/_type"] == "image-file"
    assert (offline / "files" / images["report/confusion_matrix/path"]).is_file()
    files = offline / "files"
    assert json.loads((files / "summary.json").read_text()) == written
    assert (files / "config.yaml").read_text() == (logged / "config.yaml").read_text()
    assert math.isfinite(written["best_value"])


@pytest.mark.slow
def test_kfold_folds_log_as_runs_of_their_own(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "digits" / "kf"
    result = cli(
        "run", "examples/digits.yaml", "-o", out,
        "-s", "split={method: kfold, folds: 2}", "-s", "data.val_fraction=0", "-s", "loggers=[{name: mlflow}]",
        "-s", "trainer.max_epochs=1", "-s", "trainer.limit_train_batches=3",
        "-s", "model.channels=8", "-s", "trainer.progress=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"kf-fold_0", "kf-fold_1"}
    assert {r.info.status for r in runs.values()} == {"FINISHED"}  # fold 1 ended too
    # the whole run's end (out-of-fold scores) goes to fold 0's loggers
    summary = json.loads((out / "summary.json").read_text())
    first = runs["kf-fold_0"]
    oof = first.data.metrics["summary/oof.val/accuracy"]
    assert oof == pytest.approx(summary["oof"]["val/accuracy"])
    assert "summary/oof.val/accuracy" not in runs["kf-fold_1"].data.metrics
    assert client.get_metric_history(runs["kf-fold_1"].info.run_id, "val/accuracy")


@pytest.mark.slow
def test_under_torchrun_only_process_0_logs(tmp_path: Path) -> None:
    import subprocess

    config = {
        "model": {"name": "mlp"},
        "data": {"name": "digits"},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "metrics": [{"name": "accuracy"}],
        "loader": {"batch_size": 64},
        "trainer": {"max_epochs": 1, "device": "cpu", "progress": False, "log_every_n_steps": 2},
        "loggers": [{"name": "tensorboard"}],
    }
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "torchyard", "run", "digits.yaml", "--out", "ddp",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (events,) = (tmp_path / "ddp" / "tensorboard").iterdir()  # one writer, not one per process
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    steps = _rows(tmp_path / "ddp" / "steps.csv")
    assert [e.step for e in acc.Scalars("step/loss")] == [int(r["step"]) for r in steps]
