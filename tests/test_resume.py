"""Exact resumption: RNG and data-order state, signals, resuming part-way.

A run interrupted by a real SIGINT (raised from inside its loss function,
so at a precise batch) and resumed from the checkpoint it wrote must end
on the same weights and the same metrics as a run that was never
interrupted. The subprocess tests (SIGKILL, Ctrl-C through the CLI) are in
tests/test_resume_cli.py.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler

import torchyard
from torchyard.checkpoint import load_checkpoint
from torchyard.config import validate_config
from torchyard.console import Reporter
from torchyard.errors import ConfigError, TrainingError
from torchyard.loop import FitResult, Trainer, TrainingInterrupted, _Progress
from torchyard.plugins import PluginHost
from torchyard.resume import (
    ResumableSampler,
    capture_rng,
    config_differences,
    find_resume_checkpoint,
    restore_rng,
)
from torchyard.run import Run, build_run

# -- units ----------------------------------------------------------------------------------


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    torch.save(state, tmp_path / "rng.pt")
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert random.random() == expected[0]
    assert np.random.rand() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])


def test_resumable_sampler_skips_indices_once_and_keeps_the_order() -> None:
    generator = torch.Generator().manual_seed(0)
    sampler = ResumableSampler(RandomSampler(range(10), generator=generator))
    state = generator.get_state()
    full = list(sampler)
    generator.set_state(state)
    sampler.skip = 4
    assert list(sampler) == full[4:]  # the same order, from index 4
    assert len(list(sampler)) == 10  # the skip applies once
    assert len(sampler) == 10


def test_config_differences_name_each_changed_key() -> None:
    saved = {"optimizer": {"name": "adamw", "lr": 0.01}, "trainer": {"max_epochs": 3, "progress": True}}
    current = {"optimizer": {"name": "adamw", "lr": 0.02}, "trainer": {"max_epochs": 3, "progress": False},
               "split": {"folds": 5}}
    assert config_differences(saved, current) == ["optimizer.lr: 0.01 -> 0.02", "split.folds: (unset) -> 5"]
    assert config_differences(saved, saved) == []


def test_find_resume_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exp.yaml"
    with pytest.raises(ConfigError, match=r"--resume last: no run of exp.yaml"):
        find_resume_checkpoint("last", None, config)
    for stamp in ("20260101-000000", "20260102-000000"):
        (tmp_path / "runs" / "exp" / stamp / "checkpoints").mkdir(parents=True)
        (tmp_path / "runs" / "exp" / stamp / "checkpoints" / "last.pt").write_bytes(b"x")
    newest = Path("runs/exp/20260102-000000/checkpoints/last.pt")
    assert find_resume_checkpoint("last", None, config) == newest
    assert find_resume_checkpoint("runs/exp/20260102-000000", None, config) == newest
    assert find_resume_checkpoint("last", Path("runs/exp/20260101-000000"), config).parts[2] == "20260101-000000"
    with pytest.raises(ConfigError, match=r"--resume nope.pt: file not found"):
        find_resume_checkpoint("nope.pt", None, config)


# -- exact resumption, in process ------------------------------------------------------------


class SignalAt:
    """A loss plugin: cross-entropy that sends this process a signal at its
    n-th training call (or at the first validation call of epoch ``n``)."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.during_validation = False
        self.signum = signal.SIGINT

    @torchyard.hookimpl
    def register_losses(self, register: Any) -> None:
        register("signal_at", self.factory)

    def factory(self) -> Any:
        ce = torch.nn.CrossEntropyLoss()
        calls = {"train": 0, "val": 0}

        def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            phase = "train" if torch.is_grad_enabled() else "val"
            calls[phase] += 1
            if self.at is not None and phase == ("val" if self.during_validation else "train") \
                    and calls[phase] == self.at:
                signal.raise_signal(self.signum)
            return ce(outputs, targets)

        return loss


@pytest.fixture
def signal_host(builtin_host: PluginHost) -> tuple[PluginHost, SignalAt]:
    plugin = SignalAt()
    builtin_host.add_plugin(plugin, "signal-at")
    return builtin_host, plugin


