"""The runs under a folder, read from their run directories: ``torchyard runs``.

Each run directory (one holding ``config.yaml``, ``summary.json`` or a
lock file) becomes one :class:`RunInfo`: its status, epochs, monitored
value and time, read from ``summary.json`` when the run finished and from
``metrics.csv`` (every fold's for a k-fold run) when it did not. Nothing is
written: a running run is told by probing its lock, not by taking it. A
run whose files cannot be read keeps its row, with the problem said.

:func:`config_columns` gives the dotted config keys whose values differ
between the runs shown, like a W&B runs table: the rest is what they share.
Runs that monitor different values are never ranked against each other
(:func:`sort_runs`).

Only the standard library and PyYAML are used (torch is not imported), so
listing a hundred runs stays quick.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchyard.config_io import (
    IGNORED_CHANGES,
    flatten_config,
    parse_yaml,
    read_config_file,
    show_value,
)
from torchyard.errors import ConfigError, TorchyardError, did_you_mean
from torchyard.rundirs import LOCK_NAME, check_unlocked

__all__ = [
    "SORT_KEYS",
    "RunInfo",
    "config_columns",
    "filter_runs",
    "find_runs",
    "format_table",
    "read_run",
    "sort_runs",
]

#: ``--sort`` keys besides a dotted config key, and how each ranks by default.
SORT_KEYS = {
    "when": "newest first",
    "best": "best first, within each monitor",
    "time": "shortest first",
    "epochs": "most first",
    "run": "by path",
    "status": "by status",
}
_FOLD = re.compile(r"fold_(\d+)")
_STAMP = re.compile(r"(\d{8}-\d{6})")
#: folders inside a run directory that are never runs of their own
_NOT_RUNS = frozenset({"checkpoints", "report"})


@dataclass
class RunInfo:
    """What ``torchyard runs`` shows of one run directory."""

    path: Path
    #: the path relative to the folder searched
    run: str
    #: when the run started (its directory's timestamp name, else when its
    #: config.yaml was written)
    when: _dt.datetime | None = None
    #: ``done``, ``running`` (a process holds the lock), ``unfinished`` (no
    #: summary.json and nobody holds it: crashed or interrupted) or
    #: ``broken`` (its files cannot be read)
    status: str = "unfinished"
    stopped_early: bool = False
    #: whether ``checkpoints/last.pt`` (a fold's, for k-fold) is there to ``--resume``
    resumable: bool = False
    epochs: int | None = None
    folds: int | None = None
    monitor: str | None = None
    mode: str | None = None
    best: float | None = None
    best_epoch: int | None = None
    #: the fold bests of a k-fold run (its ``best`` is the out-of-fold score)
    fold_best: list[float | None] | None = None
    #: seconds of training: the sum of metrics.csv's ``time_s``
    time_s: float | None = None
    #: the run's config, flattened to dotted keys (empty if unreadable)
    config: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self, keys: Sequence[str] = ()) -> dict[str, Any]:
        """A JSON-ready row; ``keys``: the config keys to include (``config``)."""
        return {
            "run": self.run,
            "path": str(self.path),
            "when": self.when.isoformat(timespec="seconds") if self.when else None,
            "status": self.status,
            "stopped_early": self.stopped_early,
            "resumable": self.resumable,
            "epochs": self.epochs,
            "folds": self.folds,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            **({"fold_best": self.fold_best} if self.fold_best is not None else {}),
            "time_s": self.time_s,
            "config": {key: self.config.get(key) for key in keys},
            "problems": list(self.problems),
        }


# -- finding and reading runs -----------------------------------------------------------


def find_runs(root: Path) -> list[RunInfo]:
    """Every run directory under ``root`` (``root`` itself included), read.

    ``root`` missing or not a folder is a :class:`ConfigError`.
    """
    if not root.exists():
        raise ConfigError(f"{root}: no such directory")
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    return [read_run(path, root) for path in _run_dirs(root)]


def _is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("config.yaml", "summary.json", LOCK_NAME))


def _run_dirs(root: Path) -> Iterator[Path]:
    if _is_run_dir(root):
        yield root
        return  # a run's fold_<k> folders are part of it, not runs
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if not child.name.startswith(".") and child.name not in _NOT_RUNS:
            yield from _run_dirs(child)


def read_run(path: Path, root: Path) -> RunInfo:
    """What ``path``'s files say about its run; problems go in ``problems``."""
    info = RunInfo(path=path, run=path.relative_to(root).as_posix() or ".")
    config = _read_config(path, info)
    info.config = flatten_config(config) if config else {}
    trainer = config.get("trainer") if config else None
    trainer = trainer if isinstance(trainer, dict) else {}
    info.when = _started(path)
    folds = _fold_dirs(path)
    kfold = _kfold_count(config) if config else None
    if kfold is not None or (config is None and folds):
        info.folds = kfold if kfold is not None else len(folds)
    parts = [path / f"fold_{k}" for k in sorted(folds)] if info.folds else [path]
    rows = [row for part in parts for row in _read_metrics(part, info)]
    info.resumable = any((part / "checkpoints" / "last.pt").is_file() for part in parts)
    times = [t for row in rows if (t := row.get("time_s")) is not None]
    info.time_s = math.fsum(times) if times else None
    epochs = [int(e) for row in rows if (e := row.get("epoch")) is not None]
    info.epochs = max(epochs) if epochs else None
    running = _locked(path)
    # a run resumed (or --overwrite'n) in its directory holds the lock while
    # an earlier summary.json may still be there: the lock says what is true now
    summary = None if running else _read_summary(path, info)
    if summary is not None:
        _from_summary(info, summary)
    else:
        info.monitor = _text(trainer.get("monitor")) or _first_metric_key(config)
        mode = trainer.get("mode")
        info.mode = mode if mode in ("min", "max") else _auto_mode(info.monitor, config)
        if info.folds is None and info.monitor and info.mode:
            _best_of_rows(info, rows)
        info.status = "running" if running else "unfinished"
    if info.problems:
        info.status = "broken"
    return info


