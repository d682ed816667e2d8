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

``cache: disk`` keeps the images of one list of files (the training files,
the test files) in one memory-mapped file under ``cache_dir`` (default
``~/.cache/torchyard/images``), in a folder per ``image_size`` and ``color``,
named by the list and the torchvision version (its decoders and resize
make the pixels). A row per image records its file's path, size and
modification time before its pixels: a later run on the same files (another
fold, a torchrun process, the next experiment) reads the row instead of
decoding, and a changed image is decoded again and its row rewritten. The
loader's workers and torchrun's processes map the same file, each filling
the rows it reads first; a row's identity is written after its pixels, so a
reader never takes a half-written row. Another list of files (a row added
to the CSV) is another cache file: delete ``cache_dir`` to reclaim the space.
The file's blocks are allocated when it is created, so a full disk is an
error then, not a crash when a worker writes.

A cache that would not fit is refused up front, in one line: the memory cache
against the free space of ``/dev/shm`` (where shared memory lives; often
small in containers) times the processes that each hold one, the disk cache
against its disk's free space.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from torchyard.errors import DataError

__all__ = ["DEFAULT_CACHE_DIR", "CacheKind", "DiskCache", "ImageCache", "MemoryCache", "image_caches"]

CacheKind = Literal["none", "memory", "disk"]
#: Where ``cache: disk`` writes when ``cache_dir`` is not set.
DEFAULT_CACHE_DIR = Path("~/.cache/torchyard/images")
_SHM = "/dev/shm"
_DIGEST = 20  # bytes of a SHA-1: each disk entry starts with its image file's identity
_VERSION = "v2"  # v1: a file per image

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
    """The images of one list of files in one memory-mapped file: a row per
    image, its file's identity (a SHA-1 of path, size and modification time)
    then its pixels. A row whose identity is not its file's is decoded again."""

    def __init__(self, file: Path, count: int, shape: tuple[int, ...]) -> None:
        self.file = file
        self.count = count
        self.shape = shape
        self._rows: np.ndarray | None = None  # mapped in each process on first use

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_rows": None}  # a spawned worker maps the file itself

    def _map(self) -> np.ndarray:
        with open(self.file, "r+b") as f:
            mapped = mmap.mmap(f.fileno(), 0)  # MAP_SHARED: every process's writes land in one file
        return np.frombuffer(mapped, dtype=np.uint8).reshape(self.count, _DIGEST + _pixels(self.shape))

    def get(self, index: int, path: str, decode: Decode) -> torch.Tensor:
        try:
            stat = os.stat(path)
        except OSError:
            return decode(path)  # a missing file: the decoder's error names it
        identity = _identity(os.path.abspath(path), stat)
        if self._rows is None:
            self._rows = self._map()
        row = self._rows[index]
        if row[:_DIGEST].tobytes() == identity:
            return torch.from_numpy(row[_DIGEST:].reshape(self.shape).copy())
        image = decode(path)
        row[_DIGEST:] = image.contiguous().numpy().reshape(-1)
        row[:_DIGEST] = np.frombuffer(identity, dtype=np.uint8)  # after the pixels: no half-written row is read
        return image


# k-fold builds the dataset once per fold: the same files reuse this process's memory cache
_MEMORY: dict[str, MemoryCache] = {}


def image_caches(
    kind: CacheKind,
    cache_dir: Path | None,
    lists: Sequence[Sequence[str] | np.ndarray],
    *,
    image_size: tuple[int, int] | None,
    color: str,
) -> list[ImageCache | None]:
    """The caches of the lists of images ``lists`` (e.g. the training and the
    test files), each ``None`` for ``kind="none"`` or an empty list. Whether
    they fit is checked for all of them together.

    :raises ValueError: a cache without ``image_size``.
    :raises DataError: the caches would not fit where they live.
    """
    if kind == "none" or not any(len(paths) for paths in lists):
        return [None for _ in lists]
    if image_size is None:
        raise ValueError(f"cache: {kind} needs image_size (it keeps every image at one size)")
    shape = (3 if color == "rgb" else 1, *image_size)
    # the decoders and the resize are torchvision's: another version may give other pixels
    settings = [_VERSION, f"{shape}", f"torchvision {_torchvision_version()}"]
    keys = [hashlib.sha1("\n".join([*settings, *map(str, paths)]).encode()).hexdigest() for paths in lists]
    if kind == "memory":
        new = {key: len(paths) for key, paths in zip(keys, lists, strict=True) if len(paths) and key not in _MEMORY}
        _check_memory(sum(new.values()) * _pixels(shape))
        for key, count in new.items():
            _MEMORY[key] = MemoryCache(count, shape)
        return [_MEMORY[key] if len(paths) else None for key, paths in zip(keys, lists, strict=True)]
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
    if "~" in folder.parts:  # ~/x in a config, made relative to the config's folder: the home's x
        folder = Path("~", *folder.parts[folder.parts.index("~") + 1 :])
    folder = folder.expanduser() / f"{_VERSION}-{shape[1]}x{shape[2]}-{color}"
    row = _DIGEST + _pixels(shape)  # bytes per image: its identity, its pixels
    files = {folder / f"{key}.u8": len(paths) for key, paths in zip(keys, lists, strict=True) if len(paths)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        missing = sum(count * row - _allocated(file) for file, count in files.items())
    except OSError as e:
        raise DataError(f"cache: cannot use the cache folder {folder}: {e.strerror or e}") from None
    if missing > free:
        raise DataError(
            f"cache: disk: the decoded images need {_size(missing)} more in {folder}, whose disk has "
            f"{_size(free)} free; set cache_dir to a larger disk, lower image_size, or use cache: none"
        )
    for file, count in files.items():
        _reserve(file, count * row)
    return [DiskCache(folder / f"{key}.u8", len(paths), shape) if len(paths) else None
            for key, paths in zip(keys, lists, strict=True)]  # fmt: skip


def _torchvision_version() -> str:
    import torchvision

    return str(torchvision.__version__)


def _identity(path: str, stat: os.stat_result) -> bytes:
    return hashlib.sha1(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).digest()


def _pixels(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def _allocated(file: Path) -> int:
    """The bytes of ``file`` on disk already (0 when it does not exist)."""
    try:
        return file.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def _reserve(file: Path, size: int) -> None:
    """Create ``file`` at ``size`` bytes, its blocks allocated: a full disk is
    this one error, never a worker killed by SIGBUS when it writes a row.
    Several processes may do it at once (torchrun): each sees the same file."""
    try:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            if hasattr(os, "posix_fallocate") and os.fstat(fd).st_blocks * 512 < size:
                os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as e:
        raise DataError(f"cache: cannot create the disk cache file {file}: {e.strerror or e}") from None


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
