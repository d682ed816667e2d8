"""The run config: validation, errors, overrides, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from torchyard.config import (
    ComponentSpec,
    MetricSpec,
    OptimizerSpec,
    RunConfig,
    SchedulerSpec,
    apply_overrides,
    build_config_model,
    jsonable_config,
    load_config,
    metric_key,
    read_config_file,
    record_of,
    resolve_monitor,
    validate_config,
)
from torchyard.errors import ConfigError
from torchyard.plugins import PluginHost

from .conftest import EXAMPLES


def problems(data: dict[str, Any], host: PluginHost) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data, host.registry)
    return list(info.value.problems)


def test_example_config_is_valid(builtin_host: PluginHost) -> None:
    config: Any = load_config(EXAMPLES / "digits.yaml", builtin_host.registry)
    assert record_of(config.optimizer).name == "adamw"
    assert config.optimizer.lr == pytest.approx(0.003)
    assert [record_of(m).name for m in config.metrics] == ["accuracy", "f1"]
    assert resolve_monitor(config) == "val/accuracy"


def test_component_names_are_forgiving(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["optimizer"] = {"name": "AdamW", "lr": 0.1}
    digits_config["scheduler"] = {"name": "CosineAnnealingLR", "T_max": 3}
    config: Any = validate_config(digits_config, builtin_host.registry)
    assert record_of(config.optimizer).name == "adamw"
    assert record_of(config.scheduler).name == "cosine_annealing_lr"


def test_every_problem_is_reported_at_once_with_its_path(
    builtin_host: PluginHost, digits_config: dict[str, Any]
) -> None:
    digits_config["optimizer"] = {"name": "adamw", "lr": -1, "lerning_rate": 0.1}
    digits_config["model"]["chanels"] = 3
    digits_config["metrics"][1]["average"] = "mac"
    digits_config["trainer"].update(max_epochs=0, device="gpu")
    digits_config["loader"]["batch_size"] = "lots"
    assert sorted(problems(digits_config, builtin_host)) == sorted(
        [
            "optimizer.lr: expected a number > 0, got -1",
            "optimizer.lerning_rate: unknown key; did you mean 'learning_rate'?"
            if False
            else "optimizer.lerning_rate: unknown key",
            "model.chanels: unknown key; did you mean 'channels' or 'in_channels'?",
            "metrics.1.average: expected 'macro', 'micro' or 'weighted', got 'mac'",
            "trainer.max_epochs: expected a number >= 1, got 0",
            "trainer.device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'",
            "loader.batch_size: expected an integer, got 'lots'",
        ]
    )


def test_unknown_key_suggestion_in_params(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["loss"] = {"name": "cross_entropy", "label_smothing": 0.1}
    assert problems(digits_config, builtin_host) == [
        "loss.label_smothing: unknown key; did you mean 'label_smoothing'?"
    ]


def test_unknown_component_suggests(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["optimizer"] = {"name": "adamm"}
    digits_config["metrics"] = [{"name": "acuracy"}]
    optimizer, metric = problems(digits_config, builtin_host)
    assert optimizer == "optimizer: unknown optimizer 'adamm'; did you mean 'adam', 'radam' or 'nadam'?"
    assert metric.startswith("metrics.0: unknown metric 'acuracy'; did you mean 'accuracy'")


def test_missing_and_malformed_sections(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    del digits_config["loss"]
    digits_config["optimizer"] = "adam"
    digits_config["model"] = {"channels": 8}
    digits_config["data"] = {"name": 3}
    digits_config["trainr"] = {}
    assert sorted(problems(digits_config, builtin_host)) == sorted(
        [
            "loss: required, but missing",
            "optimizer: expected a mapping like {name: ..., <params>}, got 'adam'",
            "model: missing 'name' (which model to use)",
            "data.name: expected a dataset name, got 3",
            "trainr: unknown key; did you mean 'trainer' or 'transforms'?",
        ]
    )


def test_monitor_must_be_logged(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["trainer"]["monitor"] = "val/acc"
    assert problems(digits_config, builtin_host) == [
        "trainer.monitor: 'val/acc' is never logged by this run; "
        "did you mean 'val/accuracy' or 'val/f1'?"
    ]


def test_default_monitor(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config: Any = validate_config(digits_config, builtin_host.registry)
    assert resolve_monitor(config) == "val/accuracy"
    digits_config["metrics"] = []
    config = validate_config(digits_config, builtin_host.registry)
    assert resolve_monitor(config) == "val/loss"


def test_metric_keys_must_be_distinct(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["metrics"] = [{"name": "f1"}, {"name": "f1", "average": "micro"}]
    assert problems(digits_config, builtin_host) == [
        "metrics.1: logs as 'val/f1' like an earlier metric; give it a distinct log_as"
    ]
    digits_config["metrics"][1]["log_as"] = "f1_micro"
    digits_config["trainer"]["monitor"] = "val/f1_micro"
    validate_config(digits_config, builtin_host.registry)


def test_loader_cross_checks(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["loader"].update(num_workers=0, persistent_workers=True, prefetch_factor=2)
    assert problems(digits_config, builtin_host) == [
        "loader.persistent_workers: needs num_workers > 0",
        "loader.prefetch_factor: needs num_workers > 0",
    ]
    # with num_workers: auto they apply when workers are picked (and are moot when none are)
    digits_config["loader"]["num_workers"] = "auto"
    validate_config(digits_config, builtin_host.registry)


def test_precision_accepts_numbers(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["trainer"]["precision"] = 32
    config: Any = validate_config(digits_config, builtin_host.registry)
    assert config.trainer.precision == "32"


def test_overrides() -> None:
    data = {"optimizer": {"name": "adam", "lr": 0.1}, "metrics": [{"name": "accuracy"}]}
    out = apply_overrides(
        data,
        ["optimizer.lr=1e-2", "trainer.max_epochs=3", "metrics.0.name=f1", "trainer.early_stopping={patience: 2}"],
    )
    assert out["optimizer"]["lr"] == 0.01
    assert out["trainer"] == {"max_epochs": 3, "early_stopping": {"patience": 2}}
    assert out["metrics"][0]["name"] == "f1"
    assert data["optimizer"]["lr"] == 0.1  # the original is untouched


def test_override_errors() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({"metrics": [{}]}, ["novalue", "metrics.5.name=x", "metrics.a=1"])
    assert info.value.problems == (
        "--set 'novalue': expected KEY=VALUE, e.g. optimizer.lr=0.01",
        "--set metrics.5.name: 'metrics.5': index out of range (list has 1 items)",
        "--set metrics.a: 'metrics' is a list; use an index",
    )


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: small_cnn\n  channels: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        read_config_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "config file is empty"), ("- a\n- b\n", "a config is a mapping of sections")],
)
def test_config_must_be_a_mapping(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        read_config_file(tmp_path / "nope.yaml")


def test_json_configs_are_accepted(
    builtin_host: PluginHost, digits_config: dict[str, Any], write_config: Any
) -> None:
    path = write_config(digits_config, "config.json")
    config: Any = load_config(path, builtin_host.registry, ["optimizer.lr=0.5"])
    assert config.optimizer.lr == 0.5


def test_yaml_exponent_numbers_are_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optimizer: {name: adam, lr: 1e-3, eps: 5E-8}\n")
    assert read_config_file(path)["optimizer"] == {"name": "adam", "lr": 0.001, "eps": 5e-8}


def test_yaml_is_parsed_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_config_file(path)


def test_schema_covers_every_component(builtin_host: PluginHost) -> None:
    schema = build_config_model(builtin_host.registry).model_json_schema()
    assert set(schema["required"]) == {"model", "data", "loss", "optimizer"}
    names = {
        (key.split("_")[0], definition["properties"]["name"].get("const"))
        for key, definition in schema["$defs"].items()
        if "name" in definition.get("properties", {})
    }
    for record in builtin_host.registry.records():
        assert (record.kind, record.name) in names, record.qualified_name
    adamw = next(v for k, v in schema["$defs"].items() if k.endswith("builtin-optimizers_adamw"))
    assert adamw["properties"]["lr"]["exclusiveMinimum"] == 0
    assert adamw["additionalProperties"] is False


def test_schema_validates_the_example_config(builtin_host: PluginHost) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = build_config_model(builtin_host.registry).model_json_schema()
    example = read_config_file(EXAMPLES / "digits.yaml")
    jsonschema.validate(example, schema)
    example["optimizer"]["lr"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


def test_requires_is_checked_first(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["requires"] = ["torchyard>=0.1", "torchyard-not-installed-anywhere>=1.0", "torchyard>=99"]
    digits_config["loss"] = {"name": "from_the_missing_plugin"}
    assert problems(digits_config, builtin_host) == [
        "requires.1: torchyard-not-installed-anywhere is not installed; "
        "install it with: torchyard install 'torchyard-not-installed-anywhere>=1.0'",
        "requires.2: 'torchyard>=99' needs another version than the installed torchyard 0.1.0; "
        "install it with: torchyard install 'torchyard>=99'",
    ]


def test_requires_must_be_valid(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["requires"] = ["not a requirement!"]
    (problem,) = problems(digits_config, builtin_host)
    assert problem.startswith("requires.0: 'not a requirement!' is not a valid requirement")


def test_relative_paths_resolve_against_the_config_file(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    import torchyard

    def reader(source: Path, others: list[Path] | None = None, label: str = "x") -> None:
        """A writer taking paths."""

    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("reader", reader)

    builtin_host.add_plugin(Plugin(), "paths")
    digits_config["writer"] = {"name": "reader", "source": "data/info.csv", "others": ["a.csv", "/abs/b.csv"], "label": "rel"}
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.json"
    import json

    path.write_text(json.dumps(digits_config))
    config: Any = load_config(path, builtin_host.registry)
    assert config.writer.source == tmp_path / "configs" / "data" / "info.csv"
    assert config.writer.others == [tmp_path / "configs" / "a.csv", Path("/abs/b.csv")]
    assert config.writer.label == "rel"  # strings are not paths


def test_validating_builds_only_the_components_a_config_names(tmp_path: Path) -> None:
    """Schemas derived from factories import them; a config naming a small CNN
    must not pay for importing torchvision's 80 models."""
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {name: small_cnn}\ndata: {name: digits}\nloss: {name: cross_entropy}\n"
        "optimizer: {name: adamw}\nmetrics: [{name: accuracy}]\n"
    )
    code = (
        "import sys; from torchyard.plugins import get_host; from torchyard.config import load_config; "
        f"load_config({str(config)!r}, get_host().registry); "
        "print('torchvision.models' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_validated_config_is_typed(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    digits_config["scheduler"] = {"name": "step_lr", "step_size": "2 epochs"}
    digits_config["metrics"][1]["log_as"] = "f1_macro"
    digits_config["transforms"] = {"train": [{"name": "random_horizontal_flip"}]}
    digits_config["tta"] = [[{"name": "random_horizontal_flip", "p": 1.0}]]
    config = validate_config(digits_config, builtin_host.registry)
    assert isinstance(config, RunConfig)
    assert isinstance(config.model, ComponentSpec)
    assert isinstance(config.optimizer, OptimizerSpec)
    assert isinstance(config.scheduler, SchedulerSpec)
    assert all(isinstance(m, MetricSpec) for m in config.metrics)
    assert config.optimizer.record is builtin_host.registry.get("optimizer", "adamw")
    assert record_of(config.optimizer) is config.optimizer.record
    assert [metric_key(m) for m in config.metrics] == ["accuracy", "f1_macro"]
    assert config.scheduler.interval is None and config.scheduler.step_size == "2 epochs"
    # the factory's own arguments: no name, no log_as, no param_groups
    f1 = config.metrics[1]
    assert set(f1.factory_kwargs()) == set(f1.record.params.model_fields) == set(type(f1).model_fields) - {"name", "log_as"}
    assert set(config.optimizer.factory_kwargs()) == set(config.optimizer.record.params.model_fields)
    names = [spec.record.name for spec in config.specs()]
    assert names == [
        "small_cnn", "digits", "cross_entropy", "adamw", "step_lr", "accuracy", "f1", "csv",
        "random_horizontal_flip", "random_horizontal_flip", "classification",
    ]
    # the task the config leaves out is the one its dataset declares
    assert config.task is not None and config.task.record.name == "classification"
    assert [s.record.kind for s in config.specs("transform")] == ["transform", "transform"]
    assert type(config).broken == {}


def test_record_of_refuses_what_is_not_a_component(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = validate_config(digits_config, builtin_host.registry)
    with pytest.raises(TypeError, match="TrainerConfig is not a component section"):
        record_of(config.trainer)


def test_the_written_config_has_no_record_key(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = validate_config(digits_config, builtin_host.registry)
    data = jsonable_config(config)
    assert list(data) == [
        "requires", "trainer", "loader", "split", "transforms", "tta",
        "model", "data", "loss", "optimizer", "scheduler", "metrics", "writer", "task", "callbacks", "loggers",
    ]
    assert data["model"] == {"num_classes": None, "in_channels": None, "channels": 8, "dropout": 0.1, "name": "small_cnn"}
    assert list(data["metrics"][1])[-2:] == ["name", "log_as"]
    assert "record" not in json.dumps(data)


def test_broken_components_are_kept_on_the_model(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    import torchyard

    def needs_a_tensor(weights: torch.Tensor) -> None:
        """A writer no config can build."""

    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("tensor_writer", needs_a_tensor)

    builtin_host.add_plugin(Plugin(), "broken-writers")
    model = build_config_model(builtin_host.registry)
    assert "cannot derive a params schema" in model.broken["broken-writers:tensor_writer"]
    digits_config["writer"] = {"name": "tensor_writer"}
    (problem,) = problems(digits_config, builtin_host)
    assert problem.startswith("writer: writer 'tensor_writer' from plugin broken-writers: cannot derive")


def test_relative_paths_resolve_in_every_section_tta_included(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    import torchyard

    def lut(table: Path = Path("lut.csv")) -> Any:
        """A transform reading a lookup table."""
        return lambda x: x

    class Plugin:
        @torchyard.hookimpl
        def register_transforms(self, register: Any) -> None:
            register("lut", lut)

    builtin_host.add_plugin(Plugin(), "luts")
    digits_config["transforms"] = {"eval": [{"name": "lut", "table": "eval.csv"}]}
    digits_config["tta"] = [[{"name": "lut", "table": "tta.csv"}]]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(digits_config))
    config = load_config(path, builtin_host.registry)
    assert config.transforms.eval[0].table == tmp_path / "eval.csv"  # type: ignore[attr-defined]
    assert config.tta[0][0].table == tmp_path / "tta.csv"  # type: ignore[attr-defined]
