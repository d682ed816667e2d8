"""Image files as samples: decoding, up-front checks, and errors that name the file.

Shared by the ``image_csv`` and ``image_folder`` datasets (see
:mod:`torchyard_builtins.datasets.images`). An image is decoded with
``torchvision.io.decode_image`` (JPEG, PNG, WebP, GIF; other formats such as
BMP or TIFF through Pillow) to a ``uint8`` tensor ``(C, H, W)``, RGB or
grayscale as asked. Its header is read first: an image of more than
:data:`MAX_PIXELS` pixels is refused before anything is decoded. A file that
cannot be decoded, or is too large, raises
:class:`BadImageError`, a :class:`~torchyard.DataError` naming the file that
stays one readable line even when raised inside a DataLoader worker.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import resize

from torchyard.errors import ConfigError, DataError
from torchyard_builtins.datasets.image_cache import ImageCache

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "BadImageError",
    "ImageDataset",
    "check_images",
    "list_images",
    "load_image",
    "refuse_repeats",
]

#: File name endings taken as images when a folder is listed.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")

#: The most pixels (width x height) an image may have: Pillow's own
#: decompression-bomb limit. A 20000x20000 PNG compresses to a few KB and
#: decodes to 1.2 GB; it is refused from its header instead.
MAX_PIXELS = 89_478_485

Color = Literal["rgb", "gray"]
OnBadImage = Literal["error", "skip"]

_MARK = "BadImageError: "
# torchvision's C++ errors start with "function, /path/to/file.cpp:123, "
_CPP_PREFIX = re.compile(r"^.*?\.cpp:\d+, ")


class BadImageError(DataError):
    """An image file that cannot be decoded or does not fit the others.

    A DataLoader worker re-raises an exception in the main process as
    ``type(e)("Caught ... Original Traceback ...")``; this class recovers the
    original one-line message from that text, so the user sees the file's
    name, not a worker traceback.
    """

    def __init__(self, *problems: str) -> None:
        if len(problems) == 1 and problems[0].startswith("Caught ") and _MARK in problems[0]:
            original = problems[0].rsplit(_MARK, 1)[1].strip()
            problems = (f"{original} (in a DataLoader worker)",)
        super().__init__(*problems)


def load_image(path: str, color: Color = "rgb") -> torch.Tensor:
    """Decode ``path`` to a ``uint8`` tensor ``(3, H, W)`` (``(1, H, W)`` for gray).

    Grayscale, palette and RGBA images are converted; 16-bit images are
    scaled to 8 bits. The file is read once: its header's size is checked
    from the bytes, which are then decoded.

    :raises BadImageError: the file is missing, unreadable or not an image.
    """
    mode = ImageReadMode.RGB if color == "rgb" else ImageReadMode.GRAY
    try:
        with open(path, "rb") as f:
            data = bytearray(f.read())
    except OSError as e:
        if not os.path.isfile(path):
            raise BadImageError(f"image file not found: {path}") from None
        raise BadImageError(f"cannot read image {path}: {e.strerror or e}") from None
    _check_pixels(path, data)
    try:
        if not data:
            raise ValueError("the file is empty")
        image = decode_image(torch.frombuffer(data, dtype=torch.uint8), mode=mode)
    except (RuntimeError, ValueError) as e:
        image = _decode_with_pillow(path, color, e)
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image


_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they hold the size): C0-CF less DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_pixels(data: bytes | bytearray) -> tuple[int, int] | None:
    """Width and height from a PNG's or a JPEG's header bytes; ``None`` for
    other formats or a header this does not follow (Pillow is asked then)."""
    if data[:8] == _PNG and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _check_pixels(path: str, data: bytes | bytearray) -> None:
    """Refuse an image over :data:`MAX_PIXELS` from its header (parsed here
    for PNG and JPEG, else by Pillow, which reads only the header on open); a
    file Pillow cannot identify is left to the decoder."""
    size = _header_pixels(data)
    if size is None:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    size = im.size
        except Image.DecompressionBombError:
            size = _header_size(path)
        except Exception:  # noqa: BLE001 - not Pillow's format, missing, ...: the decoder says
            return
    width, height = size
    if width * height > MAX_PIXELS:
        raise BadImageError(
            f"image {path} is {width}x{height} pixels, more than the limit of {MAX_PIXELS:,} "
            "(resize it, or leave it out)"
        )


def _header_size(path: str) -> tuple[int, int]:
    """The size of an image too large for Pillow even to open."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only to read the header: nothing is decoded
    try:
        with Image.open(path) as im:
            return im.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decode_with_pillow(path: str, color: Color, first: Exception) -> torch.Tensor:
    """Formats torchvision does not decode (BMP, TIFF, ...), through Pillow."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB" if color == "rgb" else "L"))
    except Exception as e:  # noqa: BLE001 - any failure: the file is not a usable image
        # torchvision's reason, unless it only says the format is not its own
        reason = _CPP_PREFIX.sub("", str(first).strip())
        if not reason or reason.startswith("Unsupported image file"):
            reason = f"{type(e).__name__}: {e}"
        raise BadImageError(f"cannot decode image {path}: {reason.splitlines()[0]}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


class ImageReader:
    """One image file as a model input: decoded, resized to ``image_size``
    when given, passed through ``transform``, and a ``uint8`` result scaled
    to ``float32`` in ``[0, 1]``. What the image datasets do per sample, and
    what a loaded run (:func:`torchyard.load`) does to new files."""

    def __init__(
        self,
        *,
        image_size: tuple[int, int] | None = None,
        color: Color = "rgb",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.image_size = image_size
        self.color = color
        self.transform = transform

    def __call__(self, path: str | Path) -> Any:
        return self.finish(self.decode(str(path)))

    def decode(self, path: str) -> torch.Tensor:
        """The file decoded and resized: what an image cache keeps."""
        image = load_image(path, self.color)
        if self.image_size is not None:
            image = resize(image, list(self.image_size), antialias=True)
        return image

    def finish(self, image: Any) -> Any:
        """A decoded image transformed, as a model input."""
        if self.transform is not None:
            image = self.transform(image)
        if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
            image = image.float().div_(255)
        return image


class ImageDataset(Dataset[Any]):
    """Images decoded on access, transformed, as ``(image, target)`` pairs.

    Integer targets are class indices (``int64``, one per image, given as a
    Python int); any other targets are ``float32`` -- one per image
    (regression, binary) or a row per image (multi-hot, several regression
    columns) -- given as tensors. Without targets it yields 1-tuples
    ``(image,)`` (a test split). Each
    sample is decoded, resized to ``image_size`` when given, passed through
    ``transform``, and a ``uint8`` result is scaled to ``float32`` in
    ``[0, 1]``. Every sample must have the shape of the first one (probed at
    construction): a batch of mixed sizes cannot be stacked, and the error
    names the file instead of failing inside the DataLoader's collate.

    Paths and targets are numpy arrays, not lists, so DataLoader workers do
    not copy them page by page through reference counting.
    """

    def __init__(
        self,
        paths: Sequence[str] | np.ndarray,
        targets: Sequence[Any] | np.ndarray | None = None,
        *,
        transform: Callable[[Any], Any] | None = None,
        image_size: tuple[int, int] | None = None,
        color: Color = "rgb",
        cache: ImageCache | None = None,
    ) -> None:
        self.paths = np.asarray(paths, dtype=str)  # no copy when given an array
        self.cache = cache  # decoded images kept between epochs (see image_cache)
        self.targets = None if targets is None else _target_array(targets)
        self.transform = transform
        self.image_size = image_size
        self.color = color
        self.read = ImageReader(image_size=image_size, color=color, transform=transform)
        self.sample_shape: tuple[int, ...] | None = None
        if len(self.paths):
            first = self._probe()
            self.sample_shape = tuple(first.shape) if isinstance(first, torch.Tensor) else None

    def _probe(self) -> Any:
        """The first sample's input; a transform that fails on it is a config error."""
        try:
            return self.image(0)
        except DataError:
            raise
        except (TypeError, ValueError, RuntimeError) as e:
            reason = " ".join(str(e).split())
            hint = (
                " (a transform receives the decoded image as a uint8 tensor (C, H, W): convert "
                "it with to_dtype before transforms that need floats, such as normalize)"
                if "float" in reason.lower() or "dtype" in reason.lower()
                else ""
            )
            raise ConfigError(
                f"transforms: they fail on {self.paths[0]}: {type(e).__name__}: {reason}{hint}"
            ) from e

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image = self.image(index)
        if self.targets is None:
            return (image,)
        if self.targets.dtype == np.int64:
            return image, self.targets.item(index)
        return image, torch.as_tensor(self.targets[index])

    def image(self, index: int) -> Any:
        """Sample ``index``'s input: decoded, resized, transformed, as float."""
        path: str = self.paths.item(index)
        read = self.read
        image = read(path) if self.cache is None else read.finish(self.cache.get(index, path, read.decode))
        expected = self.sample_shape
        if isinstance(image, torch.Tensor) and expected is not None and tuple(image.shape) != expected:
            raise BadImageError(
                f"image {path} gives a sample of shape {tuple(image.shape)}, the first image "
                f"{self.paths[0]} one of shape {expected}: set the dataset's image_size, or "
                "add a resize transform, so that every image has one size"
            )
        return image


