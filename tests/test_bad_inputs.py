"""Broken configs, data files and command lines: each fails clearly and writes nothing.

Every directory under ``tests/bad_inputs/`` is one case (see its README.md):

- ``config.yaml`` / ``config.json``: the config (optional when ``args.txt``
  does not use ``{config}``), plus whatever data files it names;
- ``expected.txt``: one substring per line, each of which stderr must contain;
- ``args.txt``: the command line after ``torchyard`` (default ``check
  {config}``), split like a shell does, with ``{config}``, ``{case}`` (the
  case's copy), ``{out}`` (a fresh path that must not exist afterwards) and
  ``{keep}`` (an earlier run's directory that must stay byte-for-byte
  unchanged) replaced;
- ``xfail.txt``: the reason, when the case shows a known bug;
- ``skip_if_available.txt``: ``cuda`` or ``mps``: the case needs a machine
  without that backend;
- ``plugins.txt``: extra plugins to load besides the installed ones,
  ``name = module:attribute`` per line.

Each case is copied to a temporary directory and run in-process from
another directory, so relative paths must resolve against the config file.
The command must exit with code 2, print only ``error: ...`` lines on
stderr, never a traceback, and leave every file as it was.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import torchyard
from torchyard.plugins import PluginHost, reset_host

CASES_DIR = Path(__file__).parent / "bad_inputs"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
CONFIG_NAMES = ("config.yaml", "config.yml", "config.json")


def _cases() -> list[Any]:
    params = []
    for case in CASES:
        xfail = case / "xfail.txt"
        marks = (
            [pytest.mark.xfail(strict=True, reason=xfail.read_text().strip())]
            if xfail.is_file()
            else []
        )
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file contents, ``None`` for directories."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _command(case: Path, work: Path, out: Path, keep: Path) -> list[str]:
    args_file = case / "args.txt"
    text = args_file.read_text() if args_file.is_file() else "check {config}"
    configs = [work / name for name in CONFIG_NAMES if (work / name).is_file()]
    values = {
        "{case}": str(work),
        "{out}": str(out),
        "{keep}": str(keep),
        "{config}": str(configs[0]) if configs else "<no config file in the case>",
    }
    args = shlex.split(text)
    for placeholder, value in values.items():
        args = [a.replace(placeholder, value) for a in args]
    return args


def _assert_clean_failure(result: Any, expected: list[str]) -> None:
    """Exit code 2, stderr all ``error: `` lines with the expected text, no traceback."""
    report = (
        f"exit code {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
        f"--- exception\n{result.exception!r}"
    )
    assert result.exit_code == 2, report
    assert result.exception is None or isinstance(result.exception, SystemExit), report
    assert "Traceback" not in result.output, report
    lines = result.stderr.strip().splitlines()
    assert lines, report
    assert all(line.startswith("error: ") for line in lines), report
    for fragment in expected:
        assert fragment in result.stderr, f"expected {fragment!r} in stderr\n{report}"


@pytest.fixture(scope="module")
def hosts() -> Any:
    """Plugin hosts by extra plugins, each loaded once: building every
    component's config model again for each of the ~150 invocations would
    take minutes."""
    cache: dict[str, PluginHost] = {}

    def host(extra: str = "") -> PluginHost:
        if extra not in cache:
            new = PluginHost()
            new.load_entrypoints()  # what the command loads: the real entry-point plugins
            for line in filter(str.strip, extra.splitlines()):
                name, _, value = (part.strip() for part in line.partition("="))
                module, _, attribute = value.partition(":")
                info = new.add_plugin(getattr(importlib.import_module(module), attribute), name)
                assert info.status == "ok", info
            cache[extra] = new
        return cache[extra]

    return host


@pytest.mark.parametrize("case", _cases())
def test_bad_input(case: Path, hosts: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip = case / "skip_if_available.txt"
    if skip.is_file():
        import torch

        backend = skip.read_text().strip()
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        if available[backend]():
            pytest.skip(f"{backend} is available here")
    plugins = case / "plugins.txt"
    host = hosts(plugins.read_text() if plugins.is_file() else "")
    monkeypatch.delenv("TORCHYARD_DEBUG", raising=False)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        from torchyard.cli import app

        reset_host(host)
        try:
            return runner.invoke(app, list(args))
        finally:
            reset_host()

    work = tmp_path / "case"
    shutil.copytree(case, work)
    keep = tmp_path / "runs" / "earlier-run"
    (keep / "checkpoints").mkdir(parents=True)
    (keep / "keep.txt").write_text("an earlier run: keep me\n")
    (keep / "checkpoints" / "notes.txt").write_text("not a checkpoint\n")
    out = tmp_path / "runs" / "new-run"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not depend on the working directory

    expected = [line for line in (case / "expected.txt").read_text().splitlines() if line.strip()]
    assert expected, f"{case.name}: expected.txt is empty"
    args = _command(case, work, out, keep)
    before = _snapshot(tmp_path)

    _assert_clean_failure(cli(*args), expected)
    assert not out.exists(), f"{out} was created: {sorted(p.name for p in out.rglob('*'))}"
    assert _snapshot(tmp_path) == before, "files were written or changed"

    if str(out) in args and args[0] in ("run", "predict"):
        # the same mistake with --overwrite into an earlier run: still nothing written there
        again = [a.replace(str(out), str(keep)) for a in args] + ["--overwrite"]
        _assert_clean_failure(cli(*again), expected)
        assert _snapshot(tmp_path) == before, "--overwrite: files were written or changed"


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30, [c.name for c in CASES]


def test_every_case_is_complete() -> None:
    """Each case says what it expects, and names only placeholders and files it has."""
    known = {"{config}", "{case}", "{out}", "{keep}"}
    for case in CASES:
        expected = case / "expected.txt"
        assert expected.is_file() and expected.read_text().strip(), f"{case.name}: no expected.txt"
        args_file = case / "args.txt"
        args = args_file.read_text() if args_file.is_file() else "check {config}"
        placeholders = set(re.findall(r"\{[a-z]+\}", args))
        assert placeholders <= known, f"{case.name}: unknown placeholders {placeholders - known}"
        if "{config}" in args:
            assert any((case / name).is_file() for name in CONFIG_NAMES), f"{case.name}: no config"
        for name in ("xfail.txt", "plugins.txt"):
            if (case / name).is_file():
                assert (case / name).read_text().strip(), f"{case.name}: {name} is empty"
        skip = case / "skip_if_available.txt"
        if skip.is_file():
            assert skip.read_text().strip() in ("cuda", "mps"), case.name


class _BadInputsPlugin:
    """Datasets for the cases whose data the built-ins cannot get wrong."""

    @torchyard.hookimpl
    def register_datasets(self, register: Any) -> None:
        register("bad_inputs_tensors", _tensors, description="Tiny tensors as told (tests only).")
        register(
            "bad_inputs_not_a_bundle", _not_a_bundle, description="Returns a dict (tests only)."
        )


def _tensors(
    labels: list[int] = [0, 1, 2, 0, 1, 2],  # noqa: B006 - read only
    num_classes: int = 3,
    val: int = 3,
    test: int = 2,
    test_ids: int | None = None,
) -> Any:
    """``labels`` as training targets of 1x8x8 zeros, ``val`` validation and
    ``test`` test samples, and ``test_ids`` ids (default: one per test sample)."""
    import torch
    from torch.utils.data import TensorDataset

    from torchyard.data import DataBundle

    def images(n: int) -> torch.Tensor:
        return torch.zeros(n, 1, 8, 8)

    return DataBundle(
        train=TensorDataset(images(len(labels)), torch.tensor(labels)),
        val=TensorDataset(images(val), torch.zeros(val, dtype=torch.long)),
        test=TensorDataset(images(test)),
        test_ids=list(range(test if test_ids is None else test_ids)),
        num_classes=num_classes,
        input_shape=(1, 8, 8),
        train_targets=list(labels),
    )


def _not_a_bundle() -> Any:
    return {"train": [], "val": []}


BAD_INPUTS_PLUGIN = _BadInputsPlugin()
