"""What the built-in loggers share: the hooks, and what each one sends.

A subclass implements :meth:`Logger.start`, :meth:`Logger.log` and
:meth:`Logger.finish`; the hooks here turn the run's events into those
calls, so the three trackers receive the same things under the same names:

- ``start``: the resolved config as flat dotted hyper-parameters;
- ``log``: each ``steps.csv`` row as ``step/loss``, ``step/lr``,
  ``step/grad_norm`` and each epoch's row under its own keys
  (``train/loss``, ``val/<metric>``, ``lr``, ``epoch``, ...), both at the
  optimizer step count, so the curves share one axis;
- ``finish``: the summary, the report's PNGs, and the paths of the run's
  files (``summary.json``, ``config.yaml``, the submission, checkpoints).
"""

from __future__ import annotations

import atexit
import contextlib
import re
from pathlib import Path
from typing import Any

import torchyard
from torchyard.loggers import hyperparameters, numbers

__all__ = ["Finished", "Logger", "run_names"]

#: The ``steps.csv`` values loggers receive, under ``step/<name>``.
STEP_KEYS = ("loss", "lr", "grad_norm")


def run_names(out_dir: Path) -> tuple[Path, str, str]:
    """``(home, group, name)`` of a run directory: the folder holding the
    config's runs (where a default store goes), the config's name and the
    run's (``<timestamp>``, or ``<timestamp>-fold_<k>`` for a k-fold part)."""
    out_dir = Path(out_dir).resolve()
    if re.fullmatch(r"fold_\d+", out_dir.name):
        return (
            out_dir.parent.parent,
            out_dir.parent.parent.name,
            f"{out_dir.parent.name}-{out_dir.name}",
        )
    return out_dir.parent, out_dir.parent.name, out_dir.name


class Finished:
    """What a run leaves, for :meth:`Logger.finish`."""

    def __init__(self, run: Any, summary: dict[str, Any]) -> None:
        out_dir = Path(run.out_dir)
        self.summary = summary
        #: The report's images, by name (``confusion_matrix``: its path).
        self.images = {
            name: Path(path)
            for name, path in (summary.get("report") or {}).items()
            if str(path).endswith(".png") and Path(path).is_file()
        }
        #: The run's files worth keeping beside the metrics, by role.
        self.files = {
            role: Path(path)
            for role, path in (
                ("summary", out_dir / "summary.json"),
                ("config", out_dir / "config.yaml"),
                ("submission", summary.get("submission")),
            )
            if path and Path(path).is_file()
        }
        #: Paths worth recording as text (checkpoints stay on disk: they are large).
        self.paths = {
            key: str(summary[key])
            for key in (
                "best_checkpoint",
                "last_checkpoint",
                "submission",
                "test_predictions",
                "val_predictions",
                "oof_predictions",
            )
            if summary.get(key)
        }
        self.paths["run_dir"] = str(out_dir)
        #: The summary's numbers, flat (``best_value``, ``final.val/accuracy``, ``oof.accuracy``).
        self.values = {
            k: v
            for k, v in numbers(_flat_numbers(summary)).items()
            if not k.startswith(("submitted_from.", "top_k.", "folds."))
        }


def _flat_numbers(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


class Logger:
    """A tracker behind the run's hooks; subclasses say how to send."""

    def __init__(self) -> None:
        self._open = False

    # -- what a subclass implements --------------------------------------------

    def start(self, run: Any, hparams: dict[str, Any]) -> None:
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, run: Any, finished: Finished) -> None:
        raise NotImplementedError

    def close(self, ok: bool) -> None:
        """End the tracker's run: finished (``ok``) or not (the process
        ends without ``on_run_end``: an interrupted or failed run)."""
        raise NotImplementedError

    def end(self) -> None:
        """End the tracker's run without a summary: a k-fold run's fold
        past the first, whose training is over (the whole run's end goes
        to fold 0's loggers); see :meth:`torchyard.callbacks.RunHooks.end_loggers`."""
        if self._open:
            self._open = False
            atexit.unregister(self._at_exit)
            self.close(ok=True)

    # -- the hooks ---------------------------------------------------------------

    @torchyard.hookimpl
    def on_run_start(self, run: Any) -> None:
        if self._open:  # a k-fold run's whole-run start never comes twice; a resume might
            return
        self._open = True
        atexit.register(self._at_exit)
        self.start(run, hyperparameters(run))

    @torchyard.hookimpl
    def on_step_logged(self, step: int, metrics: dict[str, Any]) -> None:
        values = numbers({f"step/{k}": metrics.get(k) for k in STEP_KEYS})
        if values:
            self.log(values, step)

    @torchyard.hookimpl
    def on_epoch_end(self, metrics: dict[str, Any]) -> None:
        values = numbers({k: v for k, v in metrics.items() if k != "step"})
        self.log(values, int(metrics.get("step") or 0))

    @torchyard.hookimpl
    def on_run_end(self, run: Any, summary: dict[str, Any]) -> None:
        if not self._open:
            return
        self._open = False
        atexit.unregister(self._at_exit)
        self.finish(run, Finished(run, summary))
        self.close(ok=True)

    def _at_exit(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # the process is ending; nothing to tell
                self.close(ok=False)
