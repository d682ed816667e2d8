"""The ``mlflow`` logger: one MLflow run per torchyard run.

By default the tracking store is the SQLite database MLflow recommends for
local use, ``sqlite:///<runs>/mlflow.db`` beside the config's run
directories (``runs/digits/mlflow.db``), its artifacts in
``<runs>/mlartifacts/``; ``mlflow ui --backend-store-uri
sqlite:///runs/digits/mlflow.db`` shows them. Any ``tracking_uri`` works
(``http://host:5000``, ``databricks``). The run receives the resolved
config as params, the step and epoch metrics with their step, the summary's
numbers, the report's PNGs, ``summary.json``, ``config.yaml`` and the
submission as artifacts, and the checkpoints' paths as tags.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from torchyard_builtins.loggers.base import Finished, Logger, run_names

__all__ = ["MLflowLogger"]

#: MLflow's limits: a param value's length, params and metrics per batch.
MAX_VALUE, PARAMS_PER_BATCH, METRICS_PER_BATCH = 6000, 100, 1000


class MLflowLogger(Logger):
    """An MLflow run: params, metrics with their steps, artifacts, tags."""

    def __init__(
        self,
        tracking_uri: Annotated[
            str | None,
            Field(
                description="The tracking store; default sqlite:///<runs>/mlflow.db beside the run directories."
            ),
        ] = None,
        experiment: Annotated[
            str | None,
            Field(description="The experiment's name; default the config's name (runs/<name>/)."),
        ] = None,
        run_name: Annotated[
            str | None, Field(description="The run's name; default its directory's name.")
        ] = None,
        artifacts: Annotated[
            bool,
            Field(
                description="Upload the report's PNGs, summary.json, config.yaml and the submission."
            ),
        ] = True,
        tags: Annotated[dict[str, str] | None, Field(description="Extra tags for the run.")] = None,
        max_retries: Annotated[
            int,
            Field(
                ge=0,
                description="Retries of a failed request to a tracking server (MLflow's default, 7 "
                "with backoff, holds a run for minutes); MLFLOW_HTTP_REQUEST_MAX_RETRIES wins if set.",
            ),
        ] = 2,
    ) -> None:
        super().__init__()
        self.max_retries = max_retries
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.artifacts, self.tags = artifacts, dict(tags or {})
        self.client: Any = None
        self.run_id = ""

    def start(self, run: Any, hparams: dict[str, Any]) -> None:
        for name in (
            "mlflow",
            "alembic",
        ):  # their INFO lines would interleave with the progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.max_retries))
        home, group, name = run_names(run.out_dir)
        uri = self.tracking_uri or f"sqlite:///{home / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        experiment_name = self.experiment or group
        found = self.client.get_experiment_by_name(experiment_name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            # the default store keeps its artifacts beside it, never in the current directory
            location = (home / "mlartifacts").as_uri() if self.tracking_uri is None else None
            experiment_id = self.client.create_experiment(
                experiment_name, artifact_location=location
            )
        tags = {"torchyard.run_dir": str(Path(run.out_dir).resolve()), **self.tags}
        self.run_id = self.client.create_run(
            experiment_id, run_name=self.run_name or name, tags=tags
        ).info.run_id
        params = [Param(k[:250], str(v)[:MAX_VALUE]) for k, v in hparams.items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + PARAMS_PER_BATCH])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + METRICS_PER_BATCH])

    def finish(self, run: Any, finished: Finished) -> None:
        step = int((finished.summary.get("last") or {}).get("step") or 0)
        self.log({f"summary/{k}": v for k, v in finished.values.items()}, step)
        for key, path in finished.paths.items():
            self.client.set_tag(self.run_id, f"torchyard.{key}", path)
        if self.artifacts:
            for image in finished.images.values():
                self.client.log_artifact(self.run_id, str(image), "report")
            for file in finished.files.values():
                self.client.log_artifact(self.run_id, str(file))

    def close(self, ok: bool) -> None:
        if self.client is not None and self.run_id:
            self.client.set_terminated(self.run_id, "FINISHED" if ok else "KILLED")
