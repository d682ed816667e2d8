"""Plugin loading: entry points, fail-soft behaviour, load control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import torchyard
from torchyard.config import validate_config
from torchyard.errors import ConfigError
from torchyard.plugins import ENV_DISABLE, ENV_LOAD, PluginHost

from .conftest import fake_entry_points

BUILTINS = {
    "builtin-datasets",
    "builtin-losses",
    "builtin-metrics",
    "builtin-models",
    "builtin-optimizers",
    "builtin-schedulers",
    "builtin-writers",
}


def test_builtins_load_through_the_entry_point_group(builtin_host: PluginHost) -> None:
    assert set(builtin_host.plugins) >= BUILTINS
    for name in BUILTINS:
        info = builtin_host.plugins[name]
        assert info.status == "ok", info.error
        assert info.distribution == "torchyard"
        assert info.version == torchyard.__version__
    assert builtin_host.registry.get("loss", "cross_entropy").plugin == "builtin-losses"


def test_load_entrypoints_is_idempotent(builtin_host: PluginHost) -> None:
    before = len(builtin_host.registry)
    builtin_host.load_entrypoints()
    assert len(builtin_host.registry) == before


def test_entry_point_plugin_is_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"extra": "tests.plugins.extra_components"})
    host = PluginHost()
    host.load_entrypoints()
    assert host.plugins["extra"].status == "ok"
    assert host.plugins["extra"].components == (("loss", "scaled_mse"), ("loss", "focal_lite"))
    assert host.registry.get("loss", "scaled_mse").plugin == "extra"


def test_import_error_is_recorded_and_others_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"broken": "tests.plugins.broken_import"})
    host = PluginHost()
    host.load_entrypoints()
    info = host.plugins["broken"]
    assert info.status == "failed"
    assert "ModuleNotFoundError" in (info.error or "")
    assert "torchyard_nonexistent_dependency" in (info.error or "")
    assert f"{ENV_DISABLE}=broken" in (info.hint or "")
    assert host.registry.get("loss", "cross_entropy")  # the built-ins still work


def test_raising_hook_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"raising": "tests.plugins.raising_hook"})
    host = PluginHost()
    host.load_entrypoints()
    info = host.plugins["raising"]
    assert info.status == "failed"
    assert "register_losses raised RuntimeError: database of losses is locked" in (info.error or "")
    assert host.pm.get_plugin("raising") is None
    names = {r.name for r in host.registry.records("loss")}
    assert "half_done" not in names


def test_config_naming_a_broken_plugins_component_gets_its_reason(
    monkeypatch: pytest.MonkeyPatch, digits_config: dict[str, Any]
) -> None:
    fake_entry_points(monkeypatch, {"raising": "tests.plugins.raising_hook"})
    host = PluginHost()
    host.load_entrypoints()
    digits_config["loss"] = {"name": "half_done"}
    with pytest.raises(ConfigError) as info:
        validate_config(digits_config, host.registry)
    assert str(info.value) == (
        "loss: loss 'half_done' comes from plugin 'raising', which failed to load: "
        "register_losses raised RuntimeError: database of losses is locked"
    )


def test_unknown_name_mentions_plugins_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"broken": "tests.plugins.broken_import"})
    host = PluginHost()
    host.load_entrypoints()
    with pytest.raises(ConfigError, match=r"plugins that failed to load: 'broken'; see `torchyard plugins`"):
        host.registry.get("loss", "something_else_entirely")


def test_unknown_hook_name_fails_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"typo": "tests.plugins.misspelled_hook"})
    host = PluginHost()
    host.load_entrypoints()
    info = host.plugins["typo"]
    assert info.status == "failed"
    assert "'register_lossess' matches no hook spec; did you mean 'register_losses'?" in (info.error or "")
    host.pm.check_pending()  # nothing unknown stays registered


def test_hookimpl_with_arguments_the_spec_lacks_fails(empty_host: PluginHost) -> None:
    class Plugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any, extra_argument: Any) -> None: ...

    info = empty_host.add_plugin(Plugin(), "wrong-args")
    assert info.status == "failed"
    assert "extra_argument" in (info.error or "")


def test_same_plugin_name_twice(empty_host: PluginHost) -> None:
    class Plugin:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            register("a", "torch.nn:L1Loss")

    assert empty_host.add_plugin(Plugin(), "p", distribution="one").status == "ok"
    second = empty_host.add_plugin(Plugin(), "p", distribution="two")
    assert second.status == "failed" and "already taken by one" in (second.error or "")


def test_env_load_plugins_restricts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LOAD, "builtin-losses, builtin-models")
    host = PluginHost()
    host.load_entrypoints()
    loaded = {n for n, p in host.plugins.items() if p.status == "ok"}
    assert loaded == {"builtin-losses", "builtin-models"}
    assert host.plugins["builtin-optimizers"].status == "disabled"


def test_env_load_plugins_empty_loads_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LOAD, "")
    host = PluginHost()
    host.load_entrypoints()
    assert len(host.registry) == 0
    assert all(p.status == "disabled" for p in host.plugins.values())


def test_env_load_plugins_by_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LOAD, "torchyard")
    host = PluginHost()
    host.load_entrypoints()
    assert {n for n, p in host.plugins.items() if p.status == "ok"} >= BUILTINS


def test_env_disable_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"broken": "tests.plugins.broken_import"})
    monkeypatch.setenv(ENV_DISABLE, "broken")
    host = PluginHost()
    host.load_entrypoints()
    assert host.plugins["broken"].status == "disabled"
    assert not host.registry.failed


def _install_plugin_distribution(tmp_path: Path) -> Path:
    """A real distribution, pip-installed into a target directory."""
    source = tmp_path / "src"
    package = source / "ty_tiny_plugin"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "ty-tiny-plugin"
            version = "0.3.1"

            [project.entry-points.torchyard]
            tiny = "ty_tiny_plugin"
            """
        )
    )
    (package / "__init__.py").write_text(
        textwrap.dedent(
            '''
            import torchyard

            @torchyard.hookimpl
            def register_losses(register):
                register("tiny_l1", "torch.nn:L1Loss", description="L1, from a real install.")
            '''
        )
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.mark.slow
def test_real_installed_distribution_is_listed(tmp_path: Path) -> None:
    target = _install_plugin_distribution(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-m", "torchyard", "list", "loss", "--json"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout
    import json

    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["tiny_l1"]["plugin"] == "tiny"
    assert rows["tiny_l1"]["distribution"] == "ty-tiny-plugin"
    assert rows["tiny_l1"]["version"] == "0.3.1"
    assert rows["tiny_l1"]["description"] == "L1, from a real install."
    assert rows["cross_entropy"]["distribution"] == "torchyard"


def test_same_entry_point_name_from_two_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    class FakeDist:
        def __init__(self, name: str) -> None:
            self.metadata = {"Name": name}
            self.version = "1.0"

    first = md.EntryPoint("extra", "tests.plugins.extra_components", "torchyard")
    second = md.EntryPoint("extra", "tests.plugins.duplicate_ce", "torchyard")
    for ep, dist in ((first, "dist-a"), (second, "dist-b")):
        object.__setattr__(ep, "dist", FakeDist(dist))
    monkeypatch.setattr(md, "entry_points", lambda **kw: [first, second] if kw.get("group") == "torchyard" else [])
    host = PluginHost()
    host.load_entrypoints()
    assert host.plugins["extra"].status == "ok"
    failed = host.plugins["extra (dist-b)"]
    assert failed.status == "failed" and "already taken by dist-a" in (failed.error or "")
    host.load_entrypoints()  # idempotent: nothing new, nothing lost
    assert len([p for p in host.plugins.values() if p.status == "failed"]) == 1


@pytest.mark.parametrize(
    ("module", "error"),
    [("tests.plugins.exiting_import", "SystemExit: this plugin gives up"), ("tests.plugins.interrupting_hook", "KeyboardInterrupt")],
)
def test_a_plugin_raising_systemexit_or_keyboardinterrupt_fails_alone(
    monkeypatch: pytest.MonkeyPatch, module: str, error: str
) -> None:
    fake_entry_points(monkeypatch, {"rude": module})
    host = PluginHost()
    host.load_entrypoints()
    assert host.plugins["rude"].status == "failed" and error in (host.plugins["rude"].error or "")
    assert host.registry.get("loss", "cross_entropy")  # every other plugin loaded


def test_a_real_ctrl_c_while_loading_plugins_still_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    class Slow:
        @torchyard.hookimpl
        def register_losses(self, register: Any) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C now

    with pytest.raises(KeyboardInterrupt):
        PluginHost().add_plugin(Slow(), "slow")


def test_a_plugin_reusing_a_builtin_name_does_not_break_configs_that_use_it(
    cli: Any, monkeypatch: pytest.MonkeyPatch, digits_config: dict[str, Any]
) -> None:
    fake_entry_points(monkeypatch, {"other-ce": "tests.plugins.duplicate_ce"})
    host = PluginHost()
    host.load_entrypoints()
    assert host.registry.get("loss", "cross_entropy").plugin == "builtin-losses"  # the bare name
    assert host.registry.get("loss", "other-ce:cross_entropy").plugin == "other-ce"  # qualified
    validate_config(digits_config, host.registry)
    assert [r.plugin for r in host.registry.shadowed()] == ["other-ce"]
    listed = cli("list", "losses")
    assert "note: loss 'cross_entropy' from other-ce shares a built-in's name" in listed.stdout
    shown = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert shown["other-ce"]["status"] == "ok" and shown["other-ce"]["shadowed_by_builtins"] == ["cross_entropy"]
    assert "shadowed by" in cli("plugins").stdout


def test_a_hook_only_plugin_can_be_removed_and_its_hooks_stop(builtin_host: PluginHost) -> None:
    calls: list[str] = []

    class Hooks:
        @torchyard.hookimpl
        def on_run_end(self) -> None:
            calls.append("end")

    assert builtin_host.add_plugin(Hooks(), "hooks").status == "ok"
    builtin_host.call("on_run_end", run=None, summary={})
    builtin_host.remove_plugin("hooks")
    builtin_host.call("on_run_end", run=None, summary={})
    assert calls == ["end"] and "hooks" not in builtin_host.plugins
    with pytest.raises(ValueError, match="plugin 'builtin-losses' registered components"):
        builtin_host.remove_plugin("builtin-losses")
