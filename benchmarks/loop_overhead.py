"""Loop overhead: torchyard's training loop against a hand-written PyTorch loop.

Both loops train the same model (the built-in ``small_cnn``) on the same data
(the built-in ``digits`` dataset) with the same optimizer (AdamW, lr 3e-3,
weight decay 0.01), the same loss (cross-entropy), the same seed and batch
size 32, on the CPU with a fixed number of torch threads. No LR scheduler.

* **raw**: a plain loop -- per epoch, a training pass (``zero_grad``,
  forward, loss, ``backward``, ``step``, the running loss read with
  ``.item()``) and a validation pass under ``torch.inference_mode``
  computing loss and accuracy.
* **torchyard**: the same recipe as a config dict, validated with
  :func:`torchyard.config.validate_config`, built with
  :func:`torchyard.run.build_run` and trained with
  :meth:`torchyard.loop.Trainer.fit`, with torchyard's default features on:
  per-step loss tracking, accuracy and macro-F1 on validation, best and last
  checkpoints and ``metrics.csv`` written (to a temporary directory), and the
  reporter of a normal run whose output is not a terminal (epoch lines, no
  progress bar).

Runs are interleaved (raw, torchyard, raw, torchyard, ...) after one warm-up
run of each, so that slow drifts of a shared machine hit both alike. Each run
builds its model and data afresh (untimed) and then times its epochs; the
figure per run is wall seconds divided by epochs, and the table shows the
median over the repetitions.

Both loops consume the random number generators in the same order, so with
``--threads 1`` they end on the same training loss, validation loss and
accuracy: the table says whether they did, as a check that both did the same
work.

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/loop_overhead.py            # ~1-2 minutes
    .venv/bin/python benchmarks/loop_overhead.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _machine  # benchmarks/_machine.py, beside this script
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from torchyard.config import validate_config
from torchyard.console import Reporter
from torchyard.loop import Trainer
from torchyard.plugins import get_host
from torchyard.run import build_run
from torchyard_builtins.datasets.sklearn_toys import digits
from torchyard_builtins.models.small import SmallCNN

SEED = 42
BATCH_SIZE = 32
LR = 3e-3
WEIGHT_DECAY = 0.01
#: The issue's target: torchyard's seconds per epoch at most this times the raw loop's.
TARGET_RATIO = 1.05


@dataclass(frozen=True)
class RunResult:
    """One timed run of one loop."""

    loop: str
    epochs: int
    #: Wall-clock seconds of all epochs.
    seconds: float
    #: CPU seconds of this process over the same span (less sensitive to
    #: other processes on a shared machine; blind to time spent waiting on I/O).
    cpu_seconds: float
    #: Where training ended: the same in both loops when they did the same work.
    train_loss: float
    val_loss: float
    val_accuracy: float

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.epochs

    @property
    def cpu_seconds_per_epoch(self) -> float:
        return self.cpu_seconds / self.epochs


# -- the hand-written loop -------------------------------------------------------


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch the way torchyard's ``seed_everything`` does."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_raw(epochs: int) -> RunResult:
    """Train with a plain PyTorch loop; time the epochs only."""
    seed_all(SEED)
    data = digits()
    assert data.val is not None
    model = SmallCNN(num_classes=10, in_channels=1)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator()
    generator.manual_seed(SEED)
    train_loader = DataLoader(data.train, batch_size=BATCH_SIZE, shuffle=True, generator=generator)
    val_loader = DataLoader(data.val, batch_size=BATCH_SIZE, shuffle=False)

    train_loss = val_loss = accuracy = float("nan")
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        for inputs, targets in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            seen += len(targets)
        train_loss = loss_sum / seen

        model.eval()
        loss_total = torch.zeros(())
        correct, total = 0, 0
        with torch.inference_mode():
            for inputs, targets in val_loader:
                outputs = model(inputs)
                loss_total += loss_fn(outputs, targets) * len(targets)
                correct += int((outputs.argmax(dim=-1) == targets).sum())
                total += len(targets)
        val_loss = (loss_total / total).item()
        accuracy = correct / total
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return RunResult("raw", epochs, seconds, cpu_seconds, train_loss, val_loss, accuracy)


# -- torchyard ---------------------------------------------------------------------


def torchyard_config(epochs: int) -> dict[str, Any]:
    """The raw loop's recipe as a torchyard config (cf. examples/digits.yaml)."""
    return {
        "model": {"name": "small_cnn"},
        "data": {"name": "digits"},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY},
        "metrics": [{"name": "accuracy"}, {"name": "f1", "average": "macro"}],
        "loader": {"batch_size": BATCH_SIZE},
        "trainer": {
            "max_epochs": epochs,
            "device": "cpu",
            "monitor": "val/accuracy",
            "seed": SEED,
        },
    }