def _target_array(targets: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Class indices as ``int64``, anything else as ``float32`` (what the losses take)."""
    array = np.asarray(targets)
    return array.astype(np.int64 if array.dtype.kind in "iu" else np.float32, copy=False)


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (subfolders included, hidden files and
    folders left out), as sorted relative POSIX paths.

    :raises DataError: ``folder`` is not a folder.
    """
    if not folder.is_dir():
        where = "" if folder.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"image folder not found: {folder}{where}")
    found = (p.relative_to(folder) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    # hidden files and folders (.ipynb_checkpoints, ._x.jpg) are not images of the set
    return sorted(
        p.as_posix()
        for p in found
        if not any(part.startswith(".") for part in p.parts) and (folder / p).is_file()
    )


def check_images(
    paths: Sequence[str],
    *,
    on_bad_image: OnBadImage,
    source: str,
    decode: bool,
    color: Color = "rgb",
) -> np.ndarray:
    """Which of ``paths`` are usable, as a boolean mask.

    Every path is checked to exist (cheap); with ``decode``, every image is
    also decoded once. With ``on_bad_image="error"`` any bad file is a
    :class:`~torchyard.DataError` listing the first few; with ``"skip"`` they
    are dropped and counted in a warning.

    :param source: what lists the images (``"train.csv"``, ``"folder x"``),
        for messages.
    """
    keep = np.fromiter((os.path.isfile(p) for p in paths), dtype=bool, count=len(paths))
    missing = [str(p) for p, ok in zip(paths, keep, strict=True) if not ok]
    corrupt: list[str] = []
    if decode:
        for i in np.flatnonzero(keep):
            try:
                load_image(str(paths[int(i)]), color)
            except BadImageError as e:
                keep[i] = False
                corrupt.append(e.problems[0])
    if not missing and not corrupt:
        return keep
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(paths)} image files listed in {source} are "
                        f"missing (first: {_first_few(missing)})")
    if corrupt:
        problems.append(f"{len(corrupt)} of {len(paths)} images listed in {source} cannot be "
                        f"decoded (first: {corrupt[0]})")
    if on_bad_image == "error":
        raise DataError(*(p + "; fix them, or set on_bad_image: skip" for p in problems))
    warnings.warn(
        f"skipped {len(missing) + len(corrupt)} bad images of {len(paths)} "
        f"(on_bad_image: skip): " + "; ".join(problems),
        UserWarning,
        stacklevel=3,
    )
    return keep


def refuse_repeats(paths: Sequence[str], rows: Sequence[int], *, source: str) -> None:
    """One image, one row: an image listed twice (with two labels, or twice
    the weight) is a mistake in the CSV."""
    first: dict[str, int] = {}
    for path, row in zip(paths, rows, strict=True):
        key = os.path.normpath(path)
        if key in first:
            raise DataError(
                f"{source}: image {path} is listed twice (data rows {first[key] + 1} and {row + 1}); "
                "list each image once"
            )
        first[key] = row


def _first_few(values: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(values[:n])
    return shown + (", ..." if len(values) > n else "")
