"""Built-in experiment loggers: TensorBoard, MLflow and Weights & Biases.

Registered by import path, so listing them imports neither torch nor the
trackers. Each needs its package, installed by a torchyard extra
(``pip install 'torchyard[mlflow]'``); the ``requires`` option lets
``torchyard check`` refuse a config listing a logger whose package is
missing, before any work.
"""

from __future__ import annotations

from typing import Any

import torchyard

_HERE = "torchyard_builtins.loggers"


@torchyard.hookimpl
def register_loggers(register: Any) -> None:
    register(
        "tensorboard",
        f"{_HERE}.tensorboard_logger:TensorBoardLogger",
        requires="tensorboard",
        extra="tensorboard",
        description="TensorBoard event files (default <run>/tensorboard/): scalars, hparams, report images.",
    )
    register(
        "mlflow",
        f"{_HERE}.mlflow_logger:MLflowLogger",
        requires="mlflow",
        extra="mlflow",
        description="An MLflow run (default store sqlite:///<runs>/mlflow.db): params, metrics, artifacts.",
    )
    register(
        "wandb",
        f"{_HERE}.wandb_logger:WandbLogger",
        requires="wandb",
        extra="wandb",
        description="A Weights & Biases run, offline under <run>/wandb/ unless mode is 'online'.",
    )