def run_torchyard(epochs: int) -> RunResult:
    """Train through torchyard's config, run and loop; time ``fit()`` only."""
    host = get_host()
    config = validate_config(torchyard_config(epochs), host.registry)
    # The reporter of `torchyard run` (progress bar asked for), with stdout
    # captured: not a terminal, so epoch lines are formatted and printed and
    # the progress bar stays off, as when a run's output goes to a log file.
    with tempfile.TemporaryDirectory(prefix="torchyard-bench-") as out:
        run = build_run(config, host, Path(out))
        with contextlib.redirect_stdout(io.StringIO()) as captured:
            reporter = Reporter(progress=True)
            trainer = Trainer(run, reporter)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = trainer.fit()
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        _check_torchyard_run(Path(out), captured.getvalue(), reporter, epochs)
    last = result.rows[-1]
    return RunResult(
        "torchyard",
        epochs,
        seconds,
        cpu_seconds,
        float(last["train/loss"]),
        float(last["val/loss"]),
        float(last["val/accuracy"]),
    )


def _check_torchyard_run(out: Path, printed: str, reporter: Reporter, epochs: int) -> None:
    """Refuse a measurement that skipped the work it claims to include."""
    problems = []
    if reporter.enabled:
        problems.append("the progress bar was on (stdout was a terminal)")
    if printed.count("\n") < epochs:
        problems.append("the reporter did not print one line per epoch")
    for name in ("metrics.csv", "checkpoints/best.pt", "checkpoints/last.pt"):
        if not (out / name).is_file():
            problems.append(f"{name} was not written")
    if problems:
        raise RuntimeError("torchyard run: " + "; ".join(problems))


# -- measuring and reporting ---------------------------------------------------------


LOOPS: dict[str, Callable[[int], RunResult]] = {"raw": run_raw, "torchyard": run_torchyard}


