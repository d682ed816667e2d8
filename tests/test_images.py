"""The image datasets: labels from columns, groups, bad files, folders, and a
run end to end on the synthetic face-mask data."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from PIL import Image

from torchyard.config import validate_config
from torchyard.errors import ConfigError, DataError
from torchyard.plugins import PluginHost
from torchyard.run import build_run
from torchyard_builtins.datasets.image_files import BadImageError
from torchyard_builtins.datasets.images import bin_values, combine_labels, image_csv, image_folder

from .conftest import EXAMPLES

# torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning per call
pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    # 12 people cannot fill 18 classes x 4 folds
    pytest.mark.filterwarnings("ignore:The least populated class:UserWarning"),
]

MASK_VALUES = {"mask": ["wear", "incorrect", "not_wear"], "gender": ["male", "female"],
               "age_group": ["<30", "30-59", "60+"]}  # fmt: skip


def save(path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB", value: int = 100) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode)).save(path)
    return path.name


def labelled_csv(tmp_path: Path, rows: list[dict[str, Any]], **image: Any) -> Path:
    """A CSV of ``rows`` (with a ``path`` each), the images written beside it."""
    for row in rows:
        save(tmp_path / row["path"], **image)
    csv = tmp_path / "train.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def people(tmp_path: Path, n: int = 4) -> Path:
    rows = [{"path": f"img/{p}_{k}.png", "person": f"p{p}", "label": p % 2} for p in range(n) for k in range(3)]
    return labelled_csv(tmp_path, rows)


# -- labels --------------------------------------------------------------------


def test_combined_labels_follow_the_listed_value_orders() -> None:
    frame = pd.DataFrame({"mask": ["wear", "not_wear", "incorrect"], "gender": ["female", "male", "female"],
                          "age_group": ["60+", "<30", "30-59"]})  # fmt: skip
    codes, names = combine_labels(frame, list(MASK_VALUES), MASK_VALUES)
    # the competition's numbering: mask * 6 + gender * 3 + age
    assert codes.tolist() == [0 * 6 + 1 * 3 + 2, 2 * 6 + 0 + 0, 1 * 6 + 1 * 3 + 1]
    assert len(names) == 18 and names[0] == "wear/male/<30" and names[17] == "not_wear/female/60+"
    assert [names[c] for c in codes] == ["wear/female/60+", "not_wear/male/<30", "incorrect/female/30-59"]


def test_unlisted_columns_sort_their_values_numerically_when_numbers() -> None:
    frame = pd.DataFrame({"size": ["10", "9", "10"], "kind": ["b", "a", "a"]})
    codes, names = combine_labels(frame, ["size", "kind"])
    assert names == ["9/a", "9/b", "10/a", "10/b"] and codes.tolist() == [3, 0, 2]


def test_label_problems_are_reported() -> None:
    frame = pd.DataFrame({"mask": ["wear", "waer"], "gender": ["male", ""]})
    with pytest.raises(DataError, match=r"column 'mask' has values not in label_values.mask .*: waer"):
        combine_labels(frame, ["mask"], {"mask": ["wear"]})
    with pytest.raises(DataError, match="column 'gender' is blank in 1 rows"):
        combine_labels(frame, ["gender"])
    with pytest.raises(ValueError, match="'age' is not one of label_columns"):
        combine_labels(frame, ["mask"], {"age": [1]})


def test_image_csv_bundle(tmp_path: Path) -> None:
    rows = [{"path": f"i{k}.png", "person": f"p{k // 2}", "label": "cat" if k % 2 else "dog"} for k in range(6)]
    csv = labelled_csv(tmp_path, rows, size=(12, 10))
    (tmp_path / "test").mkdir()
    save(tmp_path / "test" / "b.png", size=(12, 10))
    save(tmp_path / "test" / "a.png", size=(12, 10))
    pd.DataFrame({"id": ["b.png", "a.png"], "ans": ""}).to_csv(tmp_path / "test" / "info.csv", index=False)
    data = image_csv(str(csv), group_column="person", test_csv=str(tmp_path / "test" / "info.csv"),
                     class_names=["Cat", "Dog"])  # fmt: skip
    assert data.num_classes == 2 and data.class_names == ["Cat", "Dog"]
    assert data.train_targets == [1, 0, 1, 0, 1, 0]
    assert data.groups == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert data.val is None and data.train_eval is not None and len(data.train_eval) == 6
    assert data.input_shape == (3, 10, 12)
    assert list(data.test_ids) == ["b.png", "a.png"]
    image, target = data.train[0]
    assert image.dtype == torch.float32 and image.shape == (3, 10, 12) and target == 1
    assert torch.allclose(image, torch.full_like(image, 100 / 255))
    assert data.test[0][0].shape == (3, 10, 12)
    with pytest.raises(ValueError, match="class_names has 3 names for 2 classes"):
        image_csv(str(csv), class_names=["a", "b", "c"])


def test_transforms_image_size_and_color(tmp_path: Path) -> None:
    rows = [{"path": "rgba.png", "label": 0}, {"path": "gray.png", "label": 1}]
    save(tmp_path / "rgba.png", size=(20, 20), mode="RGBA")
    save(tmp_path / "gray.png", size=(30, 20), mode="L")
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    seen: list[torch.dtype] = []

    def train_transform(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.dtype)
        return x.float() / 255 * 2 - 1

    data = image_csv(str(tmp_path / "train.csv"), image_size=16, train_transform=train_transform,
                     eval_transform=lambda x: x[:, :8])  # fmt: skip
    assert data.input_shape == (3, 8, 16)
    assert data.train[1][0].shape == (3, 16, 16) and data.train[1][0].min() < 0
    assert seen and set(seen) == {torch.uint8}
    gray = image_csv(str(tmp_path / "train.csv"), image_size=[6, 5], color="gray")
    assert gray.input_shape == (1, 6, 5)
    from torchvision.transforms import v2

    with pytest.raises(ConfigError, match="transforms: they fail on .*rgba.png: TypeError: .*to_dtype"):
        image_csv(str(tmp_path / "train.csv"), eval_transform=v2.Normalize([0.5] * 3, [0.2] * 3))
    # without image_size the sizes differ: the odd file is named
    mixed = image_csv(str(tmp_path / "train.csv"))
    with pytest.raises(BadImageError, match=r"image .*gray.png gives a sample of shape \(3, 20, 30\).*image_size"):
        mixed.train[1]


# -- bad files -----------------------------------------------------------------


def test_missing_files_are_listed_up_front(tmp_path: Path) -> None:
    csv = people(tmp_path)
    for name in ("0_1.png", "2_0.png"):
        (tmp_path / "img" / name).unlink()
    with pytest.raises(DataError) as e:
        image_csv(str(csv), group_column="person")
    assert e.value.problems == (
        f"2 of 12 image files listed in {csv} are missing (first: {tmp_path}/img/0_1.png, "
        f"{tmp_path}/img/2_0.png); fix them, or set on_bad_image: skip",
    )
    with pytest.warns(UserWarning, match=r"skipped 2 bad images of 12 \(on_bad_image: skip\)"):
        data = image_csv(str(csv), group_column="person", on_bad_image="skip")
    assert len(data.train) == len(data.train_targets) == len(data.groups) == 10
    assert data.groups.count("p0") == 2 and data.groups.count("p2") == 2


def test_a_missing_test_image_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    csv = people(tmp_path)
    pd.DataFrame({"ImageID": ["x.png"]}).to_csv(tmp_path / "info.csv", index=False)
    with pytest.raises(DataError, match=r"1 of 1 image files listed in .*info.csv are missing .*x.png"):
        image_csv(str(csv), test_csv=str(tmp_path / "info.csv"), on_bad_image="skip")


def test_corrupt_images(tmp_path: Path) -> None:
    csv = people(tmp_path)
    bad = tmp_path / "img" / "1_2.png"
    bad.write_bytes(bad.read_bytes()[:40])
    data = image_csv(str(csv))  # existence only: decoding happens on access
    with pytest.raises(BadImageError, match=f"cannot decode image {bad}: "):
        data.train[5]
    with pytest.raises(DataError, match=rf"1 of 12 images listed in .* cannot be decoded \(first: cannot decode image {bad}"):
        image_csv(str(csv), verify_images=True)
    with pytest.warns(UserWarning, match=f"skipped 1 bad images of 12 .*cannot decode image {bad}"):
        skipping = image_csv(str(csv), on_bad_image="skip")
    assert len(skipping.train) == 11


def test_a_corrupt_image_in_a_worker_is_one_readable_line(tmp_path: Path) -> None:
    csv = people(tmp_path, n=2)
    bad = tmp_path / "img" / "1_0.png"
    bad.write_bytes(b"not an image at all")
    data = image_csv(str(csv))
    loader = torch.utils.data.DataLoader(data.train, batch_size=2, num_workers=1)
    with pytest.raises(DataError) as e:
        list(loader)
    (problem,) = e.value.problems
    assert problem.startswith(f"cannot decode image {bad}: ") and problem.endswith("(in a DataLoader worker)")
    assert "\n" not in problem and "Traceback" not in problem


# -- image_folder --------------------------------------------------------------


def test_image_folder(tmp_path: Path) -> None:
    for cls, names in {"dog": ["b.png", "a.jpg", "sub/c.png"], "cat": ["x.png"]}.items():
        for name in names:
            save(tmp_path / "train" / cls / name)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    save(tmp_path / "train" / ".ipynb_checkpoints" / "x-checkpoint.png")
    save(tmp_path / "train" / "dog" / ".ipynb_checkpoints" / "b-checkpoint.png")
    save(tmp_path / "test" / "z.png")
    save(tmp_path / "test" / "y.png")
    data = image_folder(str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert data.train_targets == [0, 1, 1, 1] and data.groups is None
    assert list(data.test_ids) == ["y.png", "z.png"]
    assert data.train.paths[1].endswith("dog/a.jpg")
    ordered = image_folder(str(tmp_path / "train"), classes=["dog", "cat"])
    assert ordered.train_targets == [0, 0, 0, 1]
    with pytest.raises(DataError, match="has no class folder 'dgo'; did you mean 'dog'"):
        image_folder(str(tmp_path / "train"), classes=["dgo"])


# -- the face-mask example, end to end -----------------------------------------


def _example_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_mask_dataset", EXAMPLES / "make_mask_dataset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mask")
    _example_generator().generate(out, people=12, seed=0, size=16)
    return out


def mask_config(data: Path, **split: Any) -> dict[str, Any]:
    """examples/mask.yaml, pointed at ``data`` and made tiny."""
    import yaml

    config = yaml.safe_load((EXAMPLES / "mask.yaml").read_text())
    config["data"].update(csv=str(data / "train" / "train.csv"), root=str(data / "train" / "images"),
                          test_csv=str(data / "eval" / "info.csv"), test_root=str(data / "eval" / "images"),
                          image_size=16)  # fmt: skip
    config["writer"]["path"] = str(data / "eval" / "info.csv")
    config["split"].update(val_fraction=0.25, **split)
    config["model"]["channels"] = 4
    config["trainer"].update(max_epochs=1, progress=False)
    config.pop("scheduler")
    return config


def test_mask_example_layout(mask_data: Path) -> None:
    people = pd.read_csv(mask_data / "train" / "train.csv")
    assert list(people.columns) == ["id", "gender", "race", "age", "path"] and len(people) == 12
    photos = pd.read_csv(mask_data / "train" / "images.csv")
    assert len(photos) == 84 and photos.groupby("person").size().eq(7).all()
    assert set(photos["mask"]) == set(MASK_VALUES["mask"])
    info = pd.read_csv(mask_data / "eval" / "info.csv", dtype=str, keep_default_na=False)
    assert list(info.columns) == ["ImageID", "ans"] and (info["ans"] == "").all()
    assert all((mask_data / "eval" / "images" / i).is_file() for i in info["ImageID"])
    answers = pd.read_csv(mask_data / "eval" / "answers.csv")
    assert answers["ImageID"].tolist() == info["ImageID"].tolist() and answers["ans"].between(0, 17).all()


def test_the_image_datasets_pass_the_conformance_kit(mask_data: Path, builtin_host: PluginHost) -> None:
    from torchyard.testing import check_component

    registry = builtin_host.registry
    params = {k: v for k, v in mask_config(mask_data)["data"].items() if k != "name"}
    check_component(registry.get("dataset", "image_csv"), params)
    # as a folder per class: one class per person
    check_component(registry.get("dataset", "image_folder"), {"root": str(mask_data / "train" / "images")})


def test_group_split_keeps_people_apart(mask_data: Path, builtin_host: PluginHost, tmp_path: Path) -> None:
    run = build_run(validate_config(mask_config(mask_data), builtin_host.registry), builtin_host, tmp_path)
    assert run.extras["groups_overlap"] == 0 and run.extras["warnings"] == []
    assert run.data.num_classes == 18 and run.data.input_shape == (3, 16, 16)
    leaky = validate_config(mask_config(mask_data, group=False), builtin_host.registry)
    run = build_run(leaky, builtin_host, tmp_path)
    assert any("leaking split" in w for w in run.extras["warnings"])
    assert run.extras["groups_overlap"] > 0


def test_relative_paths_are_taken_from_the_config_file(
    mask_data: Path, builtin_host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from torchyard.config import load_config

    config = mask_config(mask_data)
    config["data"].update(csv="train/train.csv", root="train/images", test_csv="eval/info.csv",
                          test_root="eval/images")  # fmt: skip
    config["writer"]["path"] = "eval/info.csv"
    path = mask_data / "relative.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    run = build_run(load_config(path, builtin_host.registry), builtin_host, tmp_path)
    assert len(run.data.train) + len(run.data.val) == 84
    assert len(run.data.test_ids) == len(pd.read_csv(mask_data / "eval" / "info.csv"))


@pytest.mark.slow
def test_mask_run_fills_the_template(mask_data: Path, cli: Any, write_config: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli("run", write_config(mask_config(mask_data)), "--out", out)
    assert result.exit_code == 0, result.output
    template = pd.read_csv(mask_data / "eval" / "info.csv", dtype=str, keep_default_na=False)
    submission = pd.read_csv(out / "info.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["ImageID", "ans"]
    assert submission["ImageID"].tolist() == template["ImageID"].tolist()
    assert submission["ans"].astype(int).between(0, 17).all()
    # the validation predictions name each photo (its path) and its person (the group)
    kept = pd.read_csv(out / "val_predictions.csv", dtype={"id": str, "group": str})
    assert list(kept.columns[:4]) == ["id", "group", "target", "predicted"] and len(kept) == 21
    assert all(Path(i).parent.name == Path(g).name for i, g in zip(kept["id"], kept["group"], strict=True))
    assert kept["group"].nunique() == 3  # 3 of 12 people, each with all 7 photos


@pytest.mark.slow
def test_kfold_oof_rows_carry_photo_and_person(mask_data: Path, cli: Any, write_config: Any, tmp_path: Path) -> None:
    config = mask_config(mask_data, method="kfold", folds=2)
    out = tmp_path / "kfold"
    result = cli("run", write_config(config), "--out", out)
    assert result.exit_code == 0, result.output
    oof = pd.read_csv(out / "oof.csv", dtype={"id": str, "group": str})
    photos = pd.read_csv(mask_data / "train" / "images.csv")
    assert len(oof) == len(photos) == 84 and oof["id"].is_unique
    assert all(Path(i).parent.name == Path(g).name for i, g in zip(oof["id"], oof["group"], strict=True))
    assert oof.groupby("group").size().eq(7).all()


def test_a_missing_photo_stops_the_run_before_training(
    mask_data: Path, cli: Any, write_config: Any, tmp_path: Path
) -> None:
    config = mask_config(mask_data)
    people = pd.read_csv(mask_data / "train" / "train.csv")
    people.loc[3, "path"] = "nobody"
    people.to_csv(tmp_path / "train.csv", index=False)
    config["data"]["csv"] = str(tmp_path / "train.csv")
    result = cli("run", write_config(config), "--out", tmp_path / "never")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"error: 1 of 78 image files listed in {tmp_path / 'train.csv'} are missing (first: "
        f"{mask_data / 'train' / 'images' / 'nobody'}); fix them, or set on_bad_image: skip"
    )
    assert not (tmp_path / "never").exists()


# -- the competition's raw layout: folders, labels from file names, bins -------

PHOTO_LABELS = {**{f"mask{i}": "wear" for i in range(1, 6)}, "incorrect_mask": "incorrect", "normal": "not_wear"}


def raw_layout(tmp_path: Path, ages: tuple[int, ...] = (25, 45, 70), photos: tuple[str, ...] = (
        "mask1.png", "normal.jpg", "incorrect_mask.png")) -> Path:  # fmt: skip
    """train.csv, one row per person, and a folder of photos each (plus files
    that are not photos of the set)."""
    rows = []
    for n, age in enumerate(ages):
        folder = f"{n:06d}_{'female' if n % 2 else 'male'}_Asian_{age}"
        rows.append({"id": f"{n:06d}", "gender": "female" if n % 2 else "male", "age": age, "path": folder})
        for photo in photos:
            save(tmp_path / "images" / folder / photo)
        save(tmp_path / "images" / folder / "._mask1.png")  # macOS metadata: hidden
        (tmp_path / "images" / folder / "notes.txt").write_text("not an image")
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


RAW = {"root": None, "label_columns": ["mask", "gender", "age"], "file_labels": {"mask": PHOTO_LABELS},
       "label_bins": {"age": [30, 60]}, "label_values": {"mask": MASK_VALUES["mask"], "gender": ["male", "female"]}}  # fmt: skip


def test_folders_expand_into_their_photos_labelled_by_file_name(tmp_path: Path) -> None:
    csv = raw_layout(tmp_path)
    data = image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")})
    assert data.task == "classification" and data.num_classes == 18
    assert data.class_names[:3] == ["wear/male/<30", "wear/male/30-59", "wear/male/60+"]
    # sorted within each folder, hidden files and other files left out
    assert [Path(p).relative_to(tmp_path / "images").as_posix() for p in data.train.paths[:3]] == [
        "000000_male_Asian_25/incorrect_mask.png", "000000_male_Asian_25/mask1.png",
        "000000_male_Asian_25/normal.jpg"]  # fmt: skip
    # the competition's numbering: mask * 6 + gender * 3 + age group
    assert data.train_targets == [6 + 0, 0, 12 + 0, 6 + 3 + 1, 3 + 1, 12 + 3 + 1, 6 + 2, 2, 12 + 2]
    # one person, one group: never on both sides of a split
    assert data.groups == [f"{n:06d}_{g}_Asian_{a}" for n, g, a in ((0, "male", 25), (1, "female", 45),
                                                                    (2, "male", 70)) for _ in range(3)]  # fmt: skip
    # a group column still wins; and rows that name files keep no groups by default
    by_gender = image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")}, group_column="gender")
    assert by_gender.groups == ["male"] * 3 + ["female"] * 3 + ["male"] * 3
    files = labelled_csv(tmp_path / "flat", [{"path": f"{k}/normal.png", "label": k} for k in range(3)])
    assert image_csv(str(files)).groups is None


def test_the_raw_layout_gives_the_flattened_labels(mask_data: Path) -> None:
    """image_csv on train.csv reads what make_mask_dataset.py --flatten writes out."""
    raw = image_csv(str(mask_data / "train" / "train.csv"), **{**RAW, "root": str(mask_data / "train" / "images")})
    flat = image_csv(str(mask_data / "train" / "images.csv"), label_columns=list(MASK_VALUES),
                     label_values=MASK_VALUES, group_column="person")  # fmt: skip
    assert raw.class_names == flat.class_names
    assert sorted(zip(raw.train.paths, raw.train_targets, raw.groups, strict=True)) == sorted(
        zip(flat.train.paths, flat.train_targets, flat.groups, strict=True))  # fmt: skip


def test_a_photo_name_the_mapping_lacks_is_an_error_naming_it(tmp_path: Path) -> None:
    csv = raw_layout(tmp_path, photos=("mask1.png", "selfie.png"))
    with pytest.raises(DataError) as e:
        image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")})
    (problem,) = e.value.problems
    assert problem.startswith(
        f"3 of 6 images listed in {csv} have a file name not in file_labels.mask (first: "
        f"{tmp_path}/images/000000_male_Asian_25/selfie.png, data row 1: 'selfie'; the names it maps: mask1, "
    )


def test_folder_problems(tmp_path: Path) -> None:
    csv = raw_layout(tmp_path)
    frame = pd.read_csv(csv)
    frame.loc[1, "path"] = "nobody"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=rf"1 of 7 image files listed in .* are missing \(first: {tmp_path}/images/nobody\)"):
        image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")})
    (tmp_path / "images" / "nobody").mkdir()
    with pytest.raises(DataError, match=r"data row 2 names the folder .*nobody, which holds no images"):
        image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")})
    frame["mask"] = "wear"
    frame.to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"file_labels: .* has a column 'mask' already"):
        image_csv(str(csv), **{**RAW, "root": str(tmp_path / "images")})


@pytest.mark.parametrize(("edges", "values", "names", "expected"), [
    ([30, 60], ["18", "29", "30", "59", "60", "75"], ["<30", "30-59", "60+"], [0, 0, 1, 1, 2, 2]),
    ([1, 2, 5], ["0", "1", "2", "4", "5"], ["<1", "1", "2-4", "5+"], [0, 1, 2, 2, 3]),
    ([0.5, 1.5], ["0.2", "0.5", "1", "3"], ["<0.5", "0.5-<1.5", "1.5+"], [0, 1, 1, 2]),
    ([30], ["29.5", "30"], ["<30", "30+"], [0, 1]),  # a fractional value: no whole-number names
])  # fmt: skip
def test_bins_name_their_ranges(edges: list[float], values: list[str], names: list[str], expected: list[int]) -> None:
    binned, order = bin_values(pd.Series(values), edges, column="age")
    assert order == names and binned.tolist() == [names[i] for i in expected]


def test_bin_problems() -> None:
    with pytest.raises(ValueError, match=r"label_bins.age: expected increasing edges, got \['60', '30'\]"):
        bin_values(pd.Series(["1"]), [60, 30], column="age")
    with pytest.raises(DataError, match=r"train.csv: column 'age' is not a number in data row 3: 'forty' "
                                        r"\(label_bins.age needs numbers\)"):
        bin_values(pd.Series(["1", "2", "forty"]), [30], column="age", source="train.csv")


# -- other tasks ---------------------------------------------------------------


def tagged(tmp_path: Path) -> Path:
    tags = ["cloudy road", "road water", "", "water  cloudy haze", "haze"]
    return labelled_csv(tmp_path, [{"path": f"i{k}.png", "tags": t, "age": 20 + k, "height": 1.5 + k / 10}
                                   for k, t in enumerate(tags)])  # fmt: skip


def test_delimited_labels_are_multi_hot(tmp_path: Path) -> None:
    from sklearn.preprocessing import MultiLabelBinarizer

    csv = tagged(tmp_path)
    data = image_csv(str(csv), label_columns=["tags"], label_delimiter=" ")
    tags = pd.read_csv(csv, keep_default_na=False)["tags"].str.split().tolist()
    binarizer = MultiLabelBinarizer()
    expected = binarizer.fit_transform(tags)
    assert data.task == "multilabel" and data.class_names == list(binarizer.classes_) == ["cloudy", "haze", "road", "water"]
    assert data.num_classes == 4 and data.train_targets == expected.tolist()
    image, target = data.train[3]
    assert target.dtype == torch.float32 and target.tolist() == expected[3].tolist()
    batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=5)))
    assert batch[1].dtype == torch.float32 and batch[1].shape == (5, 4)
    # the vocabulary's order as listed; target_type alone means a space
    ordered = image_csv(str(csv), label_columns=["tags"], target_type="multilabel",
                        label_values={"tags": ["water", "road", "haze", "cloudy"]})  # fmt: skip
    assert ordered.class_names == ["water", "road", "haze", "cloudy"] and ordered.train_targets[0] == [0, 1, 0, 1]
    with pytest.raises(DataError, match=r"column 'tags' has labels not in label_values.tags \(road, water\): cloudy, haze"):
        image_csv(str(csv), label_columns=["tags"], label_delimiter=" ", label_values={"tags": ["road", "water"]})


def test_numeric_columns_are_regression_targets(tmp_path: Path) -> None:
    csv = tagged(tmp_path)
    data = image_csv(str(csv), label_columns=["age"], target_type="regression")
    assert data.task == "regression" and data.num_classes == 1 and data.class_names == ["age"]
    assert data.train_targets == [20.0, 21.0, 22.0, 23.0, 24.0]
    batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=5)))
    assert batch[1].dtype == torch.float32 and batch[1].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0]
    two = image_csv(str(csv), label_columns=["age", "height"], target_type="regression", class_names=["a", "h"])
    assert two.num_classes == 2 and two.class_names == ["a", "h"]
    assert two.train[1][1].dtype == torch.float32 and torch.allclose(two.train[1][1], torch.tensor([21.0, 1.6]))
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.loc[2, "age"] = "n/a"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=rf"^{csv}: column 'age' is not a number in data row 3: 'n/a' "
                                        r"\(target_type: regression needs numbers\)$"):
        image_csv(str(csv), label_columns=["age"], target_type="regression")


def test_the_task_follows_the_params(builtin_host: PluginHost) -> None:
    from torchyard_builtins.datasets.images import image_csv_task

    assert image_csv_task() == "classification"
    assert image_csv_task(label_delimiter=" ", csv="x.csv") == "multilabel"
    assert image_csv_task(target_type="regression") == "regression"
    record = builtin_host.registry.get("dataset", "image_csv")
    assert record.options["task"] == "torchyard_builtins.datasets.images:image_csv_task"
    assert builtin_host.registry.get("dataset", "image_folder").options.get("task", "classification") == "classification"


@pytest.mark.parametrize(("params", "message"), [
    ({"target_type": "regression", "label_delimiter": ","}, "label_delimiter: delimited labels are multi-label; target_type is regression"),
    ({"label_delimiter": " ", "label_columns": ["tags", "age"]}, "label_columns: multi-label targets come from one column"),
    ({"target_type": "regression", "label_columns": ["age"], "label_bins": {"age": [30]}}, "label_bins: ranges are classes"),
    ({"target_type": "regression", "label_columns": ["age"], "label_values": {"age": [1]}}, "label_values: regression targets are numbers"),
    ({"label_columns": ["age"], "label_bins": {"tags": [1]}}, "label_bins: 'tags' is not one of label_columns"),
    ({"label_columns": ["tags"], "file_labels": {"mask": {"a": "b"}}}, "file_labels: 'mask' is not one of label_columns"),
    ({"label_columns": ["mask"], "file_labels": {"mask": {"i0": 1}}, "label_bins": {"mask": [1]}}, "label_bins: 'mask' comes from file_labels"),
])  # fmt: skip
def test_contradicting_label_options(tmp_path: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_csv(str(tagged(tmp_path)), **params)


# -- the example learns --------------------------------------------------------


@pytest.mark.slow
def test_the_mask_example_learns_every_attribute(
    tmp_path_factory: pytest.TempPathFactory, cli: Any, write_config: Any, tmp_path: Path
) -> None:
    """examples/mask.yaml's model, as shipped, on a fresh synthetic set: each of
    mask, gender and age group is predicted well above chance on the eval
    images (mask 1/3, gender 1/2, age group at most 0.53 by guessing 30-59)."""
    data = tmp_path_factory.mktemp("mask_learn")
    _example_generator().generate(data, people=32, seed=123, size=16, eval_images=150)
    config = mask_config(data)
    example = yaml_example()
    config["model"] = example["model"]  # the example's own model and schedule
    config["scheduler"] = example["scheduler"]
    # a seventh of the example's photos: smaller batches, so the steps are as many
    config["loader"]["batch_size"] = 16
    config["trainer"].update(max_epochs=12)
    result = cli("run", write_config(config), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "run" / "info.csv")["ans"].to_numpy()
    truth = pd.read_csv(data / "eval" / "answers.csv")["ans"].to_numpy()
    accuracy = {
        "mask": (predicted // 6 == truth // 6).mean(),
        "gender": (predicted // 3 % 2 == truth // 3 % 2).mean(),
        "age": (predicted % 3 == truth % 3).mean(),
    }
    assert accuracy["mask"] > 0.7 and accuracy["gender"] > 0.9 and accuracy["age"] > 0.75, accuracy



def yaml_example() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((EXAMPLES / "mask.yaml").read_text())


# -- other tasks, end to end ---------------------------------------------------


def task_config(data: Path, **dataset: Any) -> dict[str, Any]:
    """A one-epoch run on the raw mask layout with ``dataset`` params."""
    return {
        "data": {"name": "image_csv", "csv": str(data / "train" / "train.csv"),
                 "root": str(data / "train" / "images"), "test_csv": str(data / "eval" / "info.csv"),
                 "test_id_column": "ImageID", "test_root": str(data / "eval" / "images"), **dataset},
        "model": {"name": "small_cnn", "channels": 4},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "loader": {"batch_size": 16},
        "split": {"method": "holdout", "val_fraction": 0.25},
        "trainer": {"max_epochs": 1, "progress": False, "seed": 0, "monitor": "val/loss"},
    }  # fmt: skip


@pytest.mark.slow
def test_age_as_a_regression_target(mask_data: Path, cli: Any, write_config: Any, tmp_path: Path) -> None:
    config = task_config(mask_data, label_columns=["age"], target_type="regression")
    config.update(loss={"name": "cross_entropy"}, metrics=[{"name": "mae"}],
                  writer={"name": "csv", "id_column": "ImageID", "prediction_column": "age"})  # fmt: skip
    refused = cli("check", write_config(config))
    assert refused.exit_code == 2 and "cross_entropy" in refused.stderr and "regression" in refused.stderr
    config["loss"] = {"name": "mse"}
    result = cli("run", write_config(config), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(tmp_path / "run" / "submission.csv")
    assert submission["ImageID"].tolist() == pd.read_csv(mask_data / "eval" / "info.csv")["ImageID"].tolist()
    assert submission["age"].dtype == float


@pytest.mark.slow
def test_delimited_tags_as_a_multilabel_target(mask_data: Path, cli: Any, write_config: Any, tmp_path: Path) -> None:
    people = pd.read_csv(mask_data / "train" / "train.csv")
    people["tags"] = [f"{g} old" if a >= 60 else g for g, a in zip(people["gender"], people["age"], strict=True)]
    people.to_csv(mask_data / "train" / "tags.csv", index=False)
    config = task_config(mask_data, csv=str(mask_data / "train" / "tags.csv"), label_columns=["tags"],
                         label_delimiter=" ")  # fmt: skip
    config.update(loss={"name": "bce"}, metrics=[{"name": "multilabel_f1"}],
                  writer={"name": "label_list", "id_column": "ImageID", "prediction_column": "tags"})  # fmt: skip
    result = cli("run", write_config(config), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(tmp_path / "run" / "submission.csv", keep_default_na=False)
    assert list(submission.columns) == ["ImageID", "tags"]
    assert {t for cell in submission["tags"] for t in cell.split()} <= {"female", "male", "old"}


def test_a_label_written_as_1_and_as_1_0_is_one_class() -> None:
    frame = pd.DataFrame({"label": ["1", "1.0", "2", " 2 ", "x"]})
    targets, names = combine_labels(frame, ["label"])
    assert names == ["1", "2", "x"] and targets.tolist() == [0, 0, 1, 1, 2]
