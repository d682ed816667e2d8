"""Data throughput: torchyard's image pipeline against a hand-written one.

Both sides read the same synthetic face-mask dataset (made with
``examples/make_mask_dataset.py`` in a temporary folder: PNG photos, a CSV of
paths with mask, gender and age-group columns) and yield the same batches:

* **raw**: a hand-written ``torch.utils.data.Dataset`` that decodes each
  file with ``torchvision.io.decode_image(path, mode=RGB)`` and applies a
  ``torchvision.transforms.v2.Compose``; a plain ``DataLoader``.
* **torchyard**: the ``image_csv`` dataset (label combination, group column,
  the up-front file check, per-sample shape check) with the same transforms
  composed by torchyard, loaded by :func:`torchyard.run.make_loader` from a
  ``loader`` config section.

The transforms (both sides): ``RandomResizedCrop(size)``,
``RandomHorizontalFlip``, ``ToDtype(float32, scale=True)``, ``Normalize``.
Same batch size, shuffling, worker count and persistent-worker setting.

Each timed run builds a fresh DataLoader and iterates one epoch over the
training images (worker start-up included, as in a real epoch); the figure
is images per second. Runs are interleaved, alternating which side goes
first (raw, torchyard, torchyard, raw, ...), after one warm-up of each. The table shows the median images per second of each
side, their ratio, and the *paired* ratio: the median over the repeats of
each torchyard run divided by the raw run next to it, which a shared
machine's slow drifts disturb less (the target applies to it). The one-off cost of
building the torchyard dataset (reading the CSV, checking that every file
exists, probing the first sample) is reported separately.

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/data_throughput.py                 # ~1 minute
    .venv/bin/python benchmarks/data_throughput.py --workers 0 2 4 --images 5000 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from torchyard.config import LoaderConfig
from torchyard.data import Compose
from torchyard.run import make_loader
from torchyard_builtins.datasets.images import image_csv

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"mask": ["wear", "incorrect", "not_wear"], "gender": ["male", "female"],
          "age_group": ["<30", "30-59", "60+"]}  # fmt: skip
#: The issue's target: torchyard's images per second at least this times the raw pipeline's.
TARGET_RATIO = 0.95

# torchvision 0.29 warns on every decode that its decoders are deprecated (for TorchCodec)
warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)


def transforms(size: int) -> list[Any]:
    from torchvision.transforms import v2

    return [
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]


class RawDataset(Dataset[Any]):
    """What one writes by hand: paths and class indices from the CSV, decode, transform."""

    def __init__(self, csv: Path, transform: Callable[[Any], Any]) -> None:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        codes = [frame[c].map({v: i for i, v in enumerate(vs)}) for c, vs in LABELS.items()]
        self.targets = ((codes[0] * 2 + codes[1]) * 3 + codes[2]).tolist()
        self.paths = [str(csv.parent / p) for p in frame["path"]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image

        image = decode_image(self.paths[index], mode=ImageReadMode.RGB)
        return self.transform(image), self.targets[index]


def make_data(folder: Path, images: int, size: int) -> Path:
    spec = importlib.util.spec_from_file_location("make_mask_dataset", ROOT / "examples" / "make_mask_dataset.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.generate(folder, people=-(-images // 7), seed=0, size=size, eval_images=0)
    return folder / "train" / "images.csv"


def epoch(loader: DataLoader[Any]) -> float:
    """Images per second over one pass."""
    start, n = time.perf_counter(), 0
    for images, _ in loader:
        n += len(images)
    return n / (time.perf_counter() - start)


def measure(csv: Path, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    from torchvision.transforms import v2

    loader_config = LoaderConfig(batch_size=args.batch_size, num_workers=workers,
                                 persistent_workers=False)  # fmt: skip
    raw_set = RawDataset(csv, v2.Compose(transforms(args.crop)))
    start = time.perf_counter()
    bundle = image_csv(str(csv), label_columns=list(LABELS), label_values=LABELS,
                       group_column="person", train_transform=Compose(transforms(args.crop)))
    build_s = time.perf_counter() - start
    assert bundle.train_targets == raw_set.targets

    def raw() -> float:
        return epoch(DataLoader(raw_set, batch_size=args.batch_size, shuffle=True, num_workers=workers))

    def torchyard() -> float:
        return epoch(make_loader(bundle.train, loader_config, torch.device("cpu"), train=True))

    raw(), torchyard()  # warm-up: page cache, imports, allocator
    results: dict[str, list[float]] = {"raw": [], "torchyard": []}
    for i in range(args.repeats):  # raw first, then torchyard first, ...
        for side in ("raw", "torchyard") if i % 2 == 0 else ("torchyard", "raw"):
            results[side].append(raw() if side == "raw" else torchyard())
    raw_median, ty_median = (statistics.median(results[k]) for k in ("raw", "torchyard"))
    # each torchyard run against the raw run next to it: robust to a shared machine's drift
    paired = statistics.median(t / r for r, t in zip(results["raw"], results["torchyard"], strict=True))
    return {"workers": workers, "raw_images_per_s": raw_median, "torchyard_images_per_s": ty_median,
            "ratio": ty_median / raw_median, "paired_ratio": paired, "build_s": build_s,
            "runs": results}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--crop", type=int, default=56, help="RandomResizedCrop size (default 56)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (default 0 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data", type=Path, help="reuse (or create) the synthetic data here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        csv = folder / "train" / "images.csv"
        if not csv.is_file():
            make_data(folder, args.images, args.size)
        images = len(pd.read_csv(csv))
        rows = [measure(csv, args, w) for w in args.workers]
    info = {"images": images, "size": args.size,
            "crop": args.crop, "batch_size": args.batch_size, "repeats": args.repeats,
            "threads": args.threads, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "target_ratio": TARGET_RATIO}  # fmt: skip
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=2))
        return
    print(f"{images} PNG images {args.size}x{args.size}, crop {args.crop}, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved epochs, torch threads {args.threads}, {os.cpu_count()} CPUs")
    print(f"{'workers':>7}  {'raw img/s':>10}  {'torchyard img/s':>15}  {'ratio':>6}  {'paired':>6}  "
          f"{'build s':>7}")  # fmt: skip
    for r in rows:
        flag = "" if r["paired_ratio"] >= TARGET_RATIO else f"  below the {TARGET_RATIO}x target"
        print(f"{r['workers']:>7}  {r['raw_images_per_s']:>10.0f}  {r['torchyard_images_per_s']:>15.0f}  "
              f"{r['ratio']:>5.2f}x  {r['paired_ratio']:>5.2f}x  {r['build_s']:>7.2f}{flag}")


if __name__ == "__main__":
    main()
