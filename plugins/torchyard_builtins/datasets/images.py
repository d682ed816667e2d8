"""Image datasets from files: a CSV of paths (or of folders), or a folder per class.

Both return every labelled image as ``train`` (validation is carved out by
the config's ``split`` section, group-aware when the data has groups) and
the same images with the eval transforms as ``train_eval``; the unlabelled
test images, in the test CSV's order, as ``test`` with ``test_ids``. A
labelled image's id (``oof.csv``, ``val_predictions.csv``) is its path.

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

**Folders and labels from file names** (``image_csv``). A path that names
a folder stands for every image in it (sorted, subfolders included, hidden
files left out), each with the row's labels -- the competition's own
``train.csv``, one row per person and a folder of their photos. Then each
row is a group unless ``group_column`` says otherwise, so a split never
puts one person on both sides. ``file_labels`` makes label columns of the
file names: ``{mask: {mask1: wear, ..., incorrect_mask: incorrect, normal:
not_wear}}`` maps each image's name without extension (``mask1.jpg`` ->
``mask1``) to its value of ``mask``; a name the mapping lacks is an error
naming the file. ``label_bins`` cuts a numeric column into ranges: ``{age:
[30, 60]}`` gives ``<30``, ``30-59``, ``60+`` (whole-number edges and
values; else ``<0.5``, ``0.5-<1.5``, ``1.5+``), ordered as the ranges.

**Other tasks** (``image_csv``; the dataset's task follows its params).
``label_delimiter: " "`` (or ``target_type: multilabel``) reads one label
column of delimited labels (``"cloudy road"``) as multi-hot ``float32``
rows over the labels (as ``label_values`` lists them, else sorted); the
labels are the class names, a blank cell an image with no label.
``target_type: regression`` reads the label columns as numbers: ``float32``
targets ``(n,)`` for one column, ``(n, k)`` for k; a cell that is not a
number is an error naming its row and column. ``image_folder`` is
classification only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from torchyard.data import DataBundle
from torchyard.errors import DataError, did_you_mean
from torchyard_builtins.datasets.image_cache import CacheKind, image_caches
from torchyard_builtins.datasets.image_files import (
    IMAGE_EXTENSIONS,
    Color,
    ImageDataset,
    ImageReader,
    OnBadImage,
    check_images,
    list_images,
    refuse_repeats,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["bin_values", "combine_labels", "image_csv", "image_csv_task", "image_folder", "multi_hot"]

Transform = Callable[[Any], Any]
TargetType = Literal["classification", "multilabel", "regression"]
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
_CACHE = Field(description="Keep the decoded, resized images (before the transforms) between "
               "epochs: 'memory' (shared by the loader's workers), 'disk' (a memory-mapped file "
               "under cache_dir, reused by later runs until an image changes) or 'none'; needs image_size.")
_CACHE_DIR = Field(description="Folder of cache: disk's files (relative: to the config file's "
                   "folder); unset: ~/.cache/torchyard/images.")
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
    csv: Annotated[
        Path, Field(description="CSV listing the labelled images: one row per image, or per folder "
                    "of images (e.g. one person's photos).")
    ],
    root: Annotated[
        Path | None, Field(description="Folder the image paths are relative to; unset: the CSV's folder.")
    ] = None,
    path_column: Annotated[
        str, Field(min_length=1, description="Column of image paths; a path naming a folder stands "
                   "for every image in it (sorted, subfolders included, hidden files left out).")
    ] = "path",
    label_columns: Annotated[
        list[str],
        Field(min_length=1, description="Label column(s), of the CSV or of file_labels; several are "
              "combined into one class per combination of values (first column most significant)."),
    ] = ["label"],  # noqa: B006 - read only
    label_values: Annotated[
        dict[str, list[str | int | float]] | None,
        Field(description="Per label column, its values in class order (as written in the CSV, or "
              "as label_bins names them); unset columns: their values sorted."),
    ] = None,
    file_labels: Annotated[
        dict[str, dict[str, str | int | float]] | None,
        Field(description="Label columns that come from the image's file name: per column, a mapping "
              "of file names without extension to values, e.g. {mask: {mask1: wear, normal: "
              "not_wear}}; an image whose name a mapping lacks is an error."),
    ] = None,
    label_bins: Annotated[
        dict[str, list[float]] | None,
        Field(description="Numeric label columns cut into ranges at increasing edges, e.g. {age: "
              "[30, 60]} gives the classes '<30', '30-59', '60+' (in that order)."),
    ] = None,
    target_type: Annotated[
        TargetType | None,
        Field(description="'classification': one class per image; 'multilabel': a multi-hot row "
              "per image from one column of delimited labels; 'regression': the label columns' "
              "numbers as float targets. Unset: classification, or multilabel when "
              "label_delimiter is set."),
    ] = None,
    label_delimiter: Annotated[
        str | None,
        Field(min_length=1, description="Multi-label: the separator of the labels in the label "
              "column's cells (e.g. ' '); the labels are the classes. Unset with target_type "
              "multilabel: ' '."),
    ] = None,
    class_names: Annotated[
        list[str] | None,
        Field(description="Class names in index order (multi-label: label names; regression: "
              "target names); unset: the values joined with '/' (the labels; the column names)."),
    ] = None,
    group_column: Annotated[
        str | None,
        Field(description="Column grouping the samples (a person, a patient): a split keeps each "
              "group on one side. Unset when rows name folders: each row (folder) is a group."),
    ] = None,
    test_csv: Annotated[Path | None, _TEST_CSV] = None,
    test_id_column: Annotated[str | None, _TEST_ID] = None,
    test_path_column: Annotated[str | None, _TEST_PATH] = None,
    test_root: Annotated[Path | None, _TEST_ROOT] = None,
    image_size: Annotated[list[int] | int | None, _IMAGE_SIZE] = None,
    color: Annotated[Color, _COLOR] = "rgb",
    on_bad_image: Annotated[OnBadImage, _ON_BAD] = "error",
    verify_images: Annotated[bool, _VERIFY] = False,
    cache: Annotated[CacheKind, _CACHE] = "none",
    cache_dir: Annotated[Path | None, _CACHE_DIR] = None,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
) -> DataBundle:
    """Labelled images listed in a CSV (one or several label columns, labels
    from file names, an optional group column) and an optional test CSV.

    See the module documentation for folders, the class order, the other
    tasks, the default image handling and bad images.
    """
    task = image_csv_task(target_type, label_delimiter)
    file_values = {k: {name: _text(v) for name, v in m.items()} for k, m in (file_labels or {}).items()}
    _check_label_options(label_columns, label_values, file_values, label_bins, task, label_delimiter)
    from_csv = [c for c in label_columns if c not in file_values]
    frame = _read_csv(csv, [path_column, *from_csv, *([group_column] if group_column else [])])
    clash = [c for c in file_values if c in frame.columns]
    if clash:
        raise ValueError(f"file_labels: {csv} has a column {clash[0]!r} already; name the file "
                         "label otherwise, or leave the column out of file_labels")
    base = Path(root) if root is not None else Path(csv).parent
    paths, rows, folders = _expand_folders(frame[path_column].tolist(), base, source=str(csv))
    refuse_repeats(paths, rows, source=str(csv))
    # labels only for the usable images: a missing file is reported as missing, not as unlabelled
    keep = _usable(paths, source=str(csv), on_bad_image=on_bad_image, verify=verify_images, color=color)
    paths = [p for p, ok in zip(paths, keep, strict=True) if ok]
    rows = [r for r, ok in zip(rows, keep, strict=True) if ok]
    frame = frame.iloc[rows].reset_index(drop=True)
    for column, mapping in file_values.items():
        frame[column] = _file_labels(paths, rows, mapping, column=column, source=str(csv))
    data_rows = np.asarray(rows) + 1
    for column, edges in (label_bins or {}).items():
        frame[column], order = bin_values(frame[column], edges, column=column, source=str(csv),
                                          rows=data_rows)  # fmt: skip
        label_values = {column: list(order), **(label_values or {})}
    targets, names = _targets(frame, label_columns, label_values, task, label_delimiter, source=str(csv),
                              rows=data_rows)  # fmt: skip
    if class_names is not None:
        if len(class_names) != len(names):
            what = {"regression": "target columns", "multilabel": "labels"}.get(task, "classes")
            raise ValueError(
                f"class_names has {len(class_names)} names for {len(names)} {what} "
                f"({' x '.join(label_columns) if task == 'classification' else ', '.join(names)})"
            )
        names = list(class_names)
    if group_column:
        groups: list[Any] | None = frame[group_column].tolist()
    else:  # a folder is one person's (one patient's) images: never split them
        groups = frame[path_column].tolist() if folders else None
    # a class fused from several columns: the metrics and the report also score each column
    parts = list(label_columns) if task == "classification" and len(label_columns) > 1 else None
    return _bundle(
        paths, targets, names, groups, source=str(csv), task=task, checked=True, label_parts=parts,
        test=_test_from_csv(test_csv, test_id_column, test_path_column, test_root),
        image_size=image_size, color=color, on_bad_image=on_bad_image, verify=verify_images,
        cache=(cache, cache_dir), train_transform=train_transform, eval_transform=eval_transform,
    )  # fmt: skip


def _targets(
    frame: pd.DataFrame,
    label_columns: Sequence[str],
    label_values: dict[str, list[Any]] | None,
    task: str,
    label_delimiter: str | None,
    *,
    source: str,
    rows: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """The targets of ``task`` from the label columns, and their names."""
    if task == "regression":
        why = "target_type: regression"
        columns = [_numbers(frame[c], column=c, source=source, rows=rows, why=why) for c in label_columns]
        return (columns[0] if len(columns) == 1 else np.stack(columns, axis=1)), list(label_columns)
    if task == "multilabel":
        (column,) = label_columns
        order = (label_values or {}).get(column)
        return multi_hot(frame[column], label_delimiter or " ", order, column=column, source=source)
    return combine_labels(frame, label_columns, label_values, source=source, rows=rows)


def image_csv_task(target_type: str | None = None, label_delimiter: str | None = None, **_: Any) -> str:
    """The task of an ``image_csv`` dataset, from its params (its ``task`` option)."""
    if target_type is not None:
        return target_type
    return "multilabel" if label_delimiter is not None else "classification"


def _check_label_options(
    label_columns: Sequence[str],
    label_values: dict[str, Any] | None,
    file_labels: dict[str, Any],
    label_bins: dict[str, Any] | None,
    task: str,
    label_delimiter: str | None,
) -> None:
    """Options that contradict each other, before any file is read."""
    for option, names in (("label_values", label_values), ("file_labels", file_labels),
                          ("label_bins", label_bins)):  # fmt: skip
        stray = [c for c in names or {} if c not in label_columns]
        if stray:
            raise ValueError(f"{option}: {stray[0]!r} is not one of label_columns ({', '.join(label_columns)})")
    both = [c for c in label_bins or {} if c in file_labels]
    if both:
        raise ValueError(f"label_bins: {both[0]!r} comes from file_labels; map the file names to ranges there")
    if label_delimiter is not None and task != "multilabel":
        raise ValueError(f"label_delimiter: delimited labels are multi-label; target_type is {task}")
    if task == "multilabel" and len(label_columns) != 1:
        raise ValueError(f"label_columns: multi-label targets come from one column of delimited labels, "
                         f"got {len(label_columns)} ({', '.join(label_columns)})")
    if task != "classification" and label_bins:
        raise ValueError(f"label_bins: ranges are classes; target_type is {task}")
    if task == "regression" and label_values:
        raise ValueError("label_values: regression targets are numbers, not values in an order")


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
    cache: Annotated[CacheKind, _CACHE] = "none",
    cache_dir: Annotated[Path | None, _CACHE_DIR] = None,
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
        images = list_images(folder / name)
        if not images:
            raise DataError(
                f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "remove it, or list the classes to use in classes"
            )
        paths += [str(folder / name / p) for p in images]
        targets += [index] * len(images)
    test: tuple[list[str], list[str], str] | None
    if test_csv is None and test_root is not None:
        ids = list_images(Path(test_root))
        if not ids:
            raise DataError(f"test_root {test_root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        test = ([str(Path(test_root) / i) for i in ids], ids, f"folder {test_root}")
    else:
        test = _test_from_csv(test_csv, test_id_column, test_path_column, test_root)
    return _bundle(
        paths, np.asarray(targets, dtype=np.int64), names, None, source=f"folder {folder}",
        test=test, image_size=image_size, color=color, on_bad_image=on_bad_image,
        verify=verify_images, cache=(cache, cache_dir), train_transform=train_transform,
        eval_transform=eval_transform,
    )  # fmt: skip


def combine_labels(
    frame: pd.DataFrame,
    columns: Sequence[str],
    label_values: dict[str, list[Any]] | None = None,
    *,
    source: str = "the CSV",
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Class indices of the rows, and the class names, from ``columns``.

    Each column's values are ordered by ``label_values`` or sorted; the
    class index enumerates ``itertools.product`` of the orders (first column
    most significant), and a class name joins its values with ``/``.

    :param rows: each row's data row in the CSV, for messages (default: its position).
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
        # one value, one class: '1' and '1.0' (a column pandas read as floats) are the same label
        values = frame[column].astype(str).str.strip().map(_canonical)
        blank = np.flatnonzero((values == "").to_numpy())
        if len(blank):
            raise DataError(
                f"{source}: column {column!r} is blank in {len(blank)} rows (first: data row "
                f"{rows[blank[0]] if rows is not None else blank[0] + 1}); every labelled image needs every label"
            )
        if column in label_values:
            order = [_canonical(_text(v)) for v in label_values[column]]
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


def bin_values(
    values: pd.Series,
    edges: Sequence[float],
    *,
    column: str,
    source: str = "the CSV",
    rows: np.ndarray | None = None,
) -> tuple[pd.Series, list[str]]:
    """Numbers cut into named ranges at ``edges``; the names per value, and
    the names in range order.

    Edges ``[30, 60]`` make three ranges: below 30, 30 up to 60, 60 and
    above. With whole-number edges and values they are named ``<30``,
    ``30-59``, ``60+`` (a range of one number by the number); otherwise
    ``<0.5``, ``0.5-<1.5``, ``1.5+``.

    :raises ValueError: the edges do not increase.
    :raises DataError: a value is not a number.
    """
    edges = [float(e) for e in edges]
    if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"label_bins.{column}: expected increasing edges, got {[_text(e) for e in edges]}")
    numbers = _numbers(values, column=column, source=source, rows=rows, why=f"label_bins.{column}")
    whole = all(e.is_integer() for e in edges) and bool(np.all(np.mod(numbers, 1) == 0))
    t = [_text(e) for e in edges]
    if whole:
        middle = [t[i] if edges[i + 1] - edges[i] == 1 else f"{t[i]}-{_text(edges[i + 1] - 1)}"
                  for i in range(len(edges) - 1)]  # fmt: skip
    else:
        middle = [f"{t[i]}-<{t[i + 1]}" for i in range(len(edges) - 1)]
    names = [f"<{t[0]}", *middle, f"{t[-1]}+"]
    import pandas as pd

    index = np.searchsorted(np.asarray(edges), numbers, side="right")
    return pd.Series(np.asarray(names, dtype=object)[index], index=values.index), names


def multi_hot(
    values: pd.Series,
    delimiter: str,
    order: Sequence[Any] | None = None,
    *,
    column: str,
    source: str = "the CSV",
) -> tuple[np.ndarray, list[str]]:
    """Multi-hot ``float32`` rows ``(n, labels)`` from cells of delimited
    labels, and the label names: as ``order`` lists them (a label it omits
    is an error), else sorted. A blank cell is an image with no label.

    :raises DataError: a label ``order`` omits, or no label at all.
    """
    cells = [[x.strip() for x in str(v).split(delimiter) if x.strip()] for v in values]
    found = {x for cell in cells for x in cell}
    if order is not None:
        names = [_text(v) for v in order]
        unlisted = sorted(found - set(names))
        if unlisted:
            raise DataError(f"{source}: column {column!r} has labels not in label_values.{column} "
                            f"({', '.join(names)}): {', '.join(unlisted[:5])}")  # fmt: skip
    else:
        names = _sorted_values(found)
    if not names:
        raise DataError(f"{source}: column {column!r} holds no label (delimiter {delimiter!r})")
    index = {name: i for i, name in enumerate(names)}
    targets = np.zeros((len(cells), len(names)), dtype=np.float32)
    for row, cell in enumerate(cells):
        targets[row, [index[x] for x in cell]] = 1.0
    return targets, names


def _numbers(values: pd.Series, *, column: str, source: str, rows: np.ndarray | None, why: str) -> np.ndarray:
    """A column as finite ``float32`` numbers; anything else is an error naming the row."""
    import pandas as pd

    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        row = int(rows[bad[0]]) if rows is not None else int(bad[0]) + 1
        raise DataError(f"{source}: column {column!r} is not a number in data row {row}: "
                        f"{values.iloc[bad[0]]!r} ({why} needs numbers)")  # fmt: skip
    return numbers.astype(np.float32)


def _expand_folders(values: Sequence[str], base: Path, *, source: str) -> tuple[list[str], list[int], bool]:
    """One entry per image: a path naming a folder stands for the images in
    it. The image paths, each one's row (0-based), and whether any row was a
    folder."""
    paths: list[str] = []
    rows: list[int] = []
    folders = False
    for row, value in enumerate(values):
        path = base / value
        if not str(value).strip() or not path.is_dir():
            paths.append(str(path))
            rows.append(row)
            continue
        images = list_images(path)
        if not images:
            raise DataError(f"{source}: data row {row + 1} names the folder {path}, which holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")  # fmt: skip
        paths += [str(path / image) for image in images]
        rows += [row] * len(images)
        folders = True
    return paths, rows, folders


def _file_labels(paths: Sequence[str], rows: Sequence[int], mapping: dict[str, str], *, column: str,
                 source: str) -> list[str]:  # fmt: skip
    """Each image's value of ``column``, from its file name (without extension)."""
    stems = [Path(p).stem for p in paths]
    unmapped = [i for i, stem in enumerate(stems) if stem not in mapping]
    if unmapped:
        first = unmapped[0]
        raise DataError(
            f"{len(unmapped)} of {len(paths)} images listed in {source} have a file name not in "
            f"file_labels.{column} (first: {paths[first]}, data row {rows[first] + 1}: {stems[first]!r}; "
            f"the names it maps: {', '.join(mapping)})"
        )
    return [mapping[stem] for stem in stems]


