"""examples/plugins/torchyard-example, installed for real, as a user installs it.

Isolation: the example is never installed into torchyard's own environment.

* One ``pip install --target`` into a temporary folder, shared by the tests
  of this module, built from a temporary copy of the source (pip builds
  in-tree, and the checkout must get no ``build/`` or ``*.egg-info``).
  Commands that never import torch (``list``, ``plugins``) run as fresh
  ``python -m torchyard`` processes with that folder on ``PYTHONPATH``.
  Commands that import torch (``show``, ``run``, ``check``) run in-process
  with the folder prepended to ``sys.path`` for the test, which saves a
  torch import per command. Either way torchyard finds the plugin through
  its entry point and distribution metadata, exactly as when installed.
* ``torchyard install`` / ``uninstall`` run pip in torchyard's interpreter,
  so they get a throw-away venv of their own. It is created without pip (a
  tenth of a second instead of seconds) and holds a ``.pth`` file that adds
  this environment's site-packages, which makes torchyard, its dependencies
  and pip importable there; pip installs into ``sys.prefix``, the throw-away
  venv. The pip options travel as ``PIP_*`` variables; note that for a
  ``--no-...`` switch pip stores the variable's value as the option's
  *positive* meaning, so ``PIP_NO_BUILD_ISOLATION=0`` turns isolation off.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .conftest import EXAMPLES

EXAMPLE = EXAMPLES / "plugins" / "torchyard-example"
DIST, VERSION, PLUGIN = "torchyard-example", "0.1.0", "example"
COMPONENTS = {("loss", "poly1_cross_entropy"), ("metric", "macro_error"), ("writer", "jsonl")}
MISSING = (
    f"error: requires.0: {DIST} is not installed; "
    f"install it with: torchyard install '{DIST}>=0.1'"
)

#: pip, offline and hermetic: no index, no build isolation (setuptools comes
#: from this environment), no dependencies, no config files of the machine.
PIP_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_NO_BUILD_ISOLATION": "0",  # sic: 0 means --no-build-isolation
    "PIP_NO_DEPS": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_CONFIG_FILE": os.devnull,
}


def _env(pythonpath: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh torchyard process: no plugin selection
    inherited from the caller, the given folder on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHYARD_", "PIP_"))}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return {**env, "COLUMNS": "200", **(extra or {})}  # tables unwrapped


def torchyard(
    *args: str | Path, env: dict[str, str], cwd: Path, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m torchyard ARGS`` in a fresh process."""
    return subprocess.run(
        [python, "-m", "torchyard", *map(str, args)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def plugins_json(env: dict[str, str], cwd: Path, python: str = sys.executable) -> dict[str, Any]:
    """``torchyard plugins --json``, by plugin name."""
    done = torchyard("plugins", "--json", env=env, cwd=cwd, python=python)
    assert done.returncode == 0, done.stderr
    return {p["name"]: p for p in json.loads(done.stdout)}


def copy_source(dest: Path) -> Path:
    """A clean copy of the example's source tree (pip builds in-tree)."""
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", ".pytest_cache")
    return Path(shutil.copytree(EXAMPLE, dest, ignore=ignore))


def assert_not_in_main_environment() -> None:
    """The example must never land in torchyard's own environment."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
    assert not (Path(sysconfig.get_paths()["purelib"]) / "torchyard_example").exists()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example, ``pip install --target``-ed into a temporary folder."""
    assert_not_in_main_environment()
    root = tmp_path_factory.mktemp("example-install")
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
         str(copy_source(root / "src"))],
        env=_env(extra=PIP_ENV), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    yield target
    assert_not_in_main_environment()


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ``--target`` install on this process's ``sys.path`` for one test."""
    monkeypatch.syspath_prepend(str(site))
    yield site
    forget_example_modules()


def forget_example_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "torchyard_example"]:
        del sys.modules[name]


def small_config(tmp_path: Path, **changes: Any) -> Path:
    """The example's digits-poly.yaml, shrunk to two quick epochs."""
    data = yaml.safe_load((EXAMPLE / "digits-poly.yaml").read_text())
    data["model"]["channels"] = 8
    # one thread: torch's spinning threads slow a busy 2-core machine tenfold
    data["trainer"].update({"max_epochs": 2, "progress": False, "num_threads": 1})
    data.update(changes)
    path = tmp_path / "digits-poly.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- without installing ---------------------------------------------------------


