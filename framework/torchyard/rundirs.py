"""Run directories: chosen, created atomically, owned by one run at a time.

A run directory belongs to one process for the run's whole life:

- :func:`choose_run_dir` picks it before anything is built, and refuses at
  once what can already be refused (an explicit ``--out`` that is not empty,
  a directory another run holds);
- :func:`claim_run_dir` makes it the run's after every check passed: the
  default name is created with ``mkdir`` (never ``exist_ok``), retried as
  ``-2``, ``-3``, ... so runs started in the same second by several
  processes never share one; an explicit ``--out`` is created exclusively;
  and a lock (``fcntl.flock`` on :data:`LOCK_NAME` inside it, which holds the
  pid) refuses every other writer until the run ends. The operating system
  drops the lock when its process dies, so a killed run leaves no stale lock;
- ``--overwrite`` empties what a run owns there (:func:`empty_owned`);
- :func:`run_checkpoints` picks the checkpoints of the run a directory's
  ``config.yaml`` describes, for ``torchyard predict -c DIR``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from torchyard.errors import ConfigError, TorchyardError
from torchyard.files import RUN_FILES

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    # Windows has no flock. torchyard runs on Linux and macOS; elsewhere run
    # directories are still created atomically, but not locked: nothing stops
    # a second writer there.
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "OWNED_FILES",
    "OWNED_FOLDERS",
    "RunDir",
    "best_checkpoints",
    "check_unlocked",
    "choose_run_dir",
    "claim_run_dir",
    "claim_shared",
    "create_run_dir",
    "empty_owned",
    "run_checkpoints",
]

#: The lock file inside a run directory; it holds the pid of the run that has it.
LOCK_NAME = ".torchyard.lock"
#: Files and folders a run writes into its directory, besides ``fold_<k>/``
#: folders and the writer's submission; ``--overwrite`` deletes these.
OWNED_FOLDERS = ("checkpoints", "report", "tensorboard", "wandb")
OWNED_FILES = tuple(name for name in RUN_FILES if name not in OWNED_FOLDERS)
_FOLD = re.compile(r"fold_(\d+)")
#: temporaries of torchyard.files.atomic_path left by a killed process
_TEMPORARY = re.compile(r"\..+\.tmp")

#: How a run takes its directory: a new default name (``unique``), an explicit
#: ``--out`` (``exclusive``), or a directory it continues (``continue``: resume).
Claim = Literal["unique", "exclusive", "continue"]


class RunDir:
    """A claimed run directory; holds its lock until :meth:`release`."""

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Give the directory up: remove the lock file, then drop the lock.

        The file goes while still locked, so a process that opens the name
        afterwards makes a new file; one that opened the old file in
        between notices (:func:`_lock` compares inodes) and tries again.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            lock = self.path / LOCK_NAME
            if _same_file(lock, fd):
                lock.unlink()
        except OSError:
            pass  # the directory went away; the lock goes with the descriptor
        finally:
            os.close(fd)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- choosing (before anything is built) ------------------------------------------------


def choose_run_dir(
    out: str | Path | None, config_path: str | Path | None, *, overwrite: bool, suffix: str = ""
) -> Path:
    """The run directory to use, without creating it.

    The default is a new ``runs/<config name>/<timestamp><suffix>`` (made
    unique when claimed); an explicit directory that another run holds is
    refused, and one that exists and is not empty is refused unless
    ``overwrite`` is set, so a run never clobbers another run's files.
    """
    if out is None:
        stem = Path(config_path).stem if config_path else "run"
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / stem / f"{stamp}{suffix}"
        out_dir, n = base, 1
        while out_dir.exists():
            n += 1
            out_dir = base.with_name(f"{base.name}-{n}")
        return out_dir
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    if out_dir.is_dir():
        check_unlocked(out_dir, "--out")
        if not overwrite and _contents(out_dir):
            raise _not_empty(out_dir)
    return out_dir


def check_unlocked(directory: Path, what: str = "--out") -> None:
    """Refuse ``directory`` now if a running torchyard process holds it.

    Only a probe, which writes nothing: :func:`claim_run_dir` takes the lock
    for real once the run is known to start.
    """
    if fcntl is None:
        return
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds the directory
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(directory, fd, what) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def create_run_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` (a folder inside a claimed run directory, such as
    ``fold_0``) and prove it is writable."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _probe_writable(out_dir)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot write there: {e.strerror or e}") from None
    return out_dir


# -- claiming (once the run is known to start) ---------------------------------------------


def claim_run_dir(
    path: Path,
    how: Claim,
    *,
    overwrite: bool = False,
    empty: bool = True,
    keep_out: Iterable[str] = (),
    what: str = "--out",
) -> RunDir:
    """Make ``path`` this process's run directory and lock it.

    ``unique``: create ``path``, or ``path-2``, ``path-3``, ... (the first
    that does not exist); the returned :class:`RunDir` says which.
    ``exclusive``: create ``path``, or take it if it exists and is empty
    (with ``overwrite``: whatever it holds; then, with ``empty``, delete what
    a run owns there, and also the names in ``keep_out``, such as this run's
    submission). ``continue``: take the existing ``path`` as it is (a
    resumed run). Another process holding the directory is refused with the
    holder's pid. On failure nothing is left behind.
    """
    created = False
    try:
        if how == "unique":
            path, created = _make_unique(path), True
        elif how == "exclusive":
            created = _make(path)
        elif not path.is_dir():
            raise ConfigError(f"{what} {path}: not a directory")
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot write there: {e.strerror or e}") from None
    handle = RunDir(path)
    try:
        handle._fd = _lock(path, what)
        if how == "exclusive":
            if not overwrite and _contents(path):
                raise _not_empty(path)
            if overwrite and empty:
                empty_owned(path, keep_out)
        _probe_writable(path)
    except BaseException as e:
        handle.release()
        if created:
            _remove_if_empty(path)
        if isinstance(e, OSError):
            raise ConfigError(f"{what} {path}: cannot write there: {e.strerror or e}") from None
        raise
    return handle


def claim_shared(path: Path, how: Claim, **options: Any) -> RunDir:
    """:func:`claim_run_dir` under torchrun: process 0 creates and locks the
    directory, and every process learns which one it is (or gets the same
    error, so none is left waiting)."""
    from torchyard import distributed

    if not distributed.is_distributed():
        return claim_run_dir(path, how, **options)
    handle: RunDir | None = None
    message: Any = None
    if distributed.is_main():
        try:
            handle = claim_run_dir(path, how, **options)
            message = ("ok", str(handle.path))
        except TorchyardError as e:
            message = ("error", e.problems)
            distributed.broadcast_object(message)
            raise
        except BaseException as e:
            message = ("error", (f"{_what(options)} {path}: {e}",))
            distributed.broadcast_object(message)
            raise
    message = distributed.broadcast_object(message)
    if message[0] == "error":
        raise ConfigError(*message[1])
    return handle if handle is not None else RunDir(Path(message[1]))


def _what(options: dict[str, Any]) -> str:
    return str(options.get("what", "--out"))


def empty_owned(path: Path, also: Iterable[str] = ()) -> list[str]:
    """Delete what a run owns in ``path``: its files and folders
    (:data:`OWNED_FILES`, :data:`OWNED_FOLDERS`, ``fold_<k>/``, leftover
    temporaries), the submission its ``summary.json`` names, and ``also``.
    Anything else (a user's notes) stays. Returns the names deleted."""
    names = {*OWNED_FILES, *OWNED_FOLDERS, *also}
    previous = _previous_submission(path)
    if previous:
        names.add(previous)
    removed = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name == LOCK_NAME:
            continue
        if name in names or _FOLD.fullmatch(name) or _TEMPORARY.fullmatch(name):
            _remove(entry)
            removed.append(name)
    return removed


# -- which checkpoints a run directory holds ------------------------------------------------


def run_checkpoints(path: Path, which: Literal["best", "top_k"] | None = "best") -> list[Path]:
    """The checkpoints to predict with from run directory ``path``: the best
    (:func:`best_checkpoints`), or with ``which="top_k"`` the ones
    ``trainer.save_top_k`` kept (``checkpoints/top/``, every fold's for a
    k-fold run). None: as the run made its submission (its config's
    ``trainer.predict_with``; the best ones when it kept no others)."""
    from torchyard.topk import top_checkpoints

    best = best_checkpoints(path)
    chosen = which
    if chosen is None:
        trainer = (_run_config(path) or {}).get("trainer")
        chosen = "top_k" if isinstance(trainer, dict) and trainer.get("predict_with") == "top_k" else "best"
    if chosen == "best":
        return best
    tops = [top_checkpoints(checkpoint.parent) for checkpoint in best]
    if all(tops):
        return [file for files in tops for file in files]
    if which is None:
        return best
    raise ConfigError(
        f"--checkpoints top_k: {path} has no checkpoints/top/ (it was trained with trainer.save_top_k: 1)"
    )


def best_checkpoints(path: Path) -> list[Path]:
    """The best checkpoints of the run ``path`` holds, for ``predict -c DIR``.

    With a ``config.yaml`` (every run writes one), only the run it describes
    counts: a k-fold run of N folds is ``fold_0`` .. ``fold_<N-1>``, each
    with ``checkpoints/best.pt`` (a missing or extra fold is refused); any
    other run is ``checkpoints/best.pt``. Without one, every
    ``fold_*/checkpoints/best.pt``, else ``checkpoints/best.pt``.
    """
    found = {
        int(m.group(1)): best
        for best in path.glob("fold_*/checkpoints/best.pt")
        if (m := _FOLD.fullmatch(best.parent.parent.name)) and best.is_file()
    }
    single = path / "checkpoints" / "best.pt"
    config = _run_config(path)
    folds = _kfold_folds(config) if config is not None else None
    where = f"--checkpoint {path}"
    if folds is not None:
        missing = [k for k in range(folds) if k not in found]
        extra = sorted(k for k in found if k >= folds)
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"{_folds(missing)} without checkpoints/best.pt")
            if extra:
                problems.append(f"{_folds(extra)} not part of it (left by an earlier run?)")
            raise ConfigError(
                f"{where}: config.yaml describes a {folds}-fold run, but it has "
                + " and ".join(problems)
            )
        return [found[k] for k in range(folds)]
    if config is None and found:
        return [found[k] for k in sorted(found)]
    if single.is_file():
        return [single]
    if config is not None and found:
        raise ConfigError(
            f"{where}: no checkpoints/best.pt in it; its config.yaml describes a run "
            "without folds, so its fold_* folders are not that run's"
        )
    raise ConfigError(f"{where}: no checkpoints/best.pt or fold_*/checkpoints/best.pt in it")


