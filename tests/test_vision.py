"""torchvision classification models as components: heads, weights, channels, sizes.

Small models only (resnet18, mobilenet_v3_small, efficientnet_b0, squeezenet1_1)
on small inputs, on the CPU; no test touches the network.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from pydantic import ValidationError

from torchyard.errors import ConfigError
from torchyard.plugins import PluginHost
from torchyard_builtins.vision import FAMILIES, MODELS, RENAMED, head_of, torchvision_name
from torchyard_builtins.vision.factory import _builder_kwargs
from torchyard_builtins.vision.surgery import FitInput
from torchyard_builtins.vision.weights import (
    cached_weights_path,
    load_state_dict,
    torchvision_weights,
)

from .conftest import ROOT

SMALL = ["resnet18", "mobilenet_v3_small", "efficientnet_b0"]


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost()
    host.load_entrypoints()
    return host


def build(host: PluginHost, name: str, **params: Any) -> torch.nn.Module:
    """Build through the registry, with validated params, as a run does."""
    record = host.registry.get("model", name)
    validated = record.params.model_validate(params)
    kwargs = {k: getattr(validated, k) for k in validated.model_fields_set}
    return record.build(**kwargs)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download or connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; returns its checkpoints directory."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def test_the_static_list_is_every_torchvision_classification_model() -> None:
    listed = {torchvision_name(name) for name in MODELS}
    assert listed == set(torchvision.models.list_models(module=torchvision.models))
    assert set(MODELS.values()) == set(FAMILIES)


def test_every_name_resolves_to_itself(host: PluginHost) -> None:
    """torchyard ignores '_' in names: no two models may collide (hence RENAMED)."""
    for name in MODELS:
        assert host.registry.get("model", name).name == name
    assert "regnet_x_1_6gf" in host.registry.get("model", "regnet_x_1600mf").description
    assert "regnet_x_1600mf" in host.registry.get("model", "regnet_x_16gf").description
    assert set(RENAMED.values()) <= set(torchvision.models.list_models(module=torchvision.models))


def test_listing_the_models_imports_neither_torch_nor_torchvision() -> None:
    code = (
        "import sys\n"
        "import torchyard_builtins.vision as v, torchyard_builtins.transforms as t\n"
        "v.register_models(lambda *a, **k: None)\n"
        "t.register_transforms(lambda *a, **k: None)\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", SMALL)
def test_builds_for_the_class_count(host: PluginHost, name: str) -> None:
    model = build(host, name, num_classes=18).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 18)
    head = model.get_submodule(head_of(name))
    assert [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)][-1] == 18


@pytest.mark.parametrize("name", SMALL)
def test_freeze_backbone_leaves_only_the_head_trainable(host: PluginHost, name: str) -> None:
    model = build(host, name, num_classes=18, freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = head_of(name)
    assert trainable and all(n.startswith(head + ".") for n in trainable)
    assert trainable == {n for n, _ in model.get_submodule(head).named_parameters(prefix=head)}
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_the_head_is_named_in_the_params(host: PluginHost) -> None:
    for name, head in (
        ("resnet18", "fc"),
        ("efficientnet_b0", "classifier"),
        ("vit_b_16", "heads"),
    ):
        fields = host.registry.get("model", name).params.model_fields
        assert f"'{head}'" in (fields["freeze_backbone"].description or "")
        assert f"head: {head}" in host.registry.get("model", name).description


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_other_input_channels_adapt_the_first_conv(host: PluginHost, name: str) -> None:
    model = build(host, name, num_classes=5, in_channels=1).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    model = build(host, name, num_classes=5, in_channels=4).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 4, 32, 32)).shape == (2, 5)


def test_pretrained_loads_from_the_local_hub_cache(
    host: PluginHost, torch_home: Path, no_network: None
) -> None:
    member = torchvision_weights("resnet18", "DEFAULT")
    path = cached_weights_path(member.url)
    assert path == torch_home / "resnet18-f37072fd.pth"  # torchvision's own file name
    saved = torchvision.models.resnet18().state_dict()  # 1000 classes, like ImageNet's
    torch.save(saved, path)
    model = build(host, "resnet18", num_classes=18, pretrained=True)
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 18  # a fresh head for 18 classes
    # one input channel: the pretrained RGB filters are summed
    gray = build(host, "resnet18", num_classes=18, pretrained=True, in_channels=1)
    assert torch.allclose(gray.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mnasnet0_5"])  # mnasnet: versioned
def test_weights_path_keeps_a_head_of_the_same_size(
    host: PluginHost, tmp_path: Path, no_network: None, name: str
) -> None:
    trained = torchvision.models.get_model(name, num_classes=18)
    path = tmp_path / "finetuned.pt"
    torch.save({"format": "torchyard-checkpoint", "model": trained.state_dict()}, path)
    model = build(host, name, num_classes=18, weights_path=str(path))
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_missing_weights_name_the_path_and_never_download(
    host: PluginHost, torch_home: Path, no_network: None
) -> None:
    with pytest.raises(ConfigError) as info:
        build(host, "efficientnet_b0", num_classes=18, pretrained=True)
    message = str(info.value)
    assert str(torch_home / "efficientnet_b0_rwightman-7f5810bc.pth") in message
    assert "never downloads" in message and "weights_path" in message
    assert "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth" in message
    with pytest.raises(ConfigError, match="file not found"):
        build(host, "resnet18", num_classes=18, weights_path=str(torch_home / "nope.pt"))


def test_bad_weights_are_config_errors(host: PluginHost, tmp_path: Path, torch_home: Path) -> None:
    with pytest.raises(ConfigError, match="unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        build(host, "resnet18", num_classes=3, pretrained=True, weights="IMAGENET9K")
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), other)
    with pytest.raises(ConfigError, match="do not fit the model"):
        build(host, "resnet18", num_classes=3, weights_path=str(other))
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, unsafe)  # a pickled module: refused
    with pytest.raises(ConfigError, match="weights_only=True"):
        build(host, "resnet18", num_classes=3, weights_path=str(unsafe))


def test_the_schema_rejects_unknown_params(host: PluginHost) -> None:
    with pytest.raises(ValidationError):
        host.registry.get("model", "resnet18").params.model_validate({"num_classes": 0})
    with pytest.raises(ValidationError):
        host.registry.get("model", "resnet18").params.model_validate({"dropout": 0.1})


def test_small_inputs_are_fitted_to_the_architecture(host: PluginHost) -> None:
    with pytest.warns(UserWarning, match="16x16 are resized to 17x17"):
        model = build(host, "squeezenet1_1", num_classes=4, input_shape=[3, 16, 16]).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    strict = build(host, "squeezenet1_1", num_classes=4, fit_input=False).eval()
    with pytest.raises(RuntimeError), torch.inference_mode():
        strict(torch.randn(2, 3, 16, 16))


def test_fit_input_sizes() -> None:
    assert FitInput(minimum=32).size_for(16, 24) == (32, 48)
    assert FitInput(minimum=32).size_for(40, 64) == (40, 64)
    assert FitInput(exact=(224, 224)).size_for(32, 32) == (224, 224)


def test_builder_arguments_per_family() -> None:
    kwargs, exact = _builder_kwargs("vit_b_16", "vit", 10, 3, (32, 32), None)
    assert kwargs["image_size"] == 32 and exact == (32, 32)
    kwargs, exact = _builder_kwargs("vit_b_32", "vit", 10, 3, (16, 16), None)
    assert kwargs["image_size"] == 32 and exact == (32, 32)
    pretrained = {"encoder.pos_embedding": torch.zeros(1, 197, 768)}  # 14x14 patches + class token
    kwargs, exact = _builder_kwargs("vit_b_16", "vit", 10, 3, (32, 32), pretrained)
    assert kwargs["image_size"] == 224 and exact == (224, 224)
    kwargs, _ = _builder_kwargs("googlenet", "googlenet", 10, 3, None, pretrained)
    assert kwargs["aux_logits"] is False and kwargs["transform_input"] is True
    kwargs, _ = _builder_kwargs("inception_v3", "inception", 10, 1, None, None)
    assert kwargs["aux_logits"] is False and kwargs["transform_input"] is False
    _, exact = _builder_kwargs("maxvit_t", "maxvit", 10, 3, (64, 64), None)
    assert exact == (224, 224)


def test_old_densenet_keys_and_wrapped_state_dicts_are_read(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    weight = torch.ones(3)
    torch.save(
        {"state_dict": {"module.features.denseblock1.denselayer1.norm.1.weight": weight}}, path
    )
    assert list(load_state_dict(path, "densenet121")) == [
        "features.denseblock1.denselayer1.norm1.weight"
    ]
