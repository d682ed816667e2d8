"""Batch transforms (transforms.batch): MixUp and CutMix, soft targets, the loop.

The maths is checked against its definition on batches whose samples and
targets can be told apart, the soft-target losses against hand formulas,
the loop by what the loss sees, and an exact resume part-way through an
epoch against the run that was never interrupted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

import torchyard
from torchyard.batch_transforms import BatchTransforms, check_batch_transforms, step_generator
from torchyard.checkpoint import load_checkpoint
from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.loop import Trainer
from torchyard.plugins import PluginHost
from torchyard.run import build_run
from torchyard.tasks import Task
from torchyard_builtins.tasks.labels import Binary, Multilabel
from torchyard_builtins.tasks.multihead import MultiHead
from torchyard_builtins.transforms.batch import CutMix, MixUp, mix

from .conftest import EXAMPLES
from .test_cli import assert_user_error
from .test_resume import SignalAt, _config, _interrupted_then_resumed, _run, _same_outcome

# -- the maths -------------------------------------------------------------------------


def _pairs(soft: torch.Tensor) -> tuple[float, list[int]]:
    """lam and the permutation, read back from mixed identity targets
    (row i = lam e_i + (1 - lam) e_perm(i))."""
    lam, perm = None, []
    for i, row in enumerate(soft):
        others = [j for j in range(len(row)) if j != i and row[j] > 0]
        perm.append(others[0] if others else i)
        if others:
            lam = float(row[i])
    assert lam is not None, "no sample was paired with another"
    return lam, perm


def test_mixup_blends_inputs_and_targets_with_one_lam_and_permutation() -> None:
    n = 12
    inputs, soft = torch.randn(n, 3, 5, 5), torch.eye(n)
    mixed, targets = MixUp(alpha=0.4)(inputs, soft, torch.Generator().manual_seed(3))
    lam, perm = _pairs(targets)
    assert 0 < lam < 1 and sorted(perm) == list(range(n))
    expected = lam * inputs + (1 - lam) * inputs[perm]
    torch.testing.assert_close(mixed, expected)
    torch.testing.assert_close(targets, lam * soft + (1 - lam) * soft[perm])
    torch.testing.assert_close(targets.sum(1), torch.ones(n))  # still probabilities


def test_mix_refuses_integer_inputs() -> None:
    with pytest.raises(ValueError, match="inputs must be floats"):
        mix(torch.zeros(2, 3, dtype=torch.uint8), torch.eye(2), 0.5, torch.tensor([1, 0]))


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_pastes_one_box_whose_area_is_the_targets_share(seed: int) -> None:
    n, height, width = 8, 12, 20
    inputs = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 2, height, width).clone()
    mixed, targets = CutMix(alpha=1.0)(inputs, torch.eye(n), torch.Generator().manual_seed(seed))
    pasted = mixed[:, 0] != inputs[:, 0]  # (n, H, W): pixels from another sample
    paired = [i for i in range(n) if targets[i, i] < 1]
    if not paired:
        return  # an empty box: nothing mixed
    lam, perm = _pairs(targets)
    box = pasted[paired[0]]
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    # one rectangle, the same for every sample, from the paired sample
    assert box.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    for i in paired:
        assert torch.equal(pasted[i], box)
        assert (mixed[i, :, box] == perm[i]).all()
    assert math.isclose(1 - lam, float(box.sum()) / (height * width), rel_tol=1e-6)
    torch.testing.assert_close(targets, lam * torch.eye(n) + (1 - lam) * torch.eye(n)[perm])


def test_cutmix_refuses_inputs_without_height_and_width() -> None:
    with pytest.raises(ValueError, match=r"needs image batches .* shape \(4, 6\)"):
        CutMix()(torch.zeros(4, 6), torch.eye(4), torch.Generator())


def test_p_is_the_share_of_batches_mixed() -> None:
    mixup = MixUp(alpha=1.0, p=0.3)
    inputs, soft = torch.randn(6, 4), torch.eye(6)
    mixed = sum(
        not torch.equal(mixup(inputs, soft, step_generator(0, 0, 1, i))[1], soft) for i in range(400)
    )
    assert 0.22 < mixed / 400 < 0.38
    assert torch.equal(MixUp(p=0.0)(inputs, soft, torch.Generator())[0], inputs)


# -- BatchTransforms: one per batch, seeded per step, off at the end --------------------


class _Spy:
    def __init__(self, name: str, calls: list[tuple[str, float]]) -> None:
        self.name, self.calls = name, calls

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> Any:
        self.calls.append((self.name, float(torch.rand((), generator=generator))))
        return inputs + 1, targets


def _classification(classes: int = 3) -> Task:
    task = Task()
    task.setup(classes, None)
    return task


def test_one_transform_per_batch_chosen_uniformly_and_seeded_by_seed_epoch_and_index() -> None:
    calls: list[tuple[str, float]] = []
    mixer = BatchTransforms([_Spy("a", calls), _Spy("b", calls)], _classification(), seed=7, last_epoch=3)
    inputs, targets = torch.zeros(4, 2), torch.tensor([0, 1, 2, 0])
    for index in range(200):
        mixed, soft = mixer(inputs, targets, 1, index)
    assert len(calls) == 200 and 70 < sum(name == "a" for name, _ in calls) < 130
    assert torch.equal(soft, F.one_hot(targets, 3).float())  # the task's soft targets
    # the same (seed, epoch, index): the same choice and draws; another one: others
    again = BatchTransforms([_Spy("a", calls), _Spy("b", calls)], _classification(), seed=7, last_epoch=3)
    first = list(calls)
    calls.clear()
    for index in range(200):
        again(inputs, targets, 1, index)
    assert calls == first
    calls.clear()
    again(inputs, targets, 2, 0), again(inputs, targets, 1, 1)
    other = BatchTransforms([_Spy("a", calls), _Spy("b", calls)], _classification(), seed=8, last_epoch=3)
    other(inputs, targets, 1, 0)
    assert calls[0] != first[0] and calls[1] == first[1] and calls[2] != first[0]


def test_batches_pass_unmixed_after_the_last_mixing_epoch() -> None:
    calls: list[tuple[str, float]] = []
    mixer = BatchTransforms([_Spy("a", calls)], _classification(), seed=0, last_epoch=2)
    inputs, targets = torch.zeros(2, 2), torch.tensor([0, 1])
    assert mixer(inputs, targets, 3, 0) == (inputs, targets) and calls == []
    mixer(inputs, targets, 2, 5)
    assert len(calls) == 1 and mixer.active(2) and not mixer.active(3)


# -- each task's soft targets --------------------------------------------------------------


def test_soft_targets_per_task() -> None:
    assert torch.equal(_classification(4).soft_targets(torch.tensor([3, 0])), torch.tensor([[0, 0, 0, 1.0], [1.0, 0, 0, 0]]))
    binary = Binary()
    binary.setup(2, None)
    assert torch.equal(binary.soft_targets(torch.tensor([1.0, 0.0])), torch.tensor([[1.0], [0.0]]))
    labels = torch.tensor([[1, 0, 1], [0, 0, 1]])
    assert torch.equal(Multilabel().soft_targets(labels), labels.float())


def _heads() -> MultiHead:
    task = MultiHead({"mask": {"classes": 3}, "gender": {"classes": 2}, "age": {"classes": 3}})
    task.setup(18, None)
    return task


def test_multihead_soft_targets_mix_every_head_with_the_same_lam_and_permutation() -> None:
    task = _heads()
    fused = torch.tensor([0, 17, 7, 10])  # mask * 6 + gender * 3 + age
    heads = task.head_targets(fused)
    soft = task.soft_targets(fused)
    blocks = {"mask": slice(0, 3), "gender": slice(3, 5), "age": slice(5, 8)}
    for i, name in enumerate(blocks):
        assert torch.equal(soft[:, blocks[name]], F.one_hot(heads[:, i], task.heads[name].width).float())
    lam, perm = 0.3, torch.tensor([2, 0, 3, 1])
    _, mixed = mix(torch.zeros(4, 1), soft, lam, perm)
    for i, name in enumerate(blocks):
        one_hot = F.one_hot(heads[:, i], task.heads[name].width).float()
        torch.testing.assert_close(mixed[:, blocks[name]], lam * one_hot + (1 - lam) * one_hot[perm])


def test_the_multihead_loss_passes_each_heads_soft_target_to_its_loss(builtin_host: PluginHost) -> None:
    task = _heads()
    task.heads["gender"].weight = 2.0

    def build(spec: Any, kind: str, extra: dict[str, Any], where: str) -> Any:
        record = builtin_host.registry.get(kind, spec["name"] if isinstance(spec, dict) else spec.record.name)
        return record.build()

    loss_spec = type("Spec", (), {"record": builtin_host.registry.get("loss", "cross_entropy")})()
    loss, _ = task.wrap(loss_spec, [], build)
    loss.weights["gender"] = 2.0
    logits, fused = torch.randn(4, 8), torch.tensor([0, 17, 7, 10])
    soft = task.soft_targets(fused)
    torch.testing.assert_close(loss(logits, soft), loss(logits, fused))  # one-hot: the hard loss
    _, mixed = mix(torch.zeros(4, 1), soft, 0.3, torch.tensor([2, 0, 3, 1]))
    expected = sum(
        weight * -(mixed[:, s] * F.log_softmax(logits[:, s], -1)).sum(-1).mean()
        for s, weight in ((slice(0, 3), 1.0), (slice(3, 5), 2.0), (slice(5, 8), 1.0))
    )
    torch.testing.assert_close(loss(logits, mixed), expected)


# -- losses that take soft targets ----------------------------------------------------------


def _loss(host: PluginHost, name: str, **params: Any) -> Any:
    return host.registry.get("loss", name).build(**params)


SOFT_LOSSES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("cross_entropy", {"weight": [1.0, 3.0, 0.5, 2.0]}),
    ("cross_entropy", {"weight": "balanced", "class_counts": [40, 10, 30, 20], "label_smoothing": 0.1}),
    ("focal", {}),
    ("focal", {"gamma": 1.5, "alpha": [0.5, 1.0, 2.0, 1.0]}),
    ("focal", {"alpha": "balanced", "class_counts": [40, 10, 30, 20]}),
    ("label_smoothing", {"epsilon": 0.2}),
]


def _weights(params: dict[str, Any]) -> torch.Tensor:
    given = params.get("weight", params.get("alpha"))
    if given == "balanced":
        counts = torch.tensor(params["class_counts"], dtype=torch.float32)
        return counts.sum() / (len(counts) * counts)
    return torch.tensor(given) if given is not None else torch.ones(4)


def _by_hand(name: str, params: dict[str, Any], logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each loss's soft-target formula, written out."""
    log_p, w = F.log_softmax(logits, -1), _weights(params)
    if name == "cross_entropy":
        eps = params.get("label_smoothing", 0.0)
        smoothed = (1 - eps) * y + eps / y.shape[1]
        return -(w * smoothed * log_p).sum() / (w * y).sum()
    if name == "focal":
        gamma = params.get("gamma", 2.0)
        return -(w * y * (1 - log_p.exp()) ** gamma * log_p).sum(-1).mean()
    eps = params["epsilon"]  # label_smoothing
    return ((1 - eps) * -(y * log_p).sum(-1) + eps * -log_p.mean(-1)).mean()


