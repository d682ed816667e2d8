"""torchyard.testing: the kit plugin authors run; the built-ins pass it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import torchyard
from torchyard.plugins import PluginHost, get_host
from torchyard.testing import check_component, check_plugin, random_batch

from .plugins import extra_components

BUILTINS = get_host().registry.records()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "info.csv"
    path.write_text("id,ans\n" + "".join(f"{i},\n" for i in range(6)))
    return path


# components that need files on disk: their own test files run the kit on generated data
# (tests/test_images.py, tests/test_tabular.py, tests/test_ranking.py)
NEED_FILES = {"dataset:image_csv", "dataset:image_folder", "dataset:table_csv", "dataset:ranking_csv"}
# the 80 torchvision models take minutes to build on 2 cores; a family sample
# runs here, the whole list in tests/test_vision.py's name checks
VISION_SAMPLE = {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5", "squeezenet1_1"}


@pytest.mark.parametrize("record", BUILTINS, ids=lambda r: f"{r.kind}:{r.name}")
def test_every_builtin_passes_the_kit(record: Any, template: Path) -> None:
    if f"{record.kind}:{record.name}" in NEED_FILES:
        pytest.skip("needs data files: covered by the dataset's own tests")
    if record.plugin == "builtin-vision" and record.name not in VISION_SAMPLE:
        pytest.skip("vision models: a sample of the families runs (speed)")
    params = {
        "writer:template": {"path": str(template)},
        "scheduler:exponential_lr": {"gamma": 0.9},  # torch has no default
        # transforms whose parameters torchvision leaves without a default
        "transform:resize": {"size": 8},
        "transform:center_crop": {"size": 8},
        "transform:random_crop": {"size": 8},
        "transform:random_resized_crop": {"size": 8},
        "transform:random_rotation": {"degrees": 10},
        "transform:random_affine": {"degrees": 10},
        "transform:pad": {"padding": 2},
        "transform:random_resize": {"min_size": 8, "max_size": 24},
        "transform:gaussian_blur": {"kernel_size": 3},
        "transform:elastic_transform": {"sigma": 2.0},  # the default's kernel exceeds 16x16
        "transform:random_posterize": {"bits": 4},
        "transform:random_solarize": {"threshold": 128},
        "transform:random_adjust_sharpness": {"sharpness_factor": 2.0},
        "transform:jpeg": {"quality": 50},
        "transform:normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "task:multihead": {"heads": {"mask": {"classes": 3}, "age": {"task": "regression"}}},
        "model:timm": {"arch": "test_resnet"},  # timm's smallest: arch has no default
    }.get(f"{record.kind}:{record.name}")
    check_component(record, params)


def test_a_good_plugin_passes() -> None:
    records = check_plugin(extra_components, params={})
    assert {r.name for r in records} == {"scaled_mse", "focal_lite"}


def test_the_kit_reports_every_failure() -> None:
    import torch

    def exploding(**_: Any) -> Any:
        return lambda outputs, targets: (outputs * float("inf")).sum()

    def not_a_scalar(**_: Any) -> Any:
        return lambda outputs, targets: outputs

    class Bad:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("exploding", exploding)
            register("not_a_scalar", not_a_scalar)

        @torchyard.hookimpl
        def register_models(self, register: Any) -> None:
            register("wrong_shape", lambda num_classes=3: torch.nn.Flatten())

    with pytest.raises(AssertionError) as info:
        check_plugin(Bad(), name="bad")
    message = str(info.value)
    assert "loss 'exploding' (bad): the loss is nan" in message
    assert "loss 'not_a_scalar' (bad): the loss is not a scalar tensor" in message
    assert "model 'wrong_shape' (bad): outputs of shape (2, 768)" in message


def test_a_plugin_that_fails_to_load_fails_the_kit() -> None:
    from .plugins import raising_hook

    with pytest.raises(AssertionError, match="failed to load: register_losses raised RuntimeError"):
        check_plugin(raising_hook)


def test_a_metric_that_forgets_reset_is_caught(empty_host: PluginHost) -> None:
    import torch

    from torchyard.metric import Metric

    class Sticky(Metric):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
            self.seen += len(targets)

        def compute(self) -> float:
            return float(self.seen)

    class Plugin:
        @torchyard.hookimpl
        def register_metrics(self, register: Any) -> None:
            register("sticky", Sticky)

    with pytest.raises(AssertionError, match="reset\\(\\) does not start over"):
        check_plugin(Plugin(), name="sticky-plugin")


@pytest.mark.parametrize("kind", ["classification", "binary", "multilabel", "regression", "ranking", "classes", "values"])
def test_random_batches_have_matching_lengths(kind: str) -> None:
    outputs, targets = random_batch(kind, n=10)
    assert len(outputs) == len(targets) == 10


def test_a_kind_without_its_own_check_gets_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table of kinds names each kind's check; without one, the kit
    checks that the component builds."""
    import dataclasses

    from torchyard import kinds

    built: list[str] = []

    def factory(label: str = "x") -> Any:
        built.append(label)
        return object()

    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("anything", factory)
            register("nothing", lambda: None)

    table = tuple(dataclasses.replace(k, conformance=None) if k.name == "writer" else k for k in kinds.TABLE)
    monkeypatch.setattr(kinds, "TABLE", table)
    with pytest.raises(AssertionError) as info:
        check_plugin(Plugin(), name="generic")
    assert built == ["x"]  # 'anything' built, and passed: it writes nothing
    assert str(info.value) == "writer 'nothing' (generic): returned None"


def test_the_kit_catches_a_builtin_name_a_reserved_parameter_and_heavy_imports() -> None:
    from tests.plugins import duplicate_ce, heavy_registration, reserved_param

    with pytest.raises(AssertionError, match=r"loss 'cross_entropy': plugin builtin-losses \(torchyard [^)]*\) has that name too"):
        check_plugin(duplicate_ce, name="dup")
    with pytest.raises(AssertionError, match="its parameter 'log_as' is a key torchyard adds"):
        check_plugin(reserved_param, name="reserved")
    with pytest.raises(AssertionError, match=r"registration imports torch \(\d+ ms\)"):
        check_plugin(heavy_registration, name="heavy")
