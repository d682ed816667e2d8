"""Helpers shared by the submission writers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def plain_filename(filename: str) -> str:
    """``filename`` if it names a file directly inside the run directory.

    Writers never write outside the run directory, so a path separator,
    ``.`` or ``..`` is refused (a ``ValueError``: a config problem).
    """
    separators = {"/", "\\", os.sep, os.altsep or "/"}
    if filename in ("", ".", "..") or any(s in filename for s in separators):
        raise ValueError(
            f"filename must be a plain file name inside the run directory, got {filename!r}"
        )
    return filename


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
