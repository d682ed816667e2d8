"""Every built-in component, through the registry: schemas, construction."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from torchyard.plugins import PluginHost, get_host
from torchyard_builtins.optimizers import OPTIMIZERS, UNSUPPORTED
from torchyard_builtins.schedulers import SCHEDULERS

ALL = [(r.kind, r.name) for r in get_host().registry.records()]


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_every_builtin_has_a_documented_schema(builtin_host: PluginHost, kind: str, name: str) -> None:
    record = builtin_host.registry.get(kind, name)
    assert record.summary, f"{kind} {name} has no description"
    params = record.params
    assert params.model_config.get("extra") == "forbid"
    for field_name, info in params.model_fields.items():
        assert info.description, f"{kind} {name}: parameter {field_name} is undocumented"
    params.model_json_schema()  # editors need it


def test_every_torch_optimizer_is_registered_or_explained() -> None:
    classes = {
        n
        for n, c in vars(torch.optim).items()
        if inspect.isclass(c) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
    }
    registered = {class_name for class_name, _ in OPTIMIZERS.values()}
    assert classes - registered - set(UNSUPPORTED) == set(), "register the new torch optimizers"
    assert registered <= classes


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_builds_with_defaults(builtin_host: PluginHost, name: str) -> None:
    record = builtin_host.registry.get("optimizer", name)
    model = torch.nn.Linear(4, 2)
    params = record.params()  # all defaults
    weights = [p for p in model.parameters() if p.ndim == 2 or name != "muon"]  # muon: 2-D only
    optimizer = record.build(weights, **dict(params))
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_declares_a_valid_interval(builtin_host: PluginHost, name: str) -> None:
    record = builtin_host.registry.get("scheduler", name)
    assert record.options["interval"] in ("epoch", "step", "metric")


def _scheduler_params(name: str) -> dict[str, Any]:
    return {
        "step_lr": {"step_size": 2},
        "multi_step_lr": {"milestones": [1, 2]},
        "exponential_lr": {"gamma": 0.9},
        "cosine_annealing_lr": {"T_max": 4},
        "cosine_annealing_warm_restarts": {"T_0": 2},
        "one_cycle_lr": {"total_steps": 10},
    }.get(name, {})


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_builds(builtin_host: PluginHost, name: str) -> None:
    record = builtin_host.registry.get("scheduler", name)
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    params = record.params(**_scheduler_params(name))
    scheduler = record.build(optimizer, **dict(params))
    optimizer.step()
    scheduler.step(1.0) if record.options["interval"] == "metric" else scheduler.step()
