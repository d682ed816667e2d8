"""A conformance kit for plugin authors: call it from your own test suite.

::

    # tests/test_conformance.py of a plugin package
    import my_plugin
    from torchyard.testing import check_plugin

    def test_my_plugin_conforms():
        check_plugin(my_plugin)

:func:`check_plugin` registers the plugin in a fresh host (fail-soft
loading turned into a hard failure), then checks every component it
registers, by kind:

- every component builds with its default params (or with ``params`` you
  pass for components that have required ones);
- models map a random batch to ``(batch, num_classes)`` outputs;
- datasets return a :class:`~torchyard.data.DataBundle` with a non-empty
  train split and one test id per test sample;
- losses return a finite scalar with finite gradients, for random input of
  their declared ``targets`` kind, plain and over-confident;
- optimizers and schedulers step;
- metrics honour update/compute/reset: updates in chunks give what one
  update gives, reset starts over, and ``higher_is_better`` is a bool;
- writers write the file they return, inside the run directory;
- transforms are callables that take a uint8 image tensor (or a float one);
- a component of any other kind builds.

Each kind names its check in the table of kinds (:mod:`torchyard.kinds`).

It also checks the registration itself: a name another installed plugin
(a built-in, say) already has, a parameter named like a key torchyard adds
to the section (``warmup``, ``log_as``, ...), and, for a plugin module,
heavy modules (torch and the like) imported just to register, measured in a
fresh interpreter with the registration's time.

Every failure is collected; one ``AssertionError`` lists them all. The
built-in components pass this kit too (torchyard's own tests run it).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sized
from pathlib import Path
from typing import Any

from torchyard import kinds
from torchyard.errors import TorchyardError
from torchyard.kinds import TASK_ALIASES
from torchyard.plugins import PluginHost
from torchyard.registry import ComponentRecord, normalize_name

__all__ = ["check_component", "check_plugin", "random_batch"]

#: What a run would offer factories that ask for these by name.
CONTEXT: dict[str, Any] = {"num_classes": 3, "in_channels": 3, "input_shape": (3, 16, 16)}


def random_batch(targets: str, *, n: int = 24, classes: int = 3, seed: int = 0, scale: float = 1.0) -> tuple[Any, Any]:
    """Random ``(outputs, targets)`` of a targets kind (see ``TARGET_KINDS``).

    Every class appears among class targets when ``n >= classes``.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    targets = TASK_ALIASES.get(targets, targets)
    if targets == "classification":
        labels = torch.randperm(n, generator=g) % classes
        return torch.randn(n, classes, generator=g) * scale, labels
    if targets == "binary":
        labels = (torch.randperm(n, generator=g) % 2).float()
        return torch.randn(n, 1, generator=g) * scale, labels
    if targets == "multilabel":
        return torch.randn(n, classes, generator=g) * scale, (torch.rand(n, classes, generator=g) < 0.5).float()
    if targets == "regression":
        return torch.randn(n, 1, generator=g) * scale, torch.randn(n, generator=g)
    if targets == "ranking":
        return torch.randn(n, 8, generator=g) * scale, torch.randint(0, 4, (n, 8), generator=g).float()
    raise ValueError(f"no random batch for targets kind {targets!r}")


def check_plugin(
    plugin: object,
    *,
    name: str = "plugin-under-test",
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ComponentRecord]:
    """Register ``plugin`` in a fresh host and check every component it adds.

    :param plugin: the plugin module or object (what the entry point names).
    :param name: the plugin name to register it under.
    :param params: params for components that need some, by ``"kind:name"``
        (e.g. ``{"writer:template": {"path": "sample.csv"}}``).
    :returns: the records checked.
    :raises AssertionError: the plugin failed to load or a component failed
        a check; the message lists every failure.
    """
    host = PluginHost()
    info = host.add_plugin(plugin, name)
    if info.status != "ok":
        raise AssertionError(f"plugin {name!r} failed to load: {info.error}")
    records = [r for r in host.registry.records() if r.plugin == name]
    if not records:
        raise AssertionError(f"plugin {name!r} registers no component")
    failures = _registration_problems(plugin, records)
    for record in records:
        try:
            check_component(record, (params or {}).get(f"{record.kind}:{record.name}"))
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("\n".join(failures))
    return records


#: Modules a plugin should not import to register (``torchyard list`` must stay fast).
HEAVY_MODULES = ("torch", "torchvision", "pandas", "sklearn", "scipy", "matplotlib", "timm")


