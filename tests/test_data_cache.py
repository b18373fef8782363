"""The decoded-image cache: photos decoded once into memory-mapped files, patches unchanged."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wespe.data.datamodule as datamodule
import wespe.data.datasets as datasets
from wespe.data import FolderDataModule, UnpairedPatchDataset
from wespe.data.datasets import (
    CachedImage,
    DecodeCache,
    default_cache_dir,
    load_image,
    scan_images,
)

#: Pixels from which the tests' small photos are cached (the default, 500x500, would make them
#: slow to write and decode).
MIN_PIXELS = 1000


def random_photo(size: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth random ``(height, width, 3)`` uint8 photo (JPEG keeps it close)."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image)


def write_jpeg(path: Path, size: tuple[int, int] = (48, 64), seed: int = 0, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_photo(size, seed)).save(path, quality=95, **save)
    return path


@pytest.fixture
def photos(tmp_path, monkeypatch) -> dict[str, Path]:
    """Two domain folders of small JPEGs, cached from MIN_PIXELS, and the cache folder."""
    monkeypatch.setattr(datasets, "DECODE_CACHE_MIN_PIXELS", MIN_PIXELS)
    for i in range(3):
        write_jpeg(tmp_path / "source" / f"s{i}.jpg", (48 + 4 * i, 64), seed=i)
        write_jpeg(tmp_path / "target" / "trip" / f"t{i}.jpg", (56, 40 + 4 * i), seed=10 + i)
    return {
        "source": tmp_path / "source",
        "target": tmp_path / "target",
        "cache": tmp_path / "cache",
    }


def data_module(photos: dict[str, Path], **kwargs: object) -> FolderDataModule:
    settings = {"patch_size": 16, "batch_size": 4, "patches_per_epoch": 16, "seed": 3}
    settings["cache_dir"] = str(photos["cache"])
    return FolderDataModule(photos["source"], photos["target"], **settings | kwargs)


def batches(data: FolderDataModule) -> list[dict[str, torch.Tensor]]:
    if data.train_set is None:
        data.setup("fit")
    return list(data.train_dataloader())


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second) > 0
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["source"], b["source"]) and torch.equal(a["target"], b["target"])


def cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Counts every full decode of a photo (the scan's and load_image's)."""
    calls: list[str] = []
    original = datasets.decode_image

    def counting(image: Image.Image) -> torch.Tensor:
        calls.append(Path(image.filename).name)
        return original(image)

    monkeypatch.setattr(datasets, "decode_image", counting)
    return calls


def test_cached_and_uncached_data_give_the_same_batches(photos):
    cached = data_module(photos)
    uncached = data_module(photos, decode_cache=False)
    cached.prepare_data()
    cached.setup("fit")
    uncached.setup("fit")
    items = cached.train_set.source + cached.train_set.target
    assert all(isinstance(item, CachedImage) for item in items) and len(items) == 6
    assert all(isinstance(item, Path) for item in uncached.train_set.source)
    assert len(cache_files(photos["cache"])) == 6
    assert_same_batches(batches(cached), batches(uncached))
    # Each entry holds exactly what load_image decodes, upright uint8 (3, H, W).
    for item in items:
        assert torch.equal(item.load(), load_image(item.source_path))
    # The items are tiny and picklable: workers get paths, not pixels.
    assert items[0] == CachedImage(items[0].array_path, items[0].source_path)


def test_each_photo_is_decoded_once_and_a_second_setup_decodes_none(photos, decodes, monkeypatch):
    logged: list[str] = []
    monkeypatch.setattr(datamodule, "rank_zero_info", logged.append)
    first = data_module(photos)
    first.prepare_data()  # Lightning: fills the cache...
    first.setup("fit")  # ...and setup, in the same process, reuses that scan
    assert sorted(decodes) == sorted(["s0.jpg", "s1.jpg", "s2.jpg", "t0.jpg", "t1.jpg", "t2.jpg"])
    expected = batches(first)
    assert len(decodes) == 6  # patches come from the cache, never from decoding
    assert re.fullmatch(
        rf"decoded 6 photos \(0\.00 GiB\) into {re.escape(str(photos['cache']))}; reusing 0 cached",
        logged[0],
    )
    decodes.clear()
    second = data_module(photos)
    second.setup("fit")  # called alone, as tests and users do
    assert decodes == []
    assert logged[1].startswith("decoded 0 photos") and logged[1].endswith("reusing 6 cached")
    assert_same_batches(batches(second), expected)


def test_a_changed_photo_is_decoded_again_and_its_old_entry_removed(photos, decodes):
    first = data_module(photos)
    first.setup("fit")
    old = first.train_set.source[1]
    old_pixels = old.load().clone()
    decodes.clear()
    path = write_jpeg(photos["source"] / "s1.jpg", (52, 64), seed=99)  # new content, same size
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # and surely a new mtime
    second = data_module(photos)
    second.setup("fit")
    assert decodes == ["s1.jpg"]
    new = second.train_set.source[1]
    assert new.array_path != old.array_path and not old.array_path.exists()
    assert new.array_path.parent == old.array_path.parent  # one folder per photo, one entry
    assert torch.equal(new.load(), load_image(path))
    assert not torch.equal(new.load(), old_pixels)
    assert_same_batches(batches(second), batches(data_module(photos, decode_cache=False)))


