"""A plugin's wrong return is reported as that plugin's: one line, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import torchyard

from .conftest import fake_entry_points


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": {"name": "vector_loss"}}, "loss 'vector_loss' from plugin mistakes: expected a scalar tensor, got shape (8,)"),
        ({"metrics": [{"name": "vector_metric"}]}, "metric 'vector_metric' from plugin mistakes: compute() must give a number, got a tensor of shape (8,)"),
        ({"optimizer": {"name": "not_an_optimizer"}}, "optimizer 'not_an_optimizer' from plugin mistakes: expected a torch.optim.Optimizer, got dict"),
        ({"scheduler": {"name": "no_scheduler"}}, "scheduler 'no_scheduler' from plugin mistakes: expected an LR scheduler with step(), got NoneType"),
    ],
    ids=["loss-vector", "metric-vector", "optimizer-type", "scheduler-none"],
)
def test_a_plugin_mistake_before_training_names_the_plugin(
    change: dict[str, Any], message: str, cli: Any, write_config: Any, digits_config: dict[str, Any],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, {"mistakes": "tests.plugins.mistakes"})
    digits_config.update(change)
    if "metrics" in change:
        digits_config["trainer"]["monitor"] = "val/loss"
    out = tmp_path / "run"
    result = cli("run", write_config(digits_config), "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {message}"
    assert not out.exists()  # found before anything was written


@pytest.mark.slow
def test_a_writer_returning_nothing_names_the_plugin_and_keeps_the_checkpoints(
    cli: Any, write_config: Any, digits_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(monkeypatch, {"mistakes": "tests.plugins.mistakes"})
    digits_config["writer"] = {"name": "silent_writer"}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=3)
    out = tmp_path / "run"
    result = cli("run", write_config(digits_config), "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        "error: writer 'silent_writer' from plugin mistakes: write() must return the path of the file it wrote, got None"
    )
    assert (out / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize(("kind", "parameter"), [("scheduler", "warmup"), ("scheduler", "interval"), ("metric", "log_as"), ("optimizer", "param_groups")])
def test_a_parameter_named_like_a_key_torchyard_adds_is_refused(kind: str, parameter: str) -> None:
    from torchyard.config import section_model
    from torchyard.errors import PluginError
    from torchyard.plugins import PluginHost

    def factory(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("never built")

    exec_ns: dict[str, Any] = {}
    positional = "optimizer, " if kind == "scheduler" else "params, " if kind == "optimizer" else ""
    exec(f"def made({positional}{parameter}: int = 1):\n    return None", exec_ns)  # noqa: S102 - a factory with that parameter

    class Plugin:
        @torchyard.hookimpl
        def register_schedulers(self, register: Any) -> None:
            if kind == "scheduler":
                register("x", exec_ns["made"], interval="epoch")

        @torchyard.hookimpl
        def register_metrics(self, register: Any) -> None:
            if kind == "metric":
                register("x", exec_ns["made"])

        @torchyard.hookimpl
        def register_optimizers(self, register: Any) -> None:
            if kind == "optimizer":
                register("x", exec_ns["made"])

    host = PluginHost()
    host.add_plugin(Plugin(), "p")
    with pytest.raises(PluginError, match=rf"{kind} 'x' from plugin p: its parameter '{parameter}' is a key torchyard adds"):
        section_model(host.registry.get(kind, "x"))


def test_an_exception_in_a_components_code_during_training_names_it(
    cli: Any, write_config: Any, digits_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(monkeypatch, {"mistakes": "tests.plugins.mistakes"})
    digits_config["model"] = {"name": "exploding"}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=2)
    result = cli("run", write_config(digits_config), "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "error: model 'exploding' from plugin mistakes failed: RuntimeError: boom in forward"
    debug = cli("run", write_config(digits_config), "--out", tmp_path / "debug", env={"TORCHYARD_DEBUG": "1"})
    assert isinstance(debug.exception, torchyard.PluginError)  # the traceback, for the plugin's author
    assert isinstance(debug.exception.__cause__, RuntimeError)


def test_schema_skips_and_names_an_unusable_component(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    fake_entry_points(monkeypatch, {"reserved": "tests.plugins.reserved_param"})
    result = cli("schema")
    assert result.exit_code == 0
    json.loads(result.stdout)  # the schema of everything else
    assert "warning: reserved:x is left out of the schema: metric 'x' from plugin reserved" in result.stderr
    assert "its parameter 'log_as' is a key torchyard adds" in result.stderr


def test_a_params_model_pydantic_cannot_complete_is_the_plugins_and_breaks_nothing_else(
    cli: Any, write_config: Any, digits_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    fake_entry_points(monkeypatch, {"unresolvable": "tests.plugins.unresolvable_params"})
    schema = cli("schema")
    assert schema.exit_code == 0 and json.loads(schema.stdout)["properties"]["loss"]
    assert "unresolvable:unresolvable is left out of the schema: loss 'unresolvable' from plugin unresolvable" in schema.stderr
    digits_config["loss"] = {"name": "unresolvable"}
    checked = cli("check", write_config(digits_config))
    assert checked.exit_code == 2
    assert "loss 'unresolvable' from plugin unresolvable: its params schema is unusable" in checked.stderr
    assert cli("list", "losses").exit_code == 0


def test_no_error_line_quotes_an_unbounded_value(cli: Any, write_config: Any, digits_config: dict[str, Any]) -> None:
    digits_config["requires"] = ["x" * 20000]
    digits_config["loss"] = {"name": "y" * 20000}
    result = cli("check", write_config(digits_config))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines and all(len(line) <= 1020 for line in lines), [len(line) for line in lines]