def _registration_problems(plugin: object, records: list[ComponentRecord]) -> list[str]:
    """Name clashes with the installed plugins (the built-ins first), and,
    for a plugin module, heavy imports at registration and its import time
    (in a fresh interpreter, where nothing is imported yet)."""
    import json
    import subprocess
    import sys
    import types

    problems = []
    installed = PluginHost()
    installed.load_entrypoints()
    for record in records:
        for other in installed.registry.records(record.kind):
            if other.plugin != record.plugin and normalize_name(other.name) == normalize_name(record.name):
                problems.append(
                    f"{record.kind} '{record.name}': plugin {other.source} has that name too; users "
                    f"must write 'plugin:{record.name}' (choose another name)"
                )
    if not isinstance(plugin, types.ModuleType):
        return problems
    code = (
        "import json, sys, time\n"
        "from torchyard.plugins import PluginHost\n"
        "start = time.perf_counter()\n"
        f"import {plugin.__name__} as plugin\n"
        "info = PluginHost().add_plugin(plugin, 'probe')\n"
        "print(json.dumps({'seconds': time.perf_counter() - start, 'status': info.status,"
        f" 'heavy': [m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]}}))\n"
    )
    import os

    # the same import path as this interpreter's (a plugin the test put on sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    if done.returncode != 0:
        return [*problems, f"registering in a fresh interpreter failed: {done.stderr.strip()[-300:]}"]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["heavy"]:
        problems.append(
            f"registration imports {', '.join(report['heavy'])} ({report['seconds'] * 1000:.0f} ms): "
            "register factories by import path ('module:attribute') so torchyard list stays fast"
        )
    return problems


def check_component(record: ComponentRecord, params: Mapping[str, Any] | None = None) -> None:
    """Check one registered component; raise ``AssertionError`` if it fails."""
    where = f"{record.kind} '{record.name}' ({record.source})"
    try:
        from torchyard.config import section_model

        section_model(record)  # a schema a config can use: no reserved parameter names
        path = kinds.get(record.kind).conformance
        check: Callable[[ComponentRecord, dict[str, Any]], None] = (
            kinds.import_object(path) if path else _check_builds
        )
        check(record, dict(params or {}))
    except AssertionError as e:
        raise AssertionError(f"{where}: {e}") from e
    except (TorchyardError, Exception) as e:  # noqa: BLE001 - every failure is the component's
        raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e


def _build(record: ComponentRecord, params: dict[str, Any], *args: Any, context: Mapping[str, Any] | None = None) -> Any:
    from torchyard.params import params_to_kwargs

    validated = record.params.model_validate(params)
    kwargs = params_to_kwargs(validated)
    from torchyard.factories import accepted_parameters

    accepted = accepted_parameters(record.factory)
    for key, value in (context or {}).items():
        if key in accepted and key not in validated.model_fields_set:
            kwargs[key] = value
    return record.build(*args, **kwargs)


def _check_builds(record: ComponentRecord, params: dict[str, Any]) -> None:
    """The check of a kind without its own: the factory gives something."""
    assert _build(record, params, context=CONTEXT) is not None, "returned None"


def _check_model(record: ComponentRecord, params: dict[str, Any]) -> None:
    import torch

    model = _build(record, params, context=CONTEXT)
    assert isinstance(model, torch.nn.Module), f"returned {type(model).__name__}, not an nn.Module"
    model.eval()
    with torch.inference_mode():
        out = model(torch.randn(2, *CONTEXT["input_shape"]))
    assert tuple(out.shape) == (2, CONTEXT["num_classes"]), f"outputs of shape {tuple(out.shape)} for 2 samples, 3 classes"


def _check_dataset(record: ComponentRecord, params: dict[str, Any]) -> None:
    from torchyard.data import DataBundle

    bundle = _build(record, params)
    assert isinstance(bundle, DataBundle), f"returned {type(bundle).__name__}, not a DataBundle"
    assert isinstance(bundle.train, Sized), "the train split has no len()"
    assert len(bundle.train) > 0, "the train split is empty"
    if bundle.test is not None and bundle.test_ids is not None:
        assert isinstance(bundle.test, Sized), "the test split has no len()"
        assert len(bundle.test_ids) == len(bundle.test), "test_ids and the test split differ in length"
    first = bundle.train[0]
    assert isinstance(first, tuple | list) and len(first) == 2, "train items are not (input, target)"


def _check_loss(record: ComponentRecord, params: dict[str, Any]) -> None:
    import torch

    loss_fn = _build(record, params, context=CONTEXT)
    for scale in (1.0, 50.0):
        outputs, targets = random_batch(record.targets, scale=scale)
        outputs.requires_grad_(True)
        loss = loss_fn(outputs, targets)
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "the loss is not a scalar tensor"
        assert torch.isfinite(loss), f"the loss is {loss.item()} (scale {scale})"
        loss.backward()
        assert outputs.grad is not None and torch.isfinite(outputs.grad).all(), f"non-finite gradients (scale {scale})"


