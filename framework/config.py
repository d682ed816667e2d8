"""The run config: one pydantic model, built from the registry.

A config names each component as ``{name: ..., <params>}``. The model of the
whole config is assembled from the static sections (``trainer``, ``loader``)
and, for each component section, a union of every registered component's
params model tagged by its name -- so one ``model_validate`` checks the
whole file, and ``model_json_schema()`` is the schema editors use.

Every problem is reported at once, one line each, with its dotted path:
``optimizer.lr: expected a number > 0, got -1``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
)

from torchyard.config_io import apply_overrides, read_config_file
from torchyard.errors import ConfigError, TorchyardError, did_you_mean
from torchyard.params import ParamsModel
from torchyard.registry import ComponentRecord, Registry
from torchyard.splits import SplitConfig

__all__ = [
    "COMPONENT_SECTIONS",
    "LoaderConfig",
    "TrainerConfig",
    "EarlyStopping",
    "apply_overrides",
    "build_config_model",
    "load_config",
    "missing_requirements",
    "read_config_file",
    "record_of",
    "section_model",
    "validate_config",
]

#: Config section -> component kind. ``metrics`` is a list.
COMPONENT_SECTIONS: dict[str, str] = {
    "model": "model",
    "data": "dataset",
    "loss": "loss",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "metrics": "metric",
    "writer": "writer",
}
_OPTIONAL_SECTIONS = {"scheduler", "writer"}

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class EarlyStopping(ParamsModel):
    """Stop when the monitored value has not improved for ``patience`` epochs."""

    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(
        0.0, ge=0, description="The smallest change that counts as an improvement."
    )


class TrainerConfig(ParamsModel):
    """How to train: epochs, device, precision, monitoring."""

    max_epochs: int = Field(10, ge=1, description="Number of epochs to train.")
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
        1, ge=1, description="Batches whose gradients are summed before each optimizer step."
    )
    gradient_clip_val: float | None = Field(
        None, gt=0, description="Clip gradients to this norm (or value); unset: no clipping."
    )
    gradient_clip_algorithm: Literal["norm", "value"] = Field(
        "norm", description="'norm' clips the total gradient norm, 'value' each element."
    )
    seed: int | None = Field(42, description="Seed for python, numpy and torch; null: no seeding.")
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
        10, ge=1, description="How often the progress bar's loss and throughput refresh."
    )
    limit_train_batches: int | None = Field(
        None, ge=1, description="Use only this many training batches per epoch (for smoke runs)."
    )
    num_threads: int | None = Field(
        None, ge=1, description="torch.set_num_threads for CPU work; unset: torch's default."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    checkpoint_every_n_steps: int | None = Field(
        None,
        ge=1,
        description="Also write a resumable checkpoints/last.pt every this many optimizer steps "
        "within an epoch (a resumed run continues from that step); unset: at epoch ends only.",
    )
    on_nonfinite_loss: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN or inf loss or gradient: 'stop' training there (the last good checkpoint "
        "is kept), or 'skip' that batch's update and count it (train/skipped_batches).",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError(
                f"expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}"
            )
        return v


class LoaderConfig(ParamsModel):
    """DataLoader settings shared by every split."""

    batch_size: int = Field(32, ge=1, description="Training batch size.")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Batch size for validation and prediction; default: batch_size."
    )
    num_workers: int = Field(0, ge=0, description="Worker processes loading data.")
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked host memory for faster GPU copies; 'auto': on CUDA."
    )
    persistent_workers: bool = Field(
        False, description="Keep worker processes alive between epochs (needs num_workers > 0)."
    )
    prefetch_factor: int | None = Field(
        None, ge=1, description="Batches each worker loads ahead (needs num_workers > 0)."
    )
    shuffle: bool = Field(True, description="Shuffle the training split every epoch.")
    drop_last: bool = Field(False, description="Drop the last incomplete training batch.")


# -- the dynamic model ---------------------------------------------------------


def record_of(spec: BaseModel) -> ComponentRecord:
    """The registry record a validated component section was built from."""
    record = getattr(type(spec), "__torchyard_record__", None)
    if record is None:
        raise TypeError(f"{type(spec).__name__} is not a component section")
    return record


def build_config_model(registry: Registry) -> type[BaseModel]:
    """The pydantic model of a run config with every registered component."""
    broken: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for section, kind in COMPONENT_SECTIONS.items():
        component = _component_type(registry, kind, broken)
        if section == "metrics":
            fields[section] = (
                list[component],  # type: ignore[valid-type]
                Field(default_factory=list, description="Metrics computed on validation."),
            )
        elif section in _OPTIONAL_SECTIONS:
            fields[section] = (component | None, Field(None, description=f"The {kind}."))
        else:
            fields[section] = (component, Field(description=f"The {kind}."))
    transform = _component_type(registry, "transform", broken)
    transforms = create_model(
        "TransformsConfig",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Per-sample transforms, composed in order and given to the dataset.",
        train=(list[transform], Field(default_factory=list, description="Applied to training samples.")),  # type: ignore[valid-type]
        eval=(
            list[transform],  # type: ignore[valid-type]
            Field(default_factory=list, description="Applied to validation and test samples."),
        ),
    )
    model = create_model(
        "RunConfig",
        __config__=ConfigDict(extra="forbid", protected_namespaces=()),
        __doc__="A torchyard run: components by name, and how to train them.",
        requires=(
            list[str],
            Field(
                default_factory=list,
                description="Plugin distributions this config needs, e.g. 'torchyard-x>=0.1'.",
            ),
        ),
        trainer=(TrainerConfig, Field(default_factory=TrainerConfig)),
        loader=(LoaderConfig, Field(default_factory=LoaderConfig)),
        split=(
            SplitConfig | None,
            Field(None, description="Carve validation out of the labelled data: holdout or k-fold."),
        ),
        transforms=(transforms, Field(default_factory=transforms)),
        tta=(
            list[list[transform]],  # type: ignore[valid-type]
            Field(
                default_factory=list,
                description="Test-time augmentation: each item a list of transforms applied to "
                "the input batch; the class probabilities of the plain batch and of every view "
                "are averaged.",
            ),
        ),
        **fields,
    )
    model.__torchyard_broken__ = broken
    return model


_SECTION_MODELS: dict[int, tuple[ComponentRecord, type[BaseModel]]] = {}


def section_model(record: ComponentRecord) -> type[BaseModel]:
    """The model of a config section naming ``record``: its params, ``name``,
    and the keys torchyard adds for its kind (``log_as``, ``warmup``, ...).

    :raises PluginError: the component's params schema cannot be built.
    """
    cached = _SECTION_MODELS.get(id(record))
    if cached is not None and cached[0] is record:
        return cached[1]
    params = record.params
    extra: dict[str, Any] = {
        "name": (
            str,
            Field(description=record.summary or None, json_schema_extra={"const": record.name}),
        ),
        **_section_fields(record, params),
    }
    wrapper = create_model(
        f"{record.kind}:{record.qualified_name}",
        __base__=params,
        __doc__=record.summary or None,
        **extra,
    )
    wrapper.__torchyard_record__ = record  # type: ignore[attr-defined]
    _SECTION_MODELS[id(record)] = (record, wrapper)
    return wrapper


def _component_type(registry: Registry, kind: str, broken: dict[str, str]) -> Any:
    members: list[Any] = []
    for record in registry.records(kind):
        try:
            wrapper = section_model(record)
        except TorchyardError as e:
            broken[record.qualified_name] = str(e)
            continue
        members.append(Annotated[wrapper, Tag(record.qualified_name)])

    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
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
                registry.get(kind, str(name))
            except TorchyardError as e:
                raise ValueError(str(e)) from None
            raise ValueError(f"{kind} {name!r} is unusable")

        return Annotated[Any, AfterValidator(refuse), Field(json_schema_extra={"not": {}})]
    union = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return Annotated[union, Discriminator(tag)]


def _section_fields(record: ComponentRecord, params: type[BaseModel]) -> dict[str, Any]:
    """Keys a config section accepts beyond the component's own parameters."""
    from torchyard.optim import Duration, ParamGroupConfig, WarmupConfig

    if record.kind == "metric":
        return {
            "log_as": (
                str | None,
                Field(None, description="Key to log under (val/<log_as>); default: the name."),
            )
        }
    if record.kind == "optimizer":
        return {
            "param_groups": (
                list[ParamGroupConfig],
                Field(
                    default_factory=list,
                    description="Per-module settings by module-name prefix (lr, lr_scale, "
                    "weight_decay, freeze); the first matching prefix wins.",
                ),
            ),
            "no_weight_decay_on_bias_and_norm": (
                bool,
                Field(False, description="No weight decay on biases and normalization weights."),
            ),
        }
    if record.kind != "scheduler":
        return {}
    fields: dict[str, Any] = {
        "warmup": (
            WarmupConfig | None,
            Field(None, description="Linear LR warmup before this scheduler starts."),
        ),
        "interval": (
            Literal["epoch", "step"] | None,
            Field(
                None,
                description="Step per epoch or per optimizer step; default: the scheduler's "
                "own, or per step when a duration is given in steps.",
            ),
        ),
    }
    for name in record.options.get("durations", ()):
        info = params.model_fields.get(name)
        if info is None:
            continue
        is_list = "list" in str(info.annotation)
        annotation: Any = list[Duration] if is_list else Duration
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
    data: Mapping[str, Any], registry: Registry, model: type[BaseModel] | None = None
) -> BaseModel:
    """Validate a raw config; raise :class:`ConfigError` with every problem."""
    requires = data.get("requires")
    if isinstance(requires, list) and all(isinstance(r, str) for r in requires):
        # first: without its plugins, the rest of the config cannot make sense
        missing = missing_requirements(requires)
        if missing:
            raise ConfigError(*missing)
    model = model or build_config_model(registry)
    try:
        config = model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(*_format_errors(e, data, registry, model)) from None
    except (TypeError, ValueError, ArithmeticError) as e:
        # a component's schema whose constraint cannot apply to the value given
        # (e.g. '> 0' on a list): still the config's value, still one line
        raise ConfigError(f"<config>: a component's params schema rejected a value: {e}") from None
    problems = _cross_checks(config)
    if problems:
        raise ConfigError(*problems)
    return config


