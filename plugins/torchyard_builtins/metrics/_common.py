"""Helpers shared by the metric functions: undefined values, sorting, tie runs.

Sorting dominates the cost of ROC-AUC and of the ranking metrics. On CPU,
numpy's vectorized sort is several times faster than ``torch.sort``, so CPU
tensors are sorted with numpy (zero-copy views) and tensors on an
accelerator with torch; everything else is torch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = [
    "UndefinedMetricWarning",
    "argsort_descending",
    "as_float",
    "check_class_targets",
    "count_sum",
    "sort_values",
    "sum_dtype",
    "tie_runs",
    "undefined",
]


class UndefinedMetricWarning(UserWarning):
    """The data leave a metric undefined, so it is NaN rather than a number."""


def undefined(message: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Warn that ``message`` makes a metric undefined and return a NaN tensor.

    NaN (not 0, not an exception) is what scikit-learn >= 1.6 and
    torchmetrics users expect from e.g. ROC-AUC with one class present: a
    validation set that happens to miss a class must not stop training, and
    the console and the checkpointing never mistake NaN for a value.
    """
    warnings.warn(f"{message}; returning NaN", UndefinedMetricWarning, stacklevel=3)
    device = torch.device(device or "cpu")
    return torch.tensor(math.nan, dtype=sum_dtype(device), device=device)


def sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of accumulated sums: float64 (exact to 1e-6 over millions of
    samples) except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def as_float(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype of sums on its device (float64, or float32 on MPS)."""
    return x.to(sum_dtype(x.device))


def check_class_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices as int64, raising ``ValueError`` for one out of range."""
    targets = targets.reshape(-1).long()
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(
            f"targets must be class indices in [0, {num_classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    return targets


def sort_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` sorted ascending along its last dimension (values only)."""
    if x.device.type == "cpu":
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        return torch.from_numpy(np.sort(x.detach().contiguous().numpy(), axis=-1))
    return torch.sort(x.contiguous(), dim=-1).values  # contiguous rows for searchsorted


def count_sum(sorted_values: torch.Tensor, queries: torch.Tensor) -> int:
    """Sum over ``queries`` of (values below it + values at most it), for a
    sorted 1-D ``sorted_values``: twice a Mann-Whitney rank sum, exactly.

    On CPU the queries are sorted first so that numpy's binary searches walk
    memory in order (5-8x faster than ``torch.searchsorted`` on unsorted
    queries).
    """
    if sorted_values.device.type == "cpu":
        values = sorted_values.numpy()
        ordered = np.sort(queries.detach().contiguous().numpy().astype(values.dtype))
        below = np.searchsorted(values, ordered, side="left")
        up_to = np.searchsorted(values, ordered, side="right")
        return int(below.sum(dtype=np.int64)) + int(up_to.sum(dtype=np.int64))
    queries = queries.to(sorted_values.dtype)
    lower = torch.searchsorted(sorted_values, queries)
    upper = torch.searchsorted(sorted_values, queries, right=True)
    return int((lower + upper).sum())


# The 29 low mantissa bits of a float64 that holds an exact float32 value are
# zero: argsort_descending stores each value's position there.
_LOW_BITS = (1 << 29) - 1
# Beyond every float32, with an all-zero mantissa: where infinities go.
_HUGE = 2.0**1000


def argsort_descending(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` (n, L) sorted in descending order, and their positions.

    Tied values come out in no particular order. On CPU, a float32 input is
    widened to float64 with its column index in the low mantissa bits, so a
    values-only numpy sort (3-5x faster than an argsort there) yields the
    permutation too; ordering and ties are unchanged because those bits lie
    below float32 precision. Infinities become +-2^1000 first (an infinity has
    no mantissa to hold the index), which still sorts beyond every float32,
    and come back as infinities in the float32 values returned.
    """
    length = x.shape[-1]
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        values, index = torch.sort(x, dim=-1, descending=True)
        return values, index
    if x.dtype != torch.float32:
        x = x.float()
    flipped = x.detach().numpy().astype(np.float64)  # a copy: modified in place below
    np.negative(flipped, out=flipped)
    np.clip(flipped, -_HUGE, _HUGE, out=flipped)
    packed = flipped.view(np.int64)
    packed |= np.arange(length, dtype=np.int64)
    flipped.sort(axis=-1)
    index = torch.from_numpy(packed & _LOW_BITS)
    packed &= ~_LOW_BITS
    values = torch.from_numpy(np.negative(flipped, out=flipped)).float()  # +-2^1000: +-inf again
    return values, index


def tie_runs(sorted_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For each position of rows ``(n, L)`` sorted along the last dimension,
    the first and the last position of its run of equal values (int64), or
    None when no row holds a tie (then both are the position itself)."""
    rows, length = sorted_rows.shape
    change = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    if bool(change.all()):
        return None
    starts = torch.ones((rows, length), dtype=torch.bool, device=sorted_rows.device)
    starts[:, 1:] = change
    flat = starts.reshape(-1)
    run = flat.cumsum(0) - 1
    begin = flat.nonzero().squeeze(1)
    end = torch.cat([begin[1:], begin.new_full((1,), rows * length)]) - 1
    offset = torch.arange(0, rows * length, length, device=sorted_rows.device)[:, None]
    return begin[run].reshape(rows, length) - offset, end[run].reshape(rows, length) - offset
