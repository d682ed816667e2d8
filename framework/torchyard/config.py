"""The run config: a typed :class:`RunConfig`, its sections built from the registry.

A config names each component as ``{name: ..., <params>}``. Each registered
component gets a section class (:func:`section_model`): a
:class:`ComponentSpec` subclass made of its params model, the keys
torchyard adds for its kind (:class:`MetricSpec`, :class:`OptimizerSpec`,
:class:`SchedulerSpec`) and its registry record. :func:`build_config_model`
subclasses :class:`RunConfig`, turning each component section of the table
of kinds (:mod:`torchyard.kinds`) into a union of those classes tagged by
name -- so one ``model_validate`` checks the whole file, the result is a
typed :class:`RunConfig`, and ``model_json_schema()`` is the schema editors
use.

Every problem is reported at once, one line each, with its dotted path:
``optimizer.lr: expected a number > 0, got -1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Union, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
)

from torchyard import kinds
from torchyard.config_io import apply_overrides, read_config_file, show_value
from torchyard.errors import ConfigError, PluginError, TorchyardError, did_you_mean
from torchyard.kinds import Section
from torchyard.loader_config import LoaderConfig  # re-exported: the loader section
from torchyard.optim import Duration, ParamGroupConfig, PositiveDuration, WarmupConfig
from torchyard.params import SECTION_ATTRIBUTES, ParamsModel, params_to_kwargs
from torchyard.registry import ComponentRecord, Registry
from torchyard.speed import SpeedSettings
from torchyard.splits import SplitConfig

__all__ = [
    "COMPONENT_SECTIONS",
    "ComponentSpec",
    "EarlyStopping",
    "LoaderConfig",
    "MetricSpec",
    "OptimizerSpec",
    "RunConfig",
    "SchedulerSpec",
    "TrainerConfig",
    "TransformsConfig",
    "apply_overrides",
    "build_config_model",
    "jsonable_config",
    "load_config",
    "missing_requirements",
    "named_components",
    "read_config_file",
    "record_of",
    "section_model",
    "validate_config",
]

#: Config section -> component kind, for the sections that hold components
#: themselves (one, an optional one, or a list): every kind's but transforms'.
COMPONENT_SECTIONS: dict[str, str] = {
    section.name: kind.name
    for kind in kinds.TABLE
    for section in kind.sections
    if section.shape in ("single", "optional", "list")
}

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class EarlyStopping(ParamsModel):
    """Stop when the monitored value has not improved for ``patience`` epochs."""

    patience: int = Field(3, ge=1, le=100_000, description="Epochs without improvement before stopping.")
    min_delta: float = Field(
        0.0, ge=0, description="The smallest change that counts as an improvement."
    )


class _TrainerCore(ParamsModel):
    """How to train: epochs, device, precision, monitoring."""

    max_epochs: int = Field(10, ge=1, le=100_000, description="Number of epochs to train.")
    device: str = Field(
        "auto",
        description="'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'.",
    )
    precision: Literal["32", "bf16-mixed", "16-mixed"] = Field(
        "32",
        description="'32' (full precision), 'bf16-mixed' (CPU or CUDA autocast) or "
        "'16-mixed' (CUDA autocast with gradient scaling).",
    )
    accumulate_grad_batches: int = Field(
        1, ge=1, le=100_000, description="Batches whose gradients are summed before each optimizer step."
    )
    gradient_clip_val: float | None = Field(
        None, gt=0, description="Clip gradients to this norm (or value); unset: no clipping."
    )
    gradient_clip_algorithm: Literal["norm", "value"] = Field(
        "norm", description="'norm' clips the total gradient norm, 'value' each element."
    )
    seed: int | None = Field(
        42, ge=0, le=2**63 - 1, description="Seed for python, numpy and torch; null: no seeding."
    )
    deterministic: bool = Field(
        False, description="Use deterministic algorithms only (slower, bit-for-bit repeatable)."
    )
    monitor: str | None = Field(
        None,
        description="The logged value that picks the best checkpoint and drives early "
        "stopping and ReduceLROnPlateau, e.g. 'val/accuracy'. Default: the first metric, "
        "or 'val/loss' without metrics.",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto",
        description="Whether lower or higher monitored values are better; 'auto' asks the "
        "metric (losses: min).",
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop early when the monitored value stops improving."
    )
    log_every_n_steps: int = Field(
        10,
        ge=1,
        le=1_000_000_000,
        description="How often the progress bar refreshes (in batches) and steps.csv gets a row "
        "(step, epoch, loss, lr, grad_norm; in optimizer steps).",
    )
    limit_train_batches: int | None = Field(
        None, ge=1, le=1_000_000_000, description="Use only this many training batches per epoch (for smoke runs)."
    )
    num_threads: int | None = Field(
        None, ge=1, le=1024, description="torch.set_num_threads for CPU work; unset: torch's default."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    checkpoint_every_n_steps: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="Also write a resumable checkpoints/last.pt every this many optimizer steps "
        "within an epoch (a resumed run continues from that step); unset: at epoch ends only.",
    )
    on_nonfinite_loss: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN or inf loss or gradient: 'stop' training there (the last good checkpoint "
        "is kept), or 'skip' that batch's update and count it (train/skipped_batches).",
    )
    save_top_k: int = Field(1, ge=1, le=1000, description="Keep the best this many checkpoints "
                            "(checkpoints/top/epoch=<n>.pt, besides best.pt); 1: best.pt only.")
    predict_with: Literal["best", "top_k"] = Field("best", description="What makes the submission: the "
                                                   "'best' checkpoint, or the save_top_k best ones averaged.")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError(
                f"expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {show_value(v)}"
            )
        if v.startswith("cuda:") and int(v[5:]) > 1023:
            raise ValueError(f"expected a CUDA device index below 1024, got {show_value(v)}")
        return v


class TrainerConfig(SpeedSettings, _TrainerCore):  # this order lists the GPU step settings last
    """How to train: epochs, device, precision, monitoring, GPU step settings."""


# -- component sections --------------------------------------------------------


class ComponentSpec(ParamsModel):
    """A config section naming one component: its ``name`` and its params.

    Each registered component has its own subclass (:func:`section_model`),
    whose fields are the component's params and whose :attr:`record` is the
    registry record it was built for.
    """

    #: The registry record of the component this section names.
    record: ClassVar[ComponentRecord]

    name: str = Field(description="Which component: a registered name, or plugin:name.")

    def factory_kwargs(self) -> dict[str, Any]:
        """The factory's own keyword arguments: the params, without ``name``
        and the keys torchyard adds for the kind (``log_as``, ``warmup``, ...)."""
        own = {info.alias or name for name, info in self.record.params.model_fields.items()}
        return {k: v for k, v in params_to_kwargs(self).items() if k in own}


class MetricSpec(ComponentSpec):
    """A metric section: the metric's params, and the key it logs under."""

    log_as: str | None = Field(None, description="Key to log under (val/<log_as>); default: the name.")