# -- helpers -------------------------------------------------------------------------


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_NAME]


def _not_empty(path: Path) -> ConfigError:
    return ConfigError(
        f"--out {path}: directory exists and is not empty; "
        "pass --overwrite to write into it, or choose another directory"
    )


def _busy(directory: Path, fd: int, what: str) -> ConfigError:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    holder = f"pid {text}" if text.isdigit() else "pid unknown"
    return ConfigError(
        f"{what} {directory}: in use by another torchyard process ({holder}); "
        "wait for it to end or stop it, or choose another directory"
    )


def _lock(directory: Path, what: str) -> int | None:
    """Lock ``directory`` for this process: the open, locked lock file."""
    if fcntl is None:
        return None
    lock = directory / LOCK_NAME
    for _attempt in range(200):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, directory, what)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(lock, fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder removed the file as we opened it: open the new one
    raise ConfigError(f"{what} {directory}: could not lock it")  # pragma: no cover


def _flock(fd: int, directory: Path, what: str) -> None:
    assert fcntl is not None
    # a probe (check_unlocked) holds a shared lock for microseconds: retry briefly
    for _attempt in range(10):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.01)
    raise _busy(directory, fd, what)


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _make_unique(base: Path) -> Path:
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate = base
    for n in range(2, 10_002):
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = base.with_name(f"{base.name}-{n}")
    raise ConfigError(f"--out {base}: no free name among {base.name}-2 .. -10001")