def test_a_failed_write_leaves_no_file_and_names_the_setting(photos, monkeypatch):
    save = np.save

    def half_then_full_disk(file, array, **kwargs) -> None:
        save(file, array[:, : array.shape[1] // 2], **kwargs)  # a partial file, then the error
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full_disk)
    with pytest.raises(OSError, match="No space left") as caught:
        data_module(photos).setup("fit")
    message = str(caught.value)
    assert str(photos["cache"]) in message and "data.init_args.cache_dir" in message
    assert "data.init_args.decode_cache=false" in message
    assert cache_files(photos["cache"]) == []  # no temporary, no partial entry


def test_a_decoder_failing_midway_leaves_no_file(photos, monkeypatch):
    original, calls = datasets.decode_image, []

    def failing(image: Image.Image) -> torch.Tensor:
        calls.append(image)
        if len(calls) == 3:
            raise MemoryError("out of memory while decoding")
        return original(image)

    monkeypatch.setattr(datasets, "decode_image", failing)
    with pytest.raises(MemoryError):  # not taken for a corrupt file and skipped
        data_module(photos).setup("fit")
    files = cache_files(photos["cache"])
    # The source folder's other two photos were cached whole; nothing else was written.
    assert len(calls) == 3 and len(files) == 2
    assert all(f.suffix == ".npy" and not f.name.startswith(".") for f in files)
    for file in files:
        assert np.load(file).shape[0] == 3


def test_an_unwritable_cache_folder_is_an_error_naming_it(photos, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(OSError, match=re.escape(str(blocker / "cache"))) as caught:
        data_module(photos, cache_dir=str(blocker / "cache")).setup("fit")
    assert "data.init_args.cache_dir" in str(caught.value)


def test_a_filled_cache_is_read_without_writing(photos, monkeypatch):
    expected = batches(data_module(photos))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(datasets, "replacing", refuse)  # as on a read-only mount
    assert_same_batches(batches(data_module(photos)), expected)
    write_jpeg(photos["source"] / "new.jpg", seed=5)
    with pytest.raises(OSError, match="Read-only"):  # a photo not in it needs a write
        data_module(photos).setup("fit")


def test_workers_give_the_same_batches_as_the_main_process(photos):
    expected = batches(data_module(photos))
    parallel = data_module(photos, num_workers=2)
    assert_same_batches(batches(parallel), expected)


def test_an_exif_rotated_photo_is_cached_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: stored 40x60 (HxW), shown 60x40
    path = write_jpeg(tmp_path / "photos" / "portrait.jpg", (40, 60), seed=1, exif=exif)
    cache = DecodeCache(tmp_path / "cache", min_pixels=MIN_PIXELS)
    scan = scan_images(tmp_path / "photos", min_size=16, cache=cache)
    entry = scan.cached[path]
    assert entry.load().shape == (3, 60, 40)
    assert torch.equal(entry.load(), load_image(path))
    assert cache.lookup(path).shape == (60, 40)


def test_small_images_are_not_cached(tmp_path, decodes):
    write_jpeg(tmp_path / "photos" / "small.jpg", (40, 50))
    scan = scan_images(tmp_path / "photos", cache=DecodeCache(tmp_path / "cache"))
    assert scan.items == [tmp_path / "photos" / "small.jpg"]  # 2000 px: read from the file
    assert not (tmp_path / "cache").exists() and decodes == []


def test_preload_and_a_disabled_cache_write_nothing(photos):
    for kwargs in ({"preload": True}, {"decode_cache": False}):
        data = data_module(photos, **kwargs)
        data.prepare_data()
        data.setup("fit")
    assert not photos["cache"].exists()
    assert_same_batches(batches(data), batches(data_module(photos)))


def test_a_cleaned_cache_is_reported_with_the_photo(photos):
    data = data_module(photos)
    data.setup("fit")
    for file in cache_files(photos["cache"]):
        file.unlink()
    with pytest.raises(FileNotFoundError, match=r"\(of .*s\d\.jpg\) is gone: was the cache folder"):
        data.train_set[0]


def test_a_smaller_patch_error_names_the_photo_not_its_entry(photos):
    data = data_module(photos)
    data.setup("fit")
    dataset = UnpairedPatchDataset(data.train_set.source, data.train_set.target, 60, 4)
    with pytest.raises(ValueError, match=r"source.s\d\.jpg is \d+x64, smaller than patch_size=60"):
        dataset[0]


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("WESPE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "wespe" / "decoded"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "wespe" / "decoded"
    monkeypatch.setenv("WESPE_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    photos = tmp_path / "photos"
    write_jpeg(photos / "a" / "x.jpg", (40, 40))
    write_jpeg(photos / "b" / "y.jpg", (40, 40))
    monkeypatch.setattr(datasets, "DECODE_CACHE_MIN_PIXELS", MIN_PIXELS)
    FolderDataModule(photos / "a", photos / "b", patch_size=16, batch_size=2).setup("fit")
    assert len(cache_files(tmp_path / "mine")) == 2


# --------------------------------------------------------------------------- benchmarks/data.py


def test_data_benchmark_runs_and_reports_sane_figures(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "data_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "data.py"
    )
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    results = benchmark.main(
        ["--quick", "--photos", "1", "--megapixels", "0.3", "--repeats", "1", "--batches", "2",
         "--workers", "2", "--iterations", "2", "--warmup", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    written = (tmp_path / "data.json").read_text()
    assert written.startswith("{") and '"table"' in written
    folder = results["folder"]
    assert folder["size"] == "632x474" and folder["cache_gib"] > 0
    assert folder["cached_pairs_per_second"] > folder["uncached_pairs_per_second"] > 0
    assert folder["speedup"] > 1 and folder["cold_pairs_per_second"] > 0
    assert results["embedded"]["pairs_per_second"] > 0
    assert results["workers"]["batches_per_second"] > 0
    assert [run["workers"] for run in results["training"]] == [0, 0, 2]
    for run in results["training"]:
        assert 0 <= run["wait_fraction"] <= 1 and run["iterations"] == 2
    assert f"CPU only: {benchmark.machine_line()}" in results["table"]