def _check_optimizer(record: ComponentRecord, params: dict[str, Any]) -> None:
    import torch

    model = torch.nn.Linear(4, 3, bias=False)
    optimizer = _build(record, params, model.parameters())
    before = model.weight.detach().clone()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight), "a step did not change the weights"


def _check_scheduler(record: ComponentRecord, params: dict[str, Any]) -> None:
    import torch

    for name in record.options.get("durations", ()):
        info = record.params.model_fields.get(name)
        if info is not None and name not in params and (info.is_required() or info.default is None):
            params[name] = [2, 4] if "list" in str(info.annotation) else 10
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    scheduler = _build(record, params, optimizer, context={"mode": "min"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for i in range(5):
            optimizer.step()
            scheduler.step(1.0 / (i + 1)) if record.options["interval"] == "metric" else scheduler.step()
    lr = optimizer.param_groups[0]["lr"]
    assert math.isfinite(lr) and lr >= 0, f"the learning rate became {lr}"


def _check_metric(record: ComponentRecord, params: dict[str, Any]) -> None:
    from torchyard.metric import Metric

    def fresh() -> Any:
        metric = _build(record, params, context=CONTEXT)
        assert isinstance(metric, Metric), f"returned {type(metric).__name__}, not a torchyard Metric"
        return metric

    metric = fresh()
    assert isinstance(metric.higher_is_better, bool), "higher_is_better is not a bool"
    outputs, targets = random_batch(record.targets, n=48)
    whole = fresh()
    whole.update(outputs, targets)
    expected = float(whole.compute())
    assert math.isfinite(expected), f"compute() gave {expected} on ordinary input"
    for part in zip(outputs.split([5, 19, 24]), targets.split([5, 19, 24]), strict=True):
        metric.update(*part)
    chunked = float(metric.compute())
    assert math.isclose(chunked, expected, rel_tol=1e-6, abs_tol=1e-9), f"chunked updates give {chunked}, one update {expected}"
    other_outputs, other_targets = random_batch(record.targets, n=48, seed=1)
    metric.reset()
    metric.update(other_outputs, other_targets)
    again = fresh()
    again.update(other_outputs, other_targets)
    assert math.isclose(float(metric.compute()), float(again.compute()), rel_tol=1e-6, abs_tol=1e-9), "reset() does not start over"


def _check_writer(record: ComponentRecord, params: dict[str, Any]) -> None:
    import numpy as np

    from torchyard.data import Predictions

    writer = _build(record, params)
    predictions = Predictions(
        ids=list(range(6)),
        outputs=np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32),
        class_names=["a", "b", "c"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = Path(writer.write(predictions, directory))
        assert path.is_file(), f"write() returned {path}, which is not a file"
        assert path.resolve().parent == directory.resolve(), f"wrote {path} outside the run directory"
        leftovers = [p.name for p in directory.iterdir() if p != path]
        assert not leftovers, f"left other files behind: {leftovers}"


def _check_transform(record: ComponentRecord, params: dict[str, Any]) -> None:
    import torch

    transform = _build(record, params)
    assert callable(transform), f"returned {type(transform).__name__}, which is not callable"
    if record.options.get("stage") == "batch":  # (inputs, soft targets, generator) -> (inputs, targets)
        inputs, soft = torch.rand(4, 3, 16, 16), torch.eye(3)[torch.tensor([0, 1, 2, 0])]
        mixed = transform(inputs, soft, torch.Generator().manual_seed(0))
        assert isinstance(mixed, tuple) and len(mixed) == 2, "a batch transform returns (inputs, targets)"
        assert mixed[0].shape == inputs.shape and mixed[1].shape == soft.shape, "shapes changed"
        return
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    try:
        out = transform(image)
    except (TypeError, ValueError):  # float-only transforms (normalize, noise)
        out = transform(image.float() / 255)
    assert out is not None, "returned None"


def _check_task(record: ComponentRecord, params: dict[str, Any]) -> None:
    from torchyard.tasks import Task

    task = _build(record, params)
    assert isinstance(task, Task), f"returned {type(task).__name__}, not a torchyard.tasks.Task"
    assert isinstance(task.name, str) and task.name, "the task has no name"


def _check_callback(record: ComponentRecord, params: dict[str, Any]) -> None:
    from torchyard.callbacks import check_callback
    from torchyard.errors import ConfigError

    callback = _build(record, params)
    try:
        check_callback(callback, "callbacks.0", record.name)
    except ConfigError as e:
        raise AssertionError(str(e).split(": ", 2)[-1]) from None