def _run(config: dict[str, Any], host: PluginHost, out: Path) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    return build_run(validate_config(config, host.registry), host, out)


def _config(digits_config: dict[str, Any], **trainer: Any) -> dict[str, Any]:
    digits_config["loss"] = {"name": "signal_at"}
    digits_config["trainer"].update({"max_epochs": 3, "deterministic": True, "num_threads": 1, **trainer})
    return digits_config


def _same_outcome(a: tuple[Run, FitResult], b: tuple[Run, FitResult]) -> None:
    (run_a, result_a), (run_b, result_b) = a, b
    state_a, state_b = run_a.model.state_dict(), run_b.model.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in result_a.rows]
    assert strip == [{k: v for k, v in row.items() if k != "time_s"} for row in result_b.rows]
    assert (result_a.best_epoch, result_a.best_value) == (result_b.best_epoch, result_b.best_value)


def _interrupted_then_resumed(
    config: dict[str, Any], host: PluginHost, plugin: SignalAt, out: Path
) -> tuple[tuple[Run, FitResult], dict[str, Any]]:
    run = _run(config, host, out)
    with pytest.raises(TrainingInterrupted) as stopped:
        Trainer(run).fit()
    assert stopped.value.exit_code == 130
    assert stopped.value.checkpoint == out / "checkpoints" / "last.pt"
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    plugin.at = None
    resumed = _run(config, host, out)  # a fresh process would build the run again
    return (resumed, Trainer(resumed).fit(resume=payload)), payload


@pytest.mark.parametrize(
    ("trainer", "at", "during_validation"),
    [
        pytest.param({}, 25, False, id="mid-epoch"),
        # validation call 1 is build_run's probe batch; call 2 is epoch 1's first
        pytest.param({}, 2, True, id="during-validation-of-epoch-1"),
        pytest.param({"accumulate_grad_batches": 3}, 24, False, id="mid-accumulation-window"),
        pytest.param({"sampler": "balanced"}, 25, False, id="mid-epoch-balanced-sampler"),
    ],
)
def test_an_interrupted_run_resumes_to_the_same_weights_and_metrics(
    signal_host: tuple[PluginHost, SignalAt],
    digits_config: dict[str, Any],
    tmp_path: Path,
    trainer: dict[str, Any],
    at: int,
    during_validation: bool,
) -> None:
    host, plugin = signal_host
    sampler = trainer.pop("sampler", None)
    config = _config(digits_config, **trainer)
    if sampler is not None:
        config["loader"]["sampler"] = sampler
    config["scheduler"] = {"name": "cosine_annealing_lr", "T_max": 3, "warmup": {"duration": "10 steps"}}
    config["model"]["dropout"] = 0.3  # draws from torch's RNG at every training step
    reference_run = _run(config, host, tmp_path / "reference")
    reference = (reference_run, Trainer(reference_run).fit())

    plugin.at, plugin.during_validation = at, during_validation
    resumed, payload = _interrupted_then_resumed(config, host, plugin, tmp_path / "interrupted")
    progress = payload["progress"]
    if during_validation:
        assert progress["epoch_done"] and progress["epoch"] == 1
    else:
        assert not progress["epoch_done"] and progress["epoch"] == 2
        assert progress["batches"] % trainer.get("accumulate_grad_batches", 1) == 0
    _same_outcome(reference, resumed)


def test_mid_epoch_checkpoints_every_n_steps(
    signal_host: tuple[PluginHost, SignalAt], digits_config: dict[str, Any], tmp_path: Path
) -> None:
    host, plugin = signal_host
    config = _config(digits_config, checkpoint_every_n_steps=4, max_epochs=1)
    run = _run(config, host, tmp_path)
    seen: list[int] = []
    original = Trainer._state

    def spy(self: Trainer, epoch: int, **kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs["batches"])
        return original(self, epoch, **kwargs)

    Trainer._state = spy  # type: ignore[method-assign]
    try:
        Trainer(run).fit()
    finally:
        Trainer._state = original  # type: ignore[method-assign]
    batches = len(run.loader("train"))  # type: ignore[arg-type]
    assert seen == [*range(4, batches, 4), 0]  # every 4 steps, then the epoch's end


