"""Weight averaging: an exponential moving average (EMA) of the weights and
stochastic weight averaging (SWA), both on
:class:`torch.optim.swa_utils.AveragedModel`.

Each keeps an averaged copy of the model. After an epoch's training
(``on_train_epoch_end``) the averaged weights are swapped into the model, so
validation, the best checkpoint and the run's predictions use them; before
the next epoch's training (``on_train_epoch_start``) they are swapped back
and training goes on from its own weights. An end-of-epoch checkpoint
therefore holds the averaged weights as its model -- what ``predict``,
``torchyard.load`` and ``export`` use -- and the training weights in the
callback's state, from which ``--resume`` continues exactly.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field
from torch.optim.swa_utils import AveragedModel, update_bn

import torchyard

__all__ = ["EMA", "SWA"]


class _Averaging:
    """The averaged copy, the swap, and the checkpointed state."""

    #: whether buffers (BatchNorm statistics) are averaged too, or recomputed
    use_buffers = True

    def __init__(self) -> None:
        self.averaged: AveragedModel | None = None
        #: whether the model holds the averaged weights (and the copy the training ones)
        self.swapped = False

    def _multi_avg_fn(self) -> Any:
        return None  # AveragedModel's equal average

    def _copy(self, model: torch.nn.Module) -> AveragedModel:
        if self.averaged is None:
            self.averaged = AveragedModel(model, multi_avg_fn=self._multi_avg_fn(), use_buffers=self.use_buffers)
        return self.averaged

    def _swap(self, model: torch.nn.Module) -> None:
        assert self.averaged is not None
        mine, theirs = model.state_dict(), self.averaged.module.state_dict()
        with torch.no_grad():
            for key, tensor in mine.items():
                other = theirs[key]
                held = tensor.clone()
                tensor.copy_(other)
                other.copy_(held)
        self.swapped = not self.swapped

    @torchyard.hookimpl
    def on_train_epoch_start(self, run: Any) -> None:
        if self.swapped:
            self._swap(run.model)  # training goes on from its own weights

    @torchyard.hookimpl
    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
            state["swapped"] = self.swapped

    @torchyard.hookimpl
    def on_load_checkpoint(self, run: Any, state: dict[str, Any]) -> None:
        self._copy(run.model).load_state_dict(state["averaged"])
        self.swapped = bool(state["swapped"])


class EMA(_Averaging):
    """Exponential moving average of the weights (and BatchNorm statistics).

    Every ``every_n_steps`` optimizer steps the average moves towards the
    weights: ``ema = decay * ema + (1 - decay) * weights`` (the first update
    copies them). Validation, the best checkpoint and the predictions use the
    average. With ``warmup_steps``, the decay rises linearly from 0 to
    ``decay`` over that many updates, so the average is not held back by the
    random initial weights.
    """

    def __init__(
        self,
        decay: Annotated[
            float, Field(ge=0.0, lt=1.0, description="Weight of the average at each update; 0.999 averages over ~1000 updates.")
        ] = 0.999,
        warmup_steps: Annotated[
            int, Field(ge=0, description="Updates over which the decay rises linearly from 0 to `decay`; 0: none.")
        ] = 0,
        every_n_steps: Annotated[int, Field(ge=1, description="Update the average every this many optimizer steps.")] = 1,
    ) -> None:
        super().__init__()
        self.decay, self.warmup_steps, self.every_n_steps = decay, warmup_steps, every_n_steps
        #: updates made so far (kept in Python: reading AveragedModel's counter would sync a GPU)
        self.updates = 0

    def decay_at(self, update: int) -> float:
        """The decay of the ``update``-th update (counting from 1; the 0th copies)."""
        if self.warmup_steps and update < self.warmup_steps:
            return self.decay * update / self.warmup_steps
        return self.decay

    def _multi_avg_fn(self) -> Any:
        @torch.no_grad()
        def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], _n: Any) -> None:
            weight = 1.0 - self.decay_at(self.updates)
            if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
                torch._foreach_lerp_(averaged, current, weight)
            else:  # integer buffers (BatchNorm's batch counts): follow the model
                for a, c in zip(averaged, current, strict=True):
                    a.copy_(c)

        return ema

    @torchyard.hookimpl
    def on_after_optimizer_step(self, run: Any, step: int) -> None:
        if step % self.every_n_steps == 0:
            self._copy(run.model).update_parameters(run.model)
            self.updates += 1

    @torchyard.hookimpl
    def on_train_epoch_end(self, run: Any) -> None:
        if self.averaged is not None and not self.swapped:
            self._swap(run.model)

    @torchyard.hookimpl
    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        super().on_save_checkpoint(state)
        state["updates"] = self.updates

    @torchyard.hookimpl
    def on_load_checkpoint(self, run: Any, state: dict[str, Any]) -> None:
        super().on_load_checkpoint(run, state)
        self.updates = int(state["updates"])


class SWA(_Averaging):
    """Stochastic weight averaging: the equal average of the weights at the
    end of each of the last ``epochs`` epochs (Izmailov et al., 2018).

    From the first of those epochs on, validation, checkpoints and
    predictions use the average so far, with BatchNorm statistics recomputed
    by one pass over the training data (``update_bn``), so the best
    checkpoint is the average when it scores best. A constant or cyclic LR
    over those epochs suits it; early stopping before them leaves no average.
    """

    use_buffers = False  # BatchNorm statistics are recomputed, not averaged

    def __init__(
        self,
        epochs: Annotated[int, Field(ge=1, description="How many of the last epochs to average.")] = 5,
        update_bn: Annotated[
            bool, Field(description="Recompute BatchNorm statistics for the average (a forward pass over the training data).")
        ] = True,
    ) -> None:
        super().__init__()
        self.epochs, self.update_bn = epochs, update_bn

    @torchyard.hookimpl
    def on_run_start(self, run: Any) -> None:
        if self.epochs > run.trainer.max_epochs:
            raise ValueError(
                f"epochs is {self.epochs}, more than trainer.max_epochs ({run.trainer.max_epochs})"
            )

    @torchyard.hookimpl
    def on_train_epoch_end(self, run: Any, epoch: int) -> None:
        if epoch <= run.trainer.max_epochs - self.epochs:
            return
        self._copy(run.model).update_parameters(run.model)
        self._swap(run.model)
        if self.update_bn:
            update_bn(run.loader("train"), run.model, device=run.device)
