"""docs/writing-plugins.md: every Python block on the page runs, as shown.

A block is preceded by ``<!-- test-file: PROJECT/PATH [PROJECT/PATH ...] -->``;
the blocks of each project are written out as files. Each project's
``pyproject.toml`` names its plugin module in the ``torchyard`` entry-point
group: the module is imported (with the project on ``sys.path``, as an
editable install would have it), registered in a fresh host and run through
the conformance kit, and the project's own ``tests/test_*.py`` functions are
called. A Python block without a marker fails the suite, so no example on
the page goes untested.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tomllib

from torchyard.plugins import PluginHost
from torchyard.testing import check_plugin

from .conftest import ROOT

DOC = ROOT / "docs" / "writing-plugins.md"
MARKED = re.compile(r"<!-- test-file: ([^>]+?) -->\n```(\w+)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```(\w*)$", re.M)


def marked_blocks() -> list[tuple[list[str], str, str]]:
    """(paths, language, code) of every marked block, in page order."""
    return [(m[1].split(), m[2], m[3]) for m in MARKED.finditer(DOC.read_text())]


def projects() -> dict[str, dict[str, str]]:
    """Project -> relative path -> content."""
    out: dict[str, dict[str, str]] = {}
    for paths, _, code in marked_blocks():
        for path in paths:
            project, _, relative = path.partition("/")
            assert relative and relative not in out.get(project, {}), f"{path}: given twice"
            out.setdefault(project, {})[relative] = code
    return out


PROJECTS = projects()


def test_every_python_block_is_marked_to_run() -> None:
    opening = [lang for i, lang in enumerate(FENCE.findall(DOC.read_text())) if i % 2 == 0]
    marked = [lang for _, lang, _ in marked_blocks()]
    assert opening.count("python") == marked.count("python") >= 5
    assert set(PROJECTS) == {"tiny", "grown"}


def write_project(root: Path, files: dict[str, str]) -> Path:
    for relative, code in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    return root


def entry_point(project: Path) -> tuple[str, str, dict[str, Any]]:
    """The plugin's (name, module) from the project's pyproject.toml, and [project]."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    ((name, value),) = meta["entry-points"]["torchyard"].items()
    return name, value, meta


@pytest.fixture(params=sorted(PROJECTS))
def project(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One project of the page, written out and importable; forgotten afterwards."""
    root = write_project(tmp_path / request.param, PROJECTS[request.param])
    monkeypatch.syspath_prepend(str(root))
    yield root
    packages = {entry_point(root)[1].split(".")[0]}
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]


def load_plugin(project: Path) -> tuple[str, ModuleType]:
    name, value, _ = entry_point(project)
    return name, importlib.import_module(value)


def test_the_projects_are_named_by_the_convention(project: Path) -> None:
    name, value, meta = entry_point(project)
    assert meta["name"] == f"torchyard-{name}" and value == f"torchyard_{name}"
    assert meta["dependencies"] == ["torchyard"]


def test_the_plugin_passes_the_conformance_kit(project: Path) -> None:
    name, module = load_plugin(project)
    records = check_plugin(module, name=name)
    assert "confidence_penalty" in {r.name for r in records}


def test_the_projects_own_tests_pass(project: Path) -> None:
    tests = sorted((project / "tests").glob("test_*.py")) if (project / "tests").is_dir() else []
    for path in tests:
        spec = importlib.util.spec_from_file_location(f"doc_{project.name}_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for test_name, test in vars(module).items():
            if test_name.startswith("test_") and callable(test):
                test()
    assert tests or project.name == "tiny"


def test_the_loss_computes_cross_entropy_minus_the_entropy(project: Path) -> None:
    import torch

    name, module = load_plugin(project)
    host = PluginHost()
    assert host.add_plugin(module, name).status == "ok"
    record = host.registry.get("loss", f"{name}:confidence_penalty")
    outputs, targets = torch.randn(8, 3), torch.arange(8) % 3
    p = outputs.softmax(-1)
    expected = torch.nn.functional.cross_entropy(outputs, targets) + 0.5 * (p * p.log()).sum(-1).mean()
    assert torch.allclose(record.build(beta=0.5)(outputs, targets), expected, atol=1e-6)
    assert record.summary == "Cross-entropy minus beta times the entropy of the prediction."


def test_the_grown_schemas_are_as_the_page_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = write_project(tmp_path / "grown", PROJECTS["grown"])
    monkeypatch.syspath_prepend(str(root))
    try:
        name, module = load_plugin(root)
        host = PluginHost()
        assert host.add_plugin(module, name).status == "ok"
        get = host.registry.get
        beta = get("loss", "confidence_penalty").params.model_fields["beta"]
        assert beta.description == "Weight of the entropy bonus; 0 is plain cross-entropy."
        log_cosh = get("loss", "log_cosh")
        assert log_cosh.targets == "regression" and log_cosh.params.__name__ == "LogCoshParams"
        margin = get("loss", "multi_margin").params
        assert set(margin.model_fields) == {"p", "margin", "reduction"}
        assert margin.model_fields["p"].description == "1: hinge loss, 2: squared hinge loss."
        with pytest.raises(ValueError, match="less than or equal to 2"):
            margin.model_validate({"p": 3})
    finally:
        for m in [m for m in sys.modules if m.split(".")[0] == "torchyard_penalty"]:
            del sys.modules[m]


def test_registering_imports_neither_torch_nor_pydantic(project: Path) -> None:
    name, value, _ = entry_point(project)
    code = (
        "import json, sys\n"
        "from torchyard.plugins import PluginHost\n"
        f"info = PluginHost().add_plugin(__import__({value!r}), {name!r})\n"
        "assert info.status == 'ok', info.error\n"
        "print(json.dumps([m for m in ('torch', 'pydantic') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
