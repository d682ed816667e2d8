"""Decoded images kept between epochs: the image datasets' ``cache`` param.

What is cached is an image as decoded and resized to ``image_size``, a
``uint8`` tensor ``(C, H, W)``, before any transform: random augmentation
still differs every epoch. So the cache needs ``image_size`` (one size for
every entry).

``cache: memory`` keeps the images in one shared-memory tensor, allocated
when the dataset is built (before the DataLoader's workers start) and filled
as the images are first read: an image one worker decodes is there for the
other workers and the main process, and from epoch 2 on nothing is decoded.
Each process holds its own copy (under torchrun: each of them), and a k-fold
run's folds, which list the same files, reuse their process's copy.

``cache: disk`` writes one file per image under ``cache_dir`` (default
``~/.cache/torchyard/images``), in a folder per ``image_size`` and ``color``.
An entry records its image file's path, size and modification time: a later
run (another fold, a torchrun process, the next experiment) reads it instead
of decoding, and a changed image is decoded again and its entry rewritten.
Entries are written to a temporary file and renamed into place, so processes
that write at once never leave a torn entry.

A cache that would not fit is refused up front, in one line: the memory cache
against the free space of ``/dev/shm`` (where shared memory lives; often
small in containers) times the processes that each hold one, the disk cache
against its disk's free space.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from torchyard.errors import DataError

__all__ = ["DEFAULT_CACHE_DIR", "CacheKind", "DiskCache", "ImageCache", "MemoryCache", "image_cache"]

CacheKind = Literal["none", "memory", "disk"]
#: Where ``cache: disk`` writes when ``cache_dir`` is not set.
DEFAULT_CACHE_DIR = Path("~/.cache/torchyard/images")
_SHM = "/dev/shm"
_DIGEST = 20  # bytes of a SHA-1: each disk entry starts with its image file's identity
_VERSION = "v1"

Decode = Callable[[str], torch.Tensor]


class ImageCache(Protocol):
    """Sample ``index``'s decoded image (file ``path``): cached, or ``decode(path)`` and kept."""

    def get(self, index: int, path: str, decode: Decode) -> torch.Tensor: ...


class MemoryCache:
    """Every image of one list of files in a shared-memory ``uint8`` tensor
    ``(n, C, H, W)``, with a shared flag per image that says it is filled."""

    def __init__(self, count: int, shape: tuple[int, ...]) -> None:
        self.pixels = torch.empty((count, *shape), dtype=torch.uint8).share_memory_()
        self.filled = torch.zeros(count, dtype=torch.bool).share_memory_()

    def get(self, index: int, path: str, decode: Decode) -> torch.Tensor:
        if bool(self.filled[index]):
            return self.pixels[index].clone()
        image = decode(path)
        self.pixels[index] = image
        self.filled[index] = True  # after the pixels: a reader never sees a half-written image
        return image


class DiskCache:
    """One file per image under ``folder``: its file's identity, then its pixels."""

    def __init__(self, folder: Path, shape: tuple[int, ...]) -> None:
        self.folder = folder
        self.shape = shape
        self.nbytes = int(np.prod(shape))

    def get(self, index: int, path: str, decode: Decode) -> torch.Tensor:
        try:
            stat = os.stat(path)
        except OSError:
            return decode(path)  # a missing file: the decoder's error names it
        where = os.path.abspath(path)
        identity = hashlib.sha1(f"{where}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).digest()
        entry = self.folder / hashlib.sha1(where.encode()).hexdigest()
        try:
            data = entry.read_bytes()
        except OSError:
            data = b""
        if len(data) == _DIGEST + self.nbytes and data[:_DIGEST] == identity:
            return torch.frombuffer(bytearray(data[_DIGEST:]), dtype=torch.uint8).view(self.shape)
        image = decode(path)
        temporary = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(identity + image.contiguous().numpy().tobytes())
            os.replace(temporary, entry)  # atomic: a concurrent reader sees the old entry or the new
        except OSError as e:
            temporary.unlink(missing_ok=True)
            raise DataError(f"cache: cannot write the disk cache entry {entry}: {e.strerror or e}") from None
        return image


# k-fold builds the dataset once per fold: the same files reuse this process's memory cache
_MEMORY: dict[str, MemoryCache] = {}


def image_cache(
    kind: CacheKind,
    cache_dir: Path | None,
    paths: Sequence[str] | np.ndarray,
    *,
    image_size: tuple[int, int] | None,
    color: str,
) -> ImageCache | None:
    """The cache of the images ``paths`` (``None`` for ``kind="none"``).

    :raises ValueError: a cache without ``image_size``.
    :raises DataError: the cache would not fit where it lives.
    """
    if kind == "none" or not len(paths):
        return None
    if image_size is None:
        raise ValueError(f"cache: {kind} needs image_size (it keeps every image at one size)")
    shape = (3 if color == "rgb" else 1, *image_size)
    need = len(paths) * int(np.prod(shape))
    if kind == "memory":
        key = hashlib.sha1("\n".join([f"{shape}", *map(str, paths)]).encode()).hexdigest()
        if key not in _MEMORY:
            _check_memory(need)
            _MEMORY[key] = MemoryCache(len(paths), shape)
        return _MEMORY[key]
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
    if "~" in folder.parts:  # ~/x in a config, made relative to the config's folder: the home's x
        folder = Path("~", *folder.parts[folder.parts.index("~") + 1 :])
    folder = folder.expanduser()
    folder = folder / f"{_VERSION}-{shape[1]}x{shape[2]}-{color}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        present = sum(1 for e in os.scandir(folder) if not e.name.startswith("."))
    except OSError as e:
        raise DataError(f"cache: cannot use the cache folder {folder}: {e.strerror or e}") from None
    missing = max(len(paths) - present, 0) * (_DIGEST + int(np.prod(shape)))
    if missing > free:
        raise DataError(
            f"cache: disk: the decoded images need {_size(missing)} more in {folder}, whose disk has "
            f"{_size(free)} free; set cache_dir to a larger disk, lower image_size, or use cache: none"
        )
    return DiskCache(folder, shape)


def _check_memory(need: int) -> None:
    """Refuse a memory cache larger than /dev/shm's free space shared by this host's processes."""
    try:
        free = shutil.disk_usage(_SHM).free
    except OSError:
        return  # no /dev/shm (not Linux): nothing to measure
    processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    if need * processes > free:
        each = f" per process x {processes} processes" if processes > 1 else ""
        raise DataError(
            f"cache: memory: the decoded images need {_size(need)}{each}, more than the {_size(free)} "
            f"free in {_SHM} (shared memory); use cache: disk, lower image_size, or enlarge {_SHM} "
            "(docker run --shm-size)"
        )


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