def _canonical(text: str) -> str:
    """A label as one spelling: a whole number without its '.0', other
    numbers as Python writes them, anything else as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    if not np.isfinite(number) or text.lower() in ("nan", "inf", "-inf", "infinity"):
        return text
    return str(int(number)) if number.is_integer() else str(number)


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


def _usable(paths: Sequence[str], *, source: str, on_bad_image: OnBadImage, verify: bool, color: Color) -> np.ndarray:
    """Which labelled images to keep (see :func:`check_images`); none is an error."""
    keep = check_images(
        paths, on_bad_image=on_bad_image, source=source, decode=verify or on_bad_image == "skip",
        color=color,
    )  # fmt: skip
    if not keep.any():
        raise DataError(f"{source}: no usable labelled image is left")
    return keep


def _bundle(
    paths: list[str],
    targets: np.ndarray,
    class_names: list[str],
    groups: list[Any] | None,
    *,
    source: str,
    task: str = "classification",
    checked: bool = False,
    label_parts: list[str] | None = None,
    test: tuple[list[str], list[str], str] | None,
    image_size: list[int] | int | None,
    color: Color,
    on_bad_image: OnBadImage,
    verify: bool,
    cache: tuple[CacheKind, Path | None] = ("none", None),
    train_transform: Transform | None,
    eval_transform: Transform | None,
) -> DataBundle:
    """Check the files (unless ``checked``: done already) and assemble the DataBundle."""
    size = _image_size(image_size)
    keep = (
        np.ones(len(paths), dtype=bool) if checked
        else _usable(paths, source=source, on_bad_image=on_bad_image, verify=verify, color=color)
    )  # fmt: skip
    kept = np.asarray(paths, dtype=str)[keep]  # one array shared by the datasets
    targets = targets[keep]
    if groups is not None:
        groups = [g for g, ok in zip(groups, keep, strict=True) if ok]
    test_paths, test_ids, test_source = test if test is not None else ([], None, "")
    if test is not None:
        check_images(test_paths, on_bad_image="error", source=test_source, decode=verify, color=color)
    # train and train_eval share a cache: their images before the transforms are the same
    kept_cache, test_cache = image_caches(*cache, [kept, test_paths], image_size=size, color=color)
    test_set = None if test is None else ImageDataset(test_paths, transform=eval_transform, image_size=size,
                                                      color=color, cache=test_cache)  # fmt: skip
    train_eval = ImageDataset(kept, targets, transform=eval_transform, image_size=size, color=color, cache=kept_cache)
    shape = train_eval.sample_shape
    return DataBundle(
        train=ImageDataset(kept, targets, transform=train_transform, image_size=size, color=color, cache=kept_cache),
        train_eval=train_eval,
        val=None,
        test=test_set,
        test_ids=test_ids,
        train_ids=kept.tolist(),
        task=task,
        num_classes=len(class_names),
        class_names=class_names,
        label_parts=label_parts,
        input_shape=shape,
        train_targets=targets.tolist(),
        groups=groups,
    )
