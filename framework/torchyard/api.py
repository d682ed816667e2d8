"""The Python API: train a config, predict with a run, load a run to predict.

``torchyard run`` and ``torchyard predict`` are thin shells over
:func:`train` and :func:`predict`; :func:`load` (in
:mod:`torchyard.predictor`) turns a finished run into a
:class:`~torchyard.predictor.Predictor`. Mistakes in the config or the data
raise :class:`torchyard.ConfigError` (or another
:class:`torchyard.TorchyardError`) with the same one-line messages the CLI
prints.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torchyard.blame import reraise_blamed
from torchyard.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from torchyard.config import RunConfig
    from torchyard.console import Reporter
    from torchyard.plugins import PluginHost
    from torchyard.rundirs import Claim, RunDir

__all__ = ["RunResult", "load_run_config", "predict", "train"]

#: A config: a YAML or JSON file, or the same as a mapping.
ConfigSource = str | Path | Mapping[str, Any]


@dataclass
class RunResult:
    """What :func:`train` leaves behind."""

    #: The run directory: ``config.yaml``, ``metrics.csv``, checkpoints, ...
    run_dir: Path
    #: The monitored value (``val/accuracy``, say), and whether lower or higher is better.
    monitor: str
    mode: str
    #: The best monitored value and its epoch (k-fold: the out-of-fold value, no epoch).
    best_value: float | None
    best_epoch: int | None
    #: One row per epoch, as in ``metrics.csv`` (k-fold: every fold's rows, with a ``fold`` key).
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: The submission file, if the config has a writer and the data a test split.
    submission: Path | None = None
    #: Everything ``summary.json`` holds.
    summary: dict[str, Any] = field(default_factory=dict)


def load_run_config(
    config: ConfigSource,
    overrides: Sequence[str] = (),
    *,
    base_dir: str | Path | None = None,
    host: PluginHost | None = None,
) -> tuple[RunConfig, Path]:
    """Validate a config file or mapping, with ``dotted.key=value`` overrides.

    Relative paths inside resolve against the file's folder, or for a
    mapping against ``base_dir`` (default: the working directory). Returns
    the validated config and the path that names the run (the file; for a
    mapping ``run``): runs go to ``runs/<its stem>/``.
    """
    from torchyard.config import apply_overrides, load_config, resolve_paths, validate_config

    registry = _host(host).registry
    if isinstance(config, Mapping):
        data = apply_overrides(copy.deepcopy(dict(config)), overrides)
        validated = validate_config(data, registry)
        resolve_paths(validated, Path(base_dir or Path.cwd()).resolve())
        return validated, Path("run")
    path = Path(config)
    return load_config(path, registry, overrides), path


def train(
    config: ConfigSource,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: str | Path | None = None,
    allow_changes: bool = False,
    reporter: Reporter | None = None,
    host: PluginHost | None = None,
) -> RunResult:
    """Train a config exactly as ``torchyard run`` does, k-fold included:
    train, keep the best checkpoint, predict the test split, write the
    submission, the report and ``summary.json``.

    :param config: a YAML/JSON file, or a mapping (see :func:`load_run_config`).
    :param out: the run directory (default: a new ``runs/<name>/<timestamp>``).
    :param overrides: ``dotted.key=value`` strings, as ``--set``.
    :param overwrite: write into an existing, non-empty ``out``.
    :param resume: continue a run: a checkpoint, a run directory, or ``"last"``.
    :param allow_changes: resume even though the config changed.
    :raises ConfigError: a problem with the config, the data or the arguments.
    :raises torchyard.loop.TrainingInterrupted: SIGINT/SIGTERM stopped
        training after writing a resumable checkpoint.
    """
    from torchyard import distributed
    from torchyard.kfold import is_kfold
    from torchyard.loop import TrainingInterrupted
    from torchyard.run import setup_device

    validated, name = load_run_config(config, overrides, base_dir=base_dir, host=host)
    if allow_changes and resume is None:
        raise ConfigError("--allow-changes: only with --resume (it lets a resumed run use a changed config)")
    trainer = validated.trainer
    device = setup_device(validated)  # under torchrun: join the process group, once
    reporter = reporter or _reporter(trainer.progress)
    out_path = Path(out) if out is not None else None
    finished = False
    job = _Job(validated, name, out_path, overwrite, reporter, device, _host(host))
    try:
        with _threads(trainer.num_threads):
            if is_kfold(validated):
                if resume is not None:
                    raise ConfigError(
                        "--resume: k-fold runs cannot be resumed as a whole; train the remaining "
                        "folds one by one with --set split.fold=K"
                    )
                result = _train_folds(job)
            else:
                result = _train_single(job, None if resume is None else str(resume), allow_changes)
        finished = True
    except TrainingInterrupted:
        finished = True  # every process stopped at the same step
        raise
    except Exception:
        reraise_blamed(validated.specs())  # a component's own exception: named as its
        raise
    finally:
        job.release()
        distributed.teardown(wait=finished)
    return result


@dataclass
class _Job:
    """What a training command was asked to do, as :func:`train` settled it."""

    config: RunConfig
    #: the config file (or ``run`` for a mapping): runs go to runs/<its stem>/
    name: Path
    out: Path | None
    overwrite: bool
    reporter: Reporter
    device: torch.device
    host: PluginHost
    #: the run directory this process holds (locked) until the command ends
    held: RunDir | None = None

    def claim(self, out_dir: Path, how: Claim, keep_out: Sequence[str] = ()) -> Path:
        """Take ``out_dir`` for the run (see :func:`torchyard.rundirs.claim_run_dir`)
        once it is known to start; returns the directory, renamed if needed."""
        from torchyard.rundirs import claim_shared

        self.held = claim_shared(out_dir, how, overwrite=self.overwrite, keep_out=keep_out)
        return self.held.path

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None


def _train_single(job: _Job, resume: str | None, allow_changes: bool) -> RunResult:
    from torchyard import distributed
    from torchyard.pipeline import fit_and_submit
    from torchyard.resume import copy_best, resume_point, resume_target
    from torchyard.run import build_run, write_resolved_config

    config, reporter = job.config, job.reporter
    payload, source = None, None
    if resume is not None:
        out_dir, payload, source = resume_target(
            config, job.name, job.out, job.overwrite, resume, allow_changes, reporter
        )
    else:
        out_dir = _run_dir(job.out, job.name, job.overwrite)
    run = build_run(config, job.host, out_dir, device=job.device)
    if payload is not None:
        _check_resumable(run, payload)  # a changed model (--allow-changes) fails here, not mid-write
    _warn_build(reporter, run.extras)
    # the run starts: only now is its directory created (or taken), locked and written
    how: Claim = "unique" if job.out is None and payload is None else "exclusive"
    if payload is not None and source is None:
        how = "continue"  # resumed in its own directory
    out_dir = run.out_dir = job.claim(out_dir, how, _writer_file(run))
    if distributed.is_main():
        write_resolved_config(out_dir, config, run.resolved)
        if source is not None:  # resumed into another directory: bring the best checkpoint along
            copy_best(source, out_dir)
    distributed.barrier()
    where = f"resuming epoch {resume_point(payload)}, " if payload is not None else ""
    processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    reporter.info(
        f"run directory: {out_dir}  ({where}device {run.device}{processes}, "
        f"precision {run.trainer.precision})"
    )
    summary = fit_and_submit(run, reporter, resume=payload)
    return _result(out_dir, summary, _read_rows(out_dir / "metrics.csv"))


def _train_folds(job: _Job) -> RunResult:
    from torchyard import distributed
    from torchyard.kfold import fit_folds
    from torchyard.run import build_run, write_resolved_config

    config, reporter = job.config, job.reporter
    out_dir = _run_dir(job.out, job.name, job.overwrite)

    def build_fold(k: int) -> Any:
        return build_run(config, job.host, out_dir / f"fold_{k}", fold=k, device=job.device)

    first = build_fold(0)  # built (and checked) before anything is written, and trained as is
    _warn_build(reporter, first.extras)
    out_dir = job.claim(out_dir, "unique" if job.out is None else "exclusive", _writer_file(first))
    first.out_dir = out_dir / "fold_0"
    if distributed.is_main():
        write_resolved_config(out_dir, config, first.resolved)
    distributed.barrier()
    reporter.info(f"run directory: {out_dir}  ({first.extras['folds']} folds, device {first.device})")
    summary = fit_folds(first, build_fold, out_dir, reporter)
    rows = []
    for fold in summary["folds"]:
        rows += [{"fold": fold["fold"], **r} for r in _read_rows(out_dir / f"fold_{fold['fold']}" / "metrics.csv")]
    return _result(out_dir, summary, rows)


def predict(
    config: ConfigSource,
    checkpoint: str | Path,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    host: PluginHost | None = None,
    checkpoints: Literal["best", "top_k"] | None = None,
) -> Path | None:
    """Predict the config's test split with a checkpoint, or a run directory
    (its best checkpoint, or every fold's, averaged), and write the
    submission into ``out`` (default: a new ``runs/<name>/<timestamp>-predict``),
    as ``torchyard predict`` does. Returns the submission's path.

    :param checkpoints: of a run directory, ``"best"`` or ``"top_k"`` (the
        ones ``trainer.save_top_k`` kept, averaged); None: as the run made
        its submission (``trainer.predict_with``)."""
    from torchyard import distributed
    from torchyard.checkpoint import load_checkpoint
    from torchyard.console import Reporter
    from torchyard.pipeline import predict_and_submit, resolve_checkpoints
    from torchyard.run import build_run, setup_device
    from torchyard.rundirs import claim_shared

    validated, name = load_run_config(config, overrides, base_dir=base_dir, host=host)
    chosen = resolve_checkpoints(Path(checkpoint), checkpoints)
    for checkpoint_path in chosen:
        load_checkpoint(checkpoint_path)  # refuse a bad checkpoint before building anything
    trainer = validated.trainer
    device = setup_device(validated)
    finished = False
    path: Path | None = None
    held = None
    try:
        out_dir = _run_dir(Path(out) if out is not None else None, name, overwrite, suffix="-predict")
        reporter = reporter or Reporter(progress=False, quiet=not distributed.is_main())
        with _threads(trainer.num_threads):
            run = build_run(validated, _host(host), out_dir, train=False, device=device)
            existed = out_dir.exists()
            # predicting writes only the submission: --overwrite deletes nothing here
            held = claim_shared(
                out_dir, "unique" if out is None else "exclusive", overwrite=overwrite, empty=False
            )
            out_dir = run.out_dir = held.path
            try:
                path = predict_and_submit(run, chosen, reporter)
            except BaseException:
                held.release()
                if distributed.is_main() and not existed and not any(out_dir.iterdir()):
                    out_dir.rmdir()  # leave nothing behind for a failed prediction
                raise
        finished = True
    except Exception:
        reraise_blamed(validated.specs())  # a component's own exception: named as its
        raise
    finally:
        if held is not None:
            held.release()
        distributed.teardown(wait=finished)
    return path


def _check_resumable(run: Any, payload: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights this config's model cannot take,
    before anything in the run directory is touched."""
    try:
        run.model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"--resume: the checkpoint's weights do not fit this config's model ({first[:200]}); "
            "resume with the model the run was trained with, or start a new run"
        ) from None


