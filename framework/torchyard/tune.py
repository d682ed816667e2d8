"""Hyper-parameter sweeps on Optuna: ``torchyard tune CONFIG --space SPACE``.

Each trial is an ordinary run (:func:`torchyard.api.train`) of the config
with the trial's values applied (:mod:`torchyard.space`), in its own run
directory ``<out>/trial_NNNN/``. The study lives in Optuna's storage --
``sqlite:///<out>/study.db`` unless ``storage`` names another database -- so
any number of workers, on one machine or several, join one study by running
the same command with the same study name and storage, and re-running the
command after a crash continues the study.

``trials`` is the study's total: a worker asks for a trial only while fewer
than ``trials`` are complete, pruned or running. On SQLite the count and the
ask happen under a file lock, so local workers never overshoot; on other
databases a trial asked for beyond the total is told FAIL before it runs
(``surplus`` in its user attributes). A busy database is retried, and a
worker's heartbeat marks its running trial FAIL once the worker is gone;
that trial is queued again with the same values
(``RetryFailedTrialCallback``), so nothing is lost.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torchyard.errors import ConfigError, PluginError, TorchyardError
from torchyard.hookspecs import hookimpl
from torchyard.space import Dimension, apply_params, check_space, read_space

if TYPE_CHECKING:
    from torchyard.plugins import PluginHost

__all__ = ["TuneResult", "tune"]

T = TypeVar("T")

PRUNERS = ("median", "hyperband", "none")
#: consecutive failed trials after which a worker gives up (a config that cannot train)
MAX_FAILURES_IN_A_ROW = 3
#: how often a busy database is tried before the error is the user's
RETRIES = 20


@dataclass
class TuneResult:
    """What :func:`tune` leaves behind."""

    study_name: str
    storage: str
    out: Path
    #: one row per trial: number, state, value, params (labels), run_dir
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_number: int | None = None
    best_value: float | None = None
    #: ``best.yaml``, and the plots written
    best_config: Path | None = None
    plots: list[Path] = field(default_factory=list)
    #: why a plot was not drawn (too few trials, ...)
    notes: list[str] = field(default_factory=list)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise TorchyardError("torchyard tune needs Optuna: pip install 'torchyard[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune(
    config: str | Path,
    space: str | Path,
    *,
    trials: int,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str | Any = "median",
    seed: int | None = None,
    overrides: Sequence[str] = (),
    heartbeat: int = 30,
    verbose: bool = False,
    host: PluginHost | None = None,
    echo: Callable[[str], None] = print,
) -> TuneResult:
    """Run (or join, or continue) a study until it has ``trials`` finished
    trials, then write its table, ``best.yaml`` and plots into ``out``.

    :param pruner: ``median``, ``hyperband``, ``none`` or an Optuna pruner.
    :param heartbeat: seconds between a worker's heartbeats; a running trial
        silent for three times as long is marked FAIL (its worker died).
    :param verbose: print each trial's run output (epochs, tables), not only
        its warnings and a line on how it ended.
    :raises ConfigError: a bad config, space, argument or study.
    """
    optuna = _optuna()
    from torchyard.config import validate_config
    from torchyard.config_io import apply_overrides, read_config_file
    from torchyard.plugins import get_host

    host = host or get_host()
    if trials < 1:
        raise ConfigError(f"--trials: expected at least 1, got {trials}")
    if heartbeat < 1:
        raise ConfigError(f"--heartbeat: expected at least 1 second, got {heartbeat}")
    config_path, space_path = Path(config), Path(space)
    data = apply_overrides(read_config_file(config_path), overrides)
    base = validate_config(data, host.registry)
    dims = read_space(space_path)
    check_space(dims, data, host.registry, str(space_path))
    name = study_name or f"{config_path.stem}-{space_path.stem}"
    out_dir = Path(out) if out is not None else Path("runs") / "tune" / name
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file, not a directory")
    the_pruner, direction = _pruner(optuna, pruner, base), _direction(base, host)
    if storage is None:  # the default storage lives in it
        out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study = _open_study(optuna, url, name, direction, the_pruner, seed, heartbeat)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_same_study(study, data, space_path, url)
    worker = _Worker(
        optuna, study, dims, data, config_path.resolve().parent, out_dir, trials, heartbeat, host, echo, url
    )
    worker.verbose = verbose
    worker.loop()
    return summarize(study, dims, data, config_path.resolve().parent, out_dir, host, echo, url)


# -- the study ---------------------------------------------------------------


def _retry(what: Callable[[], T]) -> T:
    """Call ``what``, again while the database is locked or busy (SQLite
    under several writers), with a growing pause."""
    import sqlalchemy.exc

    optuna = _optuna()
    for attempt in range(RETRIES):
        try:
            return what()
        # IntegrityError: two workers creating the schema or the study at once (not SQLite)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, optuna.exceptions.StorageInternalError) as e:
            if attempt == RETRIES - 1:
                raise ConfigError(f"study storage: still failing after {RETRIES} tries: {str(e).splitlines()[0]}") from None
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


def _open_study(optuna: Any, url: str, name: str, direction: str, pruner: Any, seed: int | None, heartbeat: int) -> Any:

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # workers started together would all create the schema and the study at
    # once; on SQLite they take turns, elsewhere a clash is retried
    with _file_lock(_lock_file(url)):
        return _create_or_load(optuna, url, engine_kwargs, name, direction, pruner, seed, heartbeat)


def _create_or_load(
    optuna: Any,
    url: str,
    engine_kwargs: dict[str, Any],
    name: str,
    direction: str,
    pruner: Any,
    seed: int | None,
    heartbeat: int,
) -> Any:
    import sqlalchemy.exc
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat and the retry callback are "experimental"
        try:
            rdb = _retry(
                lambda: RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=3 * heartbeat,
                    failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
                )
            )
        except (ImportError, ValueError, sqlalchemy.exc.ArgumentError) as e:  # a driver missing, a malformed URL
            hint = " (the database's driver, e.g. psycopg2 for postgresql)" if isinstance(e, ImportError) else ""
            raise ConfigError(f"--storage {url}: {str(e).splitlines()[0]}{hint}") from None
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = _retry(
        lambda: optuna.create_study(
            storage=rdb, study_name=name, direction=direction, pruner=pruner, sampler=sampler, load_if_exists=True
        )
    )
    wanted = optuna.study.StudyDirection.MAXIMIZE if direction == "maximize" else optuna.study.StudyDirection.MINIMIZE
    if study.direction != wanted:
        raise ConfigError(
            f"study '{name}' in {url} {study.direction.name.lower()}s, but this config's monitor wants to {direction}; "
            "use another --study-name"
        )
    return study


def _direction(config: Any, host: PluginHost) -> str:
    """``maximize`` or ``minimize``: the run's monitor mode, as the run will resolve it."""
    from torchyard.config import metric_key, resolve_monitor

    if config.trainer.mode in ("min", "max"):
        return "maximize" if config.trainer.mode == "max" else "minimize"
    monitor = resolve_monitor(config)
    for spec in config.metrics:
        if f"val/{metric_key(spec)}" == monitor:
            better = getattr(spec.record.factory, "higher_is_better", None)
            if better is None:
                from torchyard.factories import build_component

                try:
                    better = getattr(build_component(spec, where="metrics"), "higher_is_better", None)
                except Exception:  # noqa: BLE001 - a metric that needs the data to be built
                    better = None
            if not isinstance(better, bool):
                raise ConfigError(
                    f"trainer.mode: cannot tell whether {monitor} is better higher or lower before a run; "
                    "set trainer.mode to min or max"
                )
            return "maximize" if better else "minimize"
    return "minimize"  # a loss


