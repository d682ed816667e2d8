"""The table of component kinds: every part of torchyard reads it.

The end-to-end test adds a kind to a scratch copy of the package -- one
record appended to its kinds.py, nothing else touched -- and shows the kind
reaching the CLI, the config schema, validation and the generated docs.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from torchyard import hookspecs, kinds
from torchyard.config import RunConfig
from torchyard.registry import KINDS

from .conftest import ROOT

# -- the table itself -----------------------------------------------------------


def test_names_are_unique_across_kinds() -> None:
    words = [w for kind in kinds.TABLE for w in kind.words]
    assert len(words) == len(set(words)), words
    sections = [s.name for kind in kinds.TABLE for s in kind.sections]
    assert len(sections) == len(set(sections)), sections
    assert kinds.names() == KINDS


@pytest.mark.parametrize("kind", kinds.TABLE, ids=lambda k: k.name)
def test_every_kind_has_a_documented_registration_hook(kind: kinds.Kind) -> None:
    spec = getattr(hookspecs, kind.hook)
    assert hasattr(spec, "torchyard_spec")
    assert list(inspect.signature(spec).parameters) == ["register"]
    assert inspect.getdoc(spec) == inspect.cleandoc(kind.doc)
    assert hookspecs.REGISTRATION_HOOKS[kind.name] == kind.hook


@pytest.mark.parametrize("kind", kinds.TABLE, ids=lambda k: k.name)
def test_every_kind_names_importable_classes_and_checks(kind: kinds.Kind) -> None:
    from torchyard.config import ComponentSpec

    assert issubclass(kinds.import_object(kind.spec_base), ComponentSpec)
    if kind.conformance is not None:
        assert callable(kinds.import_object(kind.conformance))


def test_run_config_declares_the_table_shapes() -> None:
    """RunConfig's static sections say what the table says, so the typed
    fields and the validating model agree."""
    for kind in kinds.TABLE:
        for section in kind.sections:
            field = RunConfig.model_fields.get(section.name)
            if field is None:
                continue
            assert field.is_required() == (section.shape == "single"), section.name
            if section.shape == "optional":
                assert field.default is None, section.name


def test_kinds_imports_neither_torch_nor_pydantic() -> None:
    code = (
        "import sys\nfrom torchyard import kinds\n"
        "print(len(kinds.TABLE), *[m for m in ('torch', 'pydantic') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(kinds.TABLE))]


# -- every kind on the command line ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "word"),
    [(k.name, w) for k in kinds.TABLE for w in (*k.words, k.plural.upper())],
)
def test_list_accepts_every_word_for_every_kind(cli: Any, kind: str, word: str) -> None:
    result = cli("list", word, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {r["kind"] for r in rows} == {kind}


def test_docs_name_every_kind() -> None:
    concepts = (ROOT / "docs" / "concepts.md").read_text()
    cli_md = (ROOT / "docs" / "cli.md").read_text()
    rows = {
        cells[1].strip(): cells[2:4] for cells in (line.split("|") for line in concepts.splitlines() if line.startswith("| `"))
    }
    list_doc = cli_md.split("## torchyard list")[1].split("## torchyard show")[0]
    for kind in kinds.TABLE:
        assert f"`{kind.name}`" in rows, f"docs/concepts.md's table of kinds has no row for {kind.name}"
        sections, returns = rows[f"`{kind.name}`"]
        for section in kind.sections:
            assert f"`{section.name}`" in sections, (kind.name, section.name)
        assert returns.strip() == kind.summary
        assert f"`{kind.name}`" in list_doc, f"docs/cli.md's list does not name {kind.name}"


# -- a kind added to the table reaches every part ---------------------------------

_NEW_KIND = '''

# -- added by tests/test_kinds.py --
TABLE = (
    *TABLE,
    Kind(
        name="reporter",
        plural="reporters",
        aliases=("notifiers",),
        hook="register_reporters",
        doc="""Register reporters.

        :param register: call ``register(name, factory, ...)`` once per reporter.
        """,
        sections=(Section("reporters", "list", "Called as the run goes."),),
        title="Reporters",
        summary="an object the run calls",
    ),
)
'''

_PLUGIN = '''
import torchyard


class Printer:
    """Print progress every few epochs."""

    def __init__(self, every: int = 1, prefix: str = ">") -> None:
        """
        Args:
            every: Epochs between two prints.
            prefix: Put before every line.
        """
        self.every = every


@torchyard.hookimpl
def register_reporters(register):
    register("printer", "tyreporters:Printer")
'''


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A copy of torchyard with one more kind, and a plugin of that kind
    installed as a distribution (a dist-info folder with an entry point)."""
    root = tmp_path_factory.mktemp("scratch")
    package = root / "src" / "torchyard"
    shutil.copytree(ROOT / "framework" / "torchyard", package, ignore=shutil.ignore_patterns("__pycache__"))
    with (package / "kinds.py").open("a") as f:
        f.write(_NEW_KIND)
    site = root / "site"
    site.mkdir()
    (site / "tyreporters.py").write_text(textwrap.dedent(_PLUGIN))
    info = site / "torchyard_reporters-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchyard-reporters\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[torchyard]\nreporters = tyreporters\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(site)])}


