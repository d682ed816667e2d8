"""``loader.num_workers: auto``: what it picks for the machine, the device and
the data, and that a run's config.yaml states the number it used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from torchyard import loader_config
from torchyard.config import LoaderConfig, validate_config
from torchyard.loader_config import (
    MAX_AUTO_WORKERS,
    available_cpus,
    choose_workers,
    in_memory,
    resolve_loader,
    start_method,
    unpicklable,
)
from torchyard.plugins import PluginHost
from torchyard.run import build_run, make_loader, write_resolved_config

from .conftest import fake_entry_points

# torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning per call
pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    # the tests pretend to have more CPUs than this machine may have
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
]


class Files(Dataset[Any]):
    """A dataset that reads from disk: no ``in_memory`` attribute."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Any:
        return torch.zeros(2), 0


class Cached(Files):
    in_memory = True


def images(tmp_path: Path, n: int = 8) -> Path:
    """A CSV of ``n`` tiny labelled PNGs, written beside it."""
    rows = []
    for k in range(n):
        Image.new("RGB", (8, 8), (30 * k,) * 3).save(tmp_path / f"i{k}.png")
        rows.append({"path": f"i{k}.png", "label": k % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


def image_config(csv: Path, **loader: Any) -> dict[str, Any]:
    return {
        "model": {"name": "small_cnn", "channels": 4},
        "data": {"name": "image_csv", "csv": str(csv), "image_size": 8},
        "split": {"method": "holdout", "val_fraction": 0.25},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "loader": {"batch_size": 4, **loader},
        "trainer": {"max_epochs": 1, "progress": False, "seed": 0, "device": "cpu"},
    }


# -- the choice --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "device", "processes", "expected"),
    [
        (16, "cuda", 1, 8),  # every CPU but the trainer's, capped
        (64, "cuda", 1, MAX_AUTO_WORKERS),
        (4, "cuda", 1, 3),
        (16, "cuda", 4, 3),  # torchrun's 4 processes share the 16 CPUs
        (4, "cpu", 1, 2),  # the model computes on the CPUs too: half of them load
        (2, "cpu", 1, 1),
        (1, "cpu", 1, 0),  # one CPU: workers would only compete with training
        (1, "cuda", 1, 0),
        (3, "cuda", 8, 0),
    ],
)
def test_choose_workers(cpus: int, device: str, processes: int, expected: int) -> None:
    assert choose_workers(cpus, device, processes=processes) == expected
    assert expected <= cpus


def test_available_cpus_follows_affinity_and_a_container_quota(tmp_path: Path) -> None:
    mine = len(__import__("os").sched_getaffinity(0))
    assert available_cpus(tmp_path / "absent") == mine
    (tmp_path / "unlimited").write_text("max 100000\n")
    assert available_cpus(tmp_path / "unlimited") == mine
    (tmp_path / "quota").write_text("50000 100000\n")  # half a CPU: still one
    assert available_cpus(tmp_path / "quota") == 1
    (tmp_path / "odd").write_text("garbage\n")
    assert available_cpus(tmp_path / "odd") == mine


def test_in_memory_datasets() -> None:
    tensors = TensorDataset(torch.zeros(4, 2))
    assert in_memory(tensors) and in_memory(Subset(tensors, [0, 1])) and in_memory(Cached())
    assert in_memory(ConcatDataset([tensors, Subset(Cached(), [1])]))
    assert not in_memory(Files()) and not in_memory(ConcatDataset([tensors, Files()]))
    assert not in_memory(Subset(Files(), [0]))


def test_resolve_loader() -> None:
    auto = LoaderConfig()
    on_disk = [Files(), None]
    assert resolve_loader(auto, on_disk, "cpu", deterministic=False, cpus=4) == {
        "num_workers": 2, "persistent_workers": False,
    }  # fmt: skip
    assert resolve_loader(auto, on_disk, "cuda", deterministic=False, cpus=4) == {
        "num_workers": 3, "persistent_workers": True,
    }  # fmt: skip
    # none in memory, none where exact resumption replays the order in this process
    assert resolve_loader(auto, [TensorDataset(torch.zeros(2)), Cached()], "cuda", deterministic=False, cpus=4) == {
        "num_workers": 0, "persistent_workers": False,
    }  # fmt: skip
    assert resolve_loader(auto, on_disk, "cuda", deterministic=True, cpus=4)["num_workers"] == 0
    # explicit values stay; persistent_workers' auto is only auto workers' on CUDA
    explicit = LoaderConfig(num_workers=3)
    assert resolve_loader(explicit, on_disk, "cuda", deterministic=True, cpus=4) == {"persistent_workers": False}
    kept = LoaderConfig(num_workers=3, persistent_workers=True)
    assert resolve_loader(kept, on_disk, "cuda", deterministic=False, cpus=4) == {}
    assert resolve_loader(LoaderConfig(persistent_workers=False), on_disk, "cuda", deterministic=False, cpus=4) == {
        "num_workers": 3,
    }  # fmt: skip


def test_make_loader_pins_and_keeps_workers_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 4)
    # a CUDA device object needs no GPU until a batch is loaded
    cuda = make_loader(Files(), LoaderConfig(), torch.device("cuda"), train=False)
    assert (cuda.num_workers, cuda.pin_memory, cuda.persistent_workers) == (3, True, True)
    cpu = make_loader(Files(), LoaderConfig(), torch.device("cpu"), train=False)
    assert (cpu.num_workers, cpu.pin_memory, cpu.persistent_workers) == (2, False, False)
    memory = make_loader(Cached(), LoaderConfig(), torch.device("cuda"), train=False)
    assert (memory.num_workers, memory.pin_memory, memory.persistent_workers) == (0, True, False)
    # an explicit number is used as given, persistent_workers off unless asked for, as before auto
    explicit = make_loader(Cached(), LoaderConfig(num_workers=2), torch.device("cuda"), train=False)
    assert (explicit.num_workers, explicit.persistent_workers) == (2, False)
    asked = LoaderConfig(num_workers=1, persistent_workers=True, prefetch_factor=3, pin_memory=False)
    made = make_loader(Files(), asked, torch.device("cuda"), train=False)
    assert (made.num_workers, made.persistent_workers, made.prefetch_factor, made.pin_memory) == (1, True, 3, False)
    zero = make_loader(Files(), LoaderConfig(num_workers=0), torch.device("cuda"), train=False)
    assert zero.num_workers == 0


