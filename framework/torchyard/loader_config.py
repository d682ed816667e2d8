"""The ``loader`` section (:class:`LoaderConfig`) and what its ``auto`` values become.

``loader.num_workers: auto`` (the default) picks worker processes for the
machine: none for a dataset held in memory (indexing a tensor costs less than
handing a batch between processes) or under ``trainer.deterministic: true``
(exact resumption replays the data order in the main process only), otherwise
a share of the CPUs this process may use (:func:`choose_workers`). With
``auto`` workers on a CUDA device, ``persistent_workers`` is on as well.
:func:`resolve_loader` returns the values a run uses, which its
``config.yaml`` states.

A dataset says it is held in memory with a true ``in_memory`` attribute; a
``TensorDataset`` is, and so are subsets and concatenations of such datasets
(:func:`in_memory`).

Workers started by ``fork`` (Linux, before Python 3.14) inherit the dataset;
started by ``spawn`` (macOS, Windows) or ``forkserver`` (Linux from Python
3.14) they receive it pickled, which a dataset holding a lambda or a local
function cannot be (:func:`unpicklable`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from torchyard.config_io import show_value
from torchyard.params import ParamsModel

__all__ = [
    "MAX_AUTO_WORKERS",
    "LoaderConfig",
    "available_cpus",
    "choose_workers",
    "in_memory",
    "resolve_loader",
    "start_method",
    "unpicklable",
]

MAX_WORKERS = 256
"""The most ``loader.num_workers`` takes."""

MAX_AUTO_WORKERS = 8
"""The most workers ``num_workers: auto`` picks: past this, decoding rarely keeps
up any better and every worker holds its own copy of the dataset object."""


class LoaderConfig(ParamsModel):
    """DataLoader settings shared by every split."""

    batch_size: int = Field(32, ge=1, le=1 << 24, description="Training batch size.")
    eval_batch_size: int | None = Field(
        None, ge=1, le=1 << 24, description="Batch size for validation and prediction; default: batch_size."
    )
    num_workers: Annotated[int, Field(ge=0, le=MAX_WORKERS)] | Literal["auto"] = Field(
        "auto",
        description="Worker processes loading data; 'auto': none for in-memory datasets or "
        "trainer.deterministic, else a share of the CPUs (at most 8).",
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked host memory for faster GPU copies; 'auto': on CUDA."
    )
    persistent_workers: bool | Literal["auto"] = Field(
        "auto",
        description="Keep worker processes alive between epochs (needs num_workers > 0); "
        "'auto': on when num_workers is 'auto' and picks workers for a CUDA device.",
    )
    prefetch_factor: int | None = Field(
        None, ge=1, le=1024, description="Batches each worker loads ahead (needs num_workers > 0)."
    )
    shuffle: bool = Field(True, description="Shuffle the training split every epoch.")
    sampler: Literal["random", "balanced"] = Field(
        "random",
        description="'random': each training sample once per epoch (shuffled as shuffle says); "
        "'balanced': samples drawn with replacement so that every class (or bin of regression "
        "values) comes up equally often, as many per epoch as the training split holds.",
    )
    drop_last: bool = Field(False, description="Drop the last incomplete training batch.")

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        # checked here, as one message: the union's branches would each report
        # (under their pydantic names), and `true` would pass as 1 worker
        if value == "auto" and isinstance(value, str):
            return value
        if isinstance(value, str) and value.strip().isdigit() or isinstance(value, float) and value.is_integer():
            value = int(value)  # as pydantic reads "2" and 2.0 for an int
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected a number of workers or 'auto', got {show_value(value)}")
        if not 0 <= value <= MAX_WORKERS:
            bound = f"<= {MAX_WORKERS}" if value > 0 else ">= 0"
            shown = show_value(value) if len(str(value)) <= 24 else "a longer number"
            raise ValueError(f"expected a number {bound}, got {shown}")
        return value


def choose_workers(cpus: int, device_type: str, *, processes: int = 1) -> int:
    """Worker processes for one loader of one training process.

    The CPUs are shared among the ``processes`` of a torchrun job on this
    machine. On CUDA the model runs on the GPU, so every CPU but the one the
    training process needs can decode; elsewhere the model computes on the
    same CPUs, so half of them load data. One CPU gets no workers: they would
    only compete with the training process. At most :data:`MAX_AUTO_WORKERS`.
    """
    per_process = max(1, cpus // max(1, processes))
    spare = per_process - 1 if device_type == "cuda" else per_process // 2
    return max(0, min(MAX_AUTO_WORKERS, spare))


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may run on: its affinity mask where the platform
    has one (else ``os.cpu_count()``), lowered to a container's CPU quota
    (cgroup v2 ``cpu.max``) when one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 file, or one this parser does not know: the affinity stands
    return max(1, cpus)


def in_memory(dataset: Any) -> bool:
    """Whether ``dataset`` holds its samples in memory: a ``TensorDataset``, a
    dataset with a true ``in_memory`` attribute, or a ``Subset`` or
    ``ConcatDataset`` of such datasets."""
    from torch.utils.data import ConcatDataset, Subset, TensorDataset

    if isinstance(dataset, Subset):
        return in_memory(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return all(in_memory(d) for d in dataset.datasets)
    return isinstance(dataset, TensorDataset) or getattr(dataset, "in_memory", False) is True


def resolve_loader(
    loader: LoaderConfig,
    datasets: Iterable[Any],
    device_type: str,
    *,
    deterministic: bool,
    processes: int = 1,
    cpus: int | None = None,
) -> dict[str, Any]:
    """The values the ``auto`` settings of ``loader`` take for a run over
    ``datasets`` (its splits; ``None`` entries are skipped) on a device of
    ``device_type``: ``{"num_workers": 3, "persistent_workers": True}``, only
    the keys set to ``auto``. Explicit values are left as they are."""
    values: dict[str, Any] = {}
    workers = loader.num_workers
    if workers == "auto":
        present = [d for d in datasets if d is not None]
        if deterministic or (present and all(in_memory(d) for d in present)):
            workers = 0
        else:
            workers = choose_workers(cpus or available_cpus(), device_type, processes=processes)
        values["num_workers"] = workers
    if loader.persistent_workers == "auto":
        values["persistent_workers"] = (
            loader.num_workers == "auto" and workers > 0 and device_type == "cuda"
        )
    return values


def start_method() -> str:
    """How the DataLoader's worker processes start here: ``fork``, ``spawn``
    or ``forkserver`` (the one set, else the platform's default; nothing is set)."""
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


class _Probe(pickle.Pickler):
    """Pickles to nowhere, arrays and tensors left out (they pickle; copying them costs)."""

    def persistent_id(self, obj: Any) -> str | None:
        import numpy as np
        import torch

        return "array" if isinstance(obj, (np.ndarray, torch.Tensor)) else None


def unpicklable(datasets: Iterable[Any]) -> str | None:
    """Why one of ``datasets`` cannot go to worker processes, or ``None``:
    they can, or workers :func:`start_method` by ``fork`` and need no pickling."""
    if start_method() == "fork":
        return None
    for dataset in datasets:
        if dataset is None:
            continue
        try:
            _Probe(_Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(dataset)
        except Exception as e:  # whatever a dataset's __reduce__ raises: the reason to report
            return f"{type(e).__name__}: {e}"
    return None
