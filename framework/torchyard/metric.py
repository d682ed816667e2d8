"""The metric contract, after torchmetrics: update, compute, reset.

``update(outputs, targets)`` accumulates state tensors on the outputs'
device, ``compute()`` reduces them to a number, ``reset()`` restores the
initial state. The math lives in pure functions (see the built-in metrics
plugin); a :class:`Metric` only keeps state. States are sums or
concatenations, declared with :meth:`Metric.add_state`, so they can be
reduced across processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["Metric", "MetricView"]


class Metric:
    """Base class of metrics. Subclasses set ``higher_is_better`` and
    implement ``update`` and ``compute``."""

    #: Which direction is better; drives ``trainer.mode: auto``.
    higher_is_better: ClassVar[bool] = True

    def __init__(self) -> None:
        self._defaults: dict[str, tuple[Any, Literal["sum", "cat"]]] = {}

    def add_state(self, name: str, default: torch.Tensor | list[Any], reduce: Literal["sum", "cat"] = "sum") -> None:
        """Declare a state: a tensor summed across updates, or a list of
        tensors concatenated at compute time."""
        self._defaults[name] = (default, reduce)
        setattr(self, name, _fresh(default))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        for name, (default, _) in self._defaults.items():
            setattr(self, name, _fresh(default))

    def to(self, device: torch.device | str) -> Metric:
        """Move the tensor states (and the defaults they reset to) to ``device``."""
        for name, (default, reduce) in list(self._defaults.items()):
            if not isinstance(default, list):
                self._defaults[name] = (default.to(device), reduce)
                setattr(self, name, getattr(self, name).to(device))
        return self

    def sync(self) -> None:
        """Reduce states across torch.distributed processes, if initialized."""
        import torch

        from torchyard import distributed

        if distributed.world_size() == 1:
            return
        for name, (_, reduce) in self._defaults.items():
            value = getattr(self, name)
            if reduce == "sum":
                distributed.all_reduce_sum(value)
            else:
                local = torch.cat(value) if value else torch.empty(0)
                gathered = distributed.all_gather_objects(local.cpu())
                setattr(self, name, [g.to(local.device) for g in gathered])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _fresh(default: Any) -> Any:
    return [] if isinstance(default, list) else default.clone()


class MetricView(Metric):
    """A metric computed on a view of the outputs and targets -- one head of
    a multi-head model, one part of a fused class: :meth:`view` picks it,
    and the wrapped metric does the rest. Its direction is the wrapped
    metric's."""

    def __init__(self, metric: Metric) -> None:
        super().__init__()
        self.metric = metric

    @classmethod
    def of(cls, metric: Metric, *args: Any) -> MetricView:
        """A view of ``metric`` (``args`` are the subclass's own), better in
        the direction ``metric`` is."""
        directed = type(cls.__name__, (cls,), {"higher_is_better": metric.higher_is_better})
        view: MetricView = directed(metric, *args)
        return view

    def view(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.metric.update(*self.view(outputs, targets))

    def compute(self) -> float:
        return float(self.metric.compute())

    def reset(self) -> None:
        self.metric.reset()

    def sync(self) -> None:
        self.metric.sync()

    def to(self, device: torch.device | str) -> MetricView:
        self.metric.to(device)
        return self
