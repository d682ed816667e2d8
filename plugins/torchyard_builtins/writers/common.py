"""Helpers shared by the submission writers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plain_filename(filename: str) -> str:
    """``filename`` if it names a file directly inside the run directory,
    and not one the run keeps for itself (``config.yaml``, ``checkpoints``,
    ...): see :func:`torchyard.files.check_output_name`. A ``ValueError``
    (a config problem) otherwise."""
    from torchyard.files import check_output_name

    return check_output_name(filename)


def first_few(values: Sequence[Any], n: int = 5) -> str:
    """``'a, b, c'`` -- the first ``n`` values, with ``, ...`` when there are more."""
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


def duplicates(values: Sequence[Any]) -> list[Any]:
    """Values that occur more than once, each listed once, in first-seen order."""
    seen: set[Any] = set()
    repeated: dict[Any, None] = {}
    for value in values:
        if value in seen:
            repeated[value] = None
        seen.add(value)
    return list(repeated)
