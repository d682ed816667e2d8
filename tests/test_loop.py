"""The training loop, driven through build_run and Trainer on real data."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import torchyard
from torchyard.checkpoint import load_checkpoint
from torchyard.config import validate_config
from torchyard.console import Reporter
from torchyard.errors import ConfigError, DataError, TrainingError
from torchyard.loop import Trainer
from torchyard.pipeline import fit_and_submit
from torchyard.plugins import PluginHost
from torchyard.run import Run, build_run

from .plugins import recorder


def make_run(data: dict[str, Any], host: PluginHost, out: Path, **kwargs: Any) -> Run:
    config = validate_config(data, host.registry)
    out.mkdir(parents=True, exist_ok=True)
    return build_run(config, host, out, **kwargs)


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_writes_metrics_and_checkpoints(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["trainer"]["max_epochs"] = 3
    run = make_run(digits_config, builtin_host, tmp_path)
    result = Trainer(run).fit()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["epoch", "step", "train/loss", "val/loss", "val/accuracy", "val/f1", "lr", "time_s"]
    steps_per_epoch = math.ceil(len(run.data.train) / 64)  # type: ignore[arg-type]
    assert [int(r["step"]) for r in rows] == [steps_per_epoch * e for e in (1, 2, 3)]
    accuracies = [float(r["val/accuracy"]) for r in rows]
    assert result.best_value == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert best["epoch"] == result.best_epoch and last["epoch"] == 3
    assert best["best_value"] == pytest.approx(max(accuracies))
    assert last["config"]["optimizer"]["name"] == "adamw"
    assert last["plugins"]["builtin-losses"] == torchyard.__version__


def test_best_checkpoint_holds_the_best_weights(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """Reloading best.pt reproduces the best epoch's validation metrics."""
    digits_config["trainer"].update(max_epochs=3, monitor="val/loss")
    run = make_run(digits_config, builtin_host, tmp_path)
    trainer = Trainer(run)
    result = trainer.fit()
    run.model.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"])
    again = trainer.validate(run.loader("val"))
    best_row = result.rows[result.best_epoch - 1]  # type: ignore[operator]
    assert again["val/loss"] == pytest.approx(best_row["val/loss"], rel=1e-5)
    assert run.mode == "min"
    assert best_row["val/loss"] == min(r["val/loss"] for r in result.rows)


