"""Export a trained run for inference: weights, an ONNX graph or a torch.export program.

A checkpoint is made to resume training: a resnet18 ``best.pt`` is 134 MB
because it carries the optimizer's state. :func:`export_run` writes what
inference needs and nothing else, into a new (or empty) directory:

- ``weights``: ``model.safetensors`` (safetensors: tensors only, never code)
  whose metadata holds what :func:`torchyard.load` needs besides the weights
  -- the config with the values filled in from the data, the task, class
  names, input shape, the fitted preprocessing (a table's encodings) and the
  tuned task state (a threshold). The directory is loadable by
  ``torchyard.load(DIR)`` and usable by ``torchyard predict CONFIG -c DIR``;
  one file is usable by ``-c FILE``.
- ``onnx``: ``model.onnx`` (torch's dynamo exporter; batch size dynamic),
  checked with onnxruntime. Needs the ``export`` extra.
- ``torch-export``: ``model.pt2`` (:func:`torch.export.save`; batch size
  dynamic), for :func:`torch.export.load`. TorchScript, deprecated upstream,
  is not offered.

Every export also has ``config.yaml`` (the resolved config) and
``export.json`` (what was exported from where, the task, class names, input
shape, output kind, task state and the check below). A k-fold run exports
every fold's model (``fold_<k>.<suffix>``): its predictions are the folds'
average, as ``torchyard.load`` of the run directory predicts.

Each exported model is loaded back and run on a sample batch (real inputs
from the run's dataset when it can be read, else a random batch of the
input shape); the largest absolute difference from the eager model must be
within a tolerance, else nothing is written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from torchyard.errors import ConfigError

if TYPE_CHECKING:
    from torchyard.config import RunConfig
    from torchyard.plugins import PluginHost

__all__ = [
    "FORMATS",
    "MANIFEST",
    "Export",
    "export_checkpoints",
    "export_run",
    "human_size",
    "read_weights",
    "weights_metadata",
]

#: What ``--format`` takes, and the file suffix of each format's models.
FORMATS = {"weights": ".safetensors", "onnx": ".onnx", "torch-export": ".pt2"}
#: The file that describes an export directory.
MANIFEST = "export.json"
EXPORT_FORMAT = "torchyard-export"
VERSION = 1
#: The largest allowed difference from the eager model, relative to the
#: largest output magnitude (at least 1).
TOLERANCE = 1e-4
_META_KEY = "torchyard"
_SAMPLE_SIZE = 8
_INSTALL = "pip install torchyard[export]"


@dataclass
class Export:
    """What :func:`export_run` wrote."""

    out_dir: Path
    format: str
    #: Every file written (models first, then ``config.yaml`` and ``export.json``).
    files: list[Path]
    #: The checkpoints exported, one per model (a k-fold run: one per fold).
    checkpoints: list[Path]
    #: The largest absolute difference of the exported models' outputs from the eager models'.
    max_abs_diff: float
    tolerance: float
    #: What the check ran on, in words ("8 test samples of dataset 'digits'").
    sample: str
    manifest: dict[str, Any] = field(default_factory=dict)


def export_run(
    run_dir: str | Path,
    format: str,
    *,
    checkpoint: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    tolerance: float = TOLERANCE,
    host: PluginHost | None = None,
) -> Export:
    """Export a run's model(s) in ``format`` (``weights``, ``onnx`` or
    ``torch-export``) into ``out`` (default ``RUN_DIR/export/<format>``).

    :param checkpoint: ``best`` (every fold's for a k-fold run), ``top_k``
        (the ones ``trainer.save_top_k`` kept), ``last``, or a checkpoint
        file (as given, or relative to ``run_dir``); None: those the run
        made its submission with (``trainer.predict_with``), as
        :func:`torchyard.load` of the run directory predicts.
    :param force: write into a non-empty ``out``: files of the same names and
        the models of an earlier export there are replaced, other files stay.
    :param tolerance: see :data:`TOLERANCE`.
    :raises ConfigError: a bad argument, a missing run or checkpoint, a
        missing extra, a model that cannot be exported, or outputs that
        differ from the eager model's by more than the tolerance.
    """
    from torchyard.plugins import get_host
    from torchyard.predictor import load_models

    if format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance: expected a number >= 0, got {tolerance}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "not a directory" if run_dir.exists() else "not found"
        raise ConfigError(f"export: run directory {run_dir}: {what}")
    if format == "onnx":
        _require_onnx()
    host = host if host is not None else get_host()
    checkpoints = _checkpoints(run_dir, checkpoint)
    out_dir = _out_dir(Path(out) if out is not None else run_dir / "export" / format, force)
    cpu = torch.device("cpu")
    config, payloads, models = load_models(checkpoints, host, cpu, unusable=", so it cannot be exported")
    sample, described = _sample(config, payloads[0])
    names = _model_names(checkpoints)
    who = f"model '{config.model.record.name}' from plugin {config.model.record.source}"
    task_state = _task_state(checkpoints[0], payloads[0])
    with _staging(out_dir) as staging:
        written, worst, scale = [], 0.0, 1.0
        for name, model, payload, source in zip(names, models, payloads, checkpoints, strict=True):
            path = staging / f"{name}{FORMATS[format]}"
            eager = _eager(model, sample, who, described)
            scale = max(scale, float(eager.nan_to_num(0, 0, 0).abs().max()) if eager.numel() else 0.0)
            if format == "weights":
                _save_weights(model, path, _metadata(payload, task_state, source))
            elif format == "onnx":
                _save_onnx(model, sample, path, who)
            else:
                _save_program(model, sample, path, who)
            try:
                if format == "weights":
                    diff = _check_weights(config, path, sample, eager)
                else:
                    diff = (_check_onnx if format == "onnx" else _check_program)(model, path, sample)
            except Exception as e:  # noqa: BLE001 - onnxruntime's and torch's many error types
                raise ConfigError(f"export {format}: the exported {who} does not run: {_first(e)[:300]}") from None
            written += [p for p in (path, path.with_name(path.name + ".data")) if p.is_file()]
            worst = max(worst, diff)
        if worst > tolerance * scale:
            raise ConfigError(
                f"export {format}: the exported {who} differs from the eager model by {worst:.3g} "
                f"(max abs) on {described}, more than the tolerance {tolerance:g} x {scale:.3g}; "
                "nothing written"
            )
        manifest = _manifest(format, run_dir, checkpoint, checkpoints, written, payloads[0], config, task_state)
        manifest["check"] = {"max_abs_diff": worst, "tolerance": tolerance * scale, "sample": described}
        from torchyard.run import write_resolved_config

        write_resolved_config(staging, config)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        files = [*written, staging / "config.yaml", staging / MANIFEST]
        moved = _publish(staging, out_dir, [p.name for p in files])
    return Export(out_dir, format, moved, checkpoints, worst, tolerance * scale, described, manifest)


# -- reading an export back (torchyard.load, torchyard predict -c) -------------------


def export_checkpoints(directory: Path) -> list[Path]:
    """The weights files of a ``weights`` export directory, in fold order.

    :raises ConfigError: an unreadable manifest, another format's export,
        or a weights file missing.
    """
    manifest = _read_manifest(directory)
    kind = manifest.get("export")
    if kind != "weights":
        raise ConfigError(
            f"{directory}: an export in format {kind!r}, which torchyard cannot load; export the "
            "run with --format weights for torchyard.load and torchyard predict"
        )
    paths = [directory / str(name) for name in manifest.get("models") or []]
    missing = [p.name for p in paths if not p.is_file()]
    if not paths or missing:
        raise ConfigError(f"{directory}: {MANIFEST} names weights that are not there: {missing or 'none'}")
    return paths


def weights_metadata(path: Path) -> dict[str, Any]:
    """What an exported weights file says besides its tensors ({} for a
    plain safetensors file, without torchyard's metadata)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"checkpoint {path}: not a safetensors file torchyard can read: {_first(e)}") from None
    text = metadata.get(_META_KEY)
    if text is None:
        return {}
    try:
        meta = json.loads(text)
    except ValueError:
        raise ConfigError(f"checkpoint {path}: its torchyard metadata is not JSON") from None
    return meta if isinstance(meta, dict) else {}


def read_weights(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """An exported weights file as a checkpoint payload (see
    :func:`torchyard.checkpoint.load_checkpoint`): ``model``, and from its
    metadata ``config``, ``resolved``, ``data``, ``fitted``, ``task_state``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from torchyard.checkpoint import FORMAT

    meta = weights_metadata(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"checkpoint {path}: cannot read its tensors: {_first(e)}") from None
    payload = {k: v for k, v in meta.items() if k not in ("format", "version")}
    return {**payload, "format": FORMAT, "model": state}


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{directory / MANIFEST}: cannot read it: {_first(e)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ConfigError(f"{directory / MANIFEST}: not a torchyard export manifest")
    return manifest


# -- what to export ------------------------------------------------------------------


def _checkpoints(run_dir: Path, checkpoint: str | None) -> list[Path]:
    from torchyard.pipeline import resolve_checkpoints

    if checkpoint in (None, "best", "top_k"):
        return resolve_checkpoints(run_dir, checkpoint)  # type: ignore[arg-type]  # one of these
    if checkpoint == "last":
        if (run_dir / MANIFEST).is_file():
            raise ConfigError(f"--checkpoint last: {run_dir} is an export; it keeps one set of weights")
        last = [p.with_name("last.pt") for p in resolve_checkpoints(run_dir, "best")]
        missing = [str(p) for p in last if not p.is_file()]
        if missing:
            raise ConfigError(f"--checkpoint last: no {missing[0]}")
        return last
    path = Path(checkpoint)
    for candidate in (path, run_dir / path):
        if candidate.is_file():
            return [candidate]
    raise ConfigError(
        f"--checkpoint {checkpoint}: expected best, top_k, last or a checkpoint file; no such file "
        f"(also not in {run_dir})"
    )


def _model_names(checkpoints: list[Path]) -> list[str]:
    """``model`` for one checkpoint; for several, names from where each
    was: ``fold_2`` (a fold's best), ``epoch_007`` (a top-k checkpoint),
    ``fold_2_epoch_007``."""
    if len(checkpoints) == 1:
        return ["model"]
    names = []
    for path in checkpoints:
        if path.suffix == ".safetensors":  # an export's own weights, exported again
            names.append(path.stem)
            continue
        parts = [p.name for p in path.parents if p.name.startswith("fold_")][:1]
        if path.parent.name == "top":
            parts.append(path.stem.replace("=", "_"))
        names.append("_".join(parts))
    if len(set(names)) != len(names) or not all(names):
        return [f"model_{i}" for i in range(len(checkpoints))]
    return names


def _task_state(checkpoint: Path, payload: dict[str, Any]) -> dict[str, Any]:
    from torchyard.pipeline import task_state_of

    state = payload.get("task_state")
    return state if isinstance(state, dict) else task_state_of(checkpoint)


def _sample(config: RunConfig, payload: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """A batch of model inputs: the first samples of the run's test (else
    validation, else training) split, read as predicting reads them; a random
    batch of the input shape when the dataset cannot be read here."""
    from torch.utils.data import DataLoader

    from torchyard.data import length
    from torchyard.run import build_data, build_task

    name = config.data.record.name
    try:
        data, _ = build_data(config, build_task(config), train=False)
        if data.fitted is not None:  # encoded as the checkpoint's run encoded them
            data.fitted.load_state_dict(payload.get("fitted") or {})
        for split in ("test", "val", "train"):
            dataset = getattr(data, split, None)
            if dataset is not None and length(dataset) > 0:
                batch = next(iter(DataLoader(dataset, batch_size=_SAMPLE_SIZE)))
                inputs = batch[0] if isinstance(batch, list | tuple) else batch
                if isinstance(inputs, torch.Tensor):
                    return inputs, f"{len(inputs)} {split} samples of dataset '{name}'"
        reason = "it has no samples whose input is one tensor"
    except Exception as e:  # noqa: BLE001 - data files moved, another machine, ...: use the shape
        reason = _first(e)
    shape = (payload.get("data") or {}).get("input_shape")
    if not shape:
        raise ConfigError(
            f"export: cannot read a sample of dataset '{name}' ({reason[:200]}) and the checkpoint "
            "gives no input shape for a random one"
        )
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(_SAMPLE_SIZE, *shape, generator=generator),
        f"a random batch of shape {[_SAMPLE_SIZE, *shape]} (dataset '{name}' not readable: {reason[:120]})",
    )


def _metadata(payload: dict[str, Any], task_state: dict[str, Any], source: Path) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": VERSION,
        "config": payload["config"],
        "resolved": payload.get("resolved"),
        "data": payload["data"],
        "fitted": payload.get("fitted"),
        "task_state": task_state,
        "epoch": (payload.get("progress") or {}).get("epoch", payload.get("epoch")),
        "source": str(source),
    }


def _manifest(
    format: str,
    run_dir: Path,
    checkpoint: str | None,
    checkpoints: list[Path],
    written: list[Path],
    payload: dict[str, Any],
    config: RunConfig,
    task_state: dict[str, Any],
) -> dict[str, Any]:
    from torchyard import __version__
    from torchyard.run import build_task

    data = payload["data"]
    models = [p.name for p in written if p.suffix == FORMATS[format]]
    return {
        "format": EXPORT_FORMAT,
        "version": VERSION,
        "export": format,
        "source": str(run_dir.resolve()),
        "checkpoint": checkpoint,  # None: those of the run's submission
        "checkpoints": [str(p.resolve()) for p in checkpoints],
        "models": models,
        "folds": len({m.split("_epoch")[0] for m in models if m.startswith("fold_")}) or None,
        "files": [p.name for p in written],
        "task": data.get("task"),
        "output_kind": build_task(config).output_kind,
        "num_classes": data.get("num_classes"),
        "class_names": data.get("class_names"),
        "input_shape": data.get("input_shape"),
        "input_name": "input",
        "output_name": "output",
        "task_state": task_state,
        "torchyard": __version__,
        "torch": torch.__version__,
    }


# -- the formats ---------------------------------------------------------------------


def _save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"export weights: the model's state entry {key!r} is not a tensor")
        # a copy of each: safetensors refuses tensors that share memory (tied weights)
        state[key] = value.detach().to("cpu", copy=True).contiguous()
    save_file(state, str(path), metadata={_META_KEY: json.dumps(metadata)})


def _check_weights(config: RunConfig, path: Path, sample: torch.Tensor, eager: torch.Tensor) -> float:
    """A fresh model with the written weights, as torchyard.load builds it, against the eager one."""
    from torchyard.factories import build_component

    model = build_component(config.model, where="model")
    model.load_state_dict(read_weights(path)["model"])
    with torch.no_grad():
        return _diff(model.eval()(sample), eager)


def _program(model: torch.nn.Module, sample: torch.Tensor, format: str, who: str) -> Any:
    """``model`` traced by :func:`torch.export.export`, its batch size dynamic
    (the ONNX exporter starts from the same program)."""
    try:
        with _quiet():
            return torch.export.export(
                model, (sample,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
            )
    except Exception as e:  # noqa: BLE001 - torch.export's many error types
        raise ConfigError(f"export {format}: {who} cannot be exported: {_first(e)[:300]}") from None


def _save_program(model: torch.nn.Module, sample: torch.Tensor, path: Path, who: str) -> None:
    torch.export.save(_program(model, sample, "torch-export", who), str(path))


def _check_program(model: torch.nn.Module, path: Path, sample: torch.Tensor) -> float:
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        # the whole batch and one sample: the batch size is dynamic
        return max(_diff(loaded(batch), model(batch)) for batch in (sample, sample[:1]))


def _require_onnx() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--format onnx: needs {', '.join(missing)}: {_INSTALL}")


def _save_onnx(model: torch.nn.Module, sample: torch.Tensor, path: Path, who: str) -> None:
    program = _program(model, sample, "onnx", who)
    # over 2 GB a model's weights cannot live inside the .onnx file: beside it, in .onnx.data
    large = sum(p.numel() * p.element_size() for p in model.state_dict().values()) > 1_800_000_000
    try:
        with _quiet():
            torch.onnx.export(
                program,
                (sample,),
                str(path),
                dynamo=True,
                external_data=large,
                input_names=["input"],
                output_names=["output"],
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - onnxscript's many error types
        raise ConfigError(f"export onnx: {who} cannot be translated to ONNX: {_first(e)[:300]}") from None
    if not path.is_file():
        raise ConfigError(f"export onnx: {who}: the exporter wrote no file")


def _check_onnx(model: torch.nn.Module, path: Path, sample: torch.Tensor) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    with torch.no_grad():
        for batch in (sample, sample[:1]):  # the batch size is dynamic
            (outputs, *_) = session.run(None, {name: batch.numpy()})
            worst = max(worst, _diff(torch.from_numpy(outputs), model(batch)))
    return worst


# -- helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without the exporters' progress lines and warnings (graphs, guards):
    the command prints what was written, or one line saying what failed."""
    import logging
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _eager(model: torch.nn.Module, sample: torch.Tensor, who: str, described: str) -> torch.Tensor:
    """The eager model's outputs on the sample, which the exported model must reproduce."""
    try:
        with torch.no_grad():
            outputs = model(sample)
    except Exception as e:  # noqa: BLE001 - whatever the model's forward raises
        raise ConfigError(f"export: {who} fails on {described}: {_first(e)[:300]}") from None
    if not isinstance(outputs, torch.Tensor):
        raise ConfigError(f"export: {who} returns {type(outputs).__name__}, not one tensor; it cannot be exported")
    return outputs


def _diff(a: Any, b: torch.Tensor) -> float:
    """The largest absolute difference; NaN where both are NaN counts as
    equal, NaN on one side only as infinitely far."""
    a, b = torch.as_tensor(a).float(), b.float()
    if a.shape != b.shape:
        return float("inf")
    if not a.numel():
        return 0.0
    both = a.isnan() & b.isnan()
    gap = torch.where(both, torch.zeros_like(a), (a - b).abs())
    return float(gap.nan_to_num(nan=float("inf")).max())


def _first(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _out_dir(out_dir: Path, force: bool) -> Path:
    """Refuse a non-empty ``out_dir`` unless ``force`` (as ``ensemble --out``
    refuses one), before anything is loaded or written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    if (out_dir / "checkpoints").is_dir() or (out_dir / "summary.json").is_file():
        # --force there would replace the run's own config.yaml
        raise ConfigError(f"--out {out_dir}: is a run directory; export into another directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ConfigError(
            f"--out {out_dir}: directory exists and is not empty; pass --force to replace the "
            "export there, or choose another directory"
        )
    return out_dir


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside ``out_dir``, removed afterwards: the
    export is written and checked there, so a failed one leaves nothing."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot write there: {e.strerror or e}") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out_dir: Path, names: list[str]) -> list[Path]:
    """Move the checked files into ``out_dir``; an earlier export's models
    there that this one does not replace are removed (its manifest names them)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if (out_dir / MANIFEST).is_file():
            with contextlib.suppress(ConfigError):
                for old in _read_manifest(out_dir).get("files") or []:
                    if str(old) not in names and Path(str(old)).name == str(old):
                        (out_dir / str(old)).unlink(missing_ok=True)
        mode = _file_mode()
        for name in names:
            os.chmod(staging / name, mode)  # some writers (safetensors) make files private
            os.replace(staging / name, out_dir / name)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot write there: {e.strerror or e}") from None
    return [out_dir / name for name in names]


def _file_mode() -> int:
    """The mode a new file gets here (0o644 under the usual umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def human_size(size: int) -> str:
    """``1.2 MB``: a file size for people."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
