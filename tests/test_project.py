"""Meta-tests that keep the layout, the docs and the examples honest."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib

from torchyard import hookspecs

from .conftest import EXAMPLES, ROOT

SPECS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if callable(value) and hasattr(value, "torchyard_spec")
)


def test_there_are_registration_and_lifecycle_hooks() -> None:
    assert set(hookspecs.REGISTRATION_HOOKS.values()) < set(SPECS)
    assert {"on_run_start", "on_epoch_end", "on_validation_end", "on_run_end"} < set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_every_hook_spec_documents_every_argument(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert doc, f"{name} has no docstring"
    for argument in inspect.signature(spec).parameters:
        assert f":param {argument}:" in doc, f"{name} does not document {argument}"


@pytest.mark.parametrize("name", SPECS)
def test_every_hook_spec_is_in_docs_hooks_md(name: str) -> None:
    text = (ROOT / "docs" / "hooks.md").read_text()
    assert re.search(rf"^### `?{name}`?", text, re.M), f"docs/hooks.md has no '### {name}' section"


def test_layout_is_the_import_tree() -> None:
    """A file's path below framework/ or plugins/ is its module's name, and
    the wheel and the editable install take exactly those two packages."""
    hatch = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert hatch["targets"]["wheel"]["packages"] == ["framework/torchyard", "plugins/torchyard_builtins"]
    assert hatch["dev-mode-dirs"] == ["framework", "plugins"]
    assert sorted(p.name for p in (ROOT / "framework").iterdir() if p.name != "__pycache__") == ["torchyard"]
    assert sorted(p.name for p in (ROOT / "plugins").iterdir() if p.name != "__pycache__") == ["torchyard_builtins"]
    import torchyard
    import torchyard_builtins

    assert Path(torchyard.__file__).resolve() == ROOT / "framework" / "torchyard" / "__init__.py"
    assert Path(torchyard_builtins.__file__).resolve() == ROOT / "plugins" / "torchyard_builtins" / "__init__.py"


def test_no_top_level_framework_or_plugins_module_is_installed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import importlib.util as u\n"
        "print(u.find_spec('framework'), u.find_spec('plugins'), u.find_spec('torchyard') is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.split() == ["None", "None", "True"], out.stderr


def test_builtins_register_only_through_entry_points() -> None:
    """The core never names a built-in plugin module."""
    for path in (ROOT / "framework").rglob("*.py"):
        assert "torchyard_builtins" not in path.read_text(), path
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["torchyard"]
    assert all(v.startswith("torchyard_builtins.") for v in entry_points.values())


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```(?:bash)?\n(.*?)```", readme, re.S)
    assert block, "README has no quick-start code block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_core_modules_stay_small() -> None:
    for path in list((ROOT / "framework").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py")):
        assert len(path.read_text().splitlines()) <= 700, f"{path} is over 700 lines: split it by concern"


@pytest.mark.slow
def test_example_digits_reaches_95_percent(tmp_path: Path) -> None:
    """examples/digits.yaml, exactly as `make demo` runs it."""
    import json

    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "torchyard", "run", str(EXAMPLES / "digits.yaml"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["monitor"] == "val/accuracy"
    assert summary["best_value"] >= 0.95
    assert (out / "submission.csv").read_text().startswith("id,label\n")


def test_components_reference_is_up_to_date(builtin_host: Any) -> None:
    from torchyard.reference import components_markdown

    expected = components_markdown(builtin_host.registry)
    actual = (ROOT / "docs" / "components.md").read_text()
    assert actual == expected, "docs/components.md is stale: run `make docs`"


def test_every_builtin_is_in_the_reference(builtin_host: Any) -> None:
    text = (ROOT / "docs" / "components.md").read_text()
    for record in builtin_host.registry.records():
        assert f"### `{record.name}`" in text, f"{record.kind} {record.name}"