# -- helpers -------------------------------------------------------------------------


def _host(host: PluginHost | None) -> PluginHost:
    from torchyard.plugins import get_host

    return host if host is not None else get_host()


def _reporter(progress: bool) -> Reporter:
    from torchyard import distributed
    from torchyard.console import Reporter

    return Reporter(progress=progress, quiet=not distributed.is_main())


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    from torchyard.device import num_threads

    with num_threads(count):
        yield


def _run_dir(out: Path | None, name: Path, overwrite: bool, suffix: str = "") -> Path:
    """The run directory to claim once the run starts (process 0 picks it,
    so that every process agrees)."""
    from torchyard import distributed
    from torchyard.rundirs import choose_run_dir

    # every process checks (the same error everywhere, no process left waiting)
    chosen = choose_run_dir(out, name, overwrite=overwrite, suffix=suffix)
    shared: Path = distributed.broadcast_object(chosen)
    return shared


def _writer_file(run: Any) -> tuple[str, ...]:
    """The submission the run will write, which ``--overwrite`` deletes first."""
    filename = getattr(run.writer, "filename", None)
    return (filename,) if isinstance(filename, str) and filename else ()


def _warn_build(reporter: Reporter, extras: Mapping[str, Any]) -> None:
    for warning in extras.get("warnings", ()):
        reporter.warn(warning)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """``metrics.csv`` back as numbers."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _result(out_dir: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> RunResult:
    submission = summary.get("submission")
    return RunResult(
        run_dir=out_dir,
        monitor=summary["monitor"],
        mode=summary["mode"],
        best_value=summary.get("best_value"),
        best_epoch=summary.get("best_epoch"),
        rows=rows,
        submission=Path(submission) if submission else None,
        summary=summary,
    )