def load_config(
    path: str | Path, registry: Registry, overrides: Sequence[str] = ()
) -> BaseModel:
    """Read, override and validate a config file.

    Relative paths in component params typed as ``pathlib.Path`` are
    resolved against the config file's directory, so a config works from
    any current directory.
    """
    data = apply_overrides(read_config_file(path), overrides)
    config = validate_config(data, registry)
    resolve_paths(config, Path(path).resolve().parent)
    return config


def resolve_paths(config: Any, base: Path) -> None:
    """Make relative ``Path`` params of every component absolute against ``base``."""
    specs: list[Any] = []
    for section in COMPONENT_SECTIONS:
        value = getattr(config, section, None)
        specs += value if isinstance(value, list) else [value]
    for split in ("train", "eval"):
        specs += getattr(config.transforms, split)
    for spec in specs:
        if spec is None:
            continue
        for name, info in type(spec).model_fields.items():
            if "Path" not in str(info.annotation):
                continue
            value = getattr(spec, name)
            if isinstance(value, Path) and not value.is_absolute():
                setattr(spec, name, base / value)
            elif isinstance(value, list):
                setattr(spec, name, [base / v if isinstance(v, Path) and not v.is_absolute() else v for v in value])


def monitored_keys(config: Any) -> list[str]:
    """Every value a run with this config logs, in order."""
    keys = ["train/loss", "val/loss"]
    keys += [f"val/{metric_key(m)}" for m in config.metrics]
    return keys


