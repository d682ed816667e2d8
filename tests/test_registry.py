"""The registry: records, names, lookups, conflicts, options."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import pytest

import torchyard
from torchyard.errors import ConfigError, PluginError, UnknownComponentError
from torchyard.plugins import PluginHost
from torchyard.registry import KINDS, normalize_name


class LossPlugin:
    def __init__(self, *names: str, **options: Any) -> None:
        self.names = names
        self.options = options

    @torchyard.hookimpl
    def register_losses(self, register: Any) -> None:
        for name in self.names:
            register(name, "torch.nn:L1Loss", description=f"loss {name}", **self.options)


def test_kinds_match_registration_hooks() -> None:
    assert KINDS == ("model", "dataset", "loss", "optimizer", "scheduler", "metric", "writer", "transform", "task", "callback", "logger")


def test_options_and_positional_arguments_come_from_the_table_of_kinds(
    empty_host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchyard import kinds

    loss = kinds.get("loss")
    reduction = kinds.Option("reduction", True, lambda v: v in ("mean", "sum"), "'mean' or 'sum'")
    table = tuple(
        dataclasses.replace(k, options=(*k.options, reduction), positional_first=True) if k is loss else k
        for k in kinds.TABLE
    )
    monkeypatch.setattr(kinds, "TABLE", table)
    missing = empty_host.add_plugin(LossPlugin("l1"), "missing")
    assert "option 'reduction' is required ('mean' or 'sum')" in (missing.error or "")
    empty_host.add_plugin(LossPlugin("l1", reduction="sum"), "given")
    record = empty_host.registry.get("loss", "l1")
    assert record.options == {"reduction": "sum"}
    assert record.takes_positional


def test_records_are_frozen_and_describe_their_source(empty_host: PluginHost) -> None:
    empty_host.add_plugin(LossPlugin("l1"), "mine", distribution="my-dist", version="1.2")
    record = empty_host.registry.get("loss", "l1")
    assert (record.kind, record.name, record.plugin) == ("loss", "l1", "mine")
    assert record.source == "mine (my-dist 1.2)"
    assert record.qualified_name == "mine:l1"
    assert record.summary == "loss l1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("spelling", ["cross_entropy", "CrossEntropy", "cross-entropy", "CROSS_ENTROPY"])
def test_names_match_case_and_separator_insensitively(empty_host: PluginHost, spelling: str) -> None:
    empty_host.add_plugin(LossPlugin("cross_entropy"), "p")
    assert empty_host.registry.get("loss", spelling).name == "cross_entropy"
    assert normalize_name(spelling) == "crossentropy"


def test_unknown_name_suggests_close_matches(empty_host: PluginHost) -> None:
    empty_host.add_plugin(LossPlugin("focal", "cross_entropy"), "p")
    with pytest.raises(UnknownComponentError, match=r"unknown loss 'facol'; did you mean 'focal'\?"):
        empty_host.registry.get("loss", "facol")


def test_unknown_name_without_match_is_plain(empty_host: PluginHost) -> None:
    empty_host.add_plugin(LossPlugin("focal"), "p")
    with pytest.raises(UnknownComponentError) as info:
        empty_host.registry.get("loss", "zzzzzz")
    assert str(info.value) == "unknown loss 'zzzzzz'"


def test_unknown_kind_is_an_error(empty_host: PluginHost) -> None:
    with pytest.raises(ConfigError, match="unknown component kind 'losss'; did you mean 'loss'"):
        empty_host.registry.records("losss")


def test_same_name_from_two_plugins_needs_qualification(empty_host: PluginHost) -> None:
    empty_host.add_plugin(LossPlugin("focal"), "first", distribution="dist-one", version="1")
    empty_host.add_plugin(LossPlugin("focal"), "second", distribution="dist-two", version="2")
    with pytest.raises(ConfigError) as info:
        empty_host.registry.get("loss", "focal")
    message = str(info.value)
    assert "first (dist-one 1)" in message and "second (dist-two 2)" in message
    assert "'first:focal'" in message and "'second:focal'" in message
    assert empty_host.registry.get("loss", "second:focal").plugin == "second"
    assert empty_host.registry.get("loss", "dist-one:focal").plugin == "first"
    assert [len(c) for c in empty_host.registry.conflicts()] == [2]


def test_a_plugin_registering_a_name_twice_fails(empty_host: PluginHost) -> None:
    info = empty_host.add_plugin(LossPlugin("focal", "Focal"), "twice")
    assert info.status == "failed"
    assert "registered twice" in (info.error or "")
    assert empty_host.registry.records("loss") == []


@pytest.mark.parametrize("bad", ["", "1abc", "has space", "a:b", None])
def test_invalid_names_are_refused(empty_host: PluginHost, bad: Any) -> None:
    info = empty_host.add_plugin(LossPlugin(bad), "bad-names")
    assert info.status == "failed"
    assert "a name starts with a letter" in (info.error or "")


def test_factory_must_be_callable_or_import_path(empty_host: PluginHost) -> None:
    class Plugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("x", "not-a-path")

    info = empty_host.add_plugin(Plugin(), "p")
    assert info.status == "failed" and "import path 'module:attribute'" in (info.error or "")


def test_scheduler_must_declare_its_interval(empty_host: PluginHost) -> None:
    class Missing:
        @torchyard.hookimpl
        def register_schedulers(self, register: Any) -> None:
            register("s", "torch.optim.lr_scheduler:StepLR")

    class Wrong:
        @torchyard.hookimpl
        def register_schedulers(self, register: Any) -> None:
            register("s", "torch.optim.lr_scheduler:StepLR", interval="batch")

    missing = empty_host.add_plugin(Missing(), "missing")
    wrong = empty_host.add_plugin(Wrong(), "wrong")
    assert "option 'interval' is required" in (missing.error or "")
    assert "option 'interval' must be one of 'epoch', 'step', 'metric', got 'batch'" in (wrong.error or "")


def test_unknown_registration_option_is_refused(empty_host: PluginHost) -> None:
    info = empty_host.add_plugin(LossPlugin("l1", interval="epoch"), "p")
    assert info.status == "failed"
    assert "unknown option 'interval' (a loss takes targets, soft_targets)" in (info.error or "")


def test_loss_target_kind_option(empty_host: PluginHost) -> None:
    empty_host.add_plugin(LossPlugin("l1", targets="values"), "p")  # the earlier name of regression
    assert empty_host.registry.get("loss", "l1").targets == "regression"
    empty_host.add_plugin(LossPlugin("l3", targets=("binary", "multilabel")), "r")
    assert empty_host.registry.get("loss", "l3").tasks == ("binary", "multilabel")
    bad = empty_host.add_plugin(LossPlugin("l2", targets="pixels"), "q")
    assert "option 'targets' must be one of 'classification'" in (bad.error or "")


def test_writers_declare_the_tasks_they_write(empty_host: PluginHost) -> None:
    class Plugin:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("w", "x.y:Z", targets="multilabel")
            register("any", "x.y:Z")

    assert empty_host.add_plugin(Plugin(), "p").status == "ok"
    assert empty_host.registry.get("writer", "w").tasks == ("multilabel",)
    assert empty_host.registry.get("writer", "any").tasks == ()  # any task

    class Bad:
        @torchyard.hookimpl
        def register_writers(self, register: Any) -> None:
            register("w", "x.y:Z", interval="epoch")

    info = empty_host.add_plugin(Bad(), "q")
    assert "unknown option 'interval' (a writer takes targets)" in (info.error or "")


def test_import_path_is_resolved_only_on_use(empty_host: PluginHost) -> None:
    class Lazy:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("lazy", "tests.plugins.lazy_target_never_imported:thing")

    assert empty_host.add_plugin(Lazy(), "lazy").status == "ok"
    record = empty_host.registry.get("loss", "lazy")
    assert "tests.plugins.lazy_target_never_imported" not in sys.modules
    with pytest.raises(PluginError, match="cannot import factory 'tests.plugins.lazy_target_never_imported:thing'"):
        _ = record.factory


def test_params_schema_failure_is_a_plugin_error(empty_host: PluginHost) -> None:
    def needs_a_module(module: object) -> None:
        """Takes an object no config can hold."""

    class Plugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("needs_module", needs_a_module)

    empty_host.add_plugin(Plugin(), "p")
    with pytest.raises(PluginError, match="cannot derive a params schema"):
        _ = empty_host.registry.get("loss", "needs_module").params


def test_summary_falls_back_to_docstring_of_callables(empty_host: PluginHost) -> None:
    def my_loss() -> None:
        """Computes nothing, nicely.

        More text."""

    class Plugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("my_loss", my_loss)

    empty_host.add_plugin(Plugin(), "p")
    assert empty_host.registry.get("loss", "my_loss").summary == "Computes nothing, nicely."
