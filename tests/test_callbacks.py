"""Step-level hooks that act, callbacks, steps.csv, and weight averaging (EMA, SWA)."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import torchyard
from torchyard.checkpoint import load_checkpoint
from torchyard.errors import ConfigError, PluginError
from torchyard.loop import Trainer
from torchyard.plugins import PluginHost
from torchyard_builtins.callbacks.averaging import EMA, SWA

from .test_resume import SignalAt, _interrupted_then_resumed, _run, _same_outcome


@pytest.fixture
def signalling(builtin_host: PluginHost) -> tuple[PluginHost, SignalAt]:
    """The built-ins and a loss that raises a signal at a chosen call (see test_resume)."""
    plugin = SignalAt()
    builtin_host.add_plugin(plugin, "signal-at")
    return builtin_host, plugin


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class StepSpy:
    """Records every step-level hook call; measures the gradients itself."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.norms: dict[int, float] = {}

    @torchyard.hookimpl
    def on_train_epoch_start(self, epoch: int) -> None:
        self.calls.append(("on_train_epoch_start", epoch))

    @torchyard.hookimpl
    def on_after_backward(self, run: Any, step: int) -> None:
        grads = [p.grad for p in run.model.parameters() if p.grad is not None]
        self.norms[step + 1] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        self.calls.append(("on_after_backward", step))

    @torchyard.hookimpl
    def on_before_optimizer_step(self, step: int, optimizer: Any, grad_norm: float | None) -> None:
        assert isinstance(optimizer, torch.optim.Optimizer)
        self.calls.append(("on_before_optimizer_step", (step, grad_norm)))

    @torchyard.hookimpl
    def on_after_optimizer_step(self, step: int) -> None:
        self.calls.append(("on_after_optimizer_step", step))

    @torchyard.hookimpl
    def on_train_batch_end(self, epoch: int, batch: int, step: int, loss: float) -> None:
        self.calls.append(("on_train_batch_end", (epoch, batch, step, loss)))

    @torchyard.hookimpl
    def on_train_epoch_end(self, epoch: int) -> None:
        self.calls.append(("on_train_epoch_end", epoch))

    @torchyard.hookimpl
    def on_validation_end(self, epoch: int) -> None:
        self.calls.append(("on_validation_end", epoch))

    @torchyard.hookimpl
    def on_step_logged(self, step: int, metrics: Any) -> None:
        self.calls.append(("on_step_logged", (step, dict(metrics))))


