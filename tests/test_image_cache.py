"""The decoded-image cache (the image datasets' ``cache`` param): the same
pixels as decoding, shared by the loader's workers, reused by a later run,
invalidated by a changed file, refused when it would not fit."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from torchyard.errors import DataError
from torchyard_builtins.datasets import image_cache, image_files
from torchyard_builtins.datasets.images import image_csv

from .test_images import mask_config, mask_data  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The least populated class:UserWarning"),  # 12 people, 4 folds
]

SIZE = [6, 5]  # a resize from 9x7: the cache holds the resized pixels


def noise(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rows = [{"path": f"img/{i}.png", "label": i % 2} for i in range(6)]
    for i, row in enumerate(rows):
        noise(tmp_path / row["path"], i)
    csv = tmp_path / "train.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture
def decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every decode appends a line to this file: counted across DataLoader workers too."""
    log = tmp_path / "decodes.log"
    log.touch()
    real = image_files.load_image

    def spy(path: str, color: Any = "rgb") -> torch.Tensor:
        with open(log, "a") as f:
            f.write(f"{path}\n")
        return real(path, color)

    monkeypatch.setattr(image_files, "load_image", spy)
    monkeypatch.setattr(image_cache, "_MEMORY", {})  # a fresh memory cache per test
    return log


def count(log: Path) -> int:
    return len(log.read_text().splitlines())


def build(csv: Path, **params: Any) -> Any:
    return image_csv(csv, image_size=SIZE, **params)


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_the_cache_gives_the_decoded_pixels(images: Path, tmp_path: Path, cache: str) -> None:
    plain = build(images).train
    cached = build(images, cache=cache, cache_dir=tmp_path / "cache").train
    for _ in range(2):  # filled, then read back
        for i in range(len(plain)):
            assert torch.equal(cached[i][0], plain[i][0]) and cached[i][1] == plain[i][1]
    assert plain[0][0].shape == (3, *SIZE)


def test_a_second_run_reads_the_disk_cache(images: Path, tmp_path: Path, decodes: Path) -> None:
    first = build(images, cache="disk", cache_dir=tmp_path / "cache").train
    _ = [first[i] for i in range(len(first))]
    assert count(decodes) == 6
    again = build(images, cache="disk", cache_dir=tmp_path / "cache")
    _ = [again.train[i] for i in range(len(again.train))] + [again.train_eval[0]]
    assert count(decodes) == 6  # nothing decoded again
    assert [p.suffix for p in (tmp_path / "cache" / "v2-6x5-rgb").iterdir()] == [".u8"]  # one file for the list


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_the_folds_of_a_kfold_run_share_the_cache(images: Path, tmp_path: Path, decodes: Path, cache: str) -> None:
    first = build(images, cache=cache, cache_dir=tmp_path / "cache").train
    _ = [first[i] for i in range(len(first))]
    again = build(images, cache=cache, cache_dir=tmp_path / "cache").train  # k-fold builds it once per fold
    if cache == "memory":
        assert again.cache is first.cache
    else:
        assert again.cache.file == first.cache.file
    _ = [again[i] for i in range(len(again))]
    assert count(decodes) == 6


def test_a_home_cache_dir_stays_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # the config made ~/cache relative to its folder, as it does any relative path
    [cache] = image_cache.image_caches("disk", tmp_path / "configs" / "~" / "cache", [["a.png"]], image_size=(4, 4),
                                       color="gray")  # fmt: skip
    assert isinstance(cache, image_cache.DiskCache)
    assert cache.file.parent == tmp_path / "home" / "cache" / "v2-4x4-gray"


def test_a_changed_image_is_decoded_again(images: Path, tmp_path: Path, decodes: Path) -> None:
    data = build(images, cache="disk", cache_dir=tmp_path / "cache").train
    before = data[3][0]
    changed = images.parent / "img" / "3.png"
    stat = changed.stat()
    noise(changed, 99)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    n = count(decodes)
    after = build(images, cache="disk", cache_dir=tmp_path / "cache").train[3][0]
    assert count(decodes) == n + 1 and not torch.equal(after, before)
    assert torch.equal(after, build(images).train[3][0])


def test_workers_fill_the_memory_cache_for_everyone(images: Path, decodes: Path) -> None:
    data = build(images, cache="memory").train
    assert count(decodes) == 1  # the first image, probed when the dataset is built
    loader = DataLoader(data, batch_size=2, num_workers=2)
    first = torch.cat([x for x, _ in loader])
    assert bool(data.cache.filled.all())
    assert count(decodes) == 6  # each image once, the probed one not again
    second = torch.cat([x for x, _ in loader])  # fresh workers: they see what the others filled
    assert count(decodes) == 6 and torch.equal(first, second)
    assert torch.equal(data[5][0], first[5])  # the main process reads what a worker decoded


