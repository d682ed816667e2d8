"""Image classification datasets from files: a CSV of paths, or a folder per class.

Both return every labelled image as ``train`` (validation is carved out by
the config's ``split`` section, group-aware when the data has groups) and
the same images with the eval transforms as ``train_eval``; the unlabelled
test images, in the test CSV's order, as ``test`` with ``test_ids``.

**Paths.** In a config, relative ``csv``, ``root``, ``test_csv`` and
``test_root`` are taken from the config file's folder (called from Python:
from the current directory); the paths inside a CSV are relative to
``root`` (default: the CSV's folder) or ``test_root``.

**Samples.** Each image is decoded to ``uint8`` ``(C, H, W)`` (RGB, or gray
with ``color: gray``), resized to ``image_size`` when set, passed through the
configured transforms (``transforms.train`` for ``train``,
``transforms.eval`` for everything else), and a ``uint8`` result is scaled to
``float32`` in ``[0, 1]`` -- so no transform at all is needed to train, and a
list ending in ``to_dtype``/``normalize`` is left as it is. Without
``image_size`` images keep their size, and every sample must come out with
the shape of the first (else an error names the odd file).

**Bad images.** Every listed file is checked to exist before training. With
``on_bad_image: error`` (default) missing files are one error naming the
first few, and a file that cannot be decoded is an error naming it when it
is loaded. With ``on_bad_image: skip`` every labelled image is decoded once
up front, and missing or corrupt ones are left out with a warning that
counts them. Test images are never skipped (the submission needs every id);
``verify_images: true`` decodes them (and the labelled ones) up front too.

**Classes from several columns** (``image_csv``). With ``label_columns:
[mask, gender, age_group]`` each combination of values is one class. The
values of a column are ordered as listed in ``label_values`` (e.g.
``{mask: [wear, incorrect, not_wear]}``; a value not listed is an error), or
else sorted (numerically when every value is a number). Class indices
follow ``itertools.product`` of those orders -- the first column is the most
significant digit: ``index = (mask * 2 + gender) * 3 + age_group`` for 3 x 2
x 3 values -- and class names join the values with ``/``
(``wear/male/<30``). Every combination is a class, whether or not it occurs.
``class_names`` replaces the names (one per class, in index order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from torchyard.data import DataBundle
from torchyard.errors import DataError, did_you_mean
from torchyard_builtins.datasets.image_files import (
    IMAGE_EXTENSIONS,
    Color,
    ImageDataset,
    ImageReader,
    OnBadImage,
    check_images,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["combine_labels", "image_csv", "image_folder"]

Transform = Callable[[Any], Any]
#: Separator of the column values in a combined class name.
CLASS_SEPARATOR = "/"

_IMAGE_SIZE = Field(
    description="Resize every image to this size ([height, width]; one number: a square) "
    "right after decoding, before the transforms; unset: keep each image's size (all "
    "images must then come out of the transforms equally sized)."
)
_COLOR = Field(description="Decode images as 'rgb' (3 channels) or 'gray' (1 channel).")
_ON_BAD = Field(
    description="'error': a missing or undecodable labelled image stops the run, naming "
    "it; 'skip': decode every labelled image up front and leave the bad ones out, with a "
    "warning that counts them."
)
_VERIFY = Field(
    description="Decode every image (test images included) once before training, so a "
    "corrupt file is reported up front rather than when it is loaded."
)
_TEST_CSV = Field(description="CSV of the unlabelled images to predict; unset: no test split.")
_TEST_ID = Field(description="The test CSV's id column (the submission's ids); unset: its first column.")
_TEST_PATH = Field(
    description="The test CSV's image path column; unset: the id is the path (a file name "
    "such as ImageID 'a1b2.jpg')."
)
_TEST_ROOT = Field(
    description="Folder the test image paths are relative to; unset: the test CSV's folder. "
    "image_folder without a test_csv: every image under this folder is a test image, "
    "its path (relative to the folder) its id."
)


def image_csv(
    csv: Annotated[Path, Field(description="CSV listing the labelled images, one row per image.")],
    root: Annotated[
        Path | None, Field(description="Folder the image paths are relative to; unset: the CSV's folder.")
    ] = None,
    path_column: Annotated[str, Field(min_length=1, description="Column of image paths.")] = "path",
    label_columns: Annotated[
        list[str],
        Field(min_length=1, description="Label column(s); several are combined into one class "
              "per combination of values (first column most significant)."),
    ] = ["label"],  # noqa: B006 - read only
    label_values: Annotated[
        dict[str, list[str | int | float]] | None,
        Field(description="Per label column, its values in class order (as written in the CSV); "
              "unset columns: their values sorted."),
    ] = None,
    class_names: Annotated[
        list[str] | None,
        Field(description="Class names in index order; unset: the values joined with '/'."),
    ] = None,
    group_column: Annotated[
        str | None,
        Field(description="Column grouping the samples (a person, a patient): a split keeps each "
              "group on one side."),
    ] = None,
    test_csv: Annotated[Path | None, _TEST_CSV] = None,
    test_id_column: Annotated[str | None, _TEST_ID] = None,
    test_path_column: Annotated[str | None, _TEST_PATH] = None,
    test_root: Annotated[Path | None, _TEST_ROOT] = None,
    image_size: Annotated[list[int] | int | None, _IMAGE_SIZE] = None,
    color: Annotated[Color, _COLOR] = "rgb",
    on_bad_image: Annotated[OnBadImage, _ON_BAD] = "error",
    verify_images: Annotated[bool, _VERIFY] = False,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
) -> DataBundle:
    """Labelled images listed in a CSV (one or several label columns, an optional
    group column) and an optional test CSV.

    See the module documentation for the class order, the default image
    handling and bad images.
    """
    frame = _read_csv(csv, [path_column, *label_columns, *([group_column] if group_column else [])])
    targets, names = combine_labels(frame, label_columns, label_values, source=str(csv))
    if class_names is not None:
        if len(class_names) != len(names):
            raise ValueError(
                f"class_names has {len(class_names)} names for {len(names)} classes "
                f"({' x '.join(label_columns)})"
            )
        names = list(class_names)
    base = Path(root) if root is not None else Path(csv).parent
    paths = [str(base / p) for p in frame[path_column]]
    groups = frame[group_column].tolist() if group_column else None
    return _bundle(
        paths, targets, names, groups, source=str(csv),
        test=_test_from_csv(test_csv, test_id_column, test_path_column, test_root),
        image_size=image_size, color=color, on_bad_image=on_bad_image, verify=verify_images,
        train_transform=train_transform, eval_transform=eval_transform,
    )  # fmt: skip


def image_folder(
    root: Annotated[Path, Field(description="Folder with one subfolder of images per class.")],
    classes: Annotated[
        list[str] | None,
        Field(description="The class subfolders to use, in class-index order; unset: every "
              "subfolder, sorted."),
    ] = None,
    test_csv: Annotated[Path | None, _TEST_CSV] = None,
    test_id_column: Annotated[str | None, _TEST_ID] = None,
    test_path_column: Annotated[str | None, _TEST_PATH] = None,
    test_root: Annotated[Path | None, _TEST_ROOT] = None,
    image_size: Annotated[list[int] | int | None, _IMAGE_SIZE] = None,
    color: Annotated[Color, _COLOR] = "rgb",
    on_bad_image: Annotated[OnBadImage, _ON_BAD] = "error",
    verify_images: Annotated[bool, _VERIFY] = False,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
) -> DataBundle:
    """torchvision's ImageFolder layout: ``root/<class>/<image>`` (subfolders
    included), the class names the folder names; no groups.

    Test images come from ``test_csv`` (as in ``image_csv``), or are every
    image under ``test_root``, sorted by path.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}{_where(folder)}")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = list(classes) if classes is not None else found
    unknown = [c for c in names if c not in found]
    if unknown:
        raise DataError(
            f"{folder} has no class folder {unknown[0]!r}{did_you_mean(unknown[0], found)} "
            f"(its folders: {', '.join(found) or 'none'})"
        )
    if not names:
        raise DataError(f"{folder} has no class subfolders (expected {folder}/<class>/<image>)")
    paths: list[str] = []
    targets: list[int] = []
    for index, name in enumerate(names):
        images = _list_images(folder / name)
        if not images:
            raise DataError(
                f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "remove it, or list the classes to use in classes"
            )
        paths += [str(folder / name / p) for p in images]
        targets += [index] * len(images)
    test: tuple[list[str], list[str], str] | None
    if test_csv is None and test_root is not None:
        ids = _list_images(Path(test_root))
        if not ids:
            raise DataError(f"test_root {test_root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        test = ([str(Path(test_root) / i) for i in ids], ids, f"folder {test_root}")
    else:
        test = _test_from_csv(test_csv, test_id_column, test_path_column, test_root)
    return _bundle(
        paths, np.asarray(targets, dtype=np.int64), names, None, source=f"folder {folder}",
        test=test, image_size=image_size, color=color, on_bad_image=on_bad_image,
        verify=verify_images, train_transform=train_transform, eval_transform=eval_transform,
    )  # fmt: skip


def combine_labels(
    frame: pd.DataFrame,
    columns: Sequence[str],
    label_values: dict[str, list[Any]] | None = None,
    *,
    source: str = "the CSV",
) -> tuple[np.ndarray, list[str]]:
    """Class indices of the rows, and the class names, from ``columns``.

    Each column's values are ordered by ``label_values`` or sorted; the
    class index enumerates ``itertools.product`` of the orders (first column
    most significant), and a class name joins its values with ``/``.

    :raises DataError: a blank label, or a value ``label_values`` omits.
    :raises ValueError: ``label_values`` names a column not in ``columns``.
    """
    label_values = label_values or {}
    stray = [c for c in label_values if c not in columns]
    if stray:
        raise ValueError(f"label_values: {stray[0]!r} is not one of label_columns ({', '.join(columns)})")
    orders: list[list[str]] = []
    codes = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        values = frame[column].astype(str).str.strip()
        blank = np.flatnonzero((values == "").to_numpy())
        if len(blank):
            raise DataError(
                f"{source}: column {column!r} is blank in {len(blank)} rows (first: data row "
                f"{blank[0] + 1}); every labelled image needs every label"
            )
        if column in label_values:
            order = [_text(v) for v in label_values[column]]
            unlisted = sorted(set(values) - set(order))
            if unlisted:
                raise DataError(
                    f"{source}: column {column!r} has values not in label_values.{column} "
                    f"({', '.join(order)}): {', '.join(unlisted[:5])}"
                )
        else:
            order = _sorted_values(set(values))
        index = {value: i for i, value in enumerate(order)}
        codes = codes * len(order) + values.map(index).to_numpy(dtype=np.int64)
        orders.append(order)
    names = [CLASS_SEPARATOR.join(combo) for combo in itertools.product(*orders)]
    return codes, names


def _text(value: Any) -> str:
    """A configured label value as the CSV writes it (``1``, not ``1.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sorted_values(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _where(path: Path) -> str:
    return "" if path.is_absolute() else f" (relative to {Path.cwd()})"


def _read_csv(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """``path`` as strings kept verbatim, checked to have ``columns``."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise DataError(f"CSV file not found: {file}{_where(file)}")
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{file} is not a readable CSV: {e}") from e
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{file} has no column {column!r}{did_you_mean(column, frame.columns)} "
                f"(its columns: {', '.join(frame.columns)})"
            )
    if frame.empty:
        raise DataError(f"{file} lists no rows")
    return frame