def test_step_hooks_come_in_order_with_the_loops_values(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    spy = StepSpy()
    builtin_host.add_plugin(spy, "spy")
    digits_config["trainer"].update(
        max_epochs=1, limit_train_batches=4, accumulate_grad_batches=2, log_every_n_steps=1
    )
    Trainer(_run(digits_config, builtin_host, tmp_path)).fit()
    names = [name for name, _ in spy.calls]
    window = ["on_train_batch_end", "on_after_backward", "on_before_optimizer_step",
              "on_after_optimizer_step", "on_step_logged", "on_train_batch_end"]  # fmt: skip
    assert names == [
        "on_train_epoch_start", *window, *window, "on_train_epoch_end", "on_validation_end"
    ]
    before = [args for name, args in spy.calls if name == "on_before_optimizer_step"]
    assert [step for step, _ in before] == [0, 1]
    # the norm handed to hooks and written to steps.csv is the gradients' own
    for step, norm in before:
        assert norm == pytest.approx(spy.norms[step + 1], rel=1e-5)
    assert [a for n, a in spy.calls if n == "on_after_optimizer_step"] == [1, 2]
    batches = [a for n, a in spy.calls if n == "on_train_batch_end"]
    assert [(e, b, s) for e, b, s, _ in batches] == [(1, 0, 0), (1, 1, 1), (1, 2, 1), (1, 3, 2)]
    rows = _rows(tmp_path / "steps.csv")
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert list(rows[0]) == ["step", "epoch", "loss", "lr", "grad_norm"]
    for row, first in zip(rows, (0, 2), strict=True):  # the mean of the window's batch losses
        assert float(row["loss"]) == pytest.approx((batches[first][3] + batches[first + 1][3]) / 2)
        assert float(row["grad_norm"]) == pytest.approx(spy.norms[int(row["step"])], rel=1e-5)
        assert float(row["lr"]) == pytest.approx(0.01)
    logged = [a for n, a in spy.calls if n == "on_step_logged"]
    assert [{k: str(v) for k, v in m.items()} for _, m in logged] == rows


def test_steps_csv_every_n_steps(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["trainer"].update(max_epochs=2, limit_train_batches=7, log_every_n_steps=3)
    Trainer(_run(digits_config, builtin_host, tmp_path)).fit()
    rows = _rows(tmp_path / "steps.csv")
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(3, 1), (6, 1), (9, 2), (12, 2)]
    assert all(math.isfinite(float(r["grad_norm"])) and float(r["grad_norm"]) > 0 for r in rows)


def test_a_hook_can_act_on_the_gradients(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """Gradients zeroed after backward: plain SGD leaves every weight as it was."""

    class Freeze:
        @torchyard.hookimpl
        def on_after_backward(self, run: Any) -> None:
            for p in run.model.parameters():
                if p.grad is not None:
                    p.grad.zero_()

    builtin_host.add_plugin(Freeze(), "freeze")
    digits_config["optimizer"] = {"name": "sgd", "lr": 0.5}
    digits_config["model"] = {"name": "mlp", "hidden": [8], "dropout": 0.0}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=3)
    run = _run(digits_config, builtin_host, tmp_path)
    before = copy.deepcopy(run.model.state_dict())
    Trainer(run).fit()
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, before[key]), key


class Counter:
    """Keeps a count of optimizer steps in checkpoints."""

    def __init__(self) -> None:
        self.steps = 0
        self.loaded: dict[str, Any] | None = None

    @torchyard.hookimpl
    def on_after_optimizer_step(self) -> None:
        self.steps += 1

    @torchyard.hookimpl
    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        state["steps"] = self.steps

    @torchyard.hookimpl
    def on_load_checkpoint(self, state: dict[str, Any]) -> None:
        self.loaded = dict(state)
        self.steps = state["steps"]


@pytest.mark.slow
def test_a_plugin_keeps_its_state_in_checkpoints_and_gets_it_back(
    signalling: tuple[PluginHost, SignalAt], digits_config: dict[str, Any], tmp_path: Path
) -> None:
    host, signals = signalling
    counter = Counter()
    host.add_plugin(counter, "counter")
    digits_config["loss"] = {"name": "signal_at"}
    digits_config["trainer"].update(max_epochs=2)
    signals.at = 25
    (run, result), payload = _interrupted_then_resumed(digits_config, host, signals, tmp_path)
    assert payload["callbacks"] == {"counter": {"steps": payload["global_step"]}}
    assert counter.loaded == {"steps": payload["global_step"]}
    assert counter.steps == result.rows[-1]["step"]  # counted on from the checkpoint's count


class Boom:
    @torchyard.hookimpl
    def on_after_optimizer_step(self, step: int) -> None:
        raise RuntimeError(f"no step {step}")


class Idle:
    def on_after_optimizer_step(self) -> None:  # not marked: no hook
        pass


class Misspelt:
    @torchyard.hookimpl
    def on_after_optimiser_step(self) -> None:
        pass


class CallbackPlugin:
    @torchyard.hookimpl
    def register_callbacks(self, register: Any) -> None:
        register("boom", Boom)
        register("idle", Idle)
        register("misspelt", Misspelt)


