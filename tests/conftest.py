"""Shared fixtures: plugin hosts, configs and CLI helpers."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from torchyard.plugins import PluginHost, reset_host

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _fresh_global_host() -> Iterator[None]:
    """Every test starts without a cached process-wide host."""
    reset_host()
    yield
    reset_host()


@pytest.fixture
def empty_host() -> PluginHost:
    """A host with no plugin at all (entry points not loaded)."""
    return PluginHost()


@pytest.fixture
def builtin_host() -> PluginHost:
    """A host with the entry-point plugins, as the CLI loads them."""
    host = PluginHost()
    host.load_entrypoints()
    return host


def fake_entry_points(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], *, keep_real: bool = True
) -> None:
    """Make ``importlib.metadata.entry_points(group='torchyard')`` also
    return ``extra`` (entry-point name -> 'module' or 'module:attr')."""
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") != "torchyard":
            return real(**kwargs)  # other libraries' lookups (triton's .select()) stay as they are
        found = list(real(**kwargs)) if keep_real else []
        if kwargs.get("group") == "torchyard":
            found += [
                importlib.metadata.EntryPoint(name, value, "torchyard")
                for name, value in extra.items()
            ]
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


@pytest.fixture
def digits_config() -> dict[str, Any]:
    """A small, fast digits config (a couple of epochs on a subset)."""
    return {
        "model": {"name": "small_cnn", "channels": 8},
        "data": {"name": "digits"},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "metrics": [{"name": "accuracy"}, {"name": "f1"}],
        "writer": {"name": "csv"},
        "loader": {"batch_size": 64},
        "trainer": {"max_epochs": 2, "progress": False, "seed": 0},
    }


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    """Write a config dict to a YAML file and return its path."""

    def write(data: dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if name.endswith(".json"):
            path.write_text(json.dumps(data))
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def feed_in_chunks(metric: Any, outputs: Any, targets: Any, chunks: int = 3) -> float:
    """Update ``metric`` in several chunks, as the loop does, then compute."""
    import numpy as np
    import torch

    for o, t in zip(np.array_split(outputs, chunks), np.array_split(targets, chunks), strict=True):
        if len(t):
            metric.update(torch.as_tensor(o), torch.as_tensor(t))
    return float(metric.compute())


class Cli:
    """Runs the real typer app in-process and keeps stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        from torchyard.cli import app

        reset_host()
        result = self.runner.invoke(app, [str(a) for a in args], env=env)
        reset_host()
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()
