"""GPU step settings: cudnn.benchmark, trainer.matmul_precision,
trainer.channels_last and trainer.compile (run on CPU; compile with the
cheap ``aot_eager`` backend)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

import torchyard
from torchyard.checkpoint import load_checkpoint
from torchyard.config import TrainerConfig, validate_config
from torchyard.data import DataBundle
from torchyard.device import set_deterministic
from torchyard.errors import ConfigError
from torchyard.loop import Trainer
from torchyard.plugins import PluginHost
from torchyard.run import Run, build_run
from torchyard.speed import StepForward, forward_callable

from .test_resume import SignalAt, _config, _interrupted_then_resumed, _same_outcome


@pytest.fixture(autouse=True)
def _restore_global_settings() -> Iterator[None]:
    """These settings are process-wide: leave them as the other tests expect."""
    precision = torch.get_float32_matmul_precision()
    benchmark, deterministic = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    algorithms = torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
    torch.use_deterministic_algorithms(algorithms)


def _run(config: dict[str, Any], host: PluginHost, out: Path) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    return build_run(validate_config(config, host.registry), host, out)


def _short(digits_config: dict[str, Any], **trainer: Any) -> dict[str, Any]:
    config = copy.deepcopy(digits_config)
    config["trainer"].update({"max_epochs": 1, "num_threads": 1, "limit_train_batches": 6, **trainer})
    return config


def test_cudnn_benchmark_is_on_unless_deterministic() -> None:
    set_deterministic(False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    set_deterministic(True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled()


def test_matmul_precision_is_set_when_the_run_is_built(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    torch.set_float32_matmul_precision("highest")
    _run(_short(digits_config, matmul_precision="medium"), builtin_host, tmp_path / "a")
    assert torch.get_float32_matmul_precision() == "medium"
    _run(_short(digits_config), builtin_host, tmp_path / "b")  # unset: left as it is
    assert torch.get_float32_matmul_precision() == "medium"
    with pytest.raises(ConfigError, match=r"trainer\.matmul_precision"):
        validate_config(_short(digits_config, matmul_precision="low"), builtin_host.registry)


def _rgb() -> DataBundle:
    """Random 3-channel images (digits has 1 channel: already channels_last as it is)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 3, 8, 8, generator=g), torch.randint(0, 4, (192,), generator=g)
    return DataBundle(
        train=TensorDataset(x[:128], y[:128]), val=TensorDataset(x[128:], y[128:]),
        num_classes=4, input_shape=(3, 8, 8), train_targets=y[:128].tolist(),
    )


class RgbPlugin:
    @torchyard.hookimpl
    def register_datasets(self, register: Any) -> None:
        register("rgb", _rgb)


