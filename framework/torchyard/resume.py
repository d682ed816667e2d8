"""What exact resumption needs beyond weights: RNG states, data order, the config.

A checkpoint written by :class:`~torchyard.loop.Trainer` holds, besides the
model, optimizer, scheduler and grad scaler:

* ``rng``: the python, numpy, torch CPU and CUDA generator states at the
  moment of the checkpoint (one entry per process of a distributed run);
* ``progress``: the epoch, how many of its batches are done, the running
  sums of the epoch's training loss, the metrics rows so far, the best
  value and the early-stopping patience left;
* ``loader_generator``: the state of the training loader's generator at the
  start of the epoch to (re)run, from which the epoch's shuffled order is
  drawn again. A resumed epoch draws that same order and skips the batches
  already done by index (:class:`ResumableSampler`), without loading them.

Exact continuation holds on the CPU in deterministic mode with
``loader.num_workers: 0`` (random augmentations in worker processes draw
from per-worker generators that a skip cannot replay).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

# IGNORED_CHANGES: re-exported, its home is config_io (read without torch by `torchyard runs`)
from torchyard.config_io import IGNORED_CHANGES, flatten_config, show_value
from torchyard.errors import ConfigError

__all__ = [
    "IGNORED_CHANGES",
    "ResumableSampler",
    "capture_rng",
    "config_differences",
    "copy_best",
    "find_resume_checkpoint",
    "require_resume_state",
    "restore_rng",
    "resume_point",
    "resume_target",
]


# -- random number generators ---------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of every global generator, as plain values and tensors
    (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        # 625 numbers as one tensor: torch.save pays per object it pickles
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every global generator back to ``state`` (from :func:`capture_rng`)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    # clone(): a state read from a checkpoint may be a view into a larger
    # buffer, and the generators read the bytes from the start of the storage
    torch.set_rng_state(state["torch"].cpu().clone())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = [s.cpu().clone() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# -- data order ------------------------------------------------------------------------


class ResumableSampler(Sampler[int]):
    """Wraps the training sampler so that an epoch can start part-way.

    ``skip`` indices (batches done x batch size) are dropped from the next
    epoch's order, once; the order itself is drawn exactly as the wrapped
    sampler draws it, so a resumed epoch visits the remaining samples in
    the order the interrupted one would have. Indices are skipped, not
    samples: nothing is loaded for the batches already done.
    """

    def __init__(self, inner: Sampler[int]) -> None:
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to a sampler that shuffles by it (``DistributedSampler``)."""
        set_epoch = getattr(self.inner, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


# -- the config of a resumed run ----------------------------------------------------------


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per dotted key whose value differs: ``key: old -> new``."""
    old, new = flatten_config(saved), flatten_config(current)
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key in IGNORED_CHANGES or old.get(key, _MISSING) == new.get(key, _MISSING):
            continue
        lines.append(f"{key}: {_show(old.get(key, _MISSING))} -> {_show(new.get(key, _MISSING))}")
    return lines


_MISSING = object()


def _show(value: Any) -> str:
    return "(unset)" if value is _MISSING else show_value(value)


def find_resume_checkpoint(resume: str, out: Path | None, config_path: Path) -> Path:
    """The checkpoint ``--resume`` names.

    ``last``: ``--out``'s ``checkpoints/last.pt``, or without ``--out`` the
    newest run of this config under ``runs/`` that has one. A directory: its
    ``checkpoints/last.pt``. Otherwise a checkpoint file.
    """
    if resume == "last":
        if out is not None:
            return _last_of(out, f"--resume last: no checkpoints/last.pt in --out {out}")
        base = Path("runs") / config_path.stem
        runs = sorted(
            (p for p in base.glob("*/checkpoints/last.pt") if p.is_file()),
            key=lambda p: p.stat().st_mtime,
        )
        if not runs:
            raise ConfigError(
                f"--resume last: no run of {config_path.name} with checkpoints/last.pt under {base}"
            )
        return runs[-1]
    path = Path(resume)
    if path.is_dir():
        return _last_of(path, f"--resume {path}: no checkpoints/last.pt in it")
    if not path.is_file():
        raise ConfigError(f"--resume {path}: file not found")
    return path


def _last_of(run_dir: Path, message: str) -> Path:
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(message)
    return path


def require_resume_state(payload: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint written without what a resume needs (RNG states,
    data order, progress): one from before they were kept, or not from a
    training loop."""
    if payload.get("progress") is None or payload.get("rng") is None:
        raise ConfigError(
            f"{where}: this checkpoint was written without the state a resume needs "
            "(RNG and data order); predict with it, or start a new run"
        )


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint lives in (``<run>/checkpoints/x.pt``), if any."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else None


# -- where a resumed run continues ------------------------------------------------------


def resume_target(
    config: Any,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    resume: str,
    allow_changes: bool,
    reporter: Any,
) -> tuple[Path, dict[str, Any], Path | None]:
    """The run directory to continue in, the checkpoint to continue from, and
    the checkpoint's own run directory when the run continues elsewhere.

    A changed config is refused (every difference listed) unless
    ``allow_changes``; keys that do not change what is computed (progress
    bar, threads) may always change.
    """
    from torchyard.checkpoint import load_checkpoint
    from torchyard.config import jsonable_config
    from torchyard.rundirs import check_unlocked, choose_run_dir

    checkpoint = find_resume_checkpoint(resume, out, config_path)
    payload = load_checkpoint(checkpoint)
    require_resume_state(payload, f"--resume {checkpoint}")
    differences = config_differences(payload.get("config") or {}, jsonable_config(config))
    if differences and not allow_changes:
        raise ConfigError(
            *(
                f"--resume {checkpoint}: config changed since the checkpoint: {line} "
                "(pass --allow-changes to resume anyway)"
                for line in differences
            )
        )
    for line in differences:
        reporter.warn(f"resuming with a changed config: {line}")
    home = run_dir_of(checkpoint)
    if out is None:
        if home is None:
            raise ConfigError(
                f"--resume {checkpoint}: the checkpoint is not inside a run directory "
                "(<run>/checkpoints/); pass --out to choose where the resumed run writes"
            )
        check_unlocked(home, "--resume")  # refused now if a run is writing there
        return home, payload, None
    if home is not None and out.resolve() == home:
        check_unlocked(out, "--resume")
        return out, payload, None
    return choose_run_dir(out, config_path, overwrite=overwrite), payload, home


def copy_best(source: Path, out_dir: Path) -> None:
    """Bring a run's ``best.pt`` (and the best K, ``trainer.save_top_k``)
    and its ``steps.csv`` into the directory a resume continues in."""
    from torchyard.files import atomic_copy
    from torchyard.topk import TOP_DIR, top_checkpoints

    best = source / "checkpoints" / "best.pt"
    if best.is_file():
        atomic_copy(best, out_dir / "checkpoints" / "best.pt")
    if (source / "steps.csv").is_file():  # its rows are not in the checkpoint
        atomic_copy(source / "steps.csv", out_dir / "steps.csv")
    for kept in top_checkpoints(source / "checkpoints"):
        (out_dir / "checkpoints" / TOP_DIR).mkdir(parents=True, exist_ok=True)
        atomic_copy(kept, out_dir / "checkpoints" / TOP_DIR / kept.name)


def resume_point(payload: dict[str, Any]) -> str:
    """Where a checkpoint resumes: ``3``, or ``2 at batch 15``."""
    progress = payload["progress"]
    if progress["epoch_done"]:
        return f"{progress['epoch'] + 1}"
    return f"{progress['epoch']} at batch {progress['batches'] + 1}"
