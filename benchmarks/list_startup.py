"""Start-up time of the CLI: ``torchyard list`` and ``torchyard --help``.

Listing components must stay fast -- under half a second -- because it only
reads the registry: the built-in plugins register their components as import
paths, so nothing imports torch (about 2.6 s on the reference machines) until
a run needs it. This benchmark measures, as a user would see it, the wall time
of fresh processes:

* ``torchyard list`` through the installed console script,
* ``python -m torchyard list``,
* ``torchyard --help``,
* with the timm extra installed, ``torchyard list`` again with the timm
  plugin disabled (``TORCHYARD_DISABLE_PLUGINS=builtin-timm``): what the
  extra costs the listing,
* and, for scale, ``python -c pass`` (the interpreter alone),
  ``python -c "import torch"`` and, with the extra, ``python -c "import timm"``
  (skip both with ``--no-torch-reference``).

Each command runs once untimed (to warm the page cache and byte-code), then
``--runs`` times; the table shows the median and the minimum. Separately, a
fresh interpreter invokes the CLI app for ``list`` in-process and reports
whether ``torch`` (and which other heavy packages) ended up in
``sys.modules`` and the timm plugin's status; importing torch or timm is a
failure (exit status 1), a slow listing is only reported.

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/list_startup.py
    .venv/bin/python benchmarks/list_startup.py --runs 20 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _machine  # benchmarks/_machine.py, beside this script

#: The issue's target for ``torchyard list``, in seconds.
TARGET_S = 0.5

#: Packages whose presence after ``torchyard list`` is worth knowing.
HEAVY_MODULES = (
    "torch", "torchvision", "numpy", "pandas", "sklearn", "pydantic", "timm", "huggingface_hub",
)
#: Of those, the ones ``list`` must never import.
FORBIDDEN = ("torch", "timm")
#: The plugin of the ``timm`` extra.
TIMM_PLUGIN = "builtin-timm"

#: Run in a fresh interpreter: invoke the CLI for ``list`` in-process, then
#: report which heavy modules were imported, as JSON on stdout.
IMPORT_PROBE = """
import contextlib, io, json, sys
from torchyard.cli import app
from torchyard.plugins import get_host
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        app(["list"], standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
listed = out.getvalue()
heavy = {heavy!r}
print(json.dumps({{
    "listed_lines": listed.count("\\n"),
    "imported": {{name: name in sys.modules for name in heavy}},
    "timm_plugin": getattr(get_host().plugins.get({timm_plugin!r}), "status", "absent"),
}}))
"""


@dataclass(frozen=True)
class Timing:
    """Wall times of one command over several fresh processes."""

    label: str
    argv: list[str]
    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "argv": self.argv,
            "median_s": self.median,
            "min_s": self.best,
            "max_s": max(self.times),
            "times_s": self.times,
        }


def console_script() -> str:
    """The installed ``torchyard`` script beside this interpreter (else on PATH)."""
    beside = Path(sys.executable).parent / "torchyard"
    if beside.is_file():
        return str(beside)
    found = shutil.which("torchyard")
    if found is None:
        raise SystemExit("error: the torchyard console script is not installed (pip install -e .)")
    return found


def time_command(label: str, argv: list[str], runs: int, env: dict[str, str] | None = None) -> Timing:
    """Run ``argv`` once untimed, then ``runs`` times; each must exit 0.
    ``env``: variables added to the environment."""
    times: list[float] = []
    environ = {**os.environ, **(env or {})}
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environ
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"error: {' '.join(argv)} exited with {done.returncode}:\n{done.stderr.strip()}"
            )
        if i > 0:
            times.append(elapsed)
    return Timing(label, argv, times)


def probe_imports() -> dict[str, Any]:
    """Which heavy modules a fresh process holds after running ``list``."""
    code = IMPORT_PROBE.format(heavy=HEAVY_MODULES, timm_plugin=TIMM_PLUGIN)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"error: the import probe failed:\n{done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["listed_lines"] == 0:
        raise SystemExit("error: the import probe's `list` printed nothing")
    return result



def measure(runs: int, *, torch_reference: bool) -> dict[str, Any]:
    """Time every command, probe the imports, and judge against the target."""
    script, python = console_script(), sys.executable
    with_timm = importlib.util.find_spec("timm") is not None
    no_timm = {"TORCHYARD_DISABLE_PLUGINS": TIMM_PLUGIN}
    commands: list[tuple[str, list[str], int, dict[str, str] | None]] = [
        ("torchyard list", [script, "list"], runs, None),
        ("python -m torchyard list", [python, "-m", "torchyard", "list"], runs, None),
        ("torchyard --help", [script, "--help"], runs, None),
        ("python -c pass", [python, "-c", "pass"], runs, None),
    ]
    if with_timm:
        commands.insert(1, ("torchyard list, timm plugin off", [script, "list"], runs, no_timm))
    if torch_reference:
        commands.append(('python -c "import torch"', [python, "-c", "import torch"], min(runs, 3), None))
        if with_timm:
            commands.append(('python -c "import timm"', [python, "-c", "import timm"], min(runs, 3), None))
    timings = [time_command(label, argv, n, env) for label, argv, n, env in commands]
    imports = probe_imports()
    listing = [t for t in timings if " list" in t.label]
    return {
        "benchmark": "list_startup",
        "runs": runs,
        "target_s": TARGET_S,
        "commands": [t.as_dict() for t in timings],
        "imports_after_list": imports["imported"],
        "torch_imported": imports["imported"]["torch"],
        "forbidden_imported": [m for m in FORBIDDEN if imports["imported"][m]],
        "timm_installed": with_timm,
        "timm_plugin": imports["timm_plugin"],
        "meets_target": all(t.median < TARGET_S for t in listing),
        "machine": _machine.machine_info(),
    }


def print_table(summary: dict[str, Any]) -> None:
    """The summary as a small text table."""
    print(f"CLI start-up: fresh processes, {summary['runs']} timed runs each (after one warm-up)")
    print(f"{'command':<32} {'median s':>9} {'min s':>7} {'max s':>7} {'runs':>5}")
    for c in summary["commands"]:
        print(
            f"{c['label']:<32} {c['median_s']:>9.3f} {c['min_s']:>7.3f} {c['max_s']:>7.3f} "
            f"{len(c['times_s']):>5}"
        )
    checked = summary["imports_after_list"]
    imported = [name for name, present in checked.items() if present]
    if imported:
        print(f"heavy modules imported by `list`: {', '.join(imported)} (of {', '.join(checked)})")
    else:
        print(f"heavy modules imported by `list`: none of {', '.join(checked)}")
    forbidden = summary["forbidden_imported"]
    print(f"{' or '.join(FORBIDDEN)} imported by `list`: {', '.join(forbidden) + ' -- FAILURE' if forbidden else 'no'}")
    print(f"timm installed: {'yes' if summary['timm_installed'] else 'no'}; plugin {TIMM_PLUGIN}: {summary['timm_plugin']}")
    verdict = "meets" if summary["meets_target"] else "MISSES"
    print(f"{verdict} the target: `torchyard list` median < {summary['target_s']} s")
    m = summary["machine"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, python {m['python']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: --runs, --no-torch-reference, --json."""
    parser = argparse.ArgumentParser(
        description="Wall time of `torchyard list` and `torchyard --help`; check that "
        "listing imports neither torch nor timm."
    )
    parser.add_argument(
        "--runs", type=int, default=10, help="Timed runs of each command (default: 10)."
    )
    parser.add_argument(
        "--no-torch-reference",
        dest="torch_reference",
        action="store_false",
        help="Do not time `python -c 'import torch'` (and 'import timm') for scale.",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and fail (exit 1) only if listing imported torch or timm."""
    args = parse_args(argv)
    summary = measure(args.runs, torch_reference=args.torch_reference)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 1 if summary["forbidden_imported"] else 0


if __name__ == "__main__":
    sys.exit(main())