def _make(path: Path) -> bool:
    """Create ``path``; False if it is already a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
        return True
    except FileExistsError:
        if not path.is_dir():
            raise ConfigError(f"--out {path}: exists and is not a directory") from None
        return False


def _probe_writable(path: Path) -> None:
    probe = path / ".torchyard-write-test"
    probe.write_text("")
    probe.unlink()


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _remove(entry: Path) -> None:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except OSError as e:
        raise ConfigError(f"--overwrite: cannot delete {entry}: {e.strerror or e}") from None


def _previous_submission(path: Path) -> str | None:
    """The submission file the previous run's ``summary.json`` names, if it
    lies directly inside ``path``."""
    try:
        summary = json.loads((path / "summary.json").read_text())
        name = Path(str(summary["submission"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name.name if (path / name.name).is_file() and name.name not in ("", ".", "..") else None


def _run_config(path: Path) -> dict[str, Any] | None:
    import yaml

    file = path / "config.yaml"
    if not file.is_file():
        return None
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--checkpoint {path}: its config.yaml cannot be read: {reason[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--checkpoint {path}: its config.yaml is not a run config")
    return data


def _kfold_folds(config: dict[str, Any]) -> int | None:
    """N for a config that trains N folds in one run; None for any other."""
    split = config.get("split")
    if not isinstance(split, dict) or split.get("method") != "kfold" or split.get("fold") is not None:
        return None
    folds = split.get("folds", 5)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 10_000:
        raise ConfigError(f"--checkpoint: config.yaml has split.folds {str(folds)[:40]!r}, not a fold count")
    return folds


def _folds(ks: list[int]) -> str:
    names = [f"fold_{k}" for k in ks[:5]] + (["..."] if len(ks) > 5 else [])
    return ", ".join(names)