def _pruner(optuna: Any, pruner: str | Any, config: Any) -> Any:
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        # steps are epochs counted from 1: a trial can be pruned from its first epoch
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(config.trainer.max_epochs, 1))
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner: expected one of {', '.join(PRUNERS)}, got '{pruner}'")


def _check_same_study(study: Any, data: Mapping[str, Any], space_path: Path, url: str) -> None:
    """A study continues only with the config and space it started with."""
    from torchyard.config_io import read_config_file

    space = read_config_file(space_path)
    mine = json.loads(json.dumps({"config": data, "space": space}, default=str))
    attrs = _retry(lambda: study.user_attrs)
    if "torchyard" not in attrs:
        _retry(lambda: study.set_user_attr("torchyard", mine))
        return
    theirs = attrs["torchyard"]
    if theirs != mine:
        part = "config" if theirs.get("config") != mine["config"] else "space"
        raise ConfigError(
            f"study '{study.study_name}' in {url} was started with another {part}; "
            "continue it with the same config, --set and --space, or start another with --study-name/--out"
        )


# -- one worker ----------------------------------------------------------------


class _Worker:
    """Asks for trials, runs them, tells the study; until the study is full."""

    def __init__(
        self,
        optuna: Any,
        study: Any,
        dims: list[Dimension],
        data: dict[str, Any],
        base_dir: Path,
        out: Path,
        trials: int,
        heartbeat: int,
        host: PluginHost,
        echo: Callable[[str], None],
        url: str,
    ) -> None:
        self.optuna, self.study, self.dims, self.data = optuna, study, dims, data
        self.base_dir, self.out, self.total, self.heartbeat = base_dir, out, trials, heartbeat
        self.host, self.echo = host, echo
        self.verbose = False
        self.lock_path = _lock_file(url)

    def _count(self, *states: Any) -> int:
        return len(_retry(lambda: self.study.get_trials(deepcopy=False, states=states)))

    def loop(self) -> None:
        S = self.optuna.trial.TrialState
        failures, waiting_said = 0, False
        while True:
            with _quiet():
                _retry(lambda: self.optuna.storages.fail_stale_trials(self.study))
            with _file_lock(self.lock_path):
                finished = self._count(S.COMPLETE, S.PRUNED)
                if finished >= self.total:
                    return
                running = self._count(S.RUNNING)
                trial = None
                if finished + running < self.total:
                    with _quiet():
                        trial = _retry(self.study.ask)
                    _retry(functools.partial(self.study._storage.record_heartbeat, trial._trial_id))
            if trial is None:  # the rest is running elsewhere: wait, in case a worker dies
                if not waiting_said:
                    self.echo(f"waiting for {running} running trial(s) of other workers")
                    waiting_said = True
                time.sleep(min(self.heartbeat, 5))
                continue
            if self.lock_path is None and self._surplus(trial):
                continue
            state, error = self._run(trial)
            failures = failures + 1 if state == S.FAIL else 0
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise ConfigError(f"{failures} trials in a row failed; the last: {error}")

    def _surplus(self, trial: Any) -> bool:
        """Without a lock (not SQLite): whether workers asking at the same
        moment went past the total; such a trial is told FAIL unrun."""
        S = self.optuna.trial.TrialState
        ahead = [
            t
            for t in _retry(lambda: self.study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING)))
            if t.number < trial.number
        ]
        if len(ahead) < self.total:
            return False
        _retry(lambda: trial.set_user_attr("surplus", True))
        _retry(lambda: self.study.tell(trial, state=S.FAIL))
        return True

    def _run(self, trial: Any) -> tuple[Any, str]:
        """Run one trial as an ordinary run; tell the study how it ended."""
        from torchyard import api
        from torchyard.loop import TrainingInterrupted

        S = self.optuna.trial.TrialState
        run_dir = self.out / f"trial_{trial.number:04d}"
        state, value, error = S.FAIL, None, ""
        with _Heartbeat(self.study, trial, self.heartbeat):
            try:
                values = {d.path: d.suggest(trial) for d in self.dims}
                _retry(lambda: trial.set_user_attr("run_dir", str(run_dir)))
                shown = ", ".join(f"{k}={_show(trial.params.get(k))}" for k in values)
                self.echo(f"trial {trial.number}: {shown}")
                hook = _TrialHook(self.optuna, trial)
                with _plugin_added(self.host, hook, f"tune-trial-{trial.number}"):
                    result = api.train(
                        apply_params(self.data, values),
                        out=run_dir,
                        base_dir=self.base_dir,
                        host=self.host,
                        reporter=None if self.verbose else _quiet_reporter(trial.number),
                    )
                wanted = "max" if self.study.direction == self.optuna.study.StudyDirection.MAXIMIZE else "min"
                if result.mode != wanted:  # the study's direction was guessed before any run
                    error = f"the run's {result.monitor} is better {result.mode}, the study's {wanted}: set trainer.mode"
                elif result.best_value is None or not math.isfinite(result.best_value):
                    error = f"the run has no finite best {result.monitor}"
                else:
                    state, value = S.COMPLETE, float(result.best_value)
            except PluginError as e:
                if isinstance(e.__cause__, self.optuna.TrialPruned):
                    state = S.PRUNED
                    error = str(e.__cause__)
                else:
                    error = str(e)
            except TorchyardError as e:
                error = e.problems[0]
            except (TrainingInterrupted, KeyboardInterrupt):
                self._tell(trial, S.FAIL, None, "interrupted")
                raise
            except Exception as e:  # noqa: BLE001 - a bug ends this trial, not the study
                error = f"{type(e).__name__}: {e}"
        self._tell(trial, state, value, error)
        said = f"{value:.6g}" if value is not None else error
        self.echo(f"trial {trial.number}: {state.name} {said}")
        return state, error

    def _tell(self, trial: Any, state: Any, value: float | None, error: str) -> None:
        if error:
            _retry(lambda: trial.set_user_attr("error", error[:500]))

        def tell() -> None:
            # UpdateFinishedTrialError: an earlier try failed after its write went through
            with contextlib.suppress(self.optuna.exceptions.UpdateFinishedTrialError):
                self.study.tell(trial, value if state == self.optuna.trial.TrialState.COMPLETE else None, state=state)

        with _quiet():
            _retry(tell)


