"""The ``wandb`` logger: a Weights & Biases run, offline by default.

Offline (the default) the run is kept under ``<run>/wandb/`` and nothing
goes over the network; ``wandb sync <run>/wandb/offline-run-*`` uploads it
later. ``mode: online`` logs live (after ``wandb login``). The run receives
the resolved config (flat dotted keys), the step and epoch metrics at their
step, the report's PNGs as images, the summary's numbers and the run's
file paths in its summary, and ``summary.json``, ``config.yaml`` and the
submission as files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from torchyard_builtins.loggers.base import Finished, Logger, run_names

__all__ = ["WandbLogger"]


class WandbLogger(Logger):
    """A Weights & Biases run: config, metrics, report images, summary, files."""

    def __init__(
        self,
        mode: Annotated[
            Literal["offline", "online", "disabled"],
            Field(
                description="'offline' keeps the run on disk (wandb sync uploads it); 'online' logs live."
            ),
        ] = "offline",
        project: Annotated[
            str | None, Field(description="The project; default the config's name (runs/<name>/).")
        ] = None,
        run_name: Annotated[
            str | None, Field(description="The run's name; default its directory's name.")
        ] = None,
        entity: Annotated[
            str | None, Field(description="The team or user owning the project (online).")
        ] = None,
        dir: Annotated[
            Path | None,
            Field(description="Where wandb keeps its files; default the run directory."),
        ] = None,
        tags: Annotated[list[str] | None, Field(description="Tags for the run.")] = None,
    ) -> None:
        super().__init__()
        self.mode, self.project, self.run_name, self.entity = mode, project, run_name, entity
        self.dir, self.tags = dir, list(tags or [])
        self.run: Any = None

    def start(self, run: Any, hparams: dict[str, Any]) -> None:
        import wandb

        _, group, name = run_names(run.out_dir)
        directory = Path(self.dir or run.out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode=self.mode,
            project=self.project or group,
            name=self.run_name or name,
            entity=self.entity,
            dir=str(directory),
            tags=self.tags or None,
            config=hparams,
            reinit="create_new",
            # its console capture would swallow the progress bar; its banner is noise
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, run: Any, finished: Finished) -> None:
        import wandb

        if finished.images:
            step = max(
                int(self.run.step), int((finished.summary.get("last") or {}).get("step") or 0)
            )
            self.run.log(
                {f"report/{k}": wandb.Image(str(p)) for k, p in finished.images.items()}, step=step
            )
        self.run.summary.update(
            {**finished.values, **{f"files/{k}": v for k, v in finished.paths.items()}}
        )
        for path in finished.files.values():
            # a file in the run's files folder is kept offline and uploaded at the end
            # (wandb.save would symlink it and warn about it)
            shutil.copyfile(path, Path(self.run.dir) / path.name)

    def close(self, ok: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if ok else 1)
