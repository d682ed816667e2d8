"""Bounded inputs: alias bombs, huge integers and huge images answer at once, in one line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from torchyard.config_io import MAX_VALUES, parse_yaml, read_config_file, show_value
from torchyard.errors import ConfigError
from torchyard.params import INT_LIMIT


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel: *a{levels - 1}\n"


@pytest.mark.parametrize("levels", [9, 10, 12])
def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(levels))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        read_config_file(path)
    assert time.perf_counter() - started < 0.5
    assert e.value.problems == (
        f"{path}: the YAML expands to more than {MAX_VALUES:,} values (aliases nested too deep?)",
    )


def test_shared_aliases_under_the_limit_are_fine() -> None:
    assert parse_yaml("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_bounds_in_a_set_value_name_the_override() -> None:
    from torchyard.config_io import apply_overrides

    flow = "{" + _bomb(9).replace("\n", ", ").rstrip(", ") + "}"
    with pytest.raises(ConfigError, match=r"^--set model: the YAML expands"):
        apply_overrides({}, [f"model={flow}"])


def test_show_value_cuts_strings_and_containers() -> None:
    assert show_value("x" * 1000) == "'" + "x" * 56 + "..."
    assert len(show_value(list(range(100_000)))) == 60
    assert show_value({"a": 1}) == '{"a": 1}'


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs", "<= 100000"),
        ("trainer.seed", "<= 9223372036854775807"),
        ("trainer.num_threads", "<= 1024"),
        ("loader.batch_size", "<= 16777216"),
        ("loader.num_workers", "<= 256"),
        ("model.channels", "<= 4096"),
        ("optimizer.weight_decay", None),  # a float: 2**70 is a number like any other
    ],
)
def test_huge_integers_are_refused_in_one_line(override: str, expected: str | None) -> None:
    from torchyard.api import load_run_config

    example = Path(__file__).parent.parent / "examples" / "digits.yaml"
    if expected is None:
        load_run_config(example, [f"{override}={2**70}"])
        return
    with pytest.raises(ConfigError) as e:
        load_run_config(example, [f"{override}={2**70}"])
    assert e.value.problems == (f"{override}: expected a number {expected}, got {2**70}",)


def test_the_generic_int_bound_covers_derived_params() -> None:
    from torchyard.api import load_run_config

    example = Path(__file__).parent.parent / "examples" / "digits.yaml"
    with pytest.raises(ConfigError) as e:
        load_run_config(example, [f"scheduler.T_max={INT_LIMIT + 1}"])
    assert e.value.problems == (f"scheduler.T_max: expected a number <= {INT_LIMIT}, got {INT_LIMIT + 1}",)


def test_lr_with_huge_max_epochs_is_refused_quickly() -> None:
    from typer.testing import CliRunner

    from torchyard.cli import app

    example = Path(__file__).parent.parent / "examples" / "digits.yaml"
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["lr", str(example), "-s", "trainer.max_epochs=100000"])
    assert time.perf_counter() - started < 30
    assert result.exit_code == 2
    assert "lr previews at most 1,000,000" in result.stderr


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    from PIL import Image

    from torchyard_builtins.datasets.image_files import BadImageError, load_image

    path = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(path)  # a few KB on disk, 1.2 GB as RGB
    assert path.stat().st_size < 200_000
    started = time.perf_counter()
    with pytest.raises(BadImageError) as e:
        load_image(str(path))
    assert time.perf_counter() - started < 1
    assert e.value.problems == (
        f"image {path} is 20000x20000 pixels, more than the limit of 89,478,485 "
        "(resize it, or leave it out)",
    )
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 6)).save(small)
    assert tuple(load_image(str(small)).shape) == (3, 6, 8)


@pytest.mark.parametrize(
    ("suffix", "mode", "options"),
    [
        (".jpg", "RGB", {"quality": 90}),
        (".jpg", "RGB", {"progressive": True, "optimize": True}),
        (".jpg", "L", {}),
        (".jpg", "CMYK", {}),
        (".jpg", "RGB", {"exif": b"Exif\x00\x00" + b"\x00" * 60_000}),  # a large APP1 segment before the frame
        (".png", "RGB", {}),
        (".png", "P", {}),
        (".png", "I;16", {}),
        (".webp", "RGB", {}),
        (".gif", "P", {}),
    ],
    ids=["jpeg", "progressive", "gray-jpeg", "cmyk-jpeg", "jpeg-exif", "png", "palette-png", "16-bit-png", "webp", "gif"],
)
@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_the_header_size_is_pillows(tmp_path: Path, suffix: str, mode: str, options: dict[str, Any]) -> None:
    """The size the pixel limit is checked against, parsed from PNG and JPEG
    bytes (else None: Pillow reads it), is the image's size as Pillow reads it."""
    from PIL import Image

    from torchyard_builtins.datasets.image_files import _header_pixels, load_image

    path = tmp_path / f"image{suffix}"
    Image.new(mode, (37, 23)).save(path, **options)
    data = path.read_bytes()
    expected = (37, 23) if suffix in (".jpg", ".png") else None
    assert _header_pixels(data) == expected
    if suffix == ".jpg":
        assert _header_pixels(data[:40]) in (expected, None)  # cut short: never a wrong size
    assert tuple(load_image(str(path)).shape) == (3, 23, 37)
    assert _header_pixels(b"") is None and _header_pixels(b"\xff\xd8\xff") is None
