"""A trained run, loaded to predict new inputs: :func:`load` and :class:`Predictor`.

::

    import torchyard

    predictor = torchyard.load("runs/mask/20261202-101500")
    predictions = predictor.predict(["photos/a.jpg", "photos/b.jpg"])
    predictions.label_names()         # ['wear/female/<30', ...]
    predictions.probabilities         # (2, 18)

Everything comes from the run: the model (its config with the values filled
in from the data, and its best weights -- every fold's for a k-fold run,
averaged), test-time augmentation, the task and class names, and how the
dataset reads a file (the dataset's ``reader``, with the config's eval
transforms). No training data is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from torchyard.errors import ConfigError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from torchyard.config import RunConfig
    from torchyard.data import Predictions
    from torchyard.plugins import PluginHost
    from torchyard.tasks import Task

__all__ = ["Predictor", "load"]


class Predictor:
    """Predicts with the weights of a trained run (see :func:`load`)."""

    def __init__(
        self,
        config: RunConfig,
        models: list[torch.nn.Module],
        *,
        device: torch.device,
        task: Task,
        class_names: Sequence[str] | None,
        reader: Any | None,
        views: list[Any],
        batch_size: int,
    ) -> None:
        from torchyard.device import resolve_precision

        self.config = config
        self.models = models
        self.device = device
        self.task = task
        self.class_names = list(class_names) if class_names else None
        self.reader = reader
        self.views = views
        self.batch_size = batch_size
        try:
            self.precision = resolve_precision(config.trainer.precision, device)
        except ConfigError:  # e.g. trained with 16-mixed on CUDA, loaded on the CPU
            self.precision = resolve_precision("32", device)

    def predict(self, inputs: torch.Tensor | Sequence[str | Path] | Dataset[Any]) -> Predictions:
        """Predict a batch of model inputs (a tensor, used as it is), files
        (read as the run's dataset reads them, eval transforms included) or a
        Dataset (its items' first element is the input).

        Test-time augmentation and a k-fold run's folds are averaged, as the
        run did for its submission. ``ids`` of the result count from 0.
        """
        from torchyard.data import Predictions
        from torchyard.inference import collect, ensemble

        batches = self._batches(inputs)
        outputs = ensemble(
            [
                collect(
                    model, batches, device=self.device, precision=self.precision,
                    task=self.task, views=self.views,
                )
                for model in self.models
            ],
            self.task,
        )  # fmt: skip
        return Predictions(
            ids=list(range(len(outputs.outputs))),
            outputs=outputs.outputs,
            task=self.task.name,
            class_names=self.class_names,
            kind=outputs.kind,
            rules=self.task,
        )

    def _batches(self, inputs: Any) -> list[Any]:
        from torch.utils.data import DataLoader, Dataset

        if isinstance(inputs, torch.Tensor):
            return list(inputs.split(self.batch_size))
        if isinstance(inputs, Dataset):
            return list(DataLoader(inputs, batch_size=self.batch_size))
        if isinstance(inputs, str | Path):
            raise ConfigError("predict: expected a list of files, got a single path; wrap it in a list")
        if isinstance(inputs, Iterable):
            files = list(inputs)
            if not all(isinstance(f, str | Path) for f in files):
                raise ConfigError("predict: expected a tensor, a Dataset or a list of file paths")
            return [self._read(files[i : i + self.batch_size]) for i in range(0, len(files), self.batch_size)]
        raise ConfigError(
            f"predict: expected a tensor, a Dataset or a list of file paths, got {type(inputs).__name__}"
        )

    def _read(self, files: Sequence[str | Path]) -> torch.Tensor:
        if self.reader is None:
            name = self.config.data.record.name
            raise ConfigError(
                f"predict: dataset '{name}' declares no reader for files; pass model inputs as a "
                "tensor or a Dataset"
            )
        return torch.stack([torch.as_tensor(self.reader(f)) for f in files])


def load(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    host: PluginHost | None = None,
    checkpoints: Literal["best", "top_k"] | None = None,
) -> Predictor:
    """A :class:`Predictor` for a run directory (its best checkpoint, or
    every fold's for a k-fold run) or one checkpoint file.

    :param device: where to predict: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    :param batch_size: inputs per forward pass; default the run's eval batch size.
    :param checkpoints: of a run directory, ``"best"`` or ``"top_k"`` (the
        ones ``trainer.save_top_k`` kept, averaged); None: as the run made
        its submission (``trainer.predict_with``).
    :raises ConfigError: no checkpoint there, or one torchyard cannot use.
    """
    from torchyard.device import resolve_device
    from torchyard.factories import build_component
    from torchyard.pipeline import resolve_checkpoints, task_state_of
    from torchyard.plugins import get_host
    from torchyard.run import build_task

    host = host if host is not None else get_host()
    chosen = resolve_checkpoints(Path(source), checkpoints)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    config, payloads, models = load_models(
        chosen, host, target, unusable="; predict with `torchyard predict CONFIG -c CHECKPOINT` instead"
    )
    first = payloads[0]
    reader = _reader(config)
    from torchyard.data import Compose

    views = [Compose([build_component(spec) for spec in view]) for view in config.tta]
    data = first["data"]
    task = build_task(config)
    task.setup(data.get("num_classes"), data.get("class_names"))
    task.load_state(task_state_of(chosen[0]))
    return Predictor(
        config,
        models,
        device=target,
        task=task,
        class_names=data.get("class_names"),
        reader=reader,
        views=views,
        batch_size=batch_size or config.loader.eval_batch_size or config.loader.batch_size,
    )


def load_models(
    checkpoints: list[Path], host: PluginHost, device: torch.device, *, unusable: str
) -> tuple[RunConfig, list[dict[str, Any]], list[torch.nn.Module]]:
    """The config the first of ``checkpoints`` was trained with, every
    checkpoint's payload, and its model rebuilt from that config with its
    weights, in eval mode on ``device``.

    :param unusable: how the error ends for a checkpoint that does not say how
        it was trained (``"; predict with ... instead"``).
    :raises ConfigError: such a checkpoint, or weights that do not fit the model.
    """
    from torchyard.checkpoint import load_checkpoint, load_model_weights
    from torchyard.config import validate_config
    from torchyard.factories import build_component
    from torchyard.run import with_resolved

    payloads = [load_checkpoint(path, map_location=device) for path in checkpoints]
    first = payloads[0]
    if first.get("config") is None or first.get("data") is None:
        raise ConfigError(
            f"{checkpoints[0]}: this checkpoint does not say how it was trained (written by an "
            f"older torchyard?){unusable}"
        )
    config = validate_config(with_resolved(first["config"], first.get("resolved")), host.registry)
    models = []
    for path, payload in zip(checkpoints, payloads, strict=True):
        model = build_component(config.model, where="model")
        load_model_weights(model, payload, path)
        models.append(model.to(device).eval())
    return config, payloads, models


def _reader(config: RunConfig) -> Any | None:
    """The dataset's file reader (its ``reader`` option), made with the
    dataset's parameters that it accepts and the config's eval transforms."""
    import inspect

    from torchyard.kinds import import_object
    from torchyard.run import _transforms

    record = config.data.record
    make = record.options.get("reader")
    if make is None:
        return None
    make = import_object(make) if isinstance(make, str) else make
    kwargs = config.data.factory_kwargs()
    kwargs.update({k: v for k, v in _transforms(config).items() if k == "eval_transform"})
    parameters = inspect.signature(make).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    return make(**kwargs)