def test_a_failing_callback_is_named_with_its_plugin(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    builtin_host.add_plugin(CallbackPlugin(), "my-callbacks")
    digits_config["callbacks"] = [{"name": "ema"}, {"name": "boom"}]
    run = _run(digits_config, builtin_host, tmp_path)
    message = "callback 'boom' (callbacks.1, plugin 'my-callbacks') failed in on_after_optimizer_step: RuntimeError: no step 1"
    with pytest.raises(PluginError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Trainer(run).fit()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("idle", "callbacks.0: callback 'idle': implements no hook; decorate its methods with @torchyard.hookimpl and name them after lifecycle hooks (docs/hooks.md)"),
        ("misspelt", "callbacks.0: callback 'misspelt': 'on_after_optimiser_step' matches no hook spec; did you mean 'on_after_optimizer_step'?"),
    ],
)  # fmt: skip
def test_a_callback_without_hooks_is_a_config_error(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path, name: str, message: str
) -> None:
    builtin_host.add_plugin(CallbackPlugin(), "my-callbacks")
    digits_config["callbacks"] = [{"name": name}]
    with pytest.raises(ConfigError) as raised:
        _run(digits_config, builtin_host, tmp_path)
    assert str(raised.value) == message


def test_callbacks_of_one_run_do_not_act_on_the_next(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    builtin_host.add_plugin(CallbackPlugin(), "my-callbacks")
    digits_config["callbacks"] = [{"name": "boom"}]
    _run(digits_config, builtin_host, tmp_path / "a")
    digits_config["callbacks"] = []
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=2)
    Trainer(_run(digits_config, builtin_host, tmp_path / "b")).fit()  # no boom


# -- weight averaging -----------------------------------------------------------


class _FakeRun:
    def __init__(self, model: torch.nn.Module, max_epochs: int = 3) -> None:
        self.model = model
        self.trainer = type("T", (), {"max_epochs": max_epochs})()


def test_ema_follows_its_formula_with_warmup_and_every_n_steps() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    run = _FakeRun(model)
    ema = EMA(decay=0.9, warmup_steps=4, every_n_steps=2)
    expected: dict[str, torch.Tensor] | None = None
    updates = 0
    for step in range(1, 13):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        ema.on_after_optimizer_step(run, step)
        if step % 2:
            continue
        current = {k: v.clone() for k, v in model.state_dict().items()}
        if expected is None:
            expected = current
        else:
            decay = 0.9 * min(updates, 4) / 4
            expected = {
                k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v
                for k, v in current.items()
            }
        updates += 1
    assert ema.updates == updates == 6
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema.on_train_epoch_end(run)  # the average goes into the model ...
    assert expected is not None
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    ema.on_train_epoch_start(run)  # ... and back out, exactly
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw[key]), key


def test_swa_averages_the_last_epochs_and_recomputes_batchnorm() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    data = torch.randn(32, 3)
    loader = [(data[:16], None), (data[16:], None)]
    run = _FakeRun(model, max_epochs=4)
    run.loader = lambda split: loader  # type: ignore[attr-defined]
    run.device = torch.device("cpu")  # type: ignore[attr-defined]
    swa = SWA(epochs=2)
    seen = []
    for epoch in range(1, 5):
        swa.on_train_epoch_start(run)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        seen.append([p.clone() for p in model.parameters()])
        swa.on_train_epoch_end(run, epoch)
    for p, a, b in zip(model.parameters(), seen[2], seen[3], strict=True):
        torch.testing.assert_close(p, (a + b) / 2)
    # the statistics of the averaged weights on the training data (update_bn: a cumulative mean)
    hidden = model[0](data)
    expected_mean = (hidden[:16].mean(0) + hidden[16:].mean(0)) / 2
    torch.testing.assert_close(model[1].running_mean, expected_mean.detach())
    with pytest.raises(ValueError, match=r"epochs is 5, more than trainer.max_epochs \(4\)"):
        SWA(epochs=5).on_run_start(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("callback", "at", "during_validation"),
    [
        pytest.param({"name": "ema", "decay": 0.9, "warmup_steps": 5}, 25, False, id="ema-mid-epoch"),
        # validation call 1 is the probe; the checkpoint after epoch 1 holds the swapped-in average
        pytest.param({"name": "ema", "decay": 0.9}, 2, True, id="ema-after-an-epoch"),
        pytest.param({"name": "swa", "epochs": 2}, 45, False, id="swa-mid-epoch-3"),
    ],
)
def test_averaging_resumes_exactly(
    signalling: tuple[PluginHost, SignalAt],
    digits_config: dict[str, Any],
    tmp_path: Path,
    callback: dict[str, Any],
    at: int,
    during_validation: bool,
) -> None:
    host, signals = signalling
    digits_config["loss"] = {"name": "signal_at"}
    digits_config["callbacks"] = [callback]
    digits_config["trainer"].update(max_epochs=3, deterministic=True, num_threads=1, log_every_n_steps=4)
    reference_run = _run(digits_config, host, tmp_path / "reference")
    reference = (reference_run, Trainer(reference_run).fit())
    signals.at, signals.during_validation = at, during_validation
    resumed, payload = _interrupted_then_resumed(digits_config, host, signals, tmp_path / "interrupted")
    assert f"callbacks.0:{callback['name']}" in payload["callbacks"]
    _same_outcome(reference, resumed)
    assert _rows(tmp_path / "interrupted" / "steps.csv") == _rows(tmp_path / "reference" / "steps.csv")
    torch.use_deterministic_algorithms(False)