def metric_key(spec: Any) -> str:
    return spec.log_as or record_of(spec).name


def resolve_monitor(config: Any) -> str:
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


def _cross_checks(config: Any) -> list[str]:
    problems: list[str] = []
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
    loader = config.loader
    if loader.num_workers == 0 and loader.persistent_workers:
        problems.append("loader.persistent_workers: needs num_workers > 0")
    if loader.num_workers == 0 and loader.prefetch_factor is not None:
        problems.append("loader.prefetch_factor: needs num_workers > 0")
    return problems


# -- error messages ------------------------------------------------------------


def _format_errors(
    error: ValidationError, data: Mapping[str, Any], registry: Registry, model: type[BaseModel]
) -> list[str]:
    broken: dict[str, str] = getattr(model, "__torchyard_broken__", {})
    tags = {r.qualified_name for r in registry.records()}
    lines: list[str] = []
    for err in error.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in tags)]
        path = ".".join(loc) or "<config>"
        kind = _kind_at(loc)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found") and kind:
            lines.append(_component_name_problem(path, kind, _get(data, loc), registry, broken))
            continue
        if err["type"] == "extra_forbidden":
            key = loc[-1]
            allowed = _allowed_keys(loc[:-1], data, registry, model)
            lines.append(f"{path}: unknown key{did_you_mean(key, allowed)}")
            continue
        lines.append(f"{path}: {_describe(err)}")
    return list(dict.fromkeys(lines))