def test_channels_last_model_and_batches_with_the_same_results(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    builtin_host.add_plugin(RgbPlugin(), "rgb")
    # SGD: Adam's first steps are lr * sign(grad), which turns rounding noise near 0 into lr
    digits_config.update(data={"name": "rgb"}, writer=None, metrics=[{"name": "accuracy"}], optimizer={"name": "sgd", "lr": 0.1})
    outcomes = []
    for channels_last in (False, True):
        run = _run(_short(digits_config, channels_last=channels_last), builtin_host, tmp_path / str(channels_last))
        seen: list[bool] = []
        run.model.register_forward_pre_hook(
            lambda _m, args, seen=seen: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        result = Trainer(run).fit()
        convolutions = [p for p in run.model.parameters() if p.dim() == 4]
        assert convolutions  # the model has convolution weights to convert
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions) == channels_last
        assert len(seen) == 2 + 1  # every batch the model saw: two to train, one to validate
        assert seen == [channels_last] * len(seen)
        outcomes.append((run.model.state_dict(), result.rows[-1]))
    (plain, plain_row), (last, last_row) = outcomes
    for key in plain:
        torch.testing.assert_close(plain[key], last[key], rtol=1e-4, atol=1e-5)
    assert last_row["val/loss"] == pytest.approx(plain_row["val/loss"], rel=1e-4)


def test_channels_last_leaves_other_inputs_alone_with_one_warning() -> None:
    warnings: list[str] = []
    calls: list[torch.Tensor] = []
    wrapped = StepForward(lambda x: calls.append(x) or x.sum(), warnings.append, channels_last=True, clone_outputs=False)
    table = torch.randn(5, 3)
    wrapped(table)
    wrapped(table)
    assert calls[0] is table and warnings == [
        "trainer.channels_last: inputs are (5, 3), not 4-D images; they stay as they are"
    ]
    images = torch.randn(2, 3, 4, 4)
    wrapped(images)
    assert calls[-1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(calls[-1], images)


def test_a_bad_compile_backend_is_one_line_before_training(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^trainer\.compile\.backend: unknown torch.compile backend 'nope'; known: .*aot_eager"):
        _run(_short(digits_config, compile={"backend": "nope"}), builtin_host, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"^trainer\.compile\.mode: 'max-autotune' needs backend 'inductor'"):
        _run(_short(digits_config, compile={"backend": "aot_eager", "mode": "max-autotune"}), builtin_host, tmp_path / "b")


@pytest.mark.slow  # ~7 s on 2 cores: compiling
def test_a_compiled_run_saves_a_plain_checkpoint_that_loads_without_compile(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    plain = _run(_short(digits_config), builtin_host, tmp_path / "plain")
    plain_row = Trainer(plain).fit().rows[-1]
    run = _run(_short(digits_config, compile={"backend": "aot_eager"}), builtin_host, tmp_path)
    trainer = Trainer(run)
    assert isinstance(trainer.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.train_model._orig_mod is run.model  # run.model stays the plain module
    row = trainer.fit().rows[-1]
    # it trained as the plain model does, and validated through the compiled one
    assert row["train/loss"] == pytest.approx(plain_row["train/loss"], rel=1e-4)
    assert row["val/loss"] == pytest.approx(plain_row["val/loss"], rel=1e-4)
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(run.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    raw = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert not [key for key in raw["model"] if "_orig_mod" in key]
    assert raw["model"].keys() == run.model.state_dict().keys()
    predictor = torchyard.load(tmp_path)
    assert type(predictor.models[0]) is type(run.model)  # a plain model, no compile
    expected = trainer.predict(run.loader("test")).outputs  # through the compiled model
    got = predictor.predict(run.data.test).outputs
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_an_interrupted_compiled_run_resumes_to_the_same_weights(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """compile with channels_last and an EMA callback: the averaged weights
    swap in and out of the plain module that the compiled callable wraps."""
    plugin = SignalAt()
    builtin_host.add_plugin(plugin, "signal-at")
    config = _config(digits_config, compile={"backend": "aot_eager"}, channels_last=True, max_epochs=2)
    config["callbacks"] = [{"name": "ema", "decay": 0.9}]
    reference_run = _run(config, builtin_host, tmp_path / "reference")
    reference = (reference_run, Trainer(reference_run).fit())
    plugin.at = 25  # epoch 2, part-way
    resumed, payload = _interrupted_then_resumed(config, builtin_host, plugin, tmp_path / "interrupted")
    assert not payload["progress"]["epoch_done"] and payload["progress"]["epoch"] == 2
    assert not [key for key in load_checkpoint(tmp_path / "interrupted" / "checkpoints" / "last.pt")["model"]
                if "_orig_mod" in key]
    _same_outcome(reference, resumed)
    convolutions = [p for p in resumed[0].model.parameters() if p.dim() == 4]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    # the EMA kept a plain module's average, which updated through the compiled steps
    [ema] = load_checkpoint(tmp_path / "interrupted" / "checkpoints" / "last.pt")["callbacks"].values()
    assert ema["updates"] > 0 and not [key for key in ema["averaged"] if "_orig_mod" in key]


def test_reduce_overhead_outputs_are_copies_that_a_later_replay_cannot_overwrite() -> None:
    buffer = torch.zeros(2, 3)  # what a CUDA graph's replay writes into, every call

    def replay(x: torch.Tensor) -> dict[str, torch.Tensor]:
        buffer.copy_(x)
        return {"logits": buffer}

    wrapped = StepForward(replay, lambda _: None, channels_last=False, clone_outputs=True)
    first = wrapped(torch.ones(2, 3))["logits"]
    wrapped(torch.full((2, 3), 7.0))
    assert torch.equal(first, torch.ones(2, 3))  # kept, as evaluation keeps each batch's outputs
    trainer = TrainerConfig.model_validate({"compile": {"mode": "reduce-overhead"}})
    called = forward_callable(torch.nn.Linear(3, 2), trainer, lambda _: None)
    assert isinstance(called, StepForward) and called.clone_outputs and not called.channels_last