def test_the_best_checkpoint_holds_the_averaged_weights_it_was_scored_with(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["callbacks"] = [{"name": "ema", "decay": 0.8}]
    digits_config["trainer"].update(max_epochs=2, monitor="val/loss")
    run = _run(digits_config, builtin_host, tmp_path)
    trainer = Trainer(run)
    result = trainer.fit()
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    run.model.load_state_dict(best["model"])
    again = trainer.validate(run.loader("val"))
    row = result.rows[(result.best_epoch or 0) - 1]
    assert again["val/loss"] == pytest.approx(row["val/loss"], rel=1e-5)
    state = best["callbacks"]["callbacks.0:ema"]
    assert state["swapped"] is True  # the training weights are in the callback's state
    raw = {k.removeprefix("module."): v for k, v in state["averaged"].items() if k.startswith("module.")}
    assert any(not torch.equal(raw[k], v) for k, v in best["model"].items() if v.is_floating_point())


def test_cli_runs_with_averaging_and_writes_steps(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli(
        "run", "examples/digits.yaml", "-o", out,
        "-s", "callbacks=[{name: ema, decay: 0.95}, {name: swa, epochs: 1}]",
        "-s", "trainer.max_epochs=2", "-s", "trainer.limit_train_batches=6", "-s", "trainer.log_every_n_steps=2",
        "-s", "model.channels=8", "-s", "trainer.progress=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [int(r["step"]) for r in _rows(out / "steps.csv")] == [2, 4, 6, 8, 10, 12]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert set(last["callbacks"]) == {"callbacks.0:ema", "callbacks.1:swa"}
    assert (out / "submission.csv").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks=[{name: ema, decay: 1.5}]", "callbacks.0.decay"),
        ("callbacks=[{name: emma}]", "did you mean 'ema'"),
    ],
)
def test_check_refuses_bad_callbacks_in_one_line(cli: Any, override: str, message: str) -> None:
    result = cli("check", "examples/digits.yaml", "-s", override)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_the_step_log_makes_its_folder_and_keeps_rows_up_to_a_resumed_step(tmp_path: Path) -> None:
    from torchyard.steplog import StepLog

    path = tmp_path / "not" / "yet" / "steps.csv"
    log = StepLog(path, every=2)
    log.open(None)
    for step in range(1, 7):
        log.add(float(step))
        if log.due(step):
            log.record(step, 1, 0.1, None)
    log.close()
    assert [r["step"] for r in _rows(path)] == ["2", "4", "6"]
    assert _rows(path)[0]["loss"] == "1.5" and _rows(path)[0]["grad_norm"] == ""
    log.open(4)  # resumed from step 4: the rows after it go
    log.close()
    assert [r["step"] for r in _rows(path)] == ["2", "4"]