def _read_config(path: Path, info: RunInfo) -> dict[str, Any] | None:
    file = path / "config.yaml"
    if not file.is_file():
        return None
    try:
        return read_config_file(file)
    except TorchyardError as e:
        info.problems.append(e.problems[0].replace(str(file), "config.yaml", 1))
        return None


def _read_summary(path: Path, info: RunInfo) -> dict[str, Any] | None:
    file = path / "summary.json"
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        info.problems.append(f"summary.json: cannot be read: {getattr(e, 'strerror', None) or e}")
        return None
    except ValueError as e:
        info.problems.append(f"summary.json: not valid JSON: {str(e).splitlines()[0][:200]}")
        return None
    if not isinstance(data, dict):
        info.problems.append(f"summary.json: expected an object, got {type(data).__name__}")
        return None
    return data


def _from_summary(info: RunInfo, summary: dict[str, Any]) -> None:
    info.status = "done"
    info.monitor = _text(summary.get("monitor")) or info.monitor
    info.mode = summary.get("mode") if summary.get("mode") in ("min", "max") else None
    info.best = _number(summary.get("best_value"))
    epoch = summary.get("best_epoch")
    info.best_epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    if isinstance(summary.get("epochs"), int) and info.folds is None:
        info.epochs = summary["epochs"]
    info.stopped_early = summary.get("stopped_early") is True
    folds = summary.get("folds")
    if isinstance(folds, list):
        info.folds = len(folds)
        info.fold_best = [_number(f.get("best_value")) if isinstance(f, dict) else None for f in folds]


def _best_of_rows(info: RunInfo, rows: list[dict[str, float | None]]) -> None:
    """The best monitored value in ``rows`` (the first epoch to reach it), as
    the loop keeps it, for a run that has no summary.json yet."""
    best: tuple[float, int] | None = None
    for row in rows:
        value, epoch = row.get(info.monitor or ""), row.get("epoch")
        if value is None or epoch is None or math.isnan(value):
            continue
        better = best is None or (value > best[0] if info.mode == "max" else value < best[0])
        if better:
            best = (value, int(epoch))
    if best is not None:
        info.best, info.best_epoch = best


