"""Image training: images per second of the same ResNet trained by a
hand-written loop, by torchyard (uncached and with ``cache: memory``), by
timm's ``train.py`` (given ``--timm-train``) and by Lightning (when
importable).

The data: ``--images`` random-ish JPEGs (smooth colour gradients plus noise,
``--jpeg-size`` pixels square) generated with PIL into a cache folder in
torchvision's ImageFolder layout, ``--classes`` classes. Every contender
trains torchvision's ``resnet18`` (``--model resnet50`` too; random weights;
timm's own, of the same layers, in timm's ``train.py``)
at ``--image-size`` pixels with SGD (lr 0.01, momentum 0.9), cross-entropy,
batch ``--batch-size``, ``--workers`` loader workers, shuffled, no
validation:

* **hand-written**: a torchvision ``ImageFolder`` (PIL decode, ``Resize``,
  ``ToTensor``, ``Normalize``), a ``DataLoader`` and a plain loop.
* **torchyard**: the same recipe as a config (the ``image_folder`` dataset
  with ``image_size``, ``to_dtype`` and ``normalize``), built with
  :func:`torchyard.run.build_run` and trained by :class:`torchyard.loop.Trainer`
  (checkpoints and ``metrics.csv`` written, to a temporary folder); once
  uncached and once with ``cache: memory``.
* **lightning**: the same model, data and optimizer in a ``LightningModule``
  (only when ``lightning`` is importable: ``pip install -e '.[bench]'``).
* **timm train.py**: ``--timm-train PATH`` to a fetched copy of timm's
  repository (or its ``train.py``; never committed), run with ``runpy`` inside
  the child, ``timm.models.create_model`` wrapped to put the same clock on its
  model (timm's ``resnet18``/``resnet50``: torchvision's layers and parameter
  count). Same data, size, batch, workers and epochs; ``--no-aug
  --interpolation bilinear`` (a resize only), no validation, ``--opt
  momentum`` (plain momentum SGD), constant lr, no weight decay or label
  smoothing. On the CPU plain fp32 (``--device cpu --no-prefetcher``); on a GPU
  ``--amp --amp-dtype bfloat16 --channels-last --torchcompile`` (the issue's
  target is resnet50: ``--model resnet50``), and then torchyard runs with the
  same settings (``precision: bf16-mixed``, ``channels_last``, ``compile``,
  ``matmul_precision: high`` for timm's TF32); the hand-written loop and
  Lightning stay plain fp32.

Each run is its own subprocess (fair peak memory: the child's
``ru_maxrss``, or ``torch.cuda.max_memory_allocated`` on CUDA), runs are
interleaved over ``--repeats``. A run trains whole epochs; the first epoch
(``--images / --batch-size`` steps) is the warm-up and fills the cache, then
``--steps`` steps are timed from the start of one training forward pass to
the start of the one ``--steps`` later (a forward pre-hook on the model, the
same for every contender, kept out of ``torch.compile``'s graph). The table gives medians; the ratio is against the
hand-written loop. A second table, from
``benchmarks/data_throughput.py``'s ``epoch()``, gives the torchyard loader's own
images/s (no model) with and without the cache from epoch 2 on.

Targets (issue 15): torchyard uncached >= 0.97x the hand-written loop; the
loader with the cache >= 2x uncached from epoch 2 on.

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/image_training.py       # ~3-5 minutes on 2 CPU cores, about 1 more with Lightning
    .venv/bin/python benchmarks/image_training.py --image-size 224 --steps 30 --json
    .venv/bin/python benchmarks/image_training.py --image-size 224 --timm-train /tmp/timm-repo
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _machine  # benchmarks/_machine.py, beside this script
import data_throughput  # benchmarks/data_throughput.py: its epoch()
import image_cache  # benchmarks/image_cache.py: its TARGET_RATIO
import numpy as np
import torch

#: The issue's target: torchyard (uncached) images/s at least this times the hand-written loop's.
TARGET_RATIO = 0.97
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
LR, MOMENTUM, SEED = 0.01, 0.9, 0


# -- the data -----------------------------------------------------------------------


def make_images(folder: Path, images: int, classes: int, size: int) -> Path:
    """ImageFolder layout under ``folder/train``; reused when already complete."""
    from PIL import Image

    root = folder / f"jpeg-{images}-{classes}-{size}" / "train"
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(SEED)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    for i in range(images):
        label = i % classes
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        slope = rng.uniform(-120, 120, size=(2, 3)).astype(np.float32)
        pixels = base + ramp[:, None, None] * slope[0] + ramp[None, :, None] * slope[1]
        pixels += rng.normal(0, 12, size=(size, size, 3)).astype(np.float32)
        pixels[:, :, label % 3] += 40  # something to learn
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
            root / f"class{label}" / f"{i:05d}.jpg", quality=90
        )
    done.touch()
    return root


# -- one run of one contender (in a child process) ------------------------------------


class StepClock:
    """Forward pre-hook: the time each training forward pass starts."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, module: torch.nn.Module, args: Any) -> None:
        if module.training:
            if self.times and torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    def attach(self, model: torch.nn.Module) -> None:
        """Register on ``model``; kept out of ``torch.compile``'s graph (no graph break, runs every step)."""
        model.register_forward_pre_hook(torch.compiler.disable(self))


