"""torchyard: a plugin-based PyTorch training and inference framework.

``torchyard.train(config)`` trains a config as ``torchyard run`` does;
``torchyard.load(run_dir).predict(inputs)`` predicts with a trained run
(docs/python-api.md).

This facade imports nothing heavy: ``import torchyard`` and the plugin
markers import neither torch nor pydantic, so registering plugins and
listing components stay fast. Other names are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchyard.errors import (
    ConfigError,
    DataError,
    PluginError,
    PluginUnavailable,
    RegistrationError,
    TorchyardError,
    TrainingError,
    UnknownComponentError,
)
from torchyard.hookspecs import hookimpl, hookspec

if TYPE_CHECKING:
    from torchyard.api import RunResult, predict, train
    from torchyard.data import DataBundle, Predictions
    from torchyard.metric import Metric
    from torchyard.params import ParamsModel
    from torchyard.predictor import Predictor, load

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataBundle",
    "DataError",
    "Metric",
    "ParamsModel",
    "PluginError",
    "PluginUnavailable",
    "Predictions",
    "Predictor",
    "RegistrationError",
    "RunResult",
    "TorchyardError",
    "TrainingError",
    "UnknownComponentError",
    "__version__",
    "hookimpl",
    "hookspec",
    "load",
    "predict",
    "train",
]

_LAZY = {
    "DataBundle": "torchyard.data",
    "Predictions": "torchyard.data",
    "Metric": "torchyard.metric",
    "ParamsModel": "torchyard.params",
    # the Python API: train a config, predict with a run, load a run
    "RunResult": "torchyard.api",
    "train": "torchyard.api",
    "predict": "torchyard.api",
    "Predictor": "torchyard.predictor",
    "load": "torchyard.predictor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torchyard' has no attribute {name!r}")
