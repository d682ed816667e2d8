"""docs/hooks.md: the callback example runs, acts and keeps its state."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import torch

from torchyard.checkpoint import load_checkpoint
from torchyard.config import validate_config
from torchyard.loop import Trainer
from torchyard.plugins import PluginHost
from torchyard.run import build_run

from .conftest import ROOT

RUNNABLE = re.compile(r"<!-- runnable: (\S+) -->\n```python\n(.*?)^```", re.S | re.M)


def _example(tmp_path: Path, name: str) -> Any:
    blocks = dict(RUNNABLE.findall((ROOT / "docs" / "hooks.md").read_text()))
    path = tmp_path / name
    path.write_text(blocks[name])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def test_the_grad_guard_example_skips_spiking_steps_and_keeps_its_count(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    module = _example(tmp_path, "grad_guard.py")
    assert builtin_host.add_plugin(module, "grad-guard").status == "ok"
    # a factor just above 1 makes most steps "spike": they are skipped, and counted
    digits_config["callbacks"] = [{"name": "grad_guard", "factor": 1.01, "momentum": 0.5}]
    digits_config["optimizer"] = {"name": "sgd", "lr": 0.1}
    digits_config["trainer"].update(max_epochs=2, limit_train_batches=6)
    (tmp_path / "run").mkdir()
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path / "run")
    Trainer(run).fit()
    guard = run.hooks.callbacks[0]
    assert 0 < guard.skipped < 12
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["callbacks"]["callbacks.0:grad_guard"]
    assert state == {"mean": guard.mean, "skipped": guard.skipped}
    assert f"[grad_guard] epoch 2: {guard.skipped} step(s) skipped so far" in capsys.readouterr().out
    sys.modules.pop("grad_guard", None)


def test_without_the_guard_no_step_is_skipped(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    module = _example(tmp_path, "grad_guard.py")
    guard = module.GradGuard(factor=1e9)
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    before = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    run = type("R", (), {"model": model})()
    guard.on_after_backward(run)
    guard.on_after_backward(run)
    assert guard.skipped == 0
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before, strict=True))
    sys.modules.pop("grad_guard", None)