def _torchyard(env: dict[str, str], *args: str, module: str = "torchyard", cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_a_new_kind_is_listed_and_shown(scratch: dict[str, str]) -> None:
    for word in ("reporter", "reporters", "Notifiers"):
        done = _torchyard(scratch, "list", word, "--json")
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert [(r["kind"], r["name"], r["distribution"]) for r in rows] == [
            ("reporter", "printer", "torchyard-reporters")
        ]
    table = _torchyard(scratch, "list").stdout.splitlines()
    assert [line.split()[:2] for line in table if line.startswith("reporter")] == [["reporter", "printer"]]
    helped = _torchyard(scratch, "list", "--help", cwd=None)
    assert "logger, reporter" in " ".join(helped.stdout.replace("│", " ").split())
    shown = _torchyard(scratch, "show", "reporters", "printer", "--json")
    assert shown.returncode == 0, shown.stderr
    params = {p["name"]: p for p in json.loads(shown.stdout)["params"]}
    assert params["every"]["default"] == 1
    assert params["every"]["description"] == "Epochs between two prints."
    assert set(params) == {"every", "prefix"}


def test_a_new_kind_has_a_config_section(scratch: dict[str, str], tmp_path: Path) -> None:
    done = _torchyard(scratch, "schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["properties"]["reporters"]["type"] == "array"
    assert schema["properties"]["reporters"]["description"] == "Called as the run goes."
    assert any(key.startswith("reporter_") for key in schema["$defs"])
    assert "reporters" not in schema["required"]

    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {name: small_cnn}\ndata: {name: digits}\nloss: {name: cross_entropy}\n"
        "optimizer: {name: adamw}\nreporters: [{name: printer, every: 2}]\n"
    )
    checked = _torchyard(scratch, "check", str(config), "--set", "trainer.device=cpu")
    assert checked.returncode == 0, checked.stderr
    assert "reporters: printer" in checked.stdout

    config.write_text(config.read_text().replace("{name: printer, every: 2}", "{name: printr}, {name: printer, evry: 2}"))
    refused = _torchyard(scratch, "check", str(config))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: reporters.0: unknown reporter 'printr'; did you mean 'printer'?",
        "error: reporters.1.evry: unknown key; did you mean 'every'?",
    ]


def test_a_new_kind_is_in_the_generated_docs(scratch: dict[str, str]) -> None:
    done = _torchyard(scratch, "torchyard-reporters", module="torchyard.reference")
    assert done.returncode == 0, done.stderr
    assert "## Reporters\n\n### `printer`\n" in done.stdout
    assert "| `every` | int | `1` |  | Epochs between two prints. |" in done.stdout