@pytest.mark.parametrize(("name", "params"), SOFT_LOSSES, ids=lambda v: str(v))
def test_soft_target_losses_match_the_hard_loss_on_one_hot_and_the_formula_on_mixed(
    builtin_host: PluginHost, name: str, params: dict[str, Any]
) -> None:
    torch.manual_seed(0)
    loss = _loss(builtin_host, name, **params)
    assert builtin_host.registry.get("loss", name).options["soft_targets"] is True
    logits, labels = torch.randn(16, 4), torch.randint(0, 4, (16,))
    one_hot = F.one_hot(labels, 4).float()
    torch.testing.assert_close(loss(logits, one_hot), loss(logits, labels))
    torch.testing.assert_close(loss(logits, one_hot), _by_hand(name, params, logits, one_hot))
    _, mixed = mix(torch.zeros(16, 1), one_hot, 0.35, torch.randperm(16))
    torch.testing.assert_close(loss(logits, mixed), _by_hand(name, params, logits, mixed))


@pytest.mark.parametrize("shape", [(10, 1), (10, 3)], ids=["binary", "multilabel"])
def test_bce_takes_mixed_targets(builtin_host: PluginHost, shape: tuple[int, int]) -> None:
    torch.manual_seed(1)
    logits, y = torch.randn(*shape), torch.rand(*shape)
    expected = -(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(_loss(builtin_host, "bce")(logits, y), expected)


# -- check --------------------------------------------------------------------------------


def _mixup_config(digits_config: dict[str, Any], *batch: dict[str, Any]) -> dict[str, Any]:
    digits_config["transforms"] = {"batch": list(batch) or [{"name": "mixup"}, {"name": "cutmix"}]}
    return digits_config


def test_check_refuses_a_loss_without_soft_targets(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config)
    validate_config(config, builtin_host.registry)  # cross_entropy takes them
    config["loss"] = {"name": "f1"}
    with pytest.raises(ConfigError) as raised:
        validate_config(config, builtin_host.registry)
    assert list(raised.value.problems) == [
        "loss: 'f1' does not take the soft targets that transforms.batch.0 'mixup' makes; losses "
        "that do: cross_entropy, focal, label_smoothing"
    ]


def test_check_refuses_transforms_in_the_wrong_slot(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config, {"name": "mixup"}, {"name": "random_horizontal_flip"})
    config["transforms"]["train"] = [{"name": "cutmix"}]
    config["tta"] = [[{"name": "mixup"}]]
    with pytest.raises(ConfigError) as raised:
        validate_config(config, builtin_host.registry)
    assert list(raised.value.problems) == [
        "transforms.train.0: 'cutmix' is a batch transform; list it under transforms.batch",
        "transforms.batch.1: 'random_horizontal_flip' is a per-sample transform; list it under transforms.train",
        "tta.0.0: 'mixup' is a batch transform, for training only",
    ]


def test_check_refuses_mixing_for_the_last_epoch_and_beyond(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config)
    config["transforms"]["batch_off_last_epochs"] = 2
    with pytest.raises(ConfigError, match=r"batch_off_last_epochs: 2 leaves none of the 2 epochs"):
        validate_config(config, builtin_host.registry)


def test_check_refuses_regression_and_a_regression_head(builtin_host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.5}\n" for i in range(20)))
    config = {
        "data": {"name": "table_csv", "train": str(tmp_path / "train.csv"), "target": "y", "target_type": "regression"},
        "model": {"name": "tabular_mlp"},
        "loss": {"name": "mse"},
        "optimizer": {"name": "adamw"},
        "transforms": {"batch": [{"name": "mixup"}]},
    }
    with pytest.raises(ConfigError) as raised:
        validate_config(config, builtin_host.registry)
    assert list(raised.value.problems) == [
        "transforms.batch.0: 'mixup' cannot apply: the regression task's targets are values, which batch "
        "transforms do not mix"
    ]
    heads = MultiHead({"a": {"classes": 2}, "v": {"task": "regression"}})
    assert heads.mix_problem() == "head 'v' is a regression head, whose values batch transforms do not mix"


def test_check_refuses_a_head_loss_without_soft_targets(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config)
    config["task"] = {"name": "multihead", "heads": {"tens": {"classes": 2}, "ones": {"classes": 5, "loss": {"name": "f1"}}}}
    problems = check_batch_transforms(validate_config(digits_config | {"transforms": {}}, builtin_host.registry),
                                      _heads(), builtin_host.registry)
    assert problems == []
    with pytest.raises(ConfigError) as raised:
        validate_config(config, builtin_host.registry)
    assert "task.heads.ones.loss: 'f1' does not take the soft targets that transforms.batch.0 'mixup' makes" in (
        raised.value.problems[0]
    )


def test_a_misspelt_transforms_key_gets_a_suggestion(builtin_host: PluginHost, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config)
    config["transforms"]["batch_off_last_epoch"] = 1
    with pytest.raises(ConfigError) as raised:
        validate_config(config, builtin_host.registry)
    assert list(raised.value.problems) == [
        "transforms.batch_off_last_epoch: unknown key; did you mean 'batch_off_last_epochs'?"
    ]


def test_the_cli_check_refuses_with_one_line_and_exit_2(cli: Any, write_config: Any, digits_config: dict[str, Any]) -> None:
    config = _mixup_config(digits_config)
    config["loss"] = {"name": "f1"}
    assert_user_error(cli("check", write_config(config)), "loss: 'f1' does not take the soft targets", "'mixup'")


# -- the loop -----------------------------------------------------------------------------


def test_the_loop_mixes_training_batches_only_until_the_last_epochs(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    config = _mixup_config(digits_config, {"name": "mixup", "alpha": 0.4})
    config["transforms"]["batch_off_last_epochs"] = 1
    config["trainer"].update(max_epochs=2, limit_train_batches=3)
    config["data"]["val_fraction"], config["metrics"] = 0.05, []
    run = build_run(validate_config(config, builtin_host.registry), builtin_host, tmp_path)
    seen: list[tuple[bool, bool]] = []  # (training, soft targets)
    loss = run.loss_fn

    def spy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append((torch.is_grad_enabled(), targets.is_floating_point() and targets.ndim == 2))
        return loss(outputs, targets)

    run.loss_fn = spy
    Trainer(run).fit()
    training = [soft for grad, soft in seen if grad]
    assert training == [True] * 3 + [False] * 3  # epoch 1 mixed, epoch 2 not
    assert not any(soft for grad, soft in seen if not grad)  # validation never mixes


@pytest.mark.slow
def test_a_cli_run_with_mixup_and_cutmix(cli: Any, write_config: Any, digits_config: dict[str, Any], tmp_path: Path) -> None:
    config = _mixup_config(digits_config)
    config["trainer"].update(max_epochs=1, limit_train_batches=4)
    result = cli("run", write_config(config), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and math.isfinite(float(rows[1].split(",")[rows[0].split(",").index("train/loss")]))
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert [t["name"] for t in written["transforms"]["batch"]] == ["mixup", "cutmix"]


class SoftSignalAt(SignalAt):
    """tests/test_resume.py's signalling cross-entropy, declared to take soft targets."""

    @torchyard.hookimpl
    def register_losses(self, register: Any) -> None:
        register("signal_at", self.factory, soft_targets=True)


@pytest.mark.slow
def test_an_interrupted_mixup_run_resumes_mid_epoch_to_the_same_result(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    plugin = SoftSignalAt()
    builtin_host.add_plugin(plugin, "signal-at")
    config = _mixup_config(_config(digits_config, max_epochs=2, limit_train_batches=6))
    config["transforms"]["batch"][0]["p"] = 0.7
    reference_run = _run(config, builtin_host, tmp_path / "reference")
    reference = (reference_run, Trainer(reference_run).fit())
    plugin.at = 9  # epoch 2, batch 3
    resumed, payload = _interrupted_then_resumed(config, builtin_host, plugin, tmp_path / "interrupted")
    assert not payload["progress"]["epoch_done"] and payload["progress"]["epoch"] == 2
    _same_outcome(reference, resumed)


# -- the example -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_mask_mixup_example_runs(cli: Any, tmp_path: Path) -> None:
    from .test_images import _example_generator

    data = tmp_path / "mask"
    _example_generator().generate(data, people=12, seed=0, size=16)
    config = yaml.safe_load((EXAMPLES / "mask_mixup.yaml").read_text())
    assert [t["name"] for t in config["transforms"]["batch"]] == ["mixup", "cutmix"]
    path = tmp_path / "mask_mixup.yaml"
    path.write_text(yaml.safe_dump(config))
    overrides = {
        "data.csv": data / "train" / "train.csv", "data.root": data / "train" / "images",
        "data.test_csv": data / "eval" / "info.csv", "data.test_root": data / "eval" / "images",
        "data.image_size": 16, "writer.path": data / "eval" / "info.csv", "model.channels": 4,
        "trainer.max_epochs": 3, "trainer.progress": "false", "split.val_fraction": 0.25,
    }  # fmt: skip
    sets = [part for key, value in overrides.items() for part in ("--set", f"{key}={value}")]
    result = cli("run", path, "--out", tmp_path / "run", *sets)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "info.csv").is_file()
    # the example averages the weights: the checkpoint keeps the EMA's state
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["callbacks"]["callbacks.0:ema"]["updates"] == last["global_step"]


# -- the plugin contract's example (docs/hooks.md) --------------------------------------------


def test_the_documented_plugin_batch_transform_registers_checks_and_mixes(
    builtin_host: PluginHost, digits_config: dict[str, Any], tmp_path: Path
) -> None:
    import types

    from torchyard.testing import check_component

    from .conftest import ROOT

    section = (ROOT / "docs" / "hooks.md").read_text().split("## Batch transforms")[1]
    code = section.split("```python\n")[1].split("```")[0]
    module = types.ModuleType("roll_mix_plugin")
    exec(compile(code, "docs/hooks.md", "exec"), module.__dict__)
    assert builtin_host.add_plugin(module, "roll-mix").status == "ok"
    record = builtin_host.registry.get("transform", "roll_mix")
    assert record.options == {"stage": "batch"}
    check_component(record, {})
    config = _mixup_config(digits_config, {"name": "roll_mix", "lam": 0.75})
    config["trainer"].update(max_epochs=1, limit_train_batches=2)
    config["data"]["val_fraction"], config["metrics"] = 0.05, []
    run = build_run(validate_config(config, builtin_host.registry), builtin_host, tmp_path)
    assert run.batch_transforms is not None
    inputs, targets = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, soft = run.batch_transforms(inputs, targets, 1, 0)
    one_hot = F.one_hot(targets, 10).float()
    torch.testing.assert_close(mixed, 0.75 * inputs + 0.25 * inputs.roll(1, 0))
    torch.testing.assert_close(soft, 0.75 * one_hot + 0.25 * one_hot.roll(1, 0))