def test_resuming_an_early_stopped_run_trains_no_further(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["trainer"].update(
        {"max_epochs": 20, "monitor": "val/loss", "early_stopping": {"patience": 1, "min_delta": 10.0}}
    )
    run = _run(digits_config, builtin_host, tmp_path)
    result = Trainer(run).fit()
    assert result.stopped_early and len(result.rows) == 2
    again = Trainer(_run(digits_config, builtin_host, tmp_path)).fit(
        resume=load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    )
    assert again.stopped_early and len(again.rows) == 2


def test_sigterm_also_stops_with_a_resumable_checkpoint(
    signal_host: tuple[PluginHost, SignalAt], digits_config: dict[str, Any], tmp_path: Path
) -> None:
    host, plugin = signal_host
    plugin.at, plugin.signum = 5, signal.SIGTERM
    run = _run(_config(digits_config), host, tmp_path)
    with pytest.raises(TrainingInterrupted) as stopped:
        Trainer(run).fit()
    assert stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone after fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["progress"]["batches"] == 5


def test_a_checkpoint_without_resume_state_is_refused(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    run = _run(digits_config, builtin_host, tmp_path)
    with pytest.raises(ConfigError, match="without the state a resume needs"):
        Trainer(run).fit(resume={"model": run.model.state_dict(), "global_step": 0})


# -- non-finite losses ------------------------------------------------------------------------


class NanEvery:
    """A loss plugin: cross-entropy, NaN on every k-th training call."""

    @torchyard.hookimpl
    def register_losses(self, register: Any) -> None:
        register("nan_every", self.factory)

    def factory(self, every: int = 5) -> Any:
        ce = torch.nn.CrossEntropyLoss()
        calls = {"n": 0}

        def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            value = ce(outputs, targets)
            if torch.is_grad_enabled():
                calls["n"] += 1
                if calls["n"] % every == 0:
                    return value * float("nan")
            return value

        return loss


def test_skip_mode_skips_nonfinite_batches_and_counts_them(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    builtin_host.add_plugin(NanEvery(), "nan-every")
    digits_config["loss"] = {"name": "nan_every", "every": 5}
    digits_config["trainer"]["on_nonfinite_loss"] = "skip"
    run = _run(digits_config, builtin_host, tmp_path)
    result = Trainer(run, Reporter(progress=False)).fit()
    batches = len(run.loader("train"))  # type: ignore[arg-type]
    counted = [row["train/skipped_batches"] for row in result.rows]
    assert sum(counted) == (batches * 2) // 5
    assert all(np.isfinite(row["train/loss"]) for row in result.rows)  # NaN never logged as a number
    assert all(torch.isfinite(t).all() for t in run.model.state_dict().values() if t.is_floating_point())
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "train/skipped_batches" in header


def test_nonfinite_gradients_stop_training(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """A finite loss whose gradient is not (sqrt at 0) stops like a NaN loss."""

    class SqrtLoss:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            def factory() -> Any:
                return lambda outputs, targets: (outputs * 0).sum().sqrt()

            register("sqrt_zero", factory)

    builtin_host.add_plugin(SqrtLoss(), "sqrt")
    digits_config["loss"] = {"name": "sqrt_zero"}
    run = _run(digits_config, builtin_host, tmp_path)
    with pytest.raises(TrainingError, match=r"gradient norm is (nan|inf) at epoch 1, batch 1 \(optimizer step 1\)"):
        Trainer(run).fit()


# -- the checkpoint format ---------------------------------------------------------------------


def test_packed_state_round_trips_and_shares_nothing_with_the_original(tmp_path: Path) -> None:
    from torchyard.checkpoint import pack, unpack

    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 2)}, 1: {"mask": torch.tensor([True, False])}},
        "groups": [{"lr": 0.1, "params": [0, 1]}],
        "tuple": (torch.arange(3), "text", None),
        "empty": torch.zeros(0, 5),
    }
    packed = pack(state)
    assert len(packed["buffers"]) == 3  # float32, bool, int64: one buffer each
    torch.save(packed, tmp_path / "p.pt")
    back = unpack(torch.load(tmp_path / "p.pt", weights_only=True))
    assert back["groups"] == state["groups"] and back["tuple"][1:] == ("text", None)
    assert torch.equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert back["state"][0]["step"].shape == () and back["empty"].shape == (0, 5)
    assert torch.equal(back["state"][1]["mask"], state["state"][1]["mask"])
    state["state"][0]["exp_avg"].add_(1)  # training goes on: the packed copy does not change
    assert not torch.equal(unpack(packed)["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_a_checkpoint_model_is_a_plain_state_dict_for_any_script(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    run = _run(digits_config, builtin_host, tmp_path)
    Trainer(run).fit()
    raw = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert raw["model"].keys() == run.model.state_dict().keys()
    assert set(raw["packed"]) == {"optimizer", "scheduler", "scaler", "rng", "loader_generator"}
    loaded = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert "packed" not in loaded
    assert loaded["optimizer"].keys() == run.optimizer.state_dict().keys()  # type: ignore[union-attr]
    assert len(loaded["rng"]) == 1 and set(loaded["rng"][0]) == {"python", "numpy", "torch", "cuda"}


def test_every_process_rng_state_restores_from_a_packed_checkpoint(tmp_path: Path) -> None:
    """Process 1's states sit behind process 0's in the packed buffers (a
    generator given such a view read the wrong bytes, or crashed)."""
    from torchyard.checkpoint import pack, unpack

    states, draws = [], []
    for seed in (1, 2):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        states.append(capture_rng())
        draws.append((random.random(), np.random.rand(), torch.rand(2)))
    torch.save(pack(states), tmp_path / "rng.pt")
    loaded = unpack(torch.load(tmp_path / "rng.pt", weights_only=True))
    for state, (py, npy, pt) in zip(loaded, draws, strict=True):
        restore_rng(state)
        assert (random.random(), np.random.rand()) == (py, npy)
        assert torch.equal(torch.rand(2), pt)


def test_last_links_to_best_and_a_later_last_leaves_best_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchyard.files import atomic_link

    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    best.write_bytes(b"epoch 1")
    last.write_bytes(b"old")
    atomic_link(best, last)
    assert last.read_bytes() == b"epoch 1" and last.stat().st_ino == best.stat().st_ino
    last.with_name("new").write_bytes(b"epoch 2")
    last.with_name("new").replace(last)  # how every file is replaced: a rename
    assert best.read_bytes() == b"epoch 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left

    def no_links(*_: Any) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr("os.link", no_links)
    atomic_link(best, last)  # falls back to an atomic copy
    assert last.read_bytes() == b"epoch 1" and last.stat().st_ino != best.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_part_way_checkpoint_needs_the_same_number_of_processes(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    digits_config["trainer"]["checkpoint_every_n_steps"] = 2
    digits_config["trainer"]["max_epochs"] = 1
    run = _run(digits_config, builtin_host, tmp_path)
    trainer = Trainer(run)
    state = trainer._state(1, epoch_done=False, batches=2, progress=_Progress(FitResult(), None))
    torch.save({"format": "torchyard-checkpoint", "version": 2, **state}, tmp_path / "part.pt")
    payload = load_checkpoint(tmp_path / "part.pt")
    payload["progress"]["world_size"] = 2  # as if written under torchrun with 2 processes
    with pytest.raises(ConfigError, match=r"part-way through an epoch by 2 process\(es\); resume it with the same number"):
        Trainer(_run(digits_config, builtin_host, tmp_path)).fit(resume=payload)


def test_resume_into_another_directory_keeps_the_history(cli: Any, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "mlp"}, "data": {"name": "digits"}, "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw"}, "metrics": [{"name": "accuracy"}], "writer": {"name": "csv"},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "progress": False, "device": "cpu", "log_every_n_steps": 1},
    }))
    assert cli("run", config, "--out", tmp_path / "first").exit_code == 0
    result = cli("run", config, "--resume", tmp_path / "first", "--out", tmp_path / "second",
                 "--allow-changes", "--set", "trainer.max_epochs=2")
    assert result.exit_code == 0, result.output
    first = (tmp_path / "first" / "metrics.csv").read_text().splitlines()
    second = (tmp_path / "second" / "metrics.csv").read_text().splitlines()
    assert len(first) == 2 and len(second) == 3
    strip = lambda line: line.rsplit(",", 1)[0]  # noqa: E731 - without time_s
    assert strip(second[1]) == strip(first[1])
    assert (tmp_path / "second" / "submission.csv").is_file()
    assert len(first) == len((tmp_path / "first" / "metrics.csv").read_text().splitlines())  # untouched
    # steps.csv goes on from the first run's rows (they are not in the checkpoint)
    steps = [line.split(",")[0] for line in (tmp_path / "second" / "steps.csv").read_text().splitlines()]
    assert steps == ["step", "1", "2", "3", "4"]