def _quiet_reporter(number: int) -> Any:
    """A trial's console output: its warnings only (``verbose`` shows all)."""
    from rich.console import Console

    from torchyard.console import Reporter

    class TrialReporter(Reporter):
        def warn(self, message: str) -> None:
            Console(stderr=True).print(f"[yellow]warning:[/yellow] trial {number}: {message}", highlight=False)

    return TrialReporter(Console(quiet=True), progress=False)


class _TrialHook:
    """Reports the monitored value to the trial at each epoch's end, and
    prunes the run when the pruner says so (a plugin for one run only)."""

    def __init__(self, optuna: Any, trial: Any) -> None:
        self.optuna, self.trial, self.step = optuna, trial, 0

    @hookimpl
    def on_epoch_end(self, run: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(run.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.step += 1  # k-fold: epochs restart with each fold; steps keep counting
        _retry(lambda: self.trial.report(float(value), self.step))
        if _retry(self.trial.should_prune):
            raise self.optuna.TrialPruned(f"pruned at epoch {epoch}: {run.monitor}={float(value):.6g}")


@contextlib.contextmanager
def _plugin_added(host: PluginHost, plugin: object, name: str) -> Iterator[None]:
    """``plugin`` is one of ``host``'s plugins for the runs built inside."""
    info = host.add_plugin(plugin, name)
    if info.status != "ok":
        raise PluginError(f"torchyard tune: cannot add its trial hook: {info.error}")
    try:
        yield
    finally:
        host.remove_plugin(name)


class _Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds while it runs."""

    def __init__(self, study: Any, trial: Any, interval: int) -> None:
        self.storage, self.trial_id, self.interval = study._storage, trial._trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a missed beat: the next one counts
                self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX); nothing when None or unsupported."""
    try:
        import fcntl
    except ImportError:  # Windows: the surplus check covers it
        path = None
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's experimental-feature and heartbeat-with-ask warnings, silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _lock_file(url: str) -> Path | None:
    """The lock file local workers of a SQLite study take turns on (``study.db.lock``)."""
    database = _sqlite_file(url)
    return database.with_name(database.name + ".lock") if database is not None else None


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return None
    return Path(url[len(prefix):])


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the end: table, best.yaml, plots --------------------------------------------


def summarize(
    study: Any,
    dims: list[Dimension],
    data: dict[str, Any],
    base_dir: Path,
    out: Path,
    host: PluginHost,
    echo: Callable[[str], None],
    url: str,
) -> TuneResult:
    """Print the table of trials; write ``best.yaml`` and the plots."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    result = TuneResult(study.study_name, url, out)
    all_trials = _retry(lambda: study.get_trials(deepcopy=False))
    for t in all_trials:
        result.trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state == S.COMPLETE else (t.intermediate_values or {}).get(t.last_step),
                "params": dict(t.params),
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    echo(_table(result.trials))
    complete = [t for t in all_trials if t.state == S.COMPLETE]
    if complete:
        best = _retry(lambda: study.best_trial)
        result.best_number, result.best_value = best.number, best.value
        result.best_config = _write_best(best, dims, data, base_dir, out, host, study)
        echo(f"best: trial {best.number}, value {best.value:.6g}; config: {result.best_config}")
    else:
        result.notes.append("no complete trial: no best.yaml")
    _plots(study, out, result, len(complete))
    for note in result.notes:
        echo(f"note: {note}")
    return result


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["number", "state", "value", "params"]
    lines = [
        [
            str(r["number"]),
            r["state"],
            "-" if r["value"] is None else f"{r['value']:.6g}",
            ", ".join(f"{k}={_show(v)}" for k, v in r["params"].items()),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*line).rstrip() for line in [header, *lines])


def _write_best(
    best: Any, dims: list[Dimension], data: dict[str, Any], base_dir: Path, out: Path, host: PluginHost, study: Any
) -> Path:
    """The best trial's config, every default written out and every path
    absolute, so ``torchyard run best.yaml`` works from anywhere."""
    import yaml

    from torchyard.config import jsonable_config, resolve_paths, validate_config
    from torchyard.files import atomic_write

    values = {d.path: d.value_of(best.params[d.path]) for d in dims if d.path in best.params}
    config = validate_config(apply_params(data, values), host.registry)
    resolve_paths(config, base_dir)
    path = out / "best.yaml"
    shown = ", ".join(f"{k}={_show(v)}" for k, v in best.params.items())
    with atomic_write(path) as f:
        f.write(f"# best trial {best.number} of study '{study.study_name}': value {best.value:.6g}\n")
        f.write(f"# run: {best.user_attrs.get('run_dir', '?')}\n# params: {shown}\n")
        yaml.safe_dump(jsonable_config(config), f, sort_keys=False)
    return path


def _plots(study: Any, out: Path, result: TuneResult, complete: int) -> None:
    """optimization_history.png and param_importances.png, as far as the trials allow."""
    if complete < 1:
        result.notes.append("no complete trial: no plots")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    def draw(name: str, plot: Callable[[Any], Any]) -> None:
        try:
            with _quiet():
                ax = plot(study)
            path = out / f"{name}.png"
            ax.figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            result.plots.append(path)
        except Exception as e:  # noqa: BLE001 - a plot the trials cannot make
            plt.close("all")
            result.notes.append(f"no {name}.png: {str(e).splitlines()[0] if str(e) else type(e).__name__}")

    draw("optimization_history", vis.plot_optimization_history)
    if complete < 2:
        result.notes.append("no param_importances.png: it needs at least 2 complete trials")
    else:
        draw("param_importances", vis.plot_param_importances)