class OptimizerSpec(ComponentSpec):
    """An optimizer section: the optimizer's params, and its parameter groups."""

    param_groups: list[ParamGroupConfig] = Field(
        default_factory=list,
        description="Per-module settings by module-name prefix (lr, lr_scale, "
        "weight_decay, freeze); the first matching prefix wins.",
    )
    no_weight_decay_on_bias_and_norm: bool = Field(
        False, description="No weight decay on biases and normalization weights."
    )


class SchedulerSpec(ComponentSpec):
    """A scheduler section: the scheduler's params (its durations accept
    units), a warmup, and when it steps."""

    warmup: WarmupConfig | None = Field(None, description="Linear LR warmup before this scheduler starts.")
    interval: Literal["epoch", "step"] | None = Field(
        None,
        description="Step per epoch or per optimizer step; default: the scheduler's "
        "own, or per step when a duration is given in steps.",
    )


class TransformsConfig(ParamsModel):
    """Per-sample transforms, composed in order and given to the dataset, and
    batch transforms (:mod:`torchyard.batch_transforms`)."""

    train: list[ComponentSpec] = Field(default_factory=list)
    eval: list[ComponentSpec] = Field(default_factory=list)
    batch: list[ComponentSpec] = Field(default_factory=list)
    batch_off_last_epochs: int = Field(
        default=0, ge=0, le=100_000, description="Train the last this many epochs on unmixed batches."
    )