def test_a_resumed_epoch_loads_only_the_batches_not_yet_done(
    signal_host: tuple[PluginHost, SignalAt], digits_config: dict[str, Any], tmp_path: Path
) -> None:
    """Fast-forward by index: the skipped batches' samples are never read."""
    from torch.utils.data import Dataset

    class Counting(Dataset):  # type: ignore[type-arg]
        def __init__(self, inner: Any) -> None:
            self.inner, self.reads = inner, 0

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i: int) -> Any:
            self.reads += 1
            return self.inner[i]

    host, plugin = signal_host
    config = _config(digits_config, max_epochs=1)
    plugin.at = 7
    run = _run(config, host, tmp_path)
    with pytest.raises(TrainingInterrupted):
        Trainer(run).fit()
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert payload["progress"]["batches"] == 7
    plugin.at = None
    resumed = _run(config, host, tmp_path)
    counting = Counting(resumed.data.train)
    resumed.data.train = counting
    Trainer(resumed).fit(resume=payload)
    batch = config["loader"]["batch_size"]
    assert counting.reads == len(counting) - 7 * batch


def test_resume_into_another_directory_brings_the_best_checkpoint(cli: Any, tmp_path: Path) -> None:
    """The resumed epochs may never beat the best so far: predicting then
    needs the source run's best.pt, copied over."""
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "mlp"}, "data": {"name": "digits"}, "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw"}, "metrics": [{"name": "accuracy"}], "writer": {"name": "csv"},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "progress": False, "device": "cpu",
                    "monitor": "val/loss", "mode": "max"},  # "best" = highest loss: epoch 1 stays best
    }))
    assert cli("run", config, "--out", tmp_path / "first").exit_code == 0
    result = cli("run", config, "--resume", tmp_path / "first", "--out", tmp_path / "second",
                 "--allow-changes", "--set", "trainer.max_epochs=3")
    assert result.exit_code == 0, result.output
    summary = __import__("json").loads((tmp_path / "second" / "summary.json").read_text())
    assert summary["best_epoch"] == 1
    best = tmp_path / "second" / "checkpoints" / "best.pt"
    assert best.read_bytes() == (tmp_path / "first" / "checkpoints" / "best.pt").read_bytes()


def test_resuming_with_a_changed_model_shape_fails_before_touching_the_run(cli: Any, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "tiny.yaml"
    base = {
        "model": {"name": "mlp", "hidden": [16]}, "data": {"name": "digits"}, "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw"}, "metrics": [{"name": "accuracy"}], "writer": {"name": "csv"},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "progress": False, "device": "cpu"},
    }
    config.write_text(yaml.safe_dump(base))
    run = tmp_path / "first"
    assert cli("run", config, "--out", run).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = cli("run", config, "--resume", run, "--allow-changes", "--set", "model.hidden=[32]",
                 "--set", "trainer.max_epochs=2")
    assert result.exit_code == 2, result.output
    assert "--resume: the checkpoint's weights do not fit this config's model" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # config.yaml untouched
