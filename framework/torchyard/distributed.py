"""Multi-process training on torch.distributed, as launched by ``torchrun``.

torchyard adds no launcher and no communication layer of its own:
``torchrun --nproc_per_node=N -m torchyard run CONFIG`` starts N processes
and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then
joins the process group (``nccl`` on CUDA, ``gloo`` on the CPU) and the
loop uses what torch provides:

* the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
  for training (gradients are averaged across processes);
* training data is split by :class:`~torch.utils.data.DistributedSampler`;
* validation and test data are split without padding (process ``r`` takes
  samples ``r, r + N, r + 2N, ...``), so no sample is counted twice:
  metric states are reduced across processes (:meth:`torchyard.Metric.sync`)
  and predictions gathered back into the dataset's order;
* only process 0 (``is_main()``) writes files and prints.

With one process (no ``torchrun``, or ``--nproc_per_node=1``) every function
here is a no-op, and nothing is initialized.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from torchyard.errors import ConfigError

__all__ = [
    "StridedShard",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "gather_in_order",
    "is_distributed",
    "is_main",
    "rank",
    "setup",
    "teardown",
    "world_size",
]


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or no distribution)."""
    if is_distributed():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def setup(device_spec: str) -> torch.device | None:
    """Join the process group torchrun prepared, when there is one.

    Returns the device of this process (``cuda:LOCAL_RANK`` on CUDA), or
    ``None`` without torchrun (the config's device is used as it is).
    """
    if not launched():
        return None
    if not dist.is_available():
        raise ConfigError(
            "torchrun started several processes, but torch.distributed is not available"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_spec in ("auto", "cuda") and torch.cuda.is_available()
    if device_spec.startswith("cuda:"):
        raise ConfigError(
            f"trainer.device: '{device_spec}' names one GPU, but torchrun started "
            f"{os.environ['WORLD_SIZE']} processes; use 'cuda' (or 'auto'): process k uses cuda:LOCAL_RANK"
        )
    if device_spec == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: 'cuda' requested, but CUDA is not available here")
    if device_spec == "mps":
        raise ConfigError("trainer.device: 'mps' does not support torch.distributed; use 'cpu'")
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", timeout=_dt.timedelta(minutes=30)
        )
    return torch.device("cuda", local) if use_cuda else torch.device("cpu")


def teardown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, once every process is done
    with it (gloo aborts a process whose peer tore its connection down
    first). After an error, do not wait: the others may never arrive, and
    torchrun stops them when this process exits."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value: Any) -> Any:
    """Process 0's ``value`` on every process."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every process, in place."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_module(module: torch.nn.Module) -> None:
    """Process 0's parameters and buffers on every process."""
    if not is_distributed():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def gather_in_order(array: np.ndarray) -> np.ndarray:
    """Reassemble the rows each process computed for its :class:`StridedShard`
    into the dataset's order (process ``r`` held rows ``r, r + N, ...``)."""
    if not is_distributed():
        return array
    parts = all_gather_objects(array)
    count = sum(len(p) for p in parts)
    out = np.empty((count, *array.shape[1:]), dtype=array.dtype)
    for r, part in enumerate(parts):
        out[r :: len(parts)] = part
    return out


class StridedShard(Sampler[int]):
    """This process's share of an evaluation split, without padding:
    samples ``rank, rank + N, rank + 2N, ...``."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = range(rank, length, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