def test_make_loader_gives_none_in_deterministic_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 4)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert make_loader(Files(), LoaderConfig(), torch.device("cpu"), train=True).num_workers == 0
    finally:
        torch.use_deterministic_algorithms(before)


def test_num_workers_values(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    for value, expected in (("auto", "auto"), (3, 3), ("3", 3), (2.0, 2), (0, 0)):
        digits_config["loader"]["num_workers"] = value
        assert validate_config(digits_config, builtin_host.registry).loader.num_workers == expected


# -- runs --------------------------------------------------------------------------


def test_an_image_run_picks_workers_bounded_by_the_cpus(
    tmp_path: Path, builtin_host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = images(tmp_path)
    config = validate_config(image_config(csv), builtin_host.registry)
    run = build_run(config, builtin_host, tmp_path / "run")
    workers = run.resolved["loader"]["num_workers"]
    cpus = available_cpus()
    assert workers == choose_workers(cpus, "cpu") and workers <= cpus
    assert run.loader("train").num_workers == workers and run.loader("val").num_workers == workers
    assert run.resolved["loader"]["persistent_workers"] is False  # a CPU run
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 6)
    run = build_run(config, builtin_host, tmp_path / "run")
    assert run.resolved["loader"] == {"num_workers": 3, "persistent_workers": False}
    train = run.loader("train")
    assert train.num_workers == 3 and train.pin_memory is False
    # deterministic: exact resumption needs the order drawn in this process
    deterministic = image_config(csv)
    deterministic["trainer"]["deterministic"] = True
    run = build_run(validate_config(deterministic, builtin_host.registry), builtin_host, tmp_path / "run")
    assert run.resolved["loader"]["num_workers"] == 0 and run.loader("train").num_workers == 0
    # an explicit number is kept
    run = build_run(validate_config(image_config(csv, num_workers=2), builtin_host.registry), builtin_host, tmp_path)
    assert run.resolved["loader"] == {"persistent_workers": False} and run.loader("train").num_workers == 2


def test_in_memory_builtins_load_without_workers(
    tmp_path: Path, builtin_host: PluginHost, digits_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 8)
    run = build_run(validate_config(digits_config, builtin_host.registry), builtin_host, tmp_path / "digits")
    assert run.resolved["loader"]["num_workers"] == 0 and run.loader("train").num_workers == 0
    table = tmp_path / "table.csv"
    pd.DataFrame({"a": [0.1, 0.5, 0.2, 0.9] * 3, "b": list("xyzx") * 3, "y": [0, 1] * 6}).to_csv(table, index=False)
    config = {
        "model": {"name": "tabular_mlp"},
        "data": {"name": "table_csv", "train": str(table), "target": "y"},
        "split": {"method": "holdout", "val_fraction": 0.25},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_epochs": 1, "progress": False, "device": "cpu"},
    }
    run = build_run(validate_config(config, builtin_host.registry), builtin_host, tmp_path / "table")
    assert run.resolved["loader"]["num_workers"] == 0 and run.loader("val").num_workers == 0


def test_config_yaml_states_the_workers_used(
    tmp_path: Path, builtin_host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 8)
    config = validate_config(image_config(images(tmp_path)), builtin_host.registry)
    run = build_run(config, builtin_host, tmp_path / "run")
    written = yaml.safe_load(write_resolved_config(tmp_path, config, run.resolved).read_text())["loader"]
    assert written["num_workers"] == 4 and written["persistent_workers"] is False
    assert written["pin_memory"] == "auto"  # the device's to say
    # the config alone (no run) keeps auto
    assert yaml.safe_load(write_resolved_config(tmp_path, config).read_text())["loader"]["num_workers"] == "auto"


@pytest.mark.slow
def test_a_run_trains_with_auto_workers_and_says_so(
    tmp_path: Path, cli: Any, write_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 2)  # one worker on the CPU
    out = tmp_path / "run"
    config = image_config(images(tmp_path))
    config["trainer"]["limit_train_batches"] = 1
    result = cli("run", write_config(config), "--out", out)
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((out / "config.yaml").read_text())["loader"]
    assert written["num_workers"] == 1 and written["persistent_workers"] is False
    # the written config runs again as it is, with the same loader
    again = cli("run", out / "config.yaml", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())["loader"] == written


def test_unpicklable_reports_why_only_where_workers_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    class Local(Dataset[Any]):
        def __init__(self) -> None:
            self.read = lambda i: i

    monkeypatch.setattr(loader_config, "start_method", lambda: "fork")
    assert unpicklable([Local()]) is None  # forked workers inherit it
    monkeypatch.setattr(loader_config, "start_method", lambda: "spawn")
    assert "Can't pickle" in str(unpicklable([None, TensorDataset(torch.zeros(2)), Local()]))
    assert unpicklable([Files(), None, TensorDataset(torch.zeros(10**6))]) is None


def test_start_method_sets_nothing() -> None:
    import multiprocessing

    before = multiprocessing.get_start_method(allow_none=True)
    assert start_method() in multiprocessing.get_all_start_methods()
    assert multiprocessing.get_start_method(allow_none=True) == before


@pytest.mark.parametrize("workers", ["auto", 2])
def test_a_dataset_workers_cannot_receive(
    workers: Any,
    tmp_path: Path,
    cli: Any,
    write_config: Any,
    digits_config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under spawn or forkserver (macOS, Windows, Linux from Python 3.14): auto
    loads in the main process and says why; an explicit count is the plugin's error."""
    fake_entry_points(monkeypatch, {"mistakes": "tests.plugins.mistakes"})
    monkeypatch.setattr(loader_config, "start_method", lambda: "spawn")
    monkeypatch.setattr(loader_config, "available_cpus", lambda: 4)
    digits_config["data"] = {"name": "lambda_digits"}
    digits_config["loader"] = {"batch_size": 64, "num_workers": workers}
    digits_config["trainer"].update(max_epochs=1, limit_train_batches=2)
    out = tmp_path / "run"
    result = cli("run", write_config(digits_config), "--out", out)
    problem = ("the dataset of data 'lambda_digits' (plugin mistakes) cannot be pickled, and worker processes "
               "start by 'spawn' here, which pickles it (AttributeError: Can't pickle local object")  # fmt: skip
    if workers == 2:
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: loader.num_workers: 2: {problem}")
        assert result.stderr.strip().endswith("; set loader.num_workers: 0") and "Traceback" not in result.output
        assert not out.exists()
        return
    assert result.exit_code == 0, result.output
    assert f"loader.num_workers: auto takes 0 workers: {problem}" in " ".join(result.output.split())
    assert yaml.safe_load((out / "config.yaml").read_text())["loader"]["num_workers"] == 0
    assert any("cannot be pickled" in w for w in json.loads((out / "summary.json").read_text())["warnings"])