def test_a_cache_needs_image_size(images: Path) -> None:
    with pytest.raises(ValueError, match="cache: memory needs image_size"):
        image_csv(images, cache="memory")


def test_a_cache_that_would_not_fit_is_refused(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, write_config: Any
) -> None:
    class Usage:
        free = 200  # bytes: 6 images of 3x6x5 are 540

    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda _: Usage)
    monkeypatch.setattr(image_cache, "_MEMORY", {})
    with pytest.raises(DataError, match=r"cache: disk: the decoded images need 660 bytes more in .*, whose "
                       r"disk has 200 bytes free; set cache_dir to a larger disk"):  # fmt: skip
        build(images, cache="disk", cache_dir=tmp_path / "cache")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: each process its own copy
    Usage.free = 1000
    config = {"data": {"name": "image_csv", "csv": str(images), "image_size": SIZE, "cache": "memory"},
              "model": {"name": "small_cnn", "channels": 4}, "loss": {"name": "cross_entropy"},
              "optimizer": {"name": "sgd"}, "trainer": {"max_epochs": 1}}  # fmt: skip
    result = cli("run", write_config(config), "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert ("cache: memory: the decoded images need 540 bytes per process x 4 processes, more than the "
            "1000 bytes free in /dev/shm") in result.output  # fmt: skip
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_cached_run_scores_as_an_uncached_one(
    mask_data: Path,  # noqa: F811 - the fixture
    cli: Any,
    write_config: Any,
    tmp_path: Path,
) -> None:
    scores = []
    for cache in ("none", "memory", "disk"):
        config = mask_config(mask_data)
        config["data"].update(cache=cache, cache_dir=str(tmp_path / "cache"))
        config["trainer"].update(max_epochs=2, deterministic=True)
        out = tmp_path / cache
        result = cli("run", write_config(config, f"{cache}.yaml"), "--out", out)
        assert result.exit_code == 0, result.output
        metrics = pd.read_csv(out / "metrics.csv")
        scores.append(metrics[[c for c in metrics.columns if c.startswith(("train/", "val/"))]])
    assert len(scores[0]) == 2 and "val/f1" in scores[0]
    pd.testing.assert_frame_equal(scores[0], scores[1])
    pd.testing.assert_frame_equal(scores[0], scores[2])


def test_a_spawned_worker_maps_the_disk_cache_itself(images: Path, tmp_path: Path, decodes: Path) -> None:
    data = build(images, cache="disk", cache_dir=tmp_path / "cache").train
    _ = [data[i] for i in range(len(data))]
    copy = pickle.loads(pickle.dumps(data.cache))  # as a spawned worker receives it
    assert copy._rows is None
    pixels = copy.get(2, data.paths[2], lambda path: pytest.fail(f"{path} decoded again"))
    assert torch.equal(pixels, data.cache.get(2, data.paths[2], lambda path: pytest.fail(path)))
    assert pixels.shape == (3, *SIZE) and count(decodes) == 6


def test_the_training_and_test_caches_must_fit_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask_data: Path  # noqa: F811 - the fixture
) -> None:
    config = mask_config(mask_data)["data"]
    config.pop("name")
    config.update(cache="disk", cache_dir=tmp_path / "cache")
    train, test = 84, len(pd.read_csv(mask_data / "eval" / "info.csv"))
    row = 20 + 3 * 16 * 16

    class Usage:
        free = max(train, test) * row + 1  # either list fits alone, not both

    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda _: Usage)
    with pytest.raises(DataError, match=f"need {(train + test) * row / 1024:.1f} KB more"):
        image_csv(**config)
    Usage.free = (train + test) * row
    bundle = image_csv(**config)
    assert bundle.train.cache.file != bundle.test.cache.file
    assert sorted(p.stat().st_size for p in (tmp_path / "cache" / "v2-16x16-rgb").iterdir()) == sorted(
        [train * row, test * row]
    )


def test_a_full_disk_is_one_error_when_the_cache_file_is_created(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(image_cache.os, "posix_fallocate", full, raising=False)
    with pytest.raises(DataError, match=r"cache: cannot create the disk cache file .*\.u8: No space left on device"):
        build(images, cache="disk", cache_dir=tmp_path / "cache")


def test_another_torchvision_decodes_into_another_disk_cache_file(
    images: Path, tmp_path: Path, decodes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(images, cache="disk", cache_dir=tmp_path / "cache").train
    _ = [first[i] for i in range(len(first))]
    monkeypatch.setattr(image_cache, "_torchvision_version", lambda: "99.0")  # its decoders may differ
    again = build(images, cache="disk", cache_dir=tmp_path / "cache").train
    assert again.cache.file != first.cache.file
    _ = [again[i] for i in range(len(again))]
    assert count(decodes) == 12
