"""The table of component kinds: every fact about a kind, in one place.

A *kind* (model, dataset, loss, ...) is more than a word. It has a
registration hook and that hook's documentation, a config section of some
shape, the words the CLI accepts for it, a title in the generated docs,
registration options, a base class for its config sections, and a
conformance check. :data:`TABLE` holds one :class:`Kind` record per kind, in
display order, and every other module reads it: the hook specs
(:mod:`torchyard.hookspecs`), the registry, the config model, config
errors, the CLI, the component reference and the conformance kit. Adding a
kind is adding a record here (and a registration hook to a plugin).

Classes and functions are named by import path (``"module:attribute"``),
so this module imports neither torch nor pydantic: ``torchyard list`` reads
it and must stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "SCHEDULER_INTERVALS",
    "TABLE",
    "TARGET_KINDS",
    "TASKS",
    "TASK_ALIASES",
    "TRANSFORM_STAGES",
    "Kind",
    "Option",
    "Section",
    "from_word",
    "get",
    "import_object",
    "names",
    "task_names",
]

#: How a config section holds components: ``single`` (required), ``optional``
#: (may be null or absent), ``list``, ``splits`` (a mapping of named lists,
#: like ``transforms.train``) or ``views`` (a list of lists, like ``tta``).
Shape = Literal["single", "optional", "list", "splits", "views"]

#: When each scheduler steps; declared at registration, never guessed from a name.
SCHEDULER_INTERVALS = ("epoch", "step", "metric")

#: What a transform applies to: one sample's input (the default), or a whole
#: training batch with its soft targets (``transforms.batch``).
TRANSFORM_STAGES = ("sample", "batch")

#: The tasks torchyard knows, one vocabulary for datasets (what they yield),
#: losses, metrics and writers (what they take: their ``targets`` option), and
#: ``Predictions.task``. Targets and outputs per task:
#: ``classification`` -- class indices with (n, C) logits; ``binary`` -- 0/1
#: floats with (n,) or (n, 1) logits; ``multilabel`` -- 0/1 floats (n, C) with
#: (n, C) logits; ``regression`` -- float targets (n,) or (n, k) with (n, 1) or
#: (n, k) outputs; ``ranking`` -- relevance grades (queries, items), -1 for
#: padding, with (queries, items) scores. A ``multihead`` task combines heads
#: of the others (see torchyard.tasks).
TASKS = ("classification", "binary", "multilabel", "regression", "ranking")

#: Earlier names of two tasks, still accepted in ``targets=``.
TASK_ALIASES = {"classes": "classification", "values": "regression"}

#: The ``targets`` option's vocabulary (the task names and their aliases).
TARGET_KINDS = (*TASKS, *TASK_ALIASES)


def task_names(value: Any) -> tuple[str, ...]:
    """A ``targets`` or ``task`` option as task names: one name or several,
    aliases resolved."""
    values: Sequence[str] = value if isinstance(value, tuple | list) else (value,)
    return tuple(TASK_ALIASES.get(v, v) for v in values)


def _valid_targets(value: Any) -> bool:
    values = value if isinstance(value, tuple | list) else (value,)
    return bool(values) and all(isinstance(v, str) and v in TARGET_KINDS for v in values)

_DEPTH = {"single": 1, "optional": 1, "list": 2, "splits": 3, "views": 3}


@dataclass(frozen=True)
class Section:
    """A config section that names components of one kind."""

    name: str
    shape: Shape
    #: The section's description in the JSON schema (for ``splits``: the
    #: docstring of its model).
    description: str | None = None
    #: For ``splits``: each sub-key, a list of components, and its description.
    splits: tuple[tuple[str, str], ...] = ()

    @property
    def depth(self) -> int:
        """How many path parts lead from the config's root to one component
        (``model``: 1, ``metrics.0``: 2, ``transforms.train.0``: 3)."""
        return _DEPTH[self.shape]


@dataclass(frozen=True)
class Option:
    """A registration option (``register(name, factory, interval="epoch")``)."""

    name: str
    required: bool
    #: Whether a value is acceptable.
    valid: Callable[[Any], bool]
    #: What is acceptable, for messages: "one of 'epoch', 'step', 'metric'".
    expected: str


@dataclass(frozen=True)
class Kind:
    """Everything torchyard knows about one component kind."""

    #: The singular, as in ``register(...)`` messages and ``torchyard show KIND``.
    name: str
    plural: str
    #: The registration hook: ``def <hook>(register)``.
    hook: str
    #: The hook's documentation: what the factory returns, how it is called.
    doc: str
    #: The config sections naming components of this kind (the first is the main one).
    sections: tuple[Section, ...]
    #: The heading of this kind in the component reference.
    title: str
    #: What a factory of this kind returns, in one line.
    summary: str
    #: More words the CLI accepts for this kind ("data" for dataset).
    aliases: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    #: Whether the factory's first positional argument is supplied by the
    #: loop (an optimizer's parameter groups), not set in a config.
    positional_first: bool = False
    #: The base class of this kind's config sections (``module:attribute``).
    spec_base: str = "torchyard.config:ComponentSpec"
    #: The conformance check (``module:attribute``), a function
    #: ``(record, params) -> None``; ``None``: the generic one (it builds).
    conformance: str | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """Every word naming this kind on the command line (lower case)."""
        return (self.name, self.plural, *self.aliases)

    @property
    def section(self) -> Section:
        return self.sections[0]


def _one_of(values: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(v) for v in values)


def _targets_option() -> Option:
    return Option(
        "targets", False, _valid_targets, _one_of(TASKS) + " (or a tuple of them)"
    )


def _single(name: str, description: str) -> tuple[Section, ...]:
    return (Section(name, "single", description),)


TABLE: tuple[Kind, ...] = (
    Kind(
        name="model",
        plural="models",
        hook="register_models",
        doc="""Register model factories.

        A model factory returns a ``torch.nn.Module``. Parameters named
        ``num_classes``, ``in_channels`` or ``input_shape`` that the user leaves
        unset are filled in from the dataset.

        :param register: call ``register(name, factory, ...)`` once per model.
        """,
        sections=_single("model", "The model."),
        title="Models",
        summary="a `torch.nn.Module`",
        conformance="torchyard.testing:_check_model",
    ),
    Kind(
        name="dataset",
        plural="datasets",
        aliases=("data",),
        hook="register_datasets",
        doc="""Register dataset factories.

        A dataset factory returns a :class:`torchyard.data.DataBundle`: the
        train, validation and (unlabelled) test splits plus what the rest of the
        run needs to know about them (number of classes, test ids, input shape).

        The optional ``reader`` option says how this dataset turns one file
        into a model input, so that a trained run can predict files it has
        never seen (:func:`torchyard.load`): a function (or its import path
        ``"module:attribute"``) called with the dataset's config parameters
        (it takes those it needs, and ``eval_transform``) that returns a
        callable ``read(path) -> Tensor``.

        The ``task`` option declares what the dataset yields, so ``torchyard
        check`` can match losses, metrics and writers to it without reading
        any data: a task name (``"classification"``, the default,
        ``"binary"``, ``"multilabel"``, ``"regression"``, ``"ranking"``), or a
        function (or import path) of the dataset's config parameters returning
        one, for datasets whose task depends on them.

        :param register: call ``register(name, factory, task=..., reader=..., ...)`` once per dataset.
        """,
        sections=_single("data", "The dataset."),
        title="Datasets",
        summary="a `torchyard.DataBundle`: train, validation and test splits, plus facts about them",
        options=(
            Option(
                "reader",
                False,
                lambda v: callable(v) or (isinstance(v, str) and ":" in v),
                "a function or an import path 'module:attribute'",
            ),
            Option(
                "task",
                False,
                lambda v: callable(v) or (isinstance(v, str) and (v in TARGET_KINDS or ":" in v)),
                _one_of(TASKS) + ", or a function (or import path) of the params returning one",
            ),
        ),
        conformance="torchyard.testing:_check_dataset",
    ),
    Kind(
        name="loss",
        plural="losses",
        hook="register_losses",
        doc="""Register loss factories.

        A loss factory returns a callable ``loss(outputs, targets) -> Tensor``
        producing a scalar, usually a ``torch.nn.Module``. The optional
        ``targets`` option names the task (or tuple of tasks) whose targets it
        takes: ``"classification"`` (class indices, the default),
        ``"binary"``, ``"multilabel"``, ``"regression"`` or ``"ranking"``
        (see :data:`torchyard.kinds.TASKS`). ``soft_targets=True`` declares
        that it also takes soft targets, a float tensor shaped like the
        outputs (class probabilities, mixed labels): what batch transforms
        such as MixUp make (``transforms.batch``).

        :param register: call ``register(name, factory, targets=..., ...)`` once per loss.
        """,
        sections=_single("loss", "The loss."),
        title="Losses",
        summary="a callable `loss(outputs, targets)` that returns a scalar tensor, usually an `nn.Module`",
        options=(
            _targets_option(),
            Option("soft_targets", False, lambda v: isinstance(v, bool), "True or False"),
        ),
        conformance="torchyard.testing:_check_loss",
    ),
    Kind(
        name="optimizer",
        plural="optimizers",
        hook="register_optimizers",
        doc="""Register optimizer factories.

        An optimizer factory is called as ``factory(param_groups, **params)``
        and returns a ``torch.optim.Optimizer``; any ``torch.optim`` class fits
        as is. The first positional parameter is not part of the params schema.

        :param register: call ``register(name, factory, ...)`` once per optimizer.
        """,
        sections=_single("optimizer", "The optimizer."),
        title="Optimizers",
        summary="a `torch.optim.Optimizer`, called as `factory(param_groups, **params)`",
        positional_first=True,
        spec_base="torchyard.config:OptimizerSpec",
        conformance="torchyard.testing:_check_optimizer",
    ),
    Kind(
        name="scheduler",
        plural="schedulers",
        hook="register_schedulers",
        doc="""Register learning-rate scheduler factories.

        A scheduler factory is called as ``factory(optimizer, **params)``; any
        ``torch.optim.lr_scheduler`` class fits as is. Every scheduler must
        declare when it steps, as the ``interval`` option:

        - ``"epoch"``: ``scheduler.step()`` after every epoch,
        - ``"step"``: ``scheduler.step()`` after every optimizer step,
        - ``"metric"``: ``scheduler.step(value)`` after every validation, with
          the value of the monitored metric (like ``ReduceLROnPlateau``).

        :param register: call ``register(name, factory, interval=..., ...)``.
        """,
        sections=(Section("scheduler", "optional", "The scheduler."),),
        title="LR schedulers",
        summary="an LR scheduler, called as `factory(optimizer, **params)`, stepped at a declared interval",
        options=(
            Option(
                "interval", True, lambda v: v in SCHEDULER_INTERVALS, _one_of(SCHEDULER_INTERVALS)
            ),
            # parameters that are durations: they accept '10 epochs' / '500 steps'
            Option(
                "durations",
                False,
                lambda v: isinstance(v, tuple | list) and all(isinstance(n, str) for n in v),
                "a tuple of parameter names",
            ),
        ),
        positional_first=True,
        spec_base="torchyard.config:SchedulerSpec",
        conformance="torchyard.testing:_check_scheduler",
    ),
    Kind(
        name="metric",
        plural="metrics",
        hook="register_metrics",
        doc="""Register metric factories.

        A metric factory returns a :class:`torchyard.metric.Metric`:
        ``update(outputs, targets)`` accumulates on the device, ``compute()``
        reduces to a number, ``reset()`` starts over, and ``higher_is_better``
        says which way is good (it drives monitoring and early stopping). The
        optional ``targets`` option is as for losses.

        :param register: call ``register(name, factory, targets=..., ...)`` once per metric.
        """,
        sections=(Section("metrics", "list", "Metrics computed on validation."),),
        title="Metrics",
        summary="a `torchyard.Metric`, with `update`, `compute`, `reset` and `higher_is_better`",
        options=(_targets_option(),),
        spec_base="torchyard.config:MetricSpec",
        conformance="torchyard.testing:_check_metric",
    ),
    Kind(
        name="writer",
        plural="writers",
        hook="register_writers",
        doc="""Register submission-writer factories.

        A writer factory returns an object with
        ``write(predictions: torchyard.data.Predictions, directory: Path) -> Path``
        that writes the submission file inside ``directory`` and returns its path.
        A writer that can tell early whether the test ids will fit (a template,
        say) may also implement ``check_ids(ids: list[str]) -> None``, raising
        :class:`torchyard.DataError`; it is called before training starts.
        The optional ``targets`` option names the task (or tasks) whose
        predictions it can write; unset, any.

        :param register: call ``register(name, factory, targets=..., ...)`` once per writer.
        """,
        sections=(Section("writer", "optional", "The writer."),),
        title="Submission writers",
        summary="an object with `write(predictions, directory) -> Path`",
        options=(_targets_option(),),
        conformance="torchyard.testing:_check_writer",
    ),
    Kind(
        name="transform",
        plural="transforms",
        hook="register_transforms",
        doc="""Register data-transform factories.

        A transform factory returns a callable applied to one sample's input
        (a ``torchvision.transforms.v2`` transform, say). Configs list them under
        ``transforms.train`` and ``transforms.eval``; torchyard composes each list
        and hands the results to the dataset factory as its ``train_transform``
        and ``eval_transform`` parameters, when it has them.

        With the option ``stage="batch"`` the factory returns a batch
        transform instead (MixUp, CutMix), listed under ``transforms.batch``
        and applied to whole training batches on the device: a callable
        ``(inputs, targets, generator) -> (inputs, targets)`` whose
        ``targets`` are the batch's soft targets, a float tensor (n, k) that
        mixes linearly, and whose randomness comes from ``generator`` only
        (see :mod:`torchyard.batch_transforms`).

        :param register: call ``register(name, factory, stage=..., ...)`` once per transform.
        """,
        sections=(
            Section(
                "transforms",
                "splits",
                "Per-sample transforms, composed in order and given to the dataset, and "
                "batch transforms applied to whole training batches.",
                splits=(
                    ("train", "Applied to training samples."),
                    ("eval", "Applied to validation and test samples."),
                    (
                        "batch",
                        "Batch transforms (stage 'batch': mixup, cutmix) for training batches, on "
                        "the device before the forward; one of them, chosen at random, per batch.",
                    ),
                ),
            ),
            Section(
                "tta",
                "views",
                "Test-time augmentation: each item a list of transforms applied to the input "
                "batch; the class probabilities of the plain batch and of every view are averaged.",
            ),
        ),
        title="Transforms",
        summary="a callable applied to one sample's input (a torchvision transform, say), or "
        "with stage 'batch' to a training batch and its soft targets (MixUp, CutMix)",
        options=(Option("stage", False, lambda v: v in TRANSFORM_STAGES, _one_of(TRANSFORM_STAGES)),),
        conformance="torchyard.testing:_check_transform",
    ),
    Kind(
        name="task",
        plural="tasks",
        hook="register_tasks",
        doc="""Register tasks.

        A task factory returns a :class:`torchyard.tasks.Task`: the rules of
        one kind of learning problem (classification, regression, ...) -- how
        many outputs a model gives, what targets look like, how outputs
        become probabilities and labels, how averages of outputs are taken,
        how a split stratifies, what the report shows. The factory's
        parameters are the config's ``task:`` section (thresholds, heads).
        Without that section, a run takes the task its dataset declares.

        :param register: call ``register(name, factory, ...)`` once per task.
        """,
        sections=(
            Section(
                "task",
                "optional",
                "What is learnt, and its settings; default: the task the dataset declares.",
            ),
        ),
        title="Tasks",
        summary="a `torchyard.tasks.Task`: the rules of one kind of problem",
        conformance="torchyard.testing:_check_task",
    ),
    Kind(
        name="callback",
        plural="callbacks",
        hook="register_callbacks",
        doc="""Register callback factories.

        A callback factory returns an object whose methods, decorated with
        ``@torchyard.hookimpl``, implement lifecycle hooks -- the step-level
        ones included (``on_after_optimizer_step``, ``on_train_epoch_end``,
        ``on_save_checkpoint``, ...) -- for the runs whose config lists it
        under ``callbacks``. A plugin's own hook implementations act on every
        run; a callback acts on the runs that ask for it, with its
        parameters. Its hooks are called after the plugins', in config order.

        :param register: call ``register(name, factory, ...)`` once per callback.
        """,
        sections=(
            Section(
                "callbacks",
                "list",
                "Callbacks acting on the training loop through its hooks (weight averaging, ...), "
                "in the order their hooks are called.",
            ),
        ),
        title="Callbacks",
        summary="an object with `@torchyard.hookimpl` methods named after lifecycle hooks",
        conformance="torchyard.testing:_check_callback",
    ),
    Kind(
        name="logger",
        plural="loggers",
        hook="register_loggers",
        doc="""Register experiment-logger factories.

        A logger factory returns an object whose methods, decorated with
        ``@torchyard.hookimpl``, implement lifecycle hooks -- as a callback's
        do -- to send a run to an experiment tracker: the resolved config
        (``on_run_start``), the ``steps.csv`` rows (``on_step_logged``), the
        epochs' rows (``on_epoch_end``) and the summary, report and files
        (``on_run_end``). Only process 0 builds loggers under torchrun. Unlike
        a callback's, a logger's failure never ends the run: it is reported
        in one warning line and the logger is switched off. The optional
        ``requires`` option names the module the logger needs and ``extra``
        the torchyard extra installing it: without the module, ``torchyard
        check`` refuses a config listing the logger.

        :param register: call ``register(name, factory, requires=..., extra=...)`` once per logger.
        """,
        sections=(
            Section(
                "loggers",
                "list",
                "Experiment loggers (tensorboard, mlflow, wandb) receiving the config, the step "
                "and epoch metrics, the report and the summary; metrics.csv is written regardless.",
            ),
        ),
        title="Loggers",
        summary="an object with `@torchyard.hookimpl` methods that sends the run to an experiment tracker",
        options=(
            Option("requires", False, lambda v: isinstance(v, str) and bool(v), "a module name"),
            Option("extra", False, lambda v: isinstance(v, str) and bool(v), "an extra's name"),
        ),
        conformance="torchyard.loggers:check_logger_conformance",
    ),
)

# Everything below reads TABLE when called, never at import: a kind appended
# to TABLE further down (or by a test's copy of this file) is seen everywhere.


def names() -> tuple[str, ...]:
    """Every kind's name, in display order."""
    return tuple(kind.name for kind in TABLE)


def get(name: str) -> Kind:
    """The kind called ``name`` (singular, exact).

    :raises KeyError: no such kind.
    """
    for kind in TABLE:
        if kind.name == name:
            return kind
    raise KeyError(name)


def from_word(word: str) -> Kind | None:
    """The kind a word names: singular, plural or alias, in any case."""
    word = word.lower()
    for kind in TABLE:
        if word in kind.words:
            return kind
    return None


def import_object(path: str) -> Any:
    """The object an import path ``"package.module:attribute"`` names."""
    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