def _read_metrics(folder: Path, info: RunInfo) -> list[dict[str, float | None]]:
    """metrics.csv's rows as numbers (empty cells: None); none if absent."""
    file = folder / "metrics.csv"
    if not file.is_file():
        return []
    where = file.relative_to(info.path).as_posix()
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            return [
                {key: _cell(value) for key, value in row.items() if key is not None}
                for row in csv.DictReader(handle)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        info.problems.append(f"{where}: cannot be read: {getattr(e, 'strerror', None) or e}")
        return []
    except ValueError as e:
        info.problems.append(f"{where}: not a metrics table: {str(e)[:200]}")
        return []


def _cell(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    return float(value)  # a ValueError names a corrupt file (_read_metrics)


def _fold_dirs(path: Path) -> list[int]:
    try:
        return [int(m.group(1)) for p in path.iterdir() if (m := _FOLD.fullmatch(p.name)) and p.is_dir()]
    except OSError:
        return []


def _kfold_count(config: dict[str, Any]) -> int | None:
    split = config.get("split")
    if not isinstance(split, dict) or split.get("method") != "kfold" or split.get("fold") is not None:
        return None
    folds = split.get("folds", 5)
    return folds if isinstance(folds, int) and not isinstance(folds, bool) and folds > 1 else None


def _started(path: Path) -> _dt.datetime | None:
    """The timestamp a default run directory is named by, else the time its
    config.yaml (written as the run starts) or the folder was last changed."""
    if m := _STAMP.search(path.name):
        try:
            return _dt.datetime.strptime(m.group(1), "%Y%m%d-%H%M%S")
        except ValueError:
            pass
    for candidate in (path / "config.yaml", path):
        try:
            return _dt.datetime.fromtimestamp(candidate.stat().st_mtime)
        except OSError:
            continue
    return None


def _locked(path: Path) -> bool:
    """Whether a torchyard process holds ``path`` now (a read-only probe)."""
    if not (path / LOCK_NAME).exists():
        return False
    try:
        check_unlocked(path)
    except ConfigError:
        return True
    return False


def _first_metric_key(config: dict[str, Any] | None) -> str | None:
    """The monitor a run without ``trainer.monitor`` uses (config.resolve_monitor)."""
    if config is None:
        return None
    metrics = config.get("metrics")
    if isinstance(metrics, list) and metrics and isinstance(metrics[0], dict):
        name = metrics[0].get("log_as") or metrics[0].get("name")
        return f"val/{name}" if isinstance(name, str) else None
    return "val/loss"


def _auto_mode(monitor: str | None, config: dict[str, Any] | None) -> str | None:
    """``trainer.mode: auto`` as the run resolved it: the monitored metric's
    ``higher_is_better``; a loss is minimised. None when not known."""
    if monitor is None:
        return None
    key = monitor.removeprefix("val/")
    metrics = config.get("metrics") if config else None
    for spec in metrics if isinstance(metrics, list) else []:
        if isinstance(spec, dict) and (spec.get("log_as") or spec.get("name")) == key:
            try:
                from torchyard.plugins import get_host

                factory = get_host().registry.get("metric", str(spec.get("name"))).factory
                higher = getattr(factory, "higher_is_better", None)
            except Exception:  # an uninstalled plugin: the mode stays unknown
                return None
            return None if not isinstance(higher, bool) else "max" if higher else "min"
    return "min" if key == "loss" or key.endswith("loss") else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# -- choosing what to show ------------------------------------------------------------------


def config_columns(runs: Sequence[RunInfo]) -> list[str]:
    """The dotted config keys whose values differ between ``runs``, in name
    order (runs with no readable config do not count), except
    :data:`IGNORED_CHANGES`."""
    configs = [run.config for run in runs if run.config]
    if len(configs) < 2:
        return []
    missing = object()
    keys = sorted({key for config in configs for key in config})  # the same columns whatever the sort
    differing = [
        key
        for key in keys
        if key not in IGNORED_CHANGES
        and len({json.dumps(c.get(key, missing), sort_keys=True, default=repr) for c in configs}) > 1
    ]
    # `split: null` in one run, `split: {method: kfold, ...}` in another: the
    # `split.*` columns say it (unset: "-"), a `split` column would repeat it
    return [key for key in differing if not any(other.startswith(f"{key}.") for other in differing)]


def filter_runs(runs: Sequence[RunInfo], filters: Sequence[str], monitor: str | None = None) -> list[RunInfo]:
    """The runs whose every ``key=value`` filter matches (a dotted config
    key, or ``status``/``monitor``/``run``), and that monitor ``monitor``.

    A value is compared as YAML (``optimizer.lr=1e-3`` matches 0.001); a
    filter without ``=`` is a :class:`ConfigError`.
    """
    parsed = []
    for text in filters:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {text!r}: expected KEY=VALUE, e.g. model.name=resnet18 or status=done")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except TorchyardError:
            value = raw
        parsed.append((key.strip(), raw, value))
    known = {"status", "monitor", "run"} | {key for run in runs for key in run.config}
    for key, _raw, _value in parsed:
        if key not in known:
            raise ConfigError(
                f"--filter {key}: no run has this config key"
                + (did_you_mean(key, sorted(known)) or "; filter by status, monitor, run or a dotted config key")
            )
    kept = []
    for run in runs:
        if monitor is not None and run.monitor != monitor:
            continue
        fields = {"status": run.status, "monitor": run.monitor, "run": run.run}
        if all(_matches(fields[key] if key in fields else run.config.get(key), raw, value)
               for key, raw, value in parsed):
            kept.append(run)
    return kept


def _matches(actual: Any, raw: str, value: Any) -> bool:
    if isinstance(actual, bool) or isinstance(value, bool):
        return actual is value
    if isinstance(actual, int | float) and isinstance(value, int | float):
        return math.isclose(actual, value, rel_tol=1e-12)
    return actual == value or (actual is not None and str(actual) == raw)


def sort_runs(runs: Sequence[RunInfo], key: str = "when", reverse: bool = False) -> list[RunInfo]:
    """``runs`` in the order ``--sort key`` means (:data:`SORT_KEYS`, or a
    dotted config key: ascending, unset last); ``reverse`` flips it.

    ``best`` ranks only within one monitor and mode: the runs are grouped
    by monitor (in name order), and each group is ranked best first; runs
    with no best value close each group.
    """
    runs = list(runs)
    if key == "best":
        def best_rank(run: RunInfo) -> tuple[Any, ...]:
            if run.best is None or run.mode is None:
                return (run.monitor or "", 1, 0.0, run.run)
            value = -run.best if run.mode == "max" else run.best
            return (run.monitor or "", 0, -value if reverse else value, run.run)

        return sorted(runs, key=best_rank)
    if key == "when":
        ordered = sorted(runs, key=lambda r: (r.when or _dt.datetime.min, r.run), reverse=True)
    elif key == "time":
        ordered = _with_none_last(runs, lambda r: r.time_s)
    elif key == "epochs":
        ordered = _with_none_last(runs, lambda r: -r.epochs if r.epochs is not None else None)
    elif key == "run":
        ordered = sorted(runs, key=lambda r: r.run)
    elif key == "status":
        ordered = sorted(runs, key=lambda r: (r.status, r.run))
    else:
        if not any(key in run.config for run in runs):
            raise ConfigError(
                f"--sort {key!r}: not a column and no run's config has it; "
                f"sort by {', '.join(SORT_KEYS)} or a dotted config key such as optimizer.lr"
            )
        ordered = _with_none_last(runs, lambda r: _sortable(r.config.get(key)))
    return ordered[::-1] if reverse else ordered


def _with_none_last(runs: list[RunInfo], value: Any) -> list[RunInfo]:
    known = [r for r in runs if value(r) is not None]
    return sorted(known, key=lambda r: (value(r), r.run)) + sorted(
        (r for r in runs if value(r) is None), key=lambda r: r.run
    )


def _sortable(value: Any) -> tuple[int, Any] | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, show_value(value))


# -- the table ---------------------------------------------------------------------------------


def format_table(runs: Sequence[RunInfo], keys: Sequence[str], width: int = 24) -> str:
    """Aligned plain-text columns: the run's facts, then one column per
    config key in ``keys`` (values cut to ``width`` characters); a broken
    run's problems follow the table, one line each."""
    header = ["run", "when", "status", "epochs", "monitor", "best", "epoch", "time", *keys]
    right = {3, 5, 6, 7}
    rows = [header]
    for run in runs:
        rows.append([
            run.run,
            run.when.strftime("%Y-%m-%d %H:%M") if run.when else "-",
            _status_text(run),
            "-" if run.epochs is None else str(run.epochs),
            run.monitor or "-",
            "-" if run.best is None else f"{run.best:.4f}",
            "-" if run.best_epoch is None else str(run.best_epoch),
            "-" if run.time_s is None else _duration(run.time_s),
            *(_value(run, key, width) for key in keys),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]
    lines += [f"{run.run}: {problem}" for run in runs for problem in run.problems]
    return "\n".join(lines)


def _status_text(run: RunInfo) -> str:
    notes = []
    if run.folds:
        notes.append(f"{run.folds} folds")
    if run.status == "done" and run.stopped_early:
        notes.append("stopped early")
    if run.status == "unfinished" and run.resumable:
        notes.append("resumable")
    return run.status + (f" ({', '.join(notes)})" if notes else "")


def _value(run: RunInfo, key: str, width: int) -> str:
    if not run.config:
        return "?"
    if key not in run.config:
        return "-"
    value = run.config[key]
    text = value if isinstance(value, str) else show_value(value, width)
    return text if len(text) <= width else text[: width - 1] + "…"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
