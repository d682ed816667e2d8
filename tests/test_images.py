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
from torchyard_builtins.datasets.images import combine_labels, image_csv, image_folder

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
    config["data"].update(csv=str(data / "train" / "images.csv"), test_csv=str(data / "eval" / "info.csv"),
                          test_root=str(data / "eval" / "images"), image_size=16)  # fmt: skip
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


def test_the_image_datasets_pass_the_conformance_kit(mask_data: Path, builtin_host: PluginHost) -> None:
    from torchyard.testing import check_component

    registry = builtin_host.registry
    params = {k: v for k, v in mask_config(mask_data)["data"].items() if k != "name"}
    check_component(registry.get("dataset", "image_csv"), params)
    # as a folder per class: one class per person
    check_component(registry.get("dataset", "image_folder"), {"root": str(mask_data / "train" / "images")})


def test_group_split_keeps_people_apart(mask_data: Path, builtin_host: PluginHost, tmp_path: Path) -> None:
    run = build_run(validate_config(mask_config(mask_data), builtin_host.registry), builtin_host, tmp_path)
    assert run.extras["groups_overlap"] == 0 and run.extras["split_warnings"] == []
    assert run.data.num_classes == 18 and run.data.input_shape == (3, 16, 16)
    leaky = validate_config(mask_config(mask_data, group=False), builtin_host.registry)
    run = build_run(leaky, builtin_host, tmp_path)
    assert any("leaking split" in w for w in run.extras["split_warnings"])
    assert run.extras["groups_overlap"] > 0


def test_relative_paths_are_taken_from_the_config_file(
    mask_data: Path, builtin_host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from torchyard.config import load_config

    config = mask_config(mask_data)
    config["data"].update(csv="train/images.csv", test_csv="eval/info.csv", test_root="eval/images")
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


def test_a_missing_photo_stops_the_run_before_training(
    mask_data: Path, cli: Any, write_config: Any, tmp_path: Path
) -> None:
    config = mask_config(mask_data)
    rows = pd.read_csv(mask_data / "train" / "images.csv")
    rows.loc[3, "path"] = "images/nobody/mask1.png"
    rows.to_csv(tmp_path / "images.csv", index=False)
    config["data"]["root"] = str(mask_data / "train")
    config["data"]["csv"] = str(tmp_path / "images.csv")
    result = cli("run", write_config(config), "--out", tmp_path / "never")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"error: 1 of 84 image files listed in {tmp_path / 'images.csv'} are missing (first: "
        f"{mask_data / 'train' / 'images/nobody/mask1.png'}); fix them, or set on_bad_image: skip"
    )
    assert not (tmp_path / "never").exists()
