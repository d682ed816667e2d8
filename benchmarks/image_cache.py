"""The decoded-image cache: the image loader's images per second with ``cache:
memory`` and ``cache: disk`` against no cache, epoch 1 and the epochs after.

The data: synthetic face-mask photos from ``examples/make_mask_dataset.py``
(PNGs of ``--size`` pixels, in a temporary folder), read by the ``image_csv``
dataset resized to ``--image-size``, with the example's train transforms
(horizontal flip, ``to_dtype``, normalize), loaded by
:func:`torchyard.run.make_loader` (batch 64, shuffled, no persistent
workers: every epoch starts its workers, as by default). Each setting builds
its dataset afresh (the disk cache in a new temporary folder) and runs
``--epochs`` epochs; the table gives epoch 1 and the median of the later
epochs, and the ratio of that median to the uncached one's (the issue's
target: at least 2x from epoch 2 on).

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/image_cache.py                  # ~1 minute
    .venv/bin/python benchmarks/image_cache.py --workers 0 2 --images 4000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import data_throughput  # benchmarks/data_throughput.py, beside this script: the same data and epoch timing
import pandas as pd
import torch

from torchyard.config import LoaderConfig
from torchyard.data import Compose
from torchyard.run import make_loader
from torchyard_builtins.datasets import image_cache
from torchyard_builtins.datasets.images import image_csv

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"mask": ["wear", "incorrect", "not_wear"], "gender": ["male", "female"],
          "age_group": ["<30", "30-59", "60+"]}  # fmt: skip
#: The issue's target: images per second from epoch 2 on, cached / uncached.
TARGET_RATIO = 2.0

warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)


def transforms() -> Compose:
    from torchvision.transforms import v2

    return Compose([v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])  # fmt: skip


def measure(csv: Path, args: argparse.Namespace, workers: int, cache: str) -> dict[str, Any]:
    image_cache._MEMORY.clear()  # each setting fills its own memory cache from epoch 1
    with tempfile.TemporaryDirectory() as cache_dir:
        bundle = image_csv(str(csv), label_columns=list(LABELS), label_values=LABELS, group_column="person",
                           image_size=args.image_size, cache=cache, cache_dir=Path(cache_dir),
                           train_transform=transforms())  # fmt: skip
        config = LoaderConfig(batch_size=args.batch_size, num_workers=workers, persistent_workers=False)
        loader = make_loader(bundle.train, config, torch.device("cpu"), train=True)
        rates = [data_throughput.epoch(loader) for _ in range(args.epochs)]
    return {"workers": workers, "cache": cache, "epoch_1": rates[0], "later": statistics.median(rates[1:]),
            "epochs": rates}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--size", type=int, default=256, help="side of the PNGs in pixels (default 256)")
    parser.add_argument("--image-size", type=int, default=64, help="the dataset's image_size (default 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (default 0 2)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setting (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data", type=Path, help="reuse (or create) the synthetic data here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        csv = folder / "train" / "images.csv"
        if not csv.is_file():
            data_throughput.make_data(folder, args.images, args.size)
        images = len(pd.read_csv(csv))
        rows = [measure(csv, args, w, c) for w in args.workers for c in ("none", "memory", "disk")]
    for row in rows:
        plain = next(r for r in rows if r["workers"] == row["workers"] and r["cache"] == "none")
        row["ratio"] = row["later"] / plain["later"]
    info = {"images": images, "size": args.size, "image_size": args.image_size, "batch_size": args.batch_size,
            "epochs": args.epochs, "threads": args.threads, "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "target_ratio": TARGET_RATIO}  # fmt: skip
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=2))
        return
    print(f"{images} PNG images {args.size}x{args.size} resized to {args.image_size}, batch {args.batch_size}, "
          f"{args.epochs} epochs, torch threads {args.threads}, {os.cpu_count()} CPUs")
    print(f"{'workers':>7}  {'cache':>6}  {'epoch 1 img/s':>13}  {'epochs 2+ img/s':>15}  {'ratio':>6}")
    for r in rows:
        flag = "" if r["cache"] == "none" or r["ratio"] >= TARGET_RATIO else f"  below the {TARGET_RATIO}x target"
        print(f"{r['workers']:>7}  {r['cache']:>6}  {r['epoch_1']:>13.0f}  {r['later']:>15.0f}  "
              f"{r['ratio']:>5.2f}x{flag}")


if __name__ == "__main__":
    main()