def _kind_at(loc: Sequence[str]) -> str | None:
    """The component kind of the section at ``loc``, if it is one."""
    if not loc:
        return None
    if loc[0] == "transforms":
        return "transform" if len(loc) >= 3 else None
    if loc[0] == "tta":
        return "transform" if len(loc) >= 3 else None
    return COMPONENT_SECTIONS.get(loc[0])


def _allowed_keys(
    loc: Sequence[str], data: Any, registry: Registry, model: type[BaseModel]
) -> list[str]:
    """The keys allowed at ``loc``, for did-you-mean on unknown keys."""
    if not loc:
        return list(model.model_fields)
    section = loc[0]
    if section in ("trainer", "loader"):
        target: type[BaseModel] = TrainerConfig if section == "trainer" else LoaderConfig
        if len(loc) > 1 and loc[1] == "early_stopping":
            target = EarlyStopping
        return list(target.model_fields)
    if section == "split":
        return list(SplitConfig.model_fields)
    if section == "transforms" and len(loc) == 1:
        return ["train", "eval"]
    kind = _kind_at(loc)
    spec = _get(data, loc)
    if kind is None or not isinstance(spec, Mapping):
        return []
    try:
        fields = section_model(registry.get(kind, str(spec.get("name")))).model_fields
    except TorchyardError:
        return []
    return [f.alias or n for n, f in fields.items()]


def _component_name_problem(
    path: str, kind: str, value: Any, registry: Registry, broken: Mapping[str, str]
) -> str:
    if not isinstance(value, Mapping):
        return f"{path}: expected a mapping like {{name: ..., <params>}}, got {_show(value)}"
    name = value.get("name")
    if name is None:
        return f"{path}: missing 'name' (which {kind} to use)"
    if not isinstance(name, str):
        return f"{path}.name: expected a {kind} name, got {_show(name)}"
    try:
        record = registry.get(kind, name)
    except TorchyardError as e:
        return f"{path}: {e}"
    return f"{path}: {broken.get(record.qualified_name, f'{kind} {name!r} is unusable')}"


def _get(data: Any, loc: Sequence[str]) -> Any:
    for part in loc:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


_NUMBER_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_EXPECTED = {
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
    "finite_number": "a finite number",
}


def _describe(err: Mapping[str, Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required, but missing"
    if kind in _NUMBER_BOUNDS:
        bound = ctx.get(_BOUND_KEYS[kind])
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"expected a number {_NUMBER_BOUNDS[kind]} {bound}, got {_show(value)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the allowed values')}, got {_show(value)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_show(value)}"
    if kind in ("too_short", "too_long"):
        return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(value)}"
    if kind == "value_error":
        return f"{ctx.get('error', err['msg'])}"
    return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(value)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    text = json.dumps(value, default=str) if value is not None else "null"
    return text if len(text) <= 60 else text[:57] + "..."