def test_same_seed_same_results(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["trainer"]["deterministic"] = True
    first = Trainer(make_run(digits_config, builtin_host, tmp_path / "a")).fit().rows
    second = Trainer(make_run(digits_config, builtin_host, tmp_path / "b")).fit().rows
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert drop(first) == drop(second)
    torch.use_deterministic_algorithms(False)


def test_models_are_in_train_mode_for_training_and_eval_for_the_rest(
    empty_host: PluginHost, builtin_host: PluginHost, tmp_path: Path, digits_config: dict[str, Any]
) -> None:
    seen: list[tuple[bool, bool, bool]] = []

    class Spy(torch.nn.Module):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return self.linear(x.flatten(1))

    class SpyPlugin:
        @torchyard.hookimpl
        def register_models(self, register: Any) -> None:
            register("spy", Spy)

    builtin_host.add_plugin(SpyPlugin(), "spy")
    digits_config["model"] = {"name": "spy"}
    digits_config["trainer"]["max_epochs"] = 1
    run = make_run(digits_config, builtin_host, tmp_path)
    # build_run's probe: one batch through the one inference path (eval, inference mode)
    assert set(seen) == {(False, True, False)}
    seen.clear()
    trainer = Trainer(run)
    trainer.fit()
    n_train = math.ceil(len(run.data.train) / 64)  # type: ignore[arg-type]
    assert set(seen[:n_train]) == {(True, False, True)}
    assert set(seen[n_train:]) == {(False, True, False)}
    seen.clear()
    trainer.predict(run.loader("test"))
    assert set(seen) == {(False, True, False)}


def test_gradient_accumulation_matches_a_bigger_batch(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """Two accumulated batches of 16 step like one batch of 32 (mean losses, SGD)."""
    base = {
        **digits_config,
        "model": {"name": "mlp", "hidden": [16], "dropout": 0.0},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "trainer": {"max_epochs": 1, "progress": False, "seed": 0, "limit_train_batches": 8},
        "data": {"name": "digits"},
    }
    one = make_run({**base, "loader": {"batch_size": 32, "shuffle": False}}, builtin_host, tmp_path / "a")
    base["trainer"] = {**base["trainer"], "accumulate_grad_batches": 2, "limit_train_batches": 16}
    two = make_run({**base, "loader": {"batch_size": 16, "shuffle": False}}, builtin_host, tmp_path / "b")
    two.model.load_state_dict(one.model.state_dict())
    t1, t2 = Trainer(one), Trainer(two)
    t1.fit()
    t2.fit()
    assert t1.global_step == t2.global_step == 8
    for a, b in zip(one.model.parameters(), two.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradient_clipping_bounds_the_update(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config.update(
        model={"name": "mlp", "hidden": [8], "dropout": 0.0},
        optimizer={"name": "sgd", "lr": 1.0},
        loader={"batch_size": 64, "shuffle": False},
    )
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=1, gradient_clip_val=0.01)
    run = make_run(digits_config, builtin_host, tmp_path)
    before = torch.cat([p.detach().flatten().clone() for p in run.model.parameters()])
    Trainer(run).fit()
    after = torch.cat([p.detach().flatten() for p in run.model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize(
    ("scheduler", "expected_lrs"),
    [
        ({"name": "step_lr", "step_size": 1, "gamma": 0.5}, [0.1, 0.05, 0.025]),
        ({"name": "exponential_lr", "gamma": 0.1}, [0.1, 0.01, 0.001]),
    ],
)
def test_epoch_schedulers_step_once_per_epoch(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path, scheduler: Any, expected_lrs: list[float]
) -> None:
    digits_config.update(optimizer={"name": "sgd", "lr": 0.1}, scheduler=scheduler)
    digits_config["trainer"].update(max_epochs=3, limit_train_batches=2)
    rows = Trainer(make_run(digits_config, builtin_host, tmp_path)).fit().rows
    assert [r["lr"] for r in rows] == pytest.approx(expected_lrs)


def test_step_interval_schedulers_step_per_optimizer_step(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    class PerStep:
        @torchyard.hookimpl
        def register_schedulers(self, register: Any) -> None:
            register("per_step_exp", "torch.optim.lr_scheduler:ExponentialLR", interval="step")

    builtin_host.add_plugin(PerStep(), "per-step")
    digits_config.update(optimizer={"name": "sgd", "lr": 1.0}, scheduler={"name": "per_step_exp", "gamma": 0.5})
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=6, accumulate_grad_batches=2)
    rows = Trainer(make_run(digits_config, builtin_host, tmp_path)).fit().rows
    assert rows[0]["step"] == 3
    assert rows[0]["lr"] == pytest.approx(0.5**3)


def test_plateau_scheduler_steps_on_the_monitored_value(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """The plateau scheduler follows val/accuracy, in the direction the metric
    says is better, without the user setting its mode."""
    digits_config.update(
        optimizer={"name": "sgd", "lr": 1e-6},  # too small to improve: a plateau
        scheduler={"name": "reduce_lr_on_plateau", "patience": 0, "factor": 0.5},
    )
    digits_config["trainer"].update(max_epochs=3, limit_train_batches=1)
    run = make_run(digits_config, builtin_host, tmp_path)
    assert run.scheduler is not None
    assert run.scheduler.scheduler.mode == "max"  # from accuracy's higher_is_better
    rows = Trainer(run).fit().rows
    assert [r["lr"] for r in rows] == pytest.approx([1e-6, 1e-6, 5e-7])


def test_explicit_plateau_mode_is_respected(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["scheduler"] = {"name": "reduce_lr_on_plateau", "mode": "min"}
    schedule = make_run(digits_config, builtin_host, tmp_path).scheduler
    assert schedule is not None and schedule.scheduler.mode == "min"


def test_early_stopping(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["optimizer"] = {"name": "sgd", "lr": 1e-12}  # never improves after epoch 1
    digits_config["trainer"].update(max_epochs=10, limit_train_batches=1, early_stopping={"patience": 2})
    result = Trainer(make_run(digits_config, builtin_host, tmp_path)).fit()
    assert result.stopped_early
    assert len(result.rows) == 3


def test_nan_loss_stops_training_and_keeps_the_good_checkpoint(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    calls = {"n": 0}

    def nan_after_some(**_: Any) -> Any:
        ce = torch.nn.CrossEntropyLoss()

        def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            value = ce(outputs, targets)
            return value * float("nan") if calls["n"] > 25 else value

        return loss

    class NanPlugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("nan_later", nan_after_some)

    builtin_host.add_plugin(NanPlugin(), "nan")
    digits_config["loss"] = {"name": "nan_later"}
    digits_config["trainer"]["max_epochs"] = 5
    run = make_run(digits_config, builtin_host, tmp_path)
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, batch \d+ \(optimizer step \d+\)"):
        Trainer(run).fit()
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_lifecycle_hooks_are_called_in_order(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    builtin_host.add_plugin(recorder, "recorder")
    recorder.CALLS.clear()
    run = make_run(digits_config, builtin_host, tmp_path)
    summary = fit_and_submit(run, Reporter(progress=False))
    names = [name for name, _ in recorder.CALLS]
    assert names == [
        "on_run_start",
        "on_validation_end",
        "on_epoch_end",
        "on_validation_end",
        "on_epoch_end",
        "on_run_end",
    ]
    assert recorder.CALLS[0][1] == "val/accuracy"
    epoch, metrics = recorder.CALLS[2][1]
    assert epoch == 1 and set(metrics) >= {"train/loss", "val/loss", "val/accuracy", "lr"}
    assert recorder.CALLS[-1][1]["best_epoch"] == summary["best_epoch"]


def test_bf16_mixed_runs_on_cpu(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    digits_config["trainer"].update(precision="bf16-mixed", max_epochs=1, limit_train_batches=3)
    rows = Trainer(make_run(digits_config, builtin_host, tmp_path)).fit().rows
    assert math.isfinite(rows[0]["train/loss"])


def test_16_mixed_needs_cuda(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    digits_config["trainer"].update(precision="16-mixed", device="cpu")
    with pytest.raises(ConfigError, match="'16-mixed' needs a CUDA device"):
        make_run(digits_config, builtin_host, tmp_path)


def test_missing_cuda_is_explained(builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    digits_config["trainer"]["device"] = "cuda:1"
    with pytest.raises(ConfigError, match="'cuda:1' requested, but CUDA is not available"):
        make_run(digits_config, builtin_host, tmp_path)


def test_labels_outside_num_classes_are_refused(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    from torch.utils.data import TensorDataset

    from torchyard.data import DataBundle

    def wrong_labels() -> DataBundle:
        x = torch.zeros(4, 1, 8, 8)
        return DataBundle(
            train=TensorDataset(x, torch.tensor([0, 1, 2, 12])),
            val=TensorDataset(x, torch.tensor([0, 1, 2, 3])),
            num_classes=10,
            input_shape=(1, 8, 8),
            train_targets=[0, 1, 2, 12],
        )

    def empty() -> DataBundle:
        return DataBundle(train=TensorDataset(torch.zeros(0, 1)), num_classes=2, input_shape=(1,))

    class DataPlugin:
        @torchyard.hookimpl
        def register_datasets(self, register: Any) -> None:
            register("wrong_labels", wrong_labels)
            register("empty", empty)

    builtin_host.add_plugin(DataPlugin(), "data")
    digits_config["data"] = {"name": "wrong_labels"}
    with pytest.raises(DataError, match=r"training labels span 0\.\.12, outside 0\.\.9 for num_classes=10"):
        make_run(digits_config, builtin_host, tmp_path)
    digits_config["data"] = {"name": "empty"}
    with pytest.raises(DataError, match="the train split is empty"):
        make_run(digits_config, builtin_host, tmp_path)


def test_monitoring_validation_without_a_validation_split(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    from torch.utils.data import TensorDataset

    from torchyard.data import DataBundle

    def train_only() -> DataBundle:
        return DataBundle(
            train=TensorDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])),
            num_classes=2,
            input_shape=(1, 8, 8),
        )

    class DataPlugin:
        @torchyard.hookimpl
        def register_datasets(self, register: Any) -> None:
            register("train_only", train_only)

    builtin_host.add_plugin(DataPlugin(), "data")
    digits_config["data"] = {"name": "train_only"}
    with pytest.raises(ConfigError, match="needs a validation split"):
        make_run(digits_config, builtin_host, tmp_path)
    digits_config["trainer"]["monitor"] = "train/loss"
    digits_config["metrics"] = []
    result = Trainer(make_run(digits_config, builtin_host, tmp_path)).fit()
    assert result.best_epoch is not None and "val/loss" not in result.rows[0]


def test_a_failing_lifecycle_hook_names_its_plugin(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    from torchyard.errors import PluginError

    class Grumpy:
        @torchyard.hookimpl
        def on_epoch_end(self, epoch: int) -> None:
            raise ValueError(f"no thanks to epoch {epoch}")

    builtin_host.add_plugin(Grumpy(), "grumpy")
    run = make_run(digits_config, builtin_host, tmp_path)
    with pytest.raises(PluginError, match="plugin 'grumpy' failed in on_epoch_end: ValueError: no thanks to epoch 1"):
        Trainer(run).fit()
