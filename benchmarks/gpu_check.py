"""Check torchyard's CUDA paths on a machine that has a GPU (run by hand).

CI has no GPU, so the CUDA-only code -- device moves, pinned memory with
non-blocking copies, bf16 and fp16 autocast with gradient scaling, metric
states on the device, checkpoints written on the GPU and read on a CPU --
is exercised here. Each check prints one line; the script exits non-zero
if any fails and can write everything as JSON::

    python benchmarks/gpu_check.py --json gpu_check.json

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchyard.checkpoint import load_checkpoint
from torchyard.config import validate_config
from torchyard.console import Reporter
from torchyard.errors import ConfigError
from torchyard.loop import Trainer
from torchyard.pipeline import fit_and_submit
from torchyard.plugins import get_host
from torchyard.run import build_run

RESULTS: list[dict[str, Any]] = []


def config(**trainer: Any) -> dict[str, Any]:
    return {
        "model": {"name": "small_cnn", "channels": 32},
        "data": {"name": "digits"},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "scheduler": {"name": "cosine_annealing_lr", "T_max": 6},
        "metrics": [{"name": "accuracy"}, {"name": "f1"}],
        "writer": {"name": "csv"},
        "loader": {"batch_size": 32},
        "trainer": {"max_epochs": 6, "device": "cuda", "progress": False, "seed": 0, **trainer},
    }


def make_run(data: dict[str, Any], out: Path) -> Any:
    host = get_host()
    out.mkdir(parents=True, exist_ok=True)
    return build_run(validate_config(data, host.registry), host, out)


def check(name: str) -> Callable[[Callable[[Path], dict[str, Any]]], Callable[[Path], None]]:
    def decorate(func: Callable[[Path], dict[str, Any]]) -> Callable[[Path], None]:
        def run(tmp: Path) -> None:
            started = time.perf_counter()
            try:
                details = func(tmp / name)
                ok = True
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                details = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
                ok = False
            seconds = time.perf_counter() - started
            RESULTS.append({"check": name, "ok": ok, "seconds": round(seconds, 2), **details})
            summary = {k: v for k, v in details.items() if k != "traceback"}
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({seconds:.1f}s) {json.dumps(summary, default=str)}")

        return run

    return decorate


@check("precision-32")
def precision_32(out: Path) -> dict[str, Any]:
    return _train(out, "32")


@check("precision-bf16-mixed")
def precision_bf16(out: Path) -> dict[str, Any]:
    return _train(out, "bf16-mixed")


@check("precision-16-mixed")
def precision_16(out: Path) -> dict[str, Any]:
    details = _train(out, "16-mixed")
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["scaler"] is not None and "scale" in last["scaler"], "GradScaler state not saved"
    details["grad_scale"] = float(last["scaler"]["scale"])
    return details


def _train(out: Path, precision: str) -> dict[str, Any]:
    run = make_run(config(precision=precision), out)
    assert run.device.type == "cuda", run.device
    loader = run.loader("train")
    assert loader is not None and loader.pin_memory, "pin_memory should default to True on CUDA"
    assert next(run.model.parameters()).is_cuda
    assert all(getattr(m, n).is_cuda for m in run.metrics.values() for n in m._defaults)
    started = time.perf_counter()
    summary = fit_and_submit(run, Reporter(progress=False))
    seconds = time.perf_counter() - started
    assert summary["best_value"] >= 0.9, summary["best_value"]
    return {
        "best_val_accuracy": round(summary["best_value"], 4),
        "epochs": summary["epochs"],
        "seconds_per_epoch": round(seconds / summary["epochs"], 3),
    }


@check("cuda-checkpoint-predicts-on-cpu")
def cuda_checkpoint_on_cpu(out: Path) -> dict[str, Any]:
    gpu_run = make_run(config(max_epochs=2), out / "gpu")
    gpu_trainer = Trainer(gpu_run)
    gpu_trainer.fit()
    gpu_outputs = gpu_trainer.predict(gpu_run.loader("test")).outputs
    payload = load_checkpoint(out / "gpu" / "checkpoints" / "last.pt", map_location="cpu")
    cpu_run = make_run(config(max_epochs=2, device="cpu"), out / "cpu")
    cpu_run.model.load_state_dict(payload["model"])
    cpu_outputs = Trainer(cpu_run).predict(cpu_run.loader("test")).outputs
    agree = float((gpu_outputs.argmax(1) == cpu_outputs.argmax(1)).mean())
    assert agree >= 0.99, agree
    return {"argmax_agreement": agree, "max_abs_diff": float(abs(gpu_outputs - cpu_outputs).max())}


@check("missing-gpu-index-is-explained")
def missing_index(out: Path) -> dict[str, Any]:
    index = torch.cuda.device_count()
    try:
        make_run(config(device=f"cuda:{index}"), out)
    except ConfigError as e:
        assert f"only {index} CUDA device(s) exist" in str(e), str(e)
        return {"message": str(e)}
    raise AssertionError("no error for a missing GPU index")


@check("auto-picks-cuda")
def auto_device(out: Path) -> dict[str, Any]:
    run = make_run(config(device="auto", max_epochs=1), out)
    assert run.device.type == "cuda"
    return {"device": str(run.device)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    with tempfile.TemporaryDirectory() as tmp:
        for step in (auto_device, precision_32, precision_bf16, precision_16,
                     cuda_checkpoint_on_cpu, missing_index):
            step(Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(
            {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": RESULTS},
            indent=2,
        ))
    return 0 if all(r["ok"] for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
