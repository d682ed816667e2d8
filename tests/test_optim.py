"""Parameter groups, durations with units, warmup, and `torchyard lr`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.optim import (
    LRSchedule,
    ParamGroupConfig,
    TrainingLength,
    build_param_groups,
    preview_schedule,
)
from torchyard.plugins import PluginHost
from torchyard.run import Run, build_run, scale_group_lrs, steps_per_epoch

from .conftest import EXAMPLES


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
        self.head = torch.nn.Linear(4, 2)


def test_groups_by_prefix_with_scaled_lr() -> None:
    net = Net()
    groups = build_param_groups(
        net, [ParamGroupConfig(prefix="backbone", lr_scale=0.1)], no_decay_on_bias_and_norm=False
    )
    assert len(groups) == 2
    backbone, head = groups
    assert backbone["lr_scale"] == pytest.approx(0.1) and len(backbone["params"]) == 4
    assert "lr" not in head and len(head["params"]) == 2
    # the scale applies to the optimizer's own lr, once it is built
    optimizer = scale_group_lrs(torch.optim.SGD(groups, lr=0.5))
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.05), 0.5]
    assert all("lr_scale" not in g for g in optimizer.param_groups)


def test_no_weight_decay_on_bias_and_norm() -> None:
    groups = build_param_groups(Net(), [], no_decay_on_bias_and_norm=True)
    decayed = [g for g in groups if "weight_decay" not in g]
    undecayed = [g for g in groups if g.get("weight_decay") == 0.0]
    assert [p.ndim for g in decayed for p in g["params"]] == [2, 2]  # the two Linear weights
    assert sorted(p.ndim for g in undecayed for p in g["params"]) == [1, 1, 1, 1]


def test_freeze_and_explicit_lr() -> None:
    net = Net()
    groups = build_param_groups(
        net,
        [ParamGroupConfig(prefix="backbone", freeze=True), ParamGroupConfig(prefix="head", lr=0.5, weight_decay=0.0)],

        no_decay_on_bias_and_norm=False,
    )
    assert len(groups) == 1 and groups[0]["lr"] == 0.5 and groups[0]["weight_decay"] == 0.0
    assert not any(p.requires_grad for p in net.backbone.parameters())


def test_prefix_must_match_something() -> None:
    with pytest.raises(ConfigError, match=r"param_groups.0.prefix: 'backbon' matches no parameter; did you mean 'backbone'"):
        build_param_groups(Net(), [ParamGroupConfig(prefix="backbon")], no_decay_on_bias_and_norm=False)


def test_everything_frozen_is_an_error() -> None:
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        build_param_groups(
            Net(),
            [ParamGroupConfig(prefix="backbone", freeze=True), ParamGroupConfig(prefix="head", freeze=True)],

            no_decay_on_bias_and_norm=False,
        )


def make(data: dict[str, Any], host: PluginHost, tmp_path: Path) -> Run:
    return build_run(validate_config(data, host.registry), host, tmp_path)


def lrs(run: Run, config: dict[str, Any]) -> list[float]:
    cfg = validate_config(config, run.host.registry)
    length = TrainingLength(cfg.trainer.max_epochs, steps_per_epoch(run.data, cfg))  # type: ignore[attr-defined]
    return [r[2][0] for r in preview_schedule(run.scheduler, run.optimizer, length)]


@pytest.fixture
def config(digits_config: dict[str, Any]) -> dict[str, Any]:
    # 1150 training images / batch 64 = 18 batches; accumulate 2 -> 9 optimizer steps per epoch
    digits_config["optimizer"] = {"name": "sgd", "lr": 1.0}
    digits_config["trainer"].update(max_epochs=4, accumulate_grad_batches=2)
    return digits_config


def test_steps_per_epoch_counts_accumulation(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    run = make(config, builtin_host, tmp_path)
    assert steps_per_epoch(run.data, validate_config(config, builtin_host.registry)) == 9


def test_cosine_defaults_to_the_whole_run(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["scheduler"] = {"name": "cosine_annealing_lr"}
    run = make(config, builtin_host, tmp_path)
    assert run.scheduler is not None and run.scheduler.interval == "epoch"
    assert run.scheduler.scheduler.T_max == 4
    values = lrs(run, config)
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(3 / 4 * torch.pi)).item()))


def test_durations_in_steps_make_the_scheduler_step_per_step(
    builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path
) -> None:
    config["scheduler"] = {"name": "step_lr", "step_size": "3 steps", "gamma": 0.5}
    run = make(config, builtin_host, tmp_path)
    assert run.scheduler is not None and run.scheduler.interval == "step"
    assert lrs(run, config)[:7] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_durations_in_epochs_convert_when_stepping_per_step(
    builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path
) -> None:
    config["scheduler"] = {"name": "multi_step_lr", "milestones": ["1 epoch", 20], "interval": "step"}
    run = make(config, builtin_host, tmp_path)
    assert run.scheduler is not None and sorted(run.scheduler.scheduler.milestones) == [9, 180]


def test_one_cycle_spans_the_whole_run(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["scheduler"] = {"name": "one_cycle_lr"}
    run = make(config, builtin_host, tmp_path)
    assert run.scheduler is not None
    assert run.scheduler.scheduler.total_steps == 36
    values = lrs(run, config)
    assert 0.99 < max(values) <= 1.0  # peaks at the optimizer's lr
    assert values[-1] < 1e-3


def test_warmup_ramps_then_hands_over(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["scheduler"] = {"name": "cosine_annealing_lr", "warmup": {"duration": "1 epoch", "start_factor": 0.1}}
    run = make(config, builtin_host, tmp_path)
    assert run.scheduler is not None and run.scheduler.scheduler.T_max == 3  # the rest of the run
    values = lrs(run, config)
    assert values[:9] == pytest.approx([0.1 + 0.9 * i / 9 for i in range(9)])
    assert values[9:18] == pytest.approx([1.0] * 9)  # epoch 2: the cosine starts at the base LR
    assert values[18] < 1.0


def test_warmup_composes_with_plateau(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["scheduler"] = {
        "name": "reduce_lr_on_plateau",
        "patience": 0,
        "factor": 0.5,
        "warmup": {"duration": "2 epochs", "start_factor": 0.5},
    }
    config["trainer"]["max_epochs"] = 5
    values = lrs(make(config, builtin_host, tmp_path), config)
    assert values[0] == 0.5 and values[17] < 1.0  # ramping through epochs 1-2
    # epochs 3-4 at the base LR (the plateau's first value is its best), epoch 5 reduced
    assert values[18:36] == pytest.approx([1.0] * 18)
    assert values[36:] == pytest.approx([0.5] * 9)


def test_plateau_cannot_step_per_step(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["scheduler"] = {"name": "reduce_lr_on_plateau", "interval": "step"}
    with pytest.raises(ConfigError, match="'reduce_lr_on_plateau' steps per metric; it cannot step per step"):
        make(config, builtin_host, tmp_path)


@pytest.mark.parametrize("bad", ["10 epochz", "-3", "ten steps", True])
def test_bad_durations_are_config_errors(builtin_host: PluginHost, config: dict[str, Any], bad: Any) -> None:
    config["scheduler"] = {"name": "cosine_annealing_lr", "T_max": bad}
    with pytest.raises(ConfigError, match="scheduler.T_max"):
        validate_config(config, builtin_host.registry)


def test_param_groups_from_config(builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path) -> None:
    config["optimizer"] = {
        "name": "adamw",
        "lr": 0.01,
        "weight_decay": 0.05,
        "no_weight_decay_on_bias_and_norm": True,
        "param_groups": [{"prefix": "features", "lr_scale": 0.1}],
    }
    run = make(config, builtin_host, tmp_path)
    assert run.optimizer is not None
    by_lr = {(g["lr"], g["weight_decay"]) for g in run.optimizer.param_groups}
    assert by_lr == {(0.001, 0.05), (0.001, 0.0), (0.01, 0.05), (0.01, 0.0)}


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")
def test_schedule_state_round_trips() -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    inner = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    schedule = LRSchedule(optimizer, inner, "step", warmup_steps=2)
    for _ in range(4):
        schedule.after_optimizer_step()
    state = schedule.state_dict()
    optimizer2 = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    copy = LRSchedule(optimizer2, torch.optim.lr_scheduler.StepLR(optimizer2, step_size=1, gamma=0.5), "step", warmup_steps=2)
    copy.load_state_dict(state)
    assert copy.steps == 4 and copy.scheduler.last_epoch == inner.last_epoch


def test_lr_command_prints_and_plots(cli: Any, tmp_path: Path) -> None:
    png = tmp_path / "lr.png"
    result = cli("lr", EXAMPLES / "digits.yaml", "--set", "scheduler.warmup.duration=1 epoch", "--png", png)
    assert result.exit_code == 0, result.output
    assert "12 epochs x 36 optimizer steps" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    every = cli("lr", EXAMPLES / "digits.yaml", "--every-step")
    assert every.stdout.count("\n") > 400


def test_explicit_epoch_interval_refuses_step_durations(
    builtin_host: PluginHost, config: dict[str, Any], tmp_path: Path
) -> None:
    config["scheduler"] = {"name": "cosine_annealing_lr", "T_max": "200 steps", "interval": "epoch"}
    with pytest.raises(ConfigError, match="'epoch' cannot honour the duration '200 steps'"):
        make(config, builtin_host, tmp_path)
