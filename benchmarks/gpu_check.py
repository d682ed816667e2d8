"""Check torchyard's CUDA paths on a machine that has a GPU (run by hand).

CI has no GPU, so the CUDA-only code -- device moves, pinned memory with
non-blocking copies, bf16 and fp16 autocast with gradient scaling, metric
states on the device, checkpoints written on the GPU and read on a CPU, the
GPU step settings (cudnn.benchmark, TF32, channels_last, torch.compile with
inductor and CUDA graphs, with EMA) and ``num_workers: auto`` with the image
cache -- is exercised here. Each check prints one line; the script exits non-zero
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


@check("speed-settings-with-ema")
def speed_settings(out: Path) -> dict[str, Any]:
    """bf16 + TF32 + channels_last + inductor compile + EMA: trains, and saves a plain checkpoint."""
    data = config(precision="bf16-mixed", matmul_precision="high", channels_last=True, compile=True)
    data["callbacks"] = [{"name": "ema", "decay": 0.9}]
    run = make_run(data, out)
    assert torch.backends.cudnn.benchmark, "cudnn.benchmark should be on without deterministic"
    assert torch.get_float32_matmul_precision() == "high"
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in run.model.parameters() if p.dim() == 4)
    started = time.perf_counter()
    summary = fit_and_submit(run, Reporter(progress=False))
    seconds = time.perf_counter() - started
    assert summary["best_value"] >= 0.9, summary["best_value"]
    weights = load_checkpoint(out / "checkpoints" / "best.pt", map_location="cpu")["model"]
    assert not [k for k in weights if "_orig_mod" in k], "compile's prefix leaked into the checkpoint"
    import torchyard

    predictor = torchyard.load(out, device="cpu")  # a plain model on a CPU
    assert not isinstance(predictor.models[0], torch._dynamo.eval_frame.OptimizedModule)
    return {"best_val_accuracy": round(summary["best_value"], 4), "seconds": round(seconds, 1)}


@check("compile-reduce-overhead")
def reduce_overhead(out: Path) -> dict[str, Any]:
    """CUDA graphs: every evaluation batch's outputs kept (cloned), as eager gives them."""
    run = make_run(config(max_epochs=2, compile={"mode": "reduce-overhead"}), out)
    trainer = Trainer(run)
    trainer.fit()
    compiled = trainer.predict(run.loader("test")).outputs
    run.model.eval()
    with torch.inference_mode():
        eager = torch.cat([run.model(x.to(run.device)).float().cpu() for x, *_ in run.loader("test")])
    diff = float(abs(torch.as_tensor(compiled) - eager).max())
    assert diff < 1e-2, diff
    return {"max_abs_diff": diff}


@check("image-cache-auto-workers")
def image_cache_workers(out: Path) -> dict[str, Any]:
    """An image run on CUDA: auto workers (persistent, pinned) filling the memory cache."""
    sys.path.insert(0, str(Path(__file__).parent))
    import image_training  # benchmarks/image_training.py: its JPEG set

    root = image_training.make_images(out, images=256, classes=4, size=96)
    data = config(max_epochs=2)
    data.update(data={"name": "image_folder", "root": str(root), "image_size": 64, "cache": "memory"},
                split={"method": "holdout", "val_fraction": 0.25},
                model={"name": "resnet18"}, writer=None, scheduler=None,
                transforms={"train": [{"name": "to_dtype", "dtype": "float32", "scale": True}]})  # fmt: skip
    run = make_run(data, out / "run")
    loader = run.loader("train")
    assert loader.num_workers > 0 and loader.persistent_workers and loader.pin_memory, (
        loader.num_workers, loader.persistent_workers, loader.pin_memory)  # fmt: skip
    summary = fit_and_submit(run, Reporter(progress=False))
    cache = run.data.train.dataset.cache if hasattr(run.data.train, "dataset") else run.data.train.cache
    assert bool(cache.filled.all()), "the workers did not fill the shared cache"
    return {"num_workers": loader.num_workers, "epochs": summary["epochs"]}


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
                     cuda_checkpoint_on_cpu, missing_index, speed_settings, reduce_overhead,
                     image_cache_workers):
            step(Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(
            {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": RESULTS},
            indent=2,
        ))
    return 0 if all(r["ok"] for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
