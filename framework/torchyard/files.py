"""Atomic file writing: a crash never leaves a half-written file behind; the
names a run directory reserves for itself."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["RUN_FILES", "atomic_copy", "atomic_link", "atomic_path", "atomic_write", "check_output_name"]

#: Files and folders a run directory holds for the run itself: a writer (or
#: any plugin) may not write under these names. ``fold_<k>`` folders and
#: names starting with ``.torchyard`` are the run's too.
RUN_FILES = (
    "config.yaml", "metrics.csv", "steps.csv", "summary.json", "oof.csv", "test_predictions.csv",
    "val_predictions.csv", "checkpoints", "report",
    # the default folders of the tensorboard and wandb loggers
    "tensorboard", "wandb",
)


def check_output_name(name: str) -> str:
    """``name`` if a plugin may write a file of that name directly inside a
    run directory; else a ``ValueError`` saying why (a config problem).

    A name is one path component (no separator, not ``.`` or ``..``), has no
    NUL or control character, fits the file system (255 bytes), and is not
    one the run reserves (:data:`RUN_FILES`, ``fold_<k>``, ``.torchyard*``).
    """
    import re

    separators = {"/", "\\", os.sep, os.altsep or "/"}
    if name in ("", ".", "..") or any(s in name for s in separators):
        raise ValueError(f"filename must be a plain file name inside the run directory, got {name[:80]!r}")
    if any(ord(c) < 32 for c in name):
        raise ValueError(f"filename must not contain control characters, got {name[:80]!r}")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"filename is {len(name.encode('utf-8', 'surrogatepass'))} bytes long; at most 255 fit a file name")
    if name.lower() in RUN_FILES or re.fullmatch(r"fold_\d+", name) or name.startswith(".torchyard"):
        raise ValueError(f"filename {name!r} is the run's own; choose another name for the submission")
    return name


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is flushed to
    disk (``durable``: fsync) and renamed over ``target`` in one step, on
    failure it is removed. Without fsync the rename is still atomic for the
    processes on the machine (a crash or kill leaves the old file or the
    new one); fsync also covers a crash of the machine itself."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give it the usual umask-based mode
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(
    target: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8", durable: bool = True
) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``target`` on success."""
    with atomic_path(target, durable=durable) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with open(tmp, mode, **kwargs) as f:  # type: ignore[call-overload]
            yield f


def atomic_link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Make ``target`` the same file as ``source`` (a hard link), replacing
    it atomically; where hard links are not supported, an atomic copy.

    ``source`` must be complete on disk already; a later atomic replace of
    either name leaves the other untouched.
    """
    source, target = Path(source), Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT filesystems)
        return atomic_copy(source, target)
    try:
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy ``source`` over ``target`` atomically (temporary file, fsync, rename)."""
    import shutil

    target = Path(target)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target
