"""The timm plugin: one `timm` model component, behind the `timm` extra.

Tiny architectures only (timm's `test_*` models, ~0.4 M parameters) on small
inputs, on the CPU; no test touches the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from torchyard.errors import ConfigError, UnknownComponentError
from torchyard.plugins import PluginHost
from torchyard_builtins.timm_models import MISSING

from .conftest import EXAMPLES, ROOT, fake_entry_points
from .test_cli import assert_user_error
from .test_vision import build as build_model

timm = pytest.importorskip("timm")

pytestmark = [
    # torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning per call
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The least populated class:UserWarning"),
]


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost()
    host.load_entrypoints()
    return host


def build(host: PluginHost, **params: Any) -> torch.nn.Module:
    """Build `timm` through the registry, with validated params, as a run does."""
    return build_model(host, "timm", **params)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download or connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face and torch hub caches; returns the Hugging Face one."""
    import huggingface_hub

    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return hub


def hf_cached(hub: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """Lay ``state`` out as huggingface_hub caches a download of ``repo``."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


# -- the component -------------------------------------------------------------


def test_one_component_and_every_architecture_listed(host: PluginHost, cli: Any) -> None:
    assert [r.name for r in host.registry.records("model") if r.plugin == "builtin-timm"] == ["timm"]
    assert host.plugins["builtin-timm"].status == "ok"
    shown = cli("show", "model", "timm", "--json")
    assert shown.exit_code == 0, shown.output
    arch = next(p for p in json.loads(shown.stdout)["params"] if p["name"] == "arch")
    assert arch["required"] and arch["choices"] == sorted(timm.list_models())
    text = cli("show", "model", "timm")
    assert f"arch: one of {len(timm.list_models())}" in text.stdout
    assert "convnext_tiny" in text.stdout.split() and "test_vit" in text.stdout.split()


def test_unknown_arch_is_one_line_with_did_you_mean(cli: Any, write_config: Any, digits_config: Any) -> None:
    digits_config["model"] = {"name": "timm", "arch": "resnet10tt"}
    assert_user_error(
        cli("check", write_config(digits_config)),
        "model.arch: unknown timm architecture 'resnet10tt'; did you mean 'resnet10t'",
        "torchyard show model timm",
    )
    digits_config["model"]["arch"] = "resnet18.a1_in2k"
    assert_user_error(cli("check", write_config(digits_config)), "no weights 'a1_in2k' for resnet18", "a1_in1k")
    digits_config["model"]["arch"] = "Test_ResNet"  # names are timm's, in any case
    ok = cli("check", write_config(digits_config))
    assert ok.exit_code == 0, ok.output


def test_sized_from_the_data_and_frozen_but_the_head(host: PluginHost) -> None:
    model = build(host, arch="test_resnet", num_classes=5, in_channels=1, drop_rate=0.3,
                  model_kwargs={"global_pool": "max"}).eval()  # fmt: skip
    with torch.inference_mode():
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 5)
    assert model.drop_rate == 0.3 and model.global_pool.pool_type == "max"
    with pytest.raises(ValueError, match="num_classes are set by the component's own parameters"):
        build(host, arch="test_resnet", num_classes=5, model_kwargs={"num_classes": 3})
    for arch, head in (("test_convnext", "head.fc"), ("test_vit", "head"), ("test_efficientnet", "classifier")):
        model = build(host, arch=arch, num_classes=4, input_shape=[3, 32, 32], freeze_backbone=True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {n for n, _ in model.get_submodule(head).named_parameters(prefix=head)}, arch
        model(torch.randn(2, 3, 32, 32)).sum().backward()  # ViT: built for 32x32, not its 160x160


def test_a_weights_file_loads_around_a_new_head_and_channels(host: PluginHost, tmp_path: Path, no_network: None) -> None:
    saved = timm.create_model("test_resnet").state_dict()  # 1000 classes, RGB: like ImageNet weights
    path = tmp_path / "weights.safetensors"
    save_file(saved, path)
    model = build(host, arch="test_resnet", num_classes=5, in_channels=1, weights_path=str(path))
    state = model.state_dict()
    assert torch.allclose(state["conv1.0.weight"], saved["conv1.0.weight"].sum(1, keepdim=True))
    assert torch.equal(state["layer4.0.conv2.weight"], saved["layer4.0.conv2.weight"])
    assert state["fc.weight"].shape == (5, saved["fc.weight"].shape[1])  # a fresh head
    # a torchyard checkpoint of the same classes keeps its head
    trained = timm.create_model("test_resnet", num_classes=5).state_dict()
    torch.save({"format": "torchyard-checkpoint", "model": trained}, tmp_path / "best.pt")
    model = build(host, arch="test_resnet", num_classes=5, weights_path=str(tmp_path / "best.pt"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    save_file(timm.create_model("test_convnext").state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="do not fit the model"):
        build(host, arch="test_resnet", num_classes=5, weights_path=str(tmp_path / "other.safetensors"))


def test_pretrained_comes_from_the_local_cache_only(host: PluginHost, caches: Path, no_network: None) -> None:
    with pytest.raises(ConfigError) as info:
        build(host, arch="test_resnet", num_classes=5, pretrained=True)
    message = str(info.value)
    assert "never downloads" in message and "weights_path" in message
    assert str(caches / "models--timm--test_resnet.r160_in1k") in message
    assert "timm.create_model('test_resnet.r160_in1k', pretrained=True)" in message
    saved = timm.create_model("test_resnet").state_dict()
    hf_cached(caches, "timm/test_resnet.r160_in1k", saved)
    model = build(host, arch="test_resnet", num_classes=5, pretrained=True)
    assert torch.equal(model.state_dict()["layer1.0.bn1.running_var"], saved["layer1.0.bn1.running_var"])
    # weights timm fetches by URL: the torch hub cache, under the URL's file name
    from torchyard_builtins.vision.weights import cached_weights_path

    url = timm.models.get_pretrained_cfg("resnet10t").url
    torch_file = cached_weights_path(url)
    assert torch_file.parent == caches.parents[1] / "torch" / "hub" / "checkpoints"
    torch_file.parent.mkdir(parents=True)
    saved = timm.create_model("resnet10t").state_dict()
    torch.save(saved, torch_file)
    model = build(host, arch="resnet10t", num_classes=5, pretrained=True)
    assert torch.equal(model.state_dict()["layer4.0.conv1.weight"], saved["layer4.0.conv1.weight"])


# -- without timm --------------------------------------------------------------


def test_without_timm_the_plugin_is_unavailable_and_nothing_else_changes(
    monkeypatch: pytest.MonkeyPatch, cli: Any, write_config: Any, digits_config: Any
) -> None:
    with_timm = PluginHost()
    with_timm.load_entrypoints()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "timm" else real(name, *a, **k)
    )
    host = PluginHost()
    host.load_entrypoints()
    info = host.plugins["builtin-timm"]
    assert (info.status, info.error, info.hint) == ("unavailable", MISSING, None)
    others = {n: p.status for n, p in host.plugins.items() if n != "builtin-timm"}
    assert others == {n: p.status for n, p in with_timm.plugins.items() if n != "builtin-timm"}
    assert [r.qualified_name for r in host.registry.records()] == [
        r.qualified_name for r in with_timm.registry.records() if r.name != "timm"
    ]
    with pytest.raises(UnknownComponentError, match=r"plugin 'builtin-timm', which is unavailable: .*torchyard\[timm\]"):
        host.registry.get("model", "timm")

    listed = cli("plugins")
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines() if "builtin-timm" in line)
    assert "unavailable" in row and "failed" not in listed.stdout
    as_json = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert as_json["builtin-timm"]["status"] == "unavailable"
    plain = cli("list")
    assert plain.exit_code == 0 and plain.stderr == "" and "resnet18" in plain.stdout
    config = write_config(digits_config)
    assert cli("check", config).exit_code == 0
    digits_config["model"] = {"name": "timm", "arch": "resnet18"}
    assert_user_error(cli("check", write_config(digits_config, "timm.yaml")), "pip install 'torchyard[timm]'")


def test_a_plugin_may_be_unavailable_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mechanism is generic: any plugin may raise PluginUnavailable, also on import."""
    (tmp_path / "needs_x.py").write_text("import torchyard\nraise torchyard.PluginUnavailable('x is not installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, {"needs-x": "needs_x"})
    host = PluginHost()
    host.load_entrypoints()
    assert (host.plugins["needs-x"].status, host.plugins["needs-x"].error) == ("unavailable", "x is not installed")
    assert "needs-x" not in {f.name for f in host.registry.failed}  # no failure: no warning


def test_listing_imports_neither_torch_nor_timm(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from torchyard.cli import app\n"
        "for args in (['list'], ['plugins'], ['list', 'model']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'timm', 'huggingface_hub') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "builtin-timm" in done.stdout and " timm " in done.stdout


# -- end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .test_images import _example_generator

    out = tmp_path_factory.mktemp("mask")
    _example_generator().generate(out, people=12, seed=0, size=16)
    return out


def mask_timm_config(data: Path) -> dict[str, Any]:
    """examples/mask_timm.yaml, pointed at ``data`` and made tiny."""
    config = yaml.safe_load((EXAMPLES / "mask_timm.yaml").read_text())
    config["data"].update(csv=str(data / "train" / "train.csv"), root=str(data / "train" / "images"),
                          test_csv=str(data / "eval" / "info.csv"), test_root=str(data / "eval" / "images"),
                          image_size=16)  # fmt: skip
    config["writer"]["path"] = str(data / "eval" / "info.csv")
    config["split"]["val_fraction"] = 0.25
    config["model"]["arch"] = "test_resnet"
    config["trainer"].update(max_epochs=1, progress=False)
    return config


@pytest.mark.slow
def test_mask_timm_example_trains_and_predicts(mask_data: Path, cli: Any, write_config: Any, tmp_path: Path) -> None:
    shipped = yaml.safe_load((EXAMPLES / "mask_timm.yaml").read_text())
    assert shipped["model"]["name"] == "timm" and not shipped["model"].get("pretrained")
    out = tmp_path / "run"
    config = write_config(mask_timm_config(mask_data))
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert (resolved["arch"], resolved["num_classes"], resolved["in_channels"]) == ("test_resnet", 18, 3)
    submission = pd.read_csv(out / "info.csv")  # the template writer fills the competition's file
    info = pd.read_csv(mask_data / "eval" / "info.csv")
    assert submission["ImageID"].tolist() == info["ImageID"].tolist() and submission["ans"].between(0, 17).all()
    again = cli("predict", config, "--checkpoint", out, "--out", tmp_path / "p")
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p" / "info.csv"), submission)
