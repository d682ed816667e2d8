"""Params schemas derived from factory signatures."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
import torch
from pydantic import BaseModel, Field, ValidationError

import torchyard
from torchyard.params import derive_params, params_to_kwargs, parse_param_docs


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {n: f for n, f in model.model_fields.items()}


def test_types_defaults_and_required() -> None:
    def factory(size: int, rate: float = 0.5, mode: Literal["a", "b"] = "a", tag: str | None = None) -> None:
        """A factory."""

    model = derive_params(factory, model_name="f")
    fields = _fields(model)
    assert fields["size"].is_required()
    assert fields["rate"].default == 0.5
    assert model(size=3).mode == "a"
    with pytest.raises(ValidationError):
        model(size=3, mode="c")
    with pytest.raises(ValidationError):
        model()  # size is required


def test_unknown_keys_are_errors() -> None:
    def factory(lr: float = 0.1) -> None: ...

    model = derive_params(factory, model_name="f")
    with pytest.raises(ValidationError) as info:
        model(lerning_rate=0.2)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_descriptions_from_google_and_sphinx_docstrings() -> None:
    def google(alpha: float = 1.0, beta: int = 2) -> None:
        """Summary.

        Args:
            alpha (float): the first
                parameter, on two lines.
            beta: the second one.

        Returns:
            nothing.
        """

    def sphinx(alpha: float = 1.0) -> None:
        """Summary.

        :param alpha: the sphinx way.
        :returns: nothing.
        """

    g = _fields(derive_params(google, model_name="g"))
    assert g["alpha"].description == "the first parameter, on two lines."
    assert g["beta"].description == "the second one."
    assert _fields(derive_params(sphinx, model_name="s"))["alpha"].description == "the sphinx way."


def test_annotated_field_constraints_are_kept() -> None:
    def factory(gamma: Annotated[float, Field(ge=0, description="Focusing.")] = 2.0) -> None: ...

    model = derive_params(factory, model_name="f")
    assert _fields(model)["gamma"].description == "Focusing."
    with pytest.raises(ValidationError):
        model(gamma=-1)


def test_tensor_types_are_dropped_from_unions() -> None:
    def factory(lr: float | torch.Tensor = 1e-3, weight: torch.Tensor | None = None) -> None: ...

    model = derive_params(factory, model_name="f")
    assert model(lr="1e-3").lr == pytest.approx(1e-3)  # YAML's 1e-3 is a string
    assert "weight" not in model.model_fields  # no config can hold a tensor


def test_required_parameter_of_unsupported_type_is_reported() -> None:
    def factory(module: torch.nn.Module) -> None: ...

    with pytest.raises(TypeError, match="required parameter 'module' has a type a config cannot hold"):
        derive_params(factory, model_name="f")


def test_skip_first_for_optimizers() -> None:
    model = derive_params(torch.optim.AdamW, model_name="adamw", skip_first=True)
    fields = _fields(model)
    assert "params" not in fields
    assert fields["lr"].default == pytest.approx(1e-3)
    assert model(betas=[0.8, 0.9]).betas == (0.8, 0.9)
    assert fields["lr"].description  # from torch's own docstring


def test_refine_adds_constraints_and_hides() -> None:
    model = derive_params(
        torch.optim.SGD,
        model_name="sgd",
        skip_first=True,
        refine={"lr": Field(gt=0), "foreach": None},
    )
    assert "foreach" not in model.model_fields
    with pytest.raises(ValidationError):
        model(lr=-1)


def test_refine_must_name_real_parameters() -> None:
    with pytest.raises(TypeError, match="refine names unknown parameters: nope"):
        derive_params(torch.optim.SGD, model_name="sgd", skip_first=True, refine={"nope": Field()})


def test_reserved_names_are_aliased() -> None:
    def factory(schema: str = "x", copy: bool = True) -> None: ...

    model = derive_params(factory, model_name="f")
    instance = model.model_validate({"schema": "y"})
    assert params_to_kwargs(instance) == {"schema": "y", "copy": True}


def test_names_a_config_section_keeps_for_itself_are_aliased(builtin_host: Any) -> None:
    """A parameter called ``record`` would clash with ComponentSpec.record."""
    from torchyard.config import ComponentSpec, section_model
    from torchyard.params import SECTION_ATTRIBUTES

    own = {n for n in dir(ComponentSpec) if not n.startswith("_")} - set(dir(BaseModel)) - set(ComponentSpec.model_fields)
    assert own | ComponentSpec.__class_vars__ == SECTION_ATTRIBUTES

    def factory(record: str = "x", factory_kwargs: int = 1) -> None: ...

    model = derive_params(factory, model_name="f")
    assert set(model.model_fields) == {"record_", "factory_kwargs_"}
    instance = model.model_validate({"record": "y"})
    assert params_to_kwargs(instance) == {"record": "y", "factory_kwargs": 1}

    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("recorder", factory)

    builtin_host.add_plugin(Plugin(), "records")
    record = builtin_host.registry.get("writer", "recorder")
    spec = section_model(record).model_validate({"name": "recorder", "record": "z"})
    assert spec.record is record
    assert spec.factory_kwargs() == {"record": "z", "factory_kwargs": 1}


def test_an_explicit_params_model_may_not_use_a_reserved_name(builtin_host: Any) -> None:
    from torchyard.config import section_model
    from torchyard.errors import PluginError

    class Params(BaseModel):
        record: int = 1

    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("clash", lambda record=1: None, params=Params)

    builtin_host.add_plugin(Plugin(), "clash")
    with pytest.raises(PluginError, match="has a field named 'record', which a config section reserves"):
        section_model(builtin_host.registry.get("writer", "clash"))


def test_params_to_kwargs_keeps_python_types() -> None:
    def factory(betas: tuple[float, float] = (0.9, 0.99)) -> None: ...

    instance = derive_params(factory, model_name="f")(betas=[0.5, 0.6])
    assert params_to_kwargs(instance) == {"betas": (0.5, 0.6)}


def test_parse_param_docs_ignores_other_sections() -> None:
    doc = "Summary.\n\nArgs:\n    a: first\n\nExample:\n    b: not a parameter\n"
    assert parse_param_docs(doc) == {"a": "first"}


def test_abstract_collections_become_lists() -> None:
    from collections.abc import Iterable, Sequence

    def factory(milestones: Iterable[int], sizes: Sequence[float] = (1.0,)) -> None: ...

    model = derive_params(factory, model_name="f")
    assert model(milestones=[3, 6]).milestones == [3, 6]
    with pytest.raises(ValidationError):
        model(milestones=["x"])