class RunConfig(ParamsModel):
    """A torchyard run: components by name, and how to train them.

    The component sections are typed by their kind's spec class; the model
    that validates a config (:func:`build_config_model`) narrows each to the
    registered components, takes its shape and description from the table of
    kinds, and adds a section for every other kind there (read those with
    :meth:`specs`).
    """

    #: Components whose section could not be built, by qualified name: why.
    #: Set on each model :func:`build_config_model` makes.
    broken: ClassVar[Mapping[str, str]] = MappingProxyType({})

    requires: list[str] = Field(
        default_factory=list,
        description="Plugin distributions this config needs, e.g. 'torchyard-x>=0.1'.",
    )
    # (model_validate: type checkers take Field(10, ...) for a required field)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig.model_validate({}))
    loader: LoaderConfig = Field(default_factory=lambda: LoaderConfig.model_validate({}))
    split: SplitConfig | None = Field(
        None, description="Carve validation out of the labelled data: holdout or k-fold."
    )
    transforms: TransformsConfig = Field(default_factory=TransformsConfig)
    tta: list[list[ComponentSpec]] = Field(default_factory=list)
    model: ComponentSpec
    data: ComponentSpec
    loss: ComponentSpec
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec | None = None
    metrics: list[MetricSpec] = Field(default_factory=list)
    writer: ComponentSpec | None = None
    #: After validation always set: the config's, or the dataset's declared task.
    task: ComponentSpec | None = None
    callbacks: list[ComponentSpec] = Field(default_factory=list)
    loggers: list[ComponentSpec] = Field(default_factory=list)

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Every component section (of ``kind``) in this config, in table order."""
        table = kinds.TABLE if kind is None else (kinds.get(kind),)
        return [
            spec
            for k in table
            for section in k.sections
            for spec in _walk(section, getattr(self, section.name, None), getattr)
        ]


def _walk(section: Section, value: Any, get: Callable[[Any, str], Any]) -> list[Any]:
    """The component sections inside ``value``, the value of ``section``
    (validated, or raw data with ``get`` reading a mapping)."""

    def as_list(v: Any) -> list[Any]:
        return v if isinstance(v, list) else [] if v is None else [v]

    if section.shape == "splits":
        return [s for key, _ in section.splits for s in as_list(get(value, key))] if value is not None else []
    if section.shape == "views":
        return [s for view in value for s in (view if isinstance(view, list) else [view])] if isinstance(value, list) else []
    return as_list(value)


def record_of(spec: BaseModel) -> ComponentRecord:
    """The registry record a validated component section was built from."""
    record = getattr(type(spec), "record", None)
    if not isinstance(spec, ComponentSpec) or not isinstance(record, ComponentRecord):
        raise TypeError(f"{type(spec).__name__} is not a component section")
    return record


def build_config_model(
    registry: Registry, only: Mapping[str, list[ComponentRecord]] | None = None
) -> type[RunConfig]:
    """The model of a run config with every registered component.

    ``only`` (kind -> records) restricts a kind to those components: a
    component's schema may be derived from its factory, which means
    importing it (torchvision's models, say), so validating a config builds
    only what the config names (:func:`named_components`).
    """
    broken: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for kind in kinds.TABLE:
        component = _component_type(registry, kind.name, broken, only)
        for section in kind.sections:
            fields[section.name] = _section_field(section, component)
    summary = (RunConfig.__doc__ or "").split("\n\n")[0]  # the schema's description
    model = create_model("RunConfig", __base__=RunConfig, __doc__=summary, **fields)
    model.broken = MappingProxyType(broken)
    return model


def _section_field(section: Section, component: Any) -> tuple[Any, Any]:
    """The field of a section holding ``component`` (a union), as its shape says."""
    if section.shape == "single":
        return component, Field(description=section.description)
    if section.shape == "optional":
        return component | None, Field(None, description=section.description)
    if section.shape == "list":
        return list[component], Field(default_factory=list, description=section.description)
    if section.shape == "views":
        return list[list[component]], Field(default_factory=list, description=section.description)
    # splits: a model of named lists, subclassing RunConfig's own (TransformsConfig)
    static = RunConfig.model_fields.get(section.name)
    base: type[BaseModel] = ParamsModel
    if static is not None and isinstance(static.annotation, type) and issubclass(static.annotation, BaseModel):
        base = static.annotation
    lists: dict[str, Any] = {
        key: (list[component], Field(default_factory=list, description=text)) for key, text in section.splits
    }
    splits = create_model(f"{section.name.title()}Config", __base__=base, __doc__=section.description, **lists)
    return splits, Field(default_factory=splits)


_SECTION_MODELS: dict[int, tuple[ComponentRecord, type[ComponentSpec]]] = {}


def section_model(record: ComponentRecord) -> type[ComponentSpec]:
    """The model of a config section naming ``record``: its params, ``name``,
    and the keys torchyard adds for its kind (``log_as``, ``warmup``, ...).

    :raises PluginError: the component's params schema cannot be built.
    """
    cached = _SECTION_MODELS.get(id(record))
    if cached is not None and cached[0] is record:
        return cached[1]
    params = record.params
    clash = sorted(SECTION_ATTRIBUTES & set(params.model_fields))
    if clash:
        raise PluginError(
            f"{record.kind} '{record.name}' from plugin {record.source}: its params schema "
            f"has a field named {clash[0]!r}, which a config section reserves; give it an alias"
        )
    try:
        base = kinds.import_object(kinds.get(record.kind).spec_base)
    except Exception as e:  # noqa: BLE001 - a broken entry of the table of kinds
        raise PluginError(f"kind '{record.kind}': cannot import its spec base: {e}") from e
    # keys torchyard adds to every section of this kind (log_as, warmup,
    # interval, param_groups, ...): a parameter of that name would be hidden
    reserved = sorted((set(base.model_fields) - {"name"}) & {f.alias or n for n, f in params.model_fields.items()})
    if reserved:
        raise PluginError(
            f"{record.kind} '{record.name}' from plugin {record.source}: its parameter {reserved[0]!r} "
            f"is a key torchyard adds to every {record.kind} section; rename the parameter"
        )
    wrapper = cast(
        "type[ComponentSpec]",
        create_model(
            f"{record.kind}:{record.qualified_name}",
            __base__=(base, params),
            __doc__=record.summary or None,
            name=(
                str,
                Field(description=record.summary or None, json_schema_extra={"const": record.name}),
            ),
            **_duration_fields(record, params),
        ),
    )
    wrapper.record = record
    try:  # a model pydantic cannot complete (an undefined forward reference, a type with no schema)
        wrapper.model_json_schema()
    except Exception as e:  # noqa: BLE001 - the plugin's params model, reported as the plugin's
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PluginError(
            f"{record.kind} '{record.name}' from plugin {record.source}: its params schema is "
            f"unusable: {first[:200]}"
        ) from e
    _SECTION_MODELS[id(record)] = (record, wrapper)
    return wrapper


def named_components(data: Mapping[str, Any], registry: Registry) -> dict[str, list[ComponentRecord]] | None:
    """The components a raw config names, by kind; ``None`` if some name is
    missing or unknown (then every component is needed, to say which exist)."""

    def get(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, Mapping) else None

    only: dict[str, list[ComponentRecord]] = {}
    for kind in kinds.TABLE:
        only[kind.name] = []
        for section in kind.sections:
            for spec in _walk(section, data.get(section.name), get):
                name = spec.get("name") if isinstance(spec, Mapping) else None
                if not isinstance(name, str):
                    return None
                try:
                    record = registry.get(kind.name, name)
                except TorchyardError:
                    return None
                if record not in only[kind.name]:
                    only[kind.name].append(record)
    return only


def _component_type(
    registry: Registry,
    kind: str,
    broken: dict[str, str],
    only: Mapping[str, list[ComponentRecord]] | None = None,
) -> Any:
    members: list[Any] = []
    for record in registry.records(kind) if only is None else only.get(kind, []):
        try:
            wrapper = section_model(record)
        except TorchyardError as e:
            broken[record.qualified_name] = str(e)
            continue
        members.append(Annotated[wrapper, Tag(record.qualified_name)])

    def tag(value: Any) -> str | None:
        if isinstance(value, ComponentSpec):
            return record_of(value).qualified_name
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
            return None
        try:
            return registry.get(kind, value["name"]).qualified_name
        except TorchyardError:
            return None

    if not members:
        # nothing of this kind is usable: any mention is an error saying why
        def refuse(value: Any) -> Any:
            name = value.get("name") if isinstance(value, Mapping) else value
            try:
                record = registry.get(kind, str(name))
            except TorchyardError as e:
                raise ValueError(str(e)) from None
            raise ValueError(broken.get(record.qualified_name, f"{kind} {name!r} is unusable"))

        return Annotated[Any, AfterValidator(refuse), Field(json_schema_extra={"not": {}})]
    union = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return Annotated[union, Discriminator(tag)]


def _duration_fields(record: ComponentRecord, params: type[BaseModel]) -> dict[str, Any]:
    """The params a component declares as durations (its ``durations``
    option), retyped to accept ``'10 epochs'`` or ``'500 steps'``."""
    fields: dict[str, Any] = {}
    for name in record.options.get("durations", ()):
        info = params.model_fields.get(name)
        if info is None:
            continue
        is_list = "list" in str(info.annotation)
        annotation: Any = list[Duration] if is_list else PositiveDuration
        default = info.default if not info.is_required() else None
        if default is None and not is_list:
            annotation = annotation | None
        description = (info.description or "").rstrip(".")
        suffix = "e.g. 10, '10 epochs' or '500 steps'"
        if default is None and not is_list:
            suffix += "; unset: the rest of the run"
        fields[name] = (
            annotation,
            Field(
                default if not (info.is_required() and is_list) else ...,
                description=f"{description} ({suffix})." if description else f"A duration ({suffix}).",
            ),
        )
    return fields


# -- validating ----------------------------------------------------------------


def validate_config(
    data: Mapping[str, Any], registry: Registry, model: type[RunConfig] | None = None
) -> RunConfig:
    """Validate a raw config; raise :class:`ConfigError` with every problem."""
    requires = data.get("requires")
    if isinstance(requires, list) and all(isinstance(r, str) for r in requires):
        # first: without its plugins, the rest of the config cannot make sense
        missing = missing_requirements(requires)
        if missing:
            raise ConfigError(*missing)
    if model is None:
        named = named_components(data, registry) if isinstance(data, Mapping) else None
        model = build_config_model(registry, named)
    try:
        config = model.model_validate(data)
    except ValidationError as e:
        from torchyard.config_errors import format_errors

        raise ConfigError(*format_errors(e, data, registry, model)) from None
    except (TypeError, ValueError, ArithmeticError) as e:
        # a component's schema whose constraint cannot apply to the value given
        # (e.g. '> 0' on a list): still the config's value, still one line
        raise ConfigError(f"<config>: a component's params schema rejected a value: {e}") from None
    from torchyard.tasks import settle_task

    problems = _cross_checks(config) or settle_task(config, registry)
    if problems:
        raise ConfigError(*problems)
    return config


def load_config(
    path: str | Path, registry: Registry, overrides: Sequence[str] = ()
) -> RunConfig:
    """Read, override and validate a config file.

    Relative paths in component params typed as ``pathlib.Path`` are
    resolved against the config file's directory, so a config works from
    any current directory.
    """
    data = apply_overrides(read_config_file(path), overrides)
    config = validate_config(data, registry)
    resolve_paths(config, Path(path).resolve().parent)
    return config


def resolve_paths(config: RunConfig, base: Path) -> None:
    """Make relative ``Path`` params of every component absolute against ``base``."""
    for spec in config.specs():
        for name, info in type(spec).model_fields.items():
            if "Path" not in str(info.annotation):
                continue
            value = getattr(spec, name)
            if isinstance(value, Path) and not value.is_absolute():
                setattr(spec, name, base / value)
            elif isinstance(value, list):
                setattr(spec, name, [base / v if isinstance(v, Path) and not v.is_absolute() else v for v in value])


def monitored_keys(config: RunConfig) -> list[str]:
    """Every value a run with this config logs, in order."""
    keys = ["train/loss", "val/loss"]
    keys += [f"val/{metric_key(m)}" for m in config.metrics]
    return keys


def jsonable_config(config: BaseModel) -> dict[str, Any]:
    """A validated config as plain JSON values: what checkpoints keep, and
    what a run's ``config.yaml`` is written from."""
    # warnings=False: a signature default such as `min_lr: float = 0` is an int
    result: dict[str, Any] = json.loads(config.model_dump_json(by_alias=True, warnings=False))
    return result


def metric_key(spec: MetricSpec) -> str:
    """The key a metric logs under, after ``val/``."""
    return spec.log_as or record_of(spec).name


def resolve_monitor(config: RunConfig) -> str:
    """The monitored key: explicit, else the first metric, else ``val/loss``."""
    if config.trainer.monitor:
        return str(config.trainer.monitor)
    return f"val/{metric_key(config.metrics[0])}" if config.metrics else "val/loss"


def missing_requirements(requires: Sequence[str]) -> list[str]:
    """One problem per requirement that the installed distributions miss.

    Checked before any work, like pytest's ``required_plugins``: a config
    that needs a plugin says so, and the message gives the install command.
    """
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for i, text in enumerate(requires):
        try:
            requirement = Requirement(text)
        except InvalidRequirement as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
            problems.append(f"requires.{i}: {text!r} is not a valid requirement: {first}")
            continue
        install = f"install it with: torchyard install '{text}'"
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"requires.{i}: {requirement.name} is not installed; {install}")
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(
                f"requires.{i}: {text!r} needs another version than the installed "
                f"{requirement.name} {version}; {install}"
            )
    return problems