def _test_from_csv(
    csv: Path | None, id_column: str | None, path_column: str | None, root: Path | None
) -> tuple[list[str], list[str], str] | None:
    """The test images' paths, their ids (in the CSV's order), and the source."""
    if csv is None:
        return None
    frame = _read_csv(csv, [c for c in (id_column, path_column) if c])
    ids = frame[id_column or frame.columns[0]].tolist()
    base = Path(root) if root is not None else Path(csv).parent
    paths = [str(base / p) for p in (frame[path_column] if path_column else ids)]
    return paths, ids, str(csv)


def _list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, hidden ones left out), as
    sorted relative paths."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}{_where(folder)}")
    found = (p.relative_to(folder) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    # hidden files and folders (.ipynb_checkpoints, ._x.jpg) are not images of the set
    return sorted(
        p.as_posix()
        for p in found
        if not any(part.startswith(".") for part in p.parts) and (folder / p).is_file()
    )


def image_reader(
    image_size: list[int] | int | None = None,
    color: Color = "rgb",
    eval_transform: Transform | None = None,
    **_: Any,
) -> ImageReader:
    """How ``image_csv`` and ``image_folder`` turn a file into a model input
    (their ``reader``): as the validation and test images are read."""
    return ImageReader(image_size=_image_size(image_size), color=color, transform=eval_transform)


def _image_size(size: list[int] | int | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = [size]
    if len(size) not in (1, 2) or min(size) < 1:
        raise ValueError(f"image_size: expected one or two positive numbers, got {size}")
    return (size[0], size[-1])


def _bundle(
    paths: list[str],
    targets: np.ndarray,
    class_names: list[str],
    groups: list[Any] | None,
    *,
    source: str,
    test: tuple[list[str], list[str], str] | None,
    image_size: list[int] | int | None,
    color: Color,
    on_bad_image: OnBadImage,
    verify: bool,
    train_transform: Transform | None,
    eval_transform: Transform | None,
) -> DataBundle:
    """Check the files and assemble the DataBundle."""
    size = _image_size(image_size)
    keep = check_images(
        paths, on_bad_image=on_bad_image, source=source, decode=verify or on_bad_image == "skip",
        color=color,
    )  # fmt: skip
    if not keep.any():
        raise DataError(f"{source}: no usable labelled image is left")
    kept = np.asarray(paths, dtype=str)[keep]  # one array shared by the datasets
    targets = targets[keep]
    if groups is not None:
        groups = [g for g, ok in zip(groups, keep, strict=True) if ok]
    test_set = test_ids = None
    if test is not None:
        test_paths, test_ids, test_source = test
        check_images(test_paths, on_bad_image="error", source=test_source, decode=verify, color=color)
        test_set = ImageDataset(test_paths, transform=eval_transform, image_size=size, color=color)
    train_eval = ImageDataset(kept, targets, transform=eval_transform, image_size=size, color=color)
    shape = train_eval.sample_shape
    return DataBundle(
        train=ImageDataset(kept, targets, transform=train_transform, image_size=size, color=color),
        train_eval=train_eval,
        val=None,
        test=test_set,
        test_ids=test_ids,
        task="classification",
        num_classes=len(class_names),
        class_names=class_names,
        input_shape=shape,
        train_targets=targets.tolist(),
        groups=groups,
    )