@pytest.fixture
def example_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example's package, imported from the checkout; forgotten afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import torchyard_example

    yield torchyard_example
    forget_example_modules()


def test_the_examples_own_conformance_tests_pass(example_importable: ModuleType) -> None:
    """Runs every test of examples/.../tests/test_conformance.py."""
    path = EXAMPLE / "tests" / "test_conformance.py"
    spec = importlib.util.spec_from_file_location("torchyard_example_conformance", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [f for name, f in vars(module).items() if name.startswith("test_") and callable(f)]
    assert len(tests) >= 2
    for test in tests:
        test()


def test_the_distribution_is_declared_as_the_issue_asks() -> None:
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == (DIST, VERSION)
    assert project["dependencies"] == ["torchyard"]
    assert project["entry-points"]["torchyard"] == {PLUGIN: "torchyard_example"}
    assert (EXAMPLE / "README.md").is_file()


def test_requires_without_the_plugin_stops_with_the_install_command(cli: Any, tmp_path: Path) -> None:
    assert_not_in_main_environment()
    config = small_config(tmp_path)
    for command in ("check", "run"):
        result = cli(command, config, *(["--out", tmp_path / "run"] if command == "run" else []))
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == MISSING
    assert not (tmp_path / "run").exists()


# -- installed with pip --target ------------------------------------------------


@pytest.mark.slow
def test_list_sees_the_installed_plugin(site: Path, tmp_path: Path) -> None:
    env = _env(site)
    listed = torchyard("list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    for key in COMPONENTS:
        row = rows[key]
        assert (row["plugin"], row["distribution"], row["version"]) == (PLUGIN, DIST, VERSION)
        assert row["qualified_name"] == f"{PLUGIN}:{key[1]}"
    assert rows[("loss", "poly1_cross_entropy")]["options"] == {"targets": "classes"}
    assert rows[("loss", "cross_entropy")]["distribution"] == "torchyard"  # built-ins still there

    table = torchyard("list", "loss", env=env, cwd=tmp_path)
    assert table.returncode == 0 and "poly1_cross_entropy" in table.stdout
    assert f"{PLUGIN} ({DIST} {VERSION})" in table.stdout
    assert not table.stderr  # no warning, no conflict note


@pytest.mark.slow
def test_listing_with_the_plugin_never_imports_torch(site: Path, tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from torchyard.cli import app\n"
        "app(['list'], standalone_mode=False)\n"
        "print(json.dumps([m for m in ('torch', 'pydantic') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=_env(site), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "poly1_cross_entropy" in done.stdout
    assert json.loads(done.stdout.splitlines()[-1]) == []


@pytest.mark.slow
def test_plugins_json_lists_it_ok(site: Path, tmp_path: Path) -> None:
    example = plugins_json(_env(site), tmp_path)[PLUGIN]
    assert (example["distribution"], example["version"], example["status"]) == (DIST, VERSION, "ok")
    assert example["error"] is None
    assert {(c["kind"], c["name"]) for c in example["components"]} == COMPONENTS


@pytest.mark.slow
def test_show_documents_the_installed_components(installed: Path, cli: Any) -> None:
    result = cli("show", "loss", "poly1_cross_entropy", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["plugin"], data["distribution"], data["version"]) == (PLUGIN, DIST, VERSION)
    assert data["options"] == {"targets": "classes"}
    params = {p["name"]: p for p in data["params"]}
    assert params["epsilon"]["default"] == 1.0 and params["epsilon"]["constraints"] == ">= -1"
    assert "cross-entropy" in params["epsilon"]["description"]
    assert params["reduction"]["type"] == '"mean" | "sum"'

    for kind, name, param in (("metric", "macro_error", "num_classes"), ("writer", "jsonl", "filename")):
        result = cli("show", kind, name, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert f"{PLUGIN} ({DIST} {VERSION})" in result.stdout and param in result.stdout


@pytest.mark.slow
def test_a_config_with_its_loss_metric_and_writer_runs_end_to_end(
    installed: Path, cli: Any, tmp_path: Path
) -> None:
    config = small_config(tmp_path)
    assert yaml.safe_load(config.read_text())["requires"] == [f"{DIST}>=0.1"]
    out = tmp_path / "run"
    result = cli("run", config, "--out", out)
    assert result.exit_code == 0, result.output
    assert "best val/macro_error" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["monitor"], summary["mode"], summary["epochs"]) == ("val/macro_error", "min", 2)
    assert 0 <= summary["best_value"] < 0.9  # two epochs: learned something (chance: 0.9)
    assert summary["submission"] == str(out / "submission.jsonl")
    assert "val/macro_error" in (out / "metrics.csv").read_text().splitlines()[0]

    from torchyard_builtins.datasets.sklearn_toys import digits

    bundle = digits(val_fraction=0.2, test_fraction=0.2)
    rows = [json.loads(line) for line in (out / "submission.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(bundle.test_ids)
    assert all(set(r) == {"id", "label"} and 0 <= r["label"] <= 9 for r in rows)


@pytest.mark.slow
def test_requires_a_newer_version_than_installed_is_refused(
    installed: Path, cli: Any, tmp_path: Path
) -> None:
    result = cli("check", small_config(tmp_path, requires=[f"{DIST}>=0.2"]))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: requires.0: '{DIST}>=0.2' needs another version than the installed "
        f"{DIST} {VERSION}; install it with: torchyard install '{DIST}>=0.2'"
    )


@pytest.mark.slow
def test_a_broken_install_never_breaks_the_tool(site: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(site, tmp_path / "site"))
    (broken / "torchyard_example" / "__init__.py").write_text(
        "import torchyard\n\n\n@torchyard.hookimpl\ndef register_lossess(register):\n    pass\n"
    )
    env = _env(broken)
    listed = torchyard("list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {(r["kind"], r["name"]) for r in json.loads(listed.stdout)}
    assert ("loss", "cross_entropy") in names and not names & COMPONENTS

    table = torchyard("list", "loss", env=env, cwd=tmp_path)  # the table warns on stderr
    assert table.returncode == 0 and "cross_entropy" in table.stdout
    assert table.stderr.startswith(f"warning: plugin '{PLUGIN}' failed to load: "), table.stderr
    assert "did you mean 'register_losses'?" in table.stderr
    assert f"pip uninstall {DIST}" in table.stderr

    plugins = plugins_json(env, tmp_path)
    assert plugins[PLUGIN]["status"] == "failed"
    assert plugins["builtin-losses"]["status"] == "ok"

    env["TORCHYARD_DISABLE_PLUGINS"] = DIST
    quiet = torchyard("list", "loss", env=env, cwd=tmp_path)
    assert quiet.returncode == 0 and not quiet.stderr
    assert plugins_json(env, tmp_path)[PLUGIN]["status"] == "disabled"


# -- torchyard install / uninstall, in a throw-away venv ---------------------------


def throwaway_venv(path: Path) -> tuple[str, Path]:
    """A venv that sees this environment's packages through a ``.pth`` file;
    returns its python and its site-packages."""
    venv.create(path, with_pip=False, symlinks=os.name != "nt")
    python = str(path / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_torchyard_tests.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return python, Path(purelib)


@pytest.mark.slow
def test_install_and_uninstall_commands(tmp_path: Path) -> None:
    python, purelib = throwaway_venv(tmp_path / "venv")
    source = copy_source(tmp_path / "src")
    env = _env(extra=PIP_ENV)

    def plugins() -> dict[str, Any]:
        return plugins_json(env, tmp_path, python)

    assert PLUGIN not in plugins()
    installed = torchyard("install", source, env=env, cwd=tmp_path, python=python)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Successfully installed torchyard-example-0.1.0" in installed.stdout
    assert (purelib / "torchyard_example" / "__init__.py").is_file()  # in the throw-away venv
    example = plugins()[PLUGIN]
    assert (example["distribution"], example["version"], example["status"]) == (DIST, VERSION, "ok")

    removed = torchyard("uninstall", "-y", DIST, env=env, cwd=tmp_path, python=python)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert PLUGIN not in plugins()
    assert not (purelib / "torchyard_example").exists()
    after = torchyard("check", small_config(tmp_path), env=env, cwd=tmp_path, python=python)
    assert after.returncode == 2 and after.stderr.strip() == MISSING
    assert_not_in_main_environment()