def _cross_checks(config: RunConfig) -> list[str]:
    from torchyard.loggers import missing_packages

    problems: list[str] = missing_packages(config.loggers)
    for i, metric in enumerate(config.metrics):
        if metric_key(metric) == "loss":
            problems.append(
                f"metrics.{i}: logs as 'val/loss', the validation loss's own key; give it another log_as"
            )
    keys = [f"val/{metric_key(m)}" for m in config.metrics]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            problems.append(
                f"metrics.{i}: logs as '{key}' like an earlier metric; give it a distinct log_as"
            )
    monitor = resolve_monitor(config)
    available = list(dict.fromkeys(monitored_keys(config)))
    if monitor not in available:
        problems.append(
            f"trainer.monitor: '{monitor}' is never logged by this run"
            + (did_you_mean(monitor, available) or f"; it can monitor {', '.join(available)}")
        )
    split = config.split
    if split is not None and split.method == "kfold" and split.fold is not None and split.fold >= split.folds:
        problems.append(
            f"split.fold: {split.fold} is out of range for {split.folds} folds (0..{split.folds - 1})"
        )
    loader = config.loader
    if loader.num_workers == 0 and loader.persistent_workers is True:
        problems.append("loader.persistent_workers: needs num_workers > 0")
    if loader.num_workers == 0 and loader.prefetch_factor is not None:
        problems.append("loader.prefetch_factor: needs num_workers > 0")
    return problems