def _model(name: str, classes: int, channels_last: bool = False) -> torch.nn.Module:
    import torchvision

    model: torch.nn.Module = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _image_folder_loader(opts: dict[str, Any], device: torch.device) -> tuple[Any, Any]:
    """The hand-written loop's and Lightning's data: torchvision's ``ImageFolder``
    (PIL decode, ``Resize``, ``ToTensor``, ``Normalize``) in a plain ``DataLoader``."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    size = opts["image_size"]
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])  # fmt: skip
    data = datasets.ImageFolder(opts["root"], transform=tf)
    loader = DataLoader(data, batch_size=opts["batch_size"], shuffle=True, num_workers=opts["workers"],
                        pin_memory=device.type == "cuda", drop_last=True)  # fmt: skip
    return data, loader


def run_hand_written(opts: dict[str, Any], clock: StepClock, device: torch.device) -> None:
    data, loader = _image_folder_loader(opts, device)
    model = _model(opts["model"], len(data.classes)).to(device)
    clock.attach(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(opts["epochs"]):
        for images, targets in loader:
            images, targets = (
                images.to(device, non_blocking=True),
                targets.to(device, non_blocking=True),
            )
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            loss.item()


def torchyard_config(opts: dict[str, Any], cache: str) -> dict[str, Any]:
    trainer: dict[str, Any] = {"max_epochs": opts["epochs"], "seed": SEED, "progress": False, "monitor": "train/loss",
                               "device": "cuda" if opts["gpu"] else "cpu"}  # fmt: skip
    if opts["gpu"]:
        # timm train.py's --amp --amp-dtype bfloat16 --channels-last --torchcompile, and the TF32 it turns on
        trainer.update(
            {
                "precision": "bf16-mixed",
                "channels_last": True,
                "compile": True,
                "matmul_precision": "high",
            }
        )
    return {
        "data": {
            "name": "image_folder",
            "root": opts["root"],
            "image_size": opts["image_size"],
            "cache": cache,
        },
        "transforms": {
            "train": [
                {"name": "to_dtype", "dtype": "float32", "scale": True},
                {"name": "normalize", "mean": MEAN, "std": STD},
            ]
        },
        "model": {"name": opts["model"]},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
        "loader": {
            "batch_size": opts["batch_size"],
            "num_workers": opts["workers"],
            "drop_last": True,
        },
        "trainer": trainer,
    }


def run_torchyard(opts: dict[str, Any], clock: StepClock, cache: str) -> None:
    import contextlib
    import io

    from torchyard.config import validate_config
    from torchyard.console import Reporter
    from torchyard.loop import Trainer
    from torchyard.plugins import get_host
    from torchyard.run import build_run

    host = get_host()
    config = validate_config(torchyard_config(opts, cache), host.registry)
    with tempfile.TemporaryDirectory(prefix="torchyard-bench-") as out:
        run = build_run(config, host, Path(out))
        clock.attach(run.model)
        with contextlib.redirect_stdout(io.StringIO()):
            Trainer(run, Reporter(progress=False)).fit()


def run_lightning(opts: dict[str, Any], clock: StepClock, device: torch.device) -> None:
    import lightning  # type: ignore[import-not-found,unused-ignore]

    data, loader = _image_folder_loader(opts, device)
    model = _model(opts["model"], len(data.classes))
    clock.attach(model)

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.loss_fn = torch.nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            images, targets = batch
            loss: torch.Tensor = self.loss_fn(self.model(images), targets)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)

    trainer = lightning.Trainer(max_epochs=opts["epochs"], accelerator=device.type, devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)  # fmt: skip
    trainer.fit(Module(), loader)


def child(contender: str, opts: dict[str, Any]) -> None:
    """Train once and print one JSON line: images/s over the timed steps, peak memory."""
    torch.set_num_threads(opts["threads"])
    torch.manual_seed(SEED)
    device = torch.device("cuda" if opts["gpu"] else "cpu")
    clock = StepClock()
    if contender == "hand-written":
        run_hand_written(opts, clock, device)
    elif contender.startswith("torchyard"):
        run_torchyard(opts, clock, "memory" if contender.endswith("memory") else "none")
    elif contender == "lightning":
        run_lightning(opts, clock, device)
    elif contender == "timm train.py":
        run_timm(opts, clock)
    warm, steps = opts["warmup"], opts["steps"]
    if len(clock.times) < warm + steps + 1:
        raise RuntimeError(
            f"{contender}: {len(clock.times)} training steps, expected {warm + steps + 1}"
        )
    seconds = clock.times[warm + steps] - clock.times[warm]
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # fmt: skip
    print(json.dumps({"contender": contender, "images_per_s": steps * opts["batch_size"] / seconds,
                      "seconds": seconds, "peak_mib": peak / 2**20, "steps_run": len(clock.times)}))  # fmt: skip


def run_child(contender: str, opts: dict[str, Any]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        contender,
        "--child-opts",
        json.dumps(opts),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{contender} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- timm's train.py, run inside the child ------------------------------------------------


def timm_args(opts: dict[str, Any], out: str) -> list[str]:
    """train.py's arguments for the same work: no augmentation (a bilinear resize only), no validation,
    a constant SGD lr, no weight decay or label smoothing; on a GPU its speed flags, on the CPU plain fp32.
    Its model is timm's ``resnet18``/``resnet50``: the same layers and parameter count as torchvision's."""
    args = ["--data-dir", str(Path(opts["root"]).parent), "--train-split", "train", "--val-split", "",
            "--model", opts["model"], "--num-classes", str(opts["classes"]), "--img-size", str(opts["image_size"]),
            "-b", str(opts["batch_size"]), "--epochs", str(opts["epochs"]), "-j", str(opts["workers"]),
            "--no-aug", "--interpolation", "bilinear", "--smoothing", "0",
            "--opt", "momentum", "--lr", str(LR), "--momentum", str(MOMENTUM),  # timm's "sgd" is Nesterov
            "--weight-decay", "0", "--sched", "constant", "--warmup-epochs", "0", "--output", out]  # fmt: skip
    if opts["gpu"]:
        return [*args, "--device", "cuda", "--pin-mem", "--amp", "--amp-dtype", "bfloat16", "--channels-last",
                "--torchcompile"]  # fmt: skip
    return [*args, "--device", "cpu", "--no-prefetcher"]  # timm's prefetcher is CUDA only


def run_timm(opts: dict[str, Any], clock: StepClock) -> None:
    """timm's train.py as ``__main__`` of this process; its ``create_model`` wrapped to attach ``clock``."""
    import contextlib
    import io
    import runpy

    import timm.models

    create_model = timm.models.create_model

    def create_and_clock(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model: torch.nn.Module = create_model(*args, **kwargs)
        clock.attach(model)
        return model

    timm.models.create_model = create_and_clock  # train.py imports it from timm.models when it runs
    train_py = str(Path(opts["timm_train"]).resolve())
    with tempfile.TemporaryDirectory(prefix="timm-bench-") as out:
        argv, sys.argv = sys.argv, [train_py, *timm_args(opts, out)]
        try:
            with contextlib.redirect_stdout(
                io.StringIO()
            ):  # its --result JSON; its log goes to stderr
                runpy.run_path(train_py, run_name="__main__")
        finally:
            sys.argv, timm.models.create_model = argv, create_model


# -- the loader alone: data_throughput.epoch() ---------------------------------------------


def loader_rates(opts: dict[str, Any], epochs: int) -> list[dict[str, Any]]:
    from torchyard.config import LoaderConfig
    from torchyard.run import make_loader
    from torchyard_builtins.datasets import image_cache as cache_module
    from torchyard_builtins.datasets.images import image_folder

    rows: list[dict[str, Any]] = []
    for cache in ("none", "memory"):
        cache_module._MEMORY.clear()
        bundle = image_folder(Path(opts["root"]), image_size=opts["image_size"], cache=cache,
                              train_transform=image_cache.transforms())  # fmt: skip
        config = LoaderConfig(
            batch_size=opts["batch_size"], num_workers=opts["workers"], persistent_workers=False
        )
        loader = make_loader(bundle.train, config, torch.device("cpu"), train=True)
        rates = [data_throughput.epoch(loader) for _ in range(epochs)]
        rows.append({"cache": cache, "epoch_1": rates[0], "later": statistics.median(rates[1:])})
    for row in rows:
        row["ratio"] = row["later"] / rows[0]["later"]
    return rows


# -- the parent ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=480, help="JPEGs, = the warm-up epoch (default 480)"
    )
    parser.add_argument("--classes", type=int, default=4, help="classes (default 4)")
    parser.add_argument(
        "--jpeg-size", type=int, default=256, help="side of the JPEGs (default 256)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=112,
        help="training size, e.g. 224, or the mask example's 32 (default 112)",
    )
    parser.add_argument("--model", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps after the warm-up epoch (default 20)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (default 2)")
    parser.add_argument("--workers", type=int, default=0, help="loader workers (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--data", type=Path, help="keep the generated JPEGs here (default: a temporary folder)"
    )
    parser.add_argument(
        "--timm-train",
        type=Path,
        help="a fetched copy of timm's repository, or its train.py (never committed)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-opts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.child_opts))
        return
    gpu = torch.cuda.is_available()
    train_py = (
        args.timm_train / "train.py"
        if args.timm_train and args.timm_train.is_dir()
        else args.timm_train
    )
    if train_py is not None and not train_py.is_file():
        parser.error(f"--timm-train: no timm train.py at {train_py}")
    if args.images % args.batch_size:
        parser.error("--images must be a multiple of --batch-size (whole warm-up epochs)")
    warmup = args.images // args.batch_size
    epochs = math.ceil((warmup + args.steps + 1) / warmup)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_images(args.data or Path(tmp), args.images, args.classes, args.jpeg_size)
        opts = {"root": str(root), "image_size": args.image_size, "model": args.model, "classes": args.classes,
                "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads, "gpu": gpu,
                "epochs": epochs, "warmup": warmup, "steps": args.steps,
                "timm_train": str(train_py) if train_py else None}  # fmt: skip
        contenders = ["hand-written", "torchyard", "torchyard memory"]
        notes = []
        if importlib.util.find_spec("lightning") is not None:
            contenders.append("lightning")
        else:
            notes.append("lightning: not importable (pip install -e '.[bench]'), skipped")
        if train_py is not None:
            contenders.append("timm train.py")
        else:
            notes.append(
                "timm train.py: not given (--timm-train PATH to a copy of timm's repository), skipped"
            )
        runs = []
        for repeat in range(args.repeats):
            for name in contenders:
                runs.append(run_child(name, opts))
                print(f"  repeat {repeat + 1}/{args.repeats}  {name:<16} {runs[-1]['images_per_s']:8.1f} img/s",
                      file=sys.stderr, flush=True)  # fmt: skip
        loader = loader_rates(opts, epochs=4)
    table = []
    for name in contenders:
        mine = [r for r in runs if r["contender"] == name]
        if mine:
            table.append({"contender": name, "images_per_s": statistics.median(r["images_per_s"] for r in mine),
                          "peak_mib": statistics.median(r["peak_mib"] for r in mine),
                          "runs": [r["images_per_s"] for r in mine]})  # fmt: skip
    base = table[0]["images_per_s"]
    for row in table:
        row["ratio"] = row["images_per_s"] / base
    info = {"model": args.model, "image_size": args.image_size, "jpeg_size": args.jpeg_size, "images": args.images,
            "classes": args.classes, "batch_size": args.batch_size, "warmup_steps": warmup, "steps": args.steps,
            "repeats": args.repeats, "workers": args.workers, "threads": args.threads,
            "device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
            **_machine.machine_info(), "load_average": os.getloadavg(), "targets": {"torchyard": TARGET_RATIO,
            "cache": image_cache.TARGET_RATIO}}  # fmt: skip
    if args.json:
        print(
            json.dumps(
                {**info, "training": table, "loader": loader, "notes": notes, "all_runs": runs},
                indent=2,
            )
        )
        return
    print(f"{args.model} at {args.image_size} px from {args.images} JPEGs {args.jpeg_size} px, {args.classes} classes, "
          f"batch {args.batch_size}, warm-up {warmup} steps then {args.steps} timed, {args.repeats} repeats, "
          f"{args.workers} workers, {args.threads} threads; {info['device']}, {info['nproc']} cores, "
          f"load {info['load_average'][0]:.1f}")  # fmt: skip
    print(f"{'contender':<16}  {'img/s':>8}  {'ratio':>6}  {'peak MiB':>8}")
    for row in table:
        flag = (
            "  below the target"
            if row["contender"] == "torchyard" and row["ratio"] < TARGET_RATIO
            else ""
        )
        print(
            f"{row['contender']:<16}  {row['images_per_s']:>8.1f}  {row['ratio']:>5.2f}x  {row['peak_mib']:>8.0f}{flag}"
        )
    print(
        f"loader alone (no model): {'cache':>6}  {'epoch 1 img/s':>13}  {'epochs 2+ img/s':>15}  ratio"
    )
    for r in loader:
        print(
            f"{'':<24} {r['cache']:>6}  {r['epoch_1']:>13.0f}  {r['later']:>15.0f}  {r['ratio']:.2f}x"
        )
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