def measure(epochs: int, repeats: int, *, verbose: bool) -> list[RunResult]:
    """One untimed warm-up run of each loop, then ``repeats`` interleaved pairs."""
    for fn in LOOPS.values():
        fn(1)
    results: list[RunResult] = []
    for i in range(repeats):
        for name, fn in LOOPS.items():
            result = fn(epochs)
            results.append(result)
            if verbose:
                print(
                    f"  repeat {i + 1}/{repeats}  {name:<9}  {result.seconds_per_epoch:.4f} s/epoch",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def summarize(results: Sequence[RunResult], epochs: int, repeats: int, threads: int) -> dict[str, Any]:
    """Medians per loop, the ratio torchyard/raw and the machine it ran on."""
    per_loop: dict[str, dict[str, Any]] = {}
    for name in LOOPS:
        runs = [r for r in results if r.loop == name]
        wall = [r.seconds_per_epoch for r in runs]
        cpu = [r.cpu_seconds_per_epoch for r in runs]
        per_loop[name] = {
            "median_s_per_epoch": statistics.median(wall),
            "min_s_per_epoch": min(wall),
            "max_s_per_epoch": max(wall),
            "median_cpu_s_per_epoch": statistics.median(cpu),
            "final_train_loss": runs[-1].train_loss,
            "final_val_loss": runs[-1].val_loss,
            "final_val_accuracy": runs[-1].val_accuracy,
        }
    raw = [r for r in results if r.loop == "raw"]
    ours = [r for r in results if r.loop == "torchyard"]
    ratio = per_loop["torchyard"]["median_s_per_epoch"] / per_loop["raw"]["median_s_per_epoch"]
    cpu_ratio = (
        per_loop["torchyard"]["median_cpu_s_per_epoch"] / per_loop["raw"]["median_cpu_s_per_epoch"]
    )
    paired = statistics.median(
        t.seconds / r.seconds for t, r in zip(ours, raw, strict=True)
    )
    return {
        "benchmark": "loop_overhead",
        "epochs": epochs,
        "repeats": repeats,
        "threads": threads,
        "batch_size": BATCH_SIZE,
        "loops": per_loop,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "paired_ratio_median": paired,
        "same_result": same_result(results),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "machine": machine_info(),
        "runs": [asdict(r) for r in results],
    }


def same_result(results: Sequence[RunResult], tolerance: float = 1e-4) -> bool:
    """Whether every run of both loops ended on the same losses and accuracy.

    Tensor sums of the validation loss may differ in the last bits between
    the loops; beyond ``tolerance``, the loops did not do the same work.
    """
    first = results[0]
    return all(
        abs(r.train_loss - first.train_loss) <= tolerance
        and abs(r.val_loss - first.val_loss) <= tolerance
        and r.val_accuracy == first.val_accuracy
        for r in results
    )


def machine_info() -> dict[str, Any]:
    """The machine, and the torch version."""
    return {**_machine.machine_info(), "torch": torch.__version__}


def print_table(summary: dict[str, Any]) -> None:
    """The summary as a small text table."""
    loops = summary["loops"]
    raw = loops["raw"]
    print(
        f"loop overhead: small_cnn on digits, batch {summary['batch_size']}, CPU, "
        f"{summary['threads']} thread(s), {summary['epochs']} epochs x {summary['repeats']} repeats"
    )
    print(
        f"{'loop':<10} {'s/epoch':>8} {'min':>8} {'max':>8} {'x raw':>6}"
        f" {'cpu s/epoch':>12} {'x raw':>6} {'val acc':>8}"
    )
    for name, row in loops.items():
        print(
            f"{name:<10} {row['median_s_per_epoch']:>8.4f} {row['min_s_per_epoch']:>8.4f} "
            f"{row['max_s_per_epoch']:>8.4f} "
            f"{row['median_s_per_epoch'] / raw['median_s_per_epoch']:>6.3f} "
            f"{row['median_cpu_s_per_epoch']:>12.4f} "
            f"{row['median_cpu_s_per_epoch'] / raw['median_cpu_s_per_epoch']:>6.3f} "
            f"{row['final_val_accuracy']:>8.4f}"
        )
    print(
        "same final losses and accuracy in every run of both loops: "
        + ("yes" if summary["same_result"] else "NO (the loops did different work)")
    )
    verdict = "meets" if summary["meets_target"] else "MISSES"
    print(
        f"ratio torchyard/raw (median wall s/epoch): {summary['ratio']:.3f}; "
        f"median of paired ratios {summary['paired_ratio_median']:.3f}; "
        f"CPU time {summary['cpu_ratio']:.3f}"
    )
    print(f"{verdict} the target: torchyard <= {summary['target_ratio']}x the raw loop")
    m = summary["machine"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, python {m['python']}, torch {m['torch']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: --epochs, --repeats, --threads, --json, --quiet."""
    parser = argparse.ArgumentParser(
        description="Seconds per epoch of torchyard's loop against a hand-written PyTorch loop."
    )
    parser.add_argument("--epochs", type=int, default=8, help="Epochs per run (default: 8).")
    parser.add_argument(
        "--repeats", type=int, default=10, help="Timed runs of each loop (default: 10)."
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (default: 1)."
    )
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.add_argument(
        "--quiet", action="store_true", help="Do not report each run on stderr."
    )
    args = parser.parse_args(argv)
    for option in ("epochs", "repeats", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then print a table (or JSON with every run)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = measure(args.epochs, args.repeats, verbose=not args.quiet)
    summary = summarize(results, args.epochs, args.repeats, args.threads)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
