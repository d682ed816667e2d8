"""What a run prints: a progress bar, one line per epoch, a final table.

The reporter is told about the loop's progress only every
``log_every_n_steps`` steps, so it costs the loop next to nothing.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["Reporter", "format_value"]


def format_value(value: float | None) -> str:
    """Numbers as a person reads them; a NaN is never shown as a number."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


class Reporter:
    """Console output of one run."""

    def __init__(self, console: Console | None = None, progress: bool = True, quiet: bool = False) -> None:
        #: ``quiet``: print nothing (the processes other than 0 of a distributed run)
        self.console = console or Console(stderr=False, quiet=quiet)
        # a progress bar in a terminal, or in a notebook (rich renders it there)
        interactive = self.console.is_jupyter or (self.console.is_terminal and sys.stdout.isatty())
        self.enabled = progress and not quiet and interactive
        self._progress: Progress | None = None
        self._task: Any = None

    # -- progress bar ----------------------------------------------------------

    def start_epoch(self, epoch: int, max_epochs: int, total_batches: int | None) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(
            f"epoch {epoch}/{max_epochs}", total=total_batches, loss="-", speed=""
        )

    def advance(self, batches: int, loss: float, samples_per_second: float) -> None:
        if self._progress is None:
            return
        self._progress.update(
            self._task,
            advance=batches,
            loss=format_value(loss),
            speed=f"{samples_per_second:,.0f} samples/s",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    # -- lines and tables --------------------------------------------------------

    def epoch_line(
        self, epoch: int, max_epochs: int, row: Mapping[str, Any], improved: bool, monitor: str
    ) -> None:
        shown = [
            f"{key} {format_value(value)}"
            for key, value in row.items()
            if key not in ("epoch", "step", "time_s")
        ]
        mark = f"  [green]best {monitor}[/green]" if improved else ""
        self.console.print(
            f"epoch {epoch}/{max_epochs}  " + "  ".join(shown) + f"  ({row['time_s']:.1f}s){mark}",
            highlight=False,
            soft_wrap=True,
        )

    def info(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        # plain text: an error message quoting "[/path]" is not markup; one line, unwrapped
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)

    def final_table(self, best: Mapping[str, Any] | None, last: Mapping[str, Any]) -> None:
        table = Table(title="metrics", show_edge=False)
        table.add_column("value")
        if best is not None:
            table.add_column(f"best (epoch {best['epoch']})", justify="right")
        table.add_column(f"last (epoch {last['epoch']})", justify="right")
        for key, value in last.items():
            if key in ("epoch", "step", "time_s"):
                continue
            cells = [key]
            if best is not None:
                cells.append(format_value(best.get(key)))
            cells.append(format_value(value))
            table.add_row(*cells)
        self.console.print(table)
