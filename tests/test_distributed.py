"""Multi-process training and prediction on torch.distributed (gloo, CPU).

Two processes started the way torchrun starts them (RANK, WORLD_SIZE,
MASTER_ADDR, ...) must compute the same validation metrics and the same
predictions as one process, with the same weights; and `torchrun ... -m
torchyard run` must train and write one set of files from process 0.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from torchyard.checkpoint import load_checkpoint
from torchyard.distributed import StridedShard, gather_in_order

from .test_images import mask_config, mask_data  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "model": {"name": "small_cnn", "channels": 8},
    "data": {"name": "digits", "val_fraction": 0.25, "test_fraction": 0.2},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "adamw", "lr": 0.01},
    "metrics": [
        {"name": "accuracy"},
        {"name": "f1", "average": "macro"},
        {"name": "roc_auc"},
        {"name": "top_k_accuracy", "k": 3},
    ],
    "writer": {"name": "csv"},
    "loader": {"batch_size": 32, "eval_batch_size": 50},
    "trainer": {"max_epochs": 2, "device": "cpu", "progress": False, "seed": 3, "num_threads": 1},
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node=2 --standalone -m torchyard ARGS`` in ``cwd``, one thread per process."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "torchyard",
         *args],
        cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_strided_shards_cover_every_sample_once() -> None:
    shards = [list(StridedShard(11, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]  # no padding
    assert gather_in_order(np.arange(5)).tolist() == list(range(5))  # one process: unchanged


# -- same weights, one process against two -------------------------------------------------


def _evaluate(out: Path, weights: Path, train_one_epoch: bool) -> dict[str, Any]:
    """Build the run, load ``weights``, validate and predict (and optionally
    train an epoch first): what every process of the test does."""
    from torchyard import distributed
    from torchyard.config import validate_config
    from torchyard.loop import Trainer
    from torchyard.plugins import get_host

    torch.set_num_threads(1)
    host = get_host()
    config = CONFIG | {"trainer": CONFIG["trainer"] | {"max_epochs": 1}}
    run = __import__("torchyard.run", fromlist=["build_run"]).build_run(
        validate_config(config, host.registry), host, out
    )
    run.model.load_state_dict(torch.load(weights, weights_only=True))
    trainer = Trainer(run)
    outcome: dict[str, Any] = {"world": distributed.world_size()}
    outcome["metrics"] = trainer.validate(run.loader("val"))
    outcome["predictions"] = trainer.predict(run.loader("test")).outputs
    if train_one_epoch:
        trainer.fit()
        # parameters only: BatchNorm running statistics are each process's own, as in DDP
        outcome["trained"] = {k: v.detach().clone() for k, v in run.model.named_parameters()}
    return outcome


def _worker(rank: int, world: int, port: int, out: str, weights: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    from torchyard import distributed

    try:
        outcome = _evaluate(Path(out) / f"rank{rank}", Path(weights), train_one_epoch=True)
        torch.save(outcome, Path(out) / f"outcome{rank}.pt")
    finally:
        distributed.teardown()


def test_two_processes_give_the_metrics_and_predictions_of_one(tmp_path: Path) -> None:
    from torchyard_builtins.models.small import SmallCNN

    torch.manual_seed(0)
    weights = tmp_path / "weights.pt"
    torch.save(SmallCNN(num_classes=10, in_channels=1, channels=8).state_dict(), weights)
    single = _evaluate(tmp_path / "single", weights, train_one_epoch=False)
    assert single["world"] == 1

    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), str(weights)), nprocs=2, join=True)
    outcomes = [torch.load(tmp_path / f"outcome{r}.pt", weights_only=False) for r in range(2)]
    for outcome in outcomes:
        assert outcome["world"] == 2
        # every sample counted once: the padding DistributedSampler adds is not used
        for key, value in single["metrics"].items():
            assert outcome["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        assert outcome["predictions"].shape == single["predictions"].shape
        np.testing.assert_allclose(outcome["predictions"], single["predictions"], rtol=1e-5, atol=1e-5)
        assert (outcome["predictions"].argmax(1) == single["predictions"].argmax(1)).all()
    # DistributedDataParallel kept the processes' parameters identical while training
    left, right = outcomes[0]["trained"], outcomes[1]["trained"]
    assert all(torch.equal(left[k], right[k]) for k in left)
    assert not all(torch.equal(left[k], torch.load(weights)[k]) for k in left)  # and they trained


# -- torchrun, end to end -------------------------------------------------------------------


def test_torchrun_trains_and_process_0_writes_one_submission(tmp_path: Path) -> None:
    # an MLP learns digits steadily in two short epochs (a CNN with BatchNorm is noisier)
    config = CONFIG | {"model": {"name": "mlp"}}
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "torchyard", "run", "digits.yaml", "--out", "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best val/accuracy:") == 1  # printed by process 0 only
    assert "2 processes" in done.stdout
    run = tmp_path / "ddp"
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["val/accuracy"]) > 0.85
    submission = read_csv(run / "submission.csv")
    ids = [r["id"] for r in submission]
    assert len(ids) == len(set(ids)) == 360  # every test sample once: 20% of 1797
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["checkpoints", "config.yaml", "metrics.csv", "report", "steps.csv", "submission.csv", "summary.json",
         "test_predictions.csv", "val_predictions.csv"]
    )

    # the same checkpoint predicted by two processes and by one: the same submission
    for name, launcher in (("one", []), ("two", [sys.executable, "-m", "torch.distributed.run",
                                                  "--nproc_per_node=2", "--standalone"])):
        args = ["-m", "torchyard", "predict", "digits.yaml", "-c", "ddp", "--out", f"predict-{name}"]
        done = subprocess.run(launcher + args if launcher else [sys.executable, *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    one = (tmp_path / "predict-one" / "submission.csv").read_text()
    assert one == (tmp_path / "predict-two" / "submission.csv").read_text()
    assert one == (run / "submission.csv").read_text()

    # the checkpoint holds both processes' RNG states; two processes resume from it
    assert len(load_checkpoint(run / "checkpoints" / "last.pt")["rng"]) == 2
    done = subprocess.run(
        command[:-2] + ["--resume", "ddp", "--allow-changes", "--set", "trainer.max_epochs=3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming epoch 3" in done.stdout
    resumed = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"] and resumed[:2] == rows


def test_a_config_error_under_torchrun_is_printed_once(tmp_path: Path) -> None:
    bad = CONFIG | {"optimizer": {"name": "adamw", "lr": -1}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "-m", "torchyard", "run", "bad.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode != 0
    assert done.stderr.count("error: optimizer.lr:") == 1
    assert not (tmp_path / "runs").exists()


def test_kfold_under_torchrun_writes_every_out_of_fold_prediction_once(tmp_path: Path) -> None:
    config = CONFIG | {
        "model": {"name": "mlp"},
        "data": {"name": "digits", "val_fraction": 0, "test_fraction": 0.2},
        "split": {"method": "kfold", "folds": 3},
        "metrics": [{"name": "accuracy"}],
    }
    (tmp_path / "kfold.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = torchrun(tmp_path, "run", "kfold.yaml", "--out", "kfold")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("out-of-fold val/accuracy:") == 1
    run = tmp_path / "kfold"
    oof = read_csv(run / "oof.csv")
    assert len({r["id"] for r in oof}) == len(oof) == 1437  # 80% of 1797, each once
    assert all(int(r["target"]) >= 0 for r in oof)  # every labelled sample was predicted by its fold
    assert len(read_csv(run / "submission.csv")) == 360
    assert all((run / f"fold_{k}" / "checkpoints" / "best.pt").is_file() for k in range(3))


def test_ctrl_c_under_torchrun_stops_every_process_and_resumes_exactly(tmp_path: Path) -> None:
    """torchrun forwards SIGINT to every process; they stop at the same step,
    process 0 writes last.pt (both processes' RNG states) and prints a
    torchrun resume command, which ends where an uninterrupted run ends."""
    import signal
    import time

    config = CONFIG | {
        "model": {"name": "mlp", "dropout": 0.3},
        "loader": {"batch_size": 4},
        "metrics": [{"name": "accuracy"}],
        "trainer": CONFIG["trainer"] | {"max_epochs": 3, "deterministic": True, "checkpoint_every_n_steps": 5},
    }
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "torchyard"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, "run", "ddp.yaml", "--out", "reference"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    process = subprocess.Popen([*launch, "run", "ddp.yaml", "--out", "stopped"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        try:
            progress = load_checkpoint(last)["progress"] if last.is_file() else None
        except Exception:  # noqa: BLE001 - being replaced: read again
            progress = None
        if progress and progress["epoch"] == 2 and not progress["epoch_done"]:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # to torchrun, which forwards it
    out, err = process.communicate(timeout=300)
    assert err.count("interrupted (SIGINT) at epoch") == 1, err[-3000:]
    resume = next(line for line in err.splitlines() if line.startswith("resume with: "))
    assert resume.startswith("resume with: torchrun --nproc_per_node=2 -m torchyard run ddp.yaml")
    payload = load_checkpoint(last)
    assert len(payload["rng"]) == 2 and payload["progress"]["world_size"] == 2

    done = subprocess.run([*launch, "run", "ddp.yaml", "--resume", str(last)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in read_csv(tmp_path / "reference" / "metrics.csv")]
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in read_csv(tmp_path / "stopped" / "metrics.csv")] == strip
    left = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")["model"]
    right = load_checkpoint(last)["model"]
    assert all(torch.equal(left[k], right[k]) for k in left)


def test_torchrun_processes_and_their_workers_share_the_image_caches(
    tmp_path: Path,
    mask_data: Path,  # noqa: F811 - the fixture
) -> None:
    """Two processes, each with a loader worker, fill one disk cache file
    (and each its own memory cache) and train alike with either. (That the
    caches give the decoded pixels, and a run's metrics, is test_image_cache's.)"""
    metrics = {}
    for cache in ("disk", "memory"):
        config = mask_config(mask_data)
        config["data"].update(cache=cache, cache_dir=str(tmp_path / "cache"))
        config["loader"] = {"batch_size": 16, "num_workers": 1}
        config["trainer"].update(max_epochs=2, device="cpu", num_threads=1)
        (tmp_path / f"{cache}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        done = torchrun(tmp_path, "run", f"{cache}.yaml", "--out", cache)
        assert done.returncode == 0, done.stderr[-3000:]
        metrics[cache] = [{k: v for k, v in row.items() if k.startswith(("train/", "val/"))}
                          for row in read_csv(tmp_path / cache / "metrics.csv")]  # fmt: skip
    assert len(metrics["disk"]) == 2 and "val/f1" in metrics["disk"][0]
    assert metrics["memory"] == metrics["disk"]
    files = sorted((tmp_path / "cache" / "v2-16x16-rgb").iterdir(), key=lambda p: p.stat().st_size)
    row = 20 + 3 * 16 * 16
    for file in files:  # the test images' and the training images': every row filled, by either process
        rows = np.fromfile(file, dtype=np.uint8).reshape(-1, row)
        assert rows[:, :20].any(axis=1).all()
    assert [p.stat().st_size // row for p in files] == [
        len(read_csv(mask_data / "eval" / "info.csv")), len(read_csv(mask_data / "train" / "images.csv"))
    ]


def test_a_compiled_channels_last_model_trains_under_torchrun(tmp_path: Path) -> None:
    """DistributedDataParallel wrapped first, compiled after (aot_eager: cheap):
    it trains as the plain model does under torchrun, and the checkpoint holds
    the plain model's weights, which load without compile."""
    rows = {}
    for name, speed in (("plain", {}), ("compiled", {"channels_last": True, "compile": {"backend": "aot_eager"}})):
        config = CONFIG | {"metrics": [{"name": "accuracy"}],
                           "trainer": {**CONFIG["trainer"], "max_epochs": 1, **speed}}  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        done = torchrun(tmp_path, "run", f"{name}.yaml", "--out", name)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 processes" in done.stdout
        [rows[name]] = read_csv(tmp_path / name / "metrics.csv")
    # the same synchronised steps: one process's unsynchronised gradients would drift from these
    assert float(rows["compiled"]["train/loss"]) == pytest.approx(float(rows["plain"]["train/loss"]), rel=1e-5)
    assert float(rows["compiled"]["val/loss"]) == pytest.approx(float(rows["plain"]["val/loss"]), rel=1e-2)
    weights = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "best.pt")["model"]
    assert not [key for key in weights if "_orig_mod" in key or key.startswith("module.")]
    import torchyard

    model = torchyard.load(tmp_path / "compiled").models[0]
    assert not isinstance(model, torch._dynamo.eval_frame.OptimizedModule)
