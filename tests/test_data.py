"""The phone degradation, the datasets and the three LightningDataModules."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

from wespe.data import (
    DPEDDataModule,
    EmbeddedSampleDataModule,
    FolderDataModule,
    PairedImageDataset,
    PhoneDegradation,
    UnpairedPatchDataset,
)
from wespe.data.datasets import (
    EMBEDDED_PHOTOS,
    EpochSampler,
    ImageFolderDataset,
    PairedPatchDataset,
    embedded_photo,
    find_images,
    load_image,
    paired_by_name,
)

# --------------------------------------------------------------------------- helpers


def random_uint8(shape: tuple[int, ...], seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def write_image(
    path: Path, image: Tensor | None = None, size: tuple[int, int] = (40, 40), seed: int = 0
) -> Tensor:
    """Write a ``(3, H, W)`` uint8 image (random if not given) with PIL; return what was written."""
    if image is None:
        image = random_uint8((3, *size), seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return image


def crop_positions(patch: Tensor, image: Tensor) -> list[tuple[int, int]]:
    """All (top, left) where ``patch`` (float, [0, 1]) is exactly a crop of uint8 ``image``."""
    size = patch.shape[-1]
    target = (patch * 255).round().byte()
    windows = image.unfold(1, size, 1).unfold(2, size, 1)  # (3, nH, nW, size, size)
    hits = (windows == target[:, None, None]).all(dim=(0, 3, 4)).nonzero()
    return [tuple(map(int, hit)) for hit in hits]


def crop_origin(patch: Tensor, images: list[Tensor]) -> tuple[int, bool] | None:
    """(index of the image, flipped) that ``patch`` was cropped from, or None."""
    for index, image in enumerate(images):
        if crop_positions(patch, image):
            return index, False
        if crop_positions(patch.flip(-1), image):
            return index, True
    return None


# --------------------------------------------------------------------------- PhoneDegradation


def test_degradation_is_deterministic_per_seed():
    clean = torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0))
    degrade = PhoneDegradation()
    first = degrade(clean, seed=3)
    assert torch.equal(first, degrade(clean, seed=3))
    assert torch.equal(first, PhoneDegradation()(clean.clone(), seed=3))
    assert not torch.equal(first, degrade(clean, seed=4))


@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 17, 23), (3, 9, 31)])
def test_degradation_range_and_shape(shape):
    clean = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    out = PhoneDegradation()(clean, seed=0)
    assert out.shape == shape
    assert out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, clean)


def test_degradation_darkens_mid_tones():
    # A flat gray 0.5: gamma 1.6 gives 0.5 ** 1.6 ≈ 0.330; contrast leaves a flat image alone;
    # the color cast multiplies by (1, 0.95, 0.75); blur leaves it flat; zero-mean noise (far
    # from the clipping bounds) and JPEG keep the mean. Expected means ≈ (0.330, 0.313, 0.247).
    gray = torch.full((3, 48, 48), 0.5)
    out = PhoneDegradation()(gray, seed=0)
    expected = 0.5**1.6 * torch.tensor([1.0, 0.95, 0.75])
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected, atol=0.01, rtol=0)
    assert out.mean() < 0.5
    # The noise is there (std 0.04 before JPEG smooths it a little).
    assert 0.01 < out[0].std() < 0.06


def test_degradation_with_gamma_one_and_no_cast_keeps_gray():
    # The control of the test above: without gamma/cast, the mean stays at 0.5.
    gray = torch.full((3, 32, 32), 0.5)
    out = PhoneDegradation(gamma=1.0, color_cast=(1.0, 1.0, 1.0))(gray, seed=0)
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.full((3,), 0.5), atol=0.01, rtol=0)


def test_degradation_psnr_on_a_real_photo():
    clean = embedded_photo("chelsea").float() / 255
    degraded = PhoneDegradation()(clean, seed=0)
    psnr = peak_signal_noise_ratio(degraded[None], clean[None], data_range=1.0).item()
    # A visible degradation (the project's target: <= 20 dB), yet still the same photo.
    assert psnr <= 20
    assert psnr > 10
    # Mild settings degrade less.
    mild = PhoneDegradation(
        gamma=1.0, contrast=1.0, color_cast=(1, 1, 1), noise_std=0.0, jpeg_quality=95
    )
    mild_psnr = peak_signal_noise_ratio(mild(clean, seed=0)[None], clean[None], data_range=1.0)
    assert mild_psnr > psnr + 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0}, "gamma > 0"),
        ({"gamma": -1.0}, "gamma > 0"),
        ({"contrast": 0}, "contrast > 0"),
        ({"noise_std": -0.1}, "noise_std >= 0"),
        ({"blur_sigma": -1}, "blur_sigma >= 0"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"color_cast": (1.0, 1.0)}, "color_cast"),
        ({"gamma": (1.5, 1.2)}, "low <= high"),
        ({"vignetting": 1.5}, "vignetting >= 0 and <= 1"),
        ({"exposure": (0.0, 1.0, 2.0)}, "one value or a"),
        ({"shot_noise": (-0.1, 0.1)}, "shot_noise >= 0"),
        ({"white_balance_error": -0.1}, "white_balance_error >= 0"),
    ],
)
def test_degradation_rejects_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhoneDegradation(**kwargs)


# --------------------------------------------------------------------------- find_images / load_image


def test_find_images_recursive_sorted_and_filtered(tmp_path):
    expected = [
        tmp_path / "a.png",
        tmp_path / "b" / "c.JPG",
        tmp_path / "b" / "d" / "e" / "f.jpeg",
        tmp_path / "b" / "z.bmp",
        tmp_path / "m.webp",
    ]
    for seed, path in enumerate(expected):
        write_image(path, size=(8, 8), seed=seed)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "d" / "data.npy").write_bytes(b"\x00" * 16)
    (tmp_path / "folder.png").mkdir()  # a directory with an image suffix
    found = find_images(tmp_path)
    assert found == sorted(expected)
    assert found == sorted(found)


def test_find_images_accepts_str(tmp_path):
    write_image(tmp_path / "x" / "y.png", size=(4, 4))
    assert find_images(str(tmp_path)) == [tmp_path / "x" / "y.png"]


def test_find_images_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        find_images(missing)


def test_find_images_folder_without_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        find_images(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(empty))):
        find_images(empty)


def test_load_image_rgb_png(tmp_path):
    written = write_image(tmp_path / "x.png", size=(7, 11), seed=5)
    loaded = load_image(tmp_path / "x.png")
    assert loaded.dtype == torch.uint8
    assert loaded.shape == (3, 7, 11)
    assert torch.equal(loaded, written)


def test_load_image_grayscale_becomes_rgb(tmp_path):
    gray = np.arange(6 * 9, dtype=np.uint8).reshape(6, 9) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png")
    assert loaded.shape == (3, 6, 9) and loaded.dtype == torch.uint8
    for channel in loaded:
        assert torch.equal(channel, torch.from_numpy(gray))


def test_load_image_flattens_alpha_onto_white(tmp_path):
    # Shown as a viewer shows it: a transparent area's stored color is not part of the photo.
    rgba = np.zeros((5, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (3, 5, 5)
    # 10/255 of the color over 245/255 of white.
    assert (loaded[0] == 253).all() and (loaded[1:] == 245).all()


def test_load_image_corrupt_file(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"this is not a jpeg \x00\x01\x02" * 10)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_image(path)


def test_load_image_missing_file(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(ValueError, match="gone.png"):
        load_image(path)


# --------------------------------------------------------------------------- UnpairedPatchDataset


SOURCES = [random_uint8((3, 40, 50), 1), random_uint8((3, 45, 33), 2)]
TARGETS = [random_uint8((3, 36, 36), 3), random_uint8((3, 50, 41), 4), random_uint8((3, 30, 60), 5)]


def test_patches_shape_dtype_range_and_origin():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=12, seed=0)
    assert len(ds) == 12
    for index in range(len(ds)):
        item = ds[index]
        assert set(item) == {"source", "target"}
        for key in ("source", "target"):
            patch = item[key]
            assert patch.shape == (3, 16, 16) and patch.dtype == torch.float32
            assert patch.min() >= 0 and patch.max() <= 1
        # Each patch is an exact crop of an image of its own domain.
        assert crop_origin(item["source"], SOURCES) is not None
        assert crop_origin(item["target"], TARGETS) is not None
        assert crop_origin(item["source"], TARGETS) is None


def test_patches_use_all_images_and_flips():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=40, seed=0)
    origins = [crop_origin(ds[i]["target"], TARGETS) for i in range(40)]
    assert {index for index, _ in origins} == {0, 1, 2}
    assert {flipped for _, flipped in origins} == {False, True}
    no_flip = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=40, seed=0, flip=False)
    assert all(not crop_origin(no_flip[i]["source"], SOURCES)[1] for i in range(40))


def test_patches_are_deterministic_across_objects():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=8, seed=7)
    fresh = UnpairedPatchDataset(
        [s.clone() for s in SOURCES], TARGETS, patch_size=16, length=8, seed=7
    )
    for index in (0, 3, 7, 123):
        a, b, c = ds[index], ds[index], fresh[index]
        for key in ("source", "target"):
            assert torch.equal(a[key], b[key])
            assert torch.equal(a[key], c[key])


def test_patches_depend_on_the_seed():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=8, seed=7)
    other_seed = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=8, seed=8)
    same = [torch.equal(ds[i]["source"], other_seed[i]["source"]) for i in range(8)]
    assert not all(same)


def test_patches_differ_between_indices():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=10, seed=0)
    sources = [ds[i]["source"] for i in range(10)]
    targets = [ds[i]["target"] for i in range(10)]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not torch.equal(sources[i], sources[j])
            assert not torch.equal(targets[i], targets[j])


def test_source_stream_does_not_depend_on_targets():
    ds_a = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=20, seed=0)
    ds_b = UnpairedPatchDataset(
        SOURCES, TARGETS[:1] + [random_uint8((3, 64, 64), 9)], 16, 20, seed=0
    )
    for index in range(20):
        assert torch.equal(ds_a[index]["source"], ds_b[index]["source"])
    assert any(not torch.equal(ds_a[i]["target"], ds_b[i]["target"]) for i in range(20))


def test_source_and_target_streams_are_not_the_same_draws():
    # Same images in both domains: if the two streams shared their random draws, every
    # item would hold two identical patches.
    ds = UnpairedPatchDataset(SOURCES, SOURCES, patch_size=16, length=10, seed=0)
    assert sum(torch.equal(ds[i]["source"], ds[i]["target"]) for i in range(10)) == 0


def test_indices_beyond_len():
    ds = UnpairedPatchDataset(SOURCES, TARGETS, patch_size=16, length=5, seed=0)
    beyond = ds[5 * 3 + 2]
    assert beyond["source"].shape == (3, 16, 16)
    assert crop_origin(beyond["source"], SOURCES) is not None
    assert not torch.equal(beyond["source"], ds[2]["source"])  # a new epoch, new patches


def test_image_smaller_than_patch_in_memory():
    with pytest.raises(ValueError, match=r"10x40.*patch_size=16"):
        UnpairedPatchDataset([random_uint8((3, 10, 40), 0)], TARGETS, patch_size=16, length=4)
    with pytest.raises(ValueError, match=r"smaller than patch_size=37"):
        UnpairedPatchDataset(SOURCES, TARGETS, patch_size=37, length=4)


def test_image_smaller_than_patch_on_disk(tmp_path):
    small = tmp_path / "small.png"
    write_image(small, size=(12, 30))
    ds = UnpairedPatchDataset([small], TARGETS, patch_size=16, length=4)  # lazy: checked on read
    with pytest.raises(ValueError, match=r"small\.png is 12x30, smaller than patch_size=16"):
        ds[0]


def test_invalid_dataset_arguments():
    with pytest.raises(ValueError, match="at least one"):
        UnpairedPatchDataset([], TARGETS, patch_size=8, length=4)
    with pytest.raises(ValueError, match="at least one"):
        UnpairedPatchDataset(SOURCES, [], patch_size=8, length=4)
    with pytest.raises(ValueError, match="patch_size and length"):
        UnpairedPatchDataset(SOURCES, TARGETS, patch_size=8, length=0)


def test_patches_from_files(tmp_path):
    source_paths = [tmp_path / "src" / f"{i}.png" for i in range(2)]
    target_paths = [tmp_path / "tgt" / "deep" / f"{i}.png" for i in range(2)]
    sources = [write_image(p, size=(30, 34), seed=10 + i) for i, p in enumerate(source_paths)]
    targets = [write_image(p, size=(28, 40), seed=20 + i) for i, p in enumerate(target_paths)]
    ds = UnpairedPatchDataset(source_paths, target_paths, patch_size=20, length=6, seed=1)
    in_memory = UnpairedPatchDataset(sources, targets, patch_size=20, length=6, seed=1)
    for index in range(6):
        item = ds[index]
        assert item["source"].shape == (3, 20, 20) and item["source"].dtype == torch.float32
        assert crop_origin(item["source"], sources) is not None
        assert crop_origin(item["target"], targets) is not None
        # Paths and decoded tensors give the very same patches.
        assert torch.equal(item["source"], in_memory[index]["source"])
        assert torch.equal(item["target"], in_memory[index]["target"])


# --------------------------------------------------------------------------- EpochSampler


def test_epoch_sampler_yields_new_patches_every_epoch():
    sampler = EpochSampler(5)
    assert len(sampler) == 5
    assert list(sampler) == list(range(5))
    assert list(sampler) == list(range(5, 10))
    assert len(sampler) == 5


# --------------------------------------------------------------------------- PairedImageDataset


def test_paired_dataset_items():
    degraded = [random_uint8((3, 20, 30), 1), random_uint8((3, 12, 9), 2)]
    clean = [random_uint8((3, 20, 30), 3), random_uint8((3, 12, 9), 4)]
    ds = PairedImageDataset(degraded, clean)
    assert len(ds) == 2
    for index in range(2):
        item = ds[index]
        assert set(item) == {"source", "clean", "index", "name"}
        assert item["index"] == index
        assert item["name"] == f"{index:04d}"  # in-memory images are named by index
        assert item["source"].dtype == torch.float32
        torch.testing.assert_close(item["source"], degraded[index].float() / 255, atol=0, rtol=0)
        torch.testing.assert_close(item["clean"], clean[index].float() / 255, atol=0, rtol=0)


def test_paired_dataset_names():
    images = [random_uint8((3, 8, 8), 1)]
    assert PairedImageDataset(images, images, names=["cat"])[0]["name"] == "cat"
    with pytest.raises(ValueError, match="one name per image"):
        PairedImageDataset(images, images, names=["a", "b"])


def test_paired_dataset_center_crop():
    degraded, clean = random_uint8((3, 20, 30), 1), random_uint8((3, 20, 30), 2)
    item = PairedImageDataset([degraded], [clean], crop=8)[0]
    assert item["source"].shape == (3, 8, 8)
    torch.testing.assert_close(item["source"], degraded[:, 6:14, 11:19].float() / 255)
    torch.testing.assert_close(item["clean"], clean[:, 6:14, 11:19].float() / 255)
    # Larger than one side: cropped to min(crop, size) per side.
    item = PairedImageDataset([degraded], [clean], crop=25)[0]
    assert item["clean"].shape == (3, 20, 25)
    torch.testing.assert_close(item["clean"], clean[:, :, 2:27].float() / 255)
    item = PairedImageDataset([degraded], [clean], crop=100)[0]
    torch.testing.assert_close(item["clean"], clean.float() / 255)


def test_paired_dataset_size_mismatch_names_files(tmp_path):
    a = tmp_path / "deg" / "a.png"
    b = tmp_path / "clean" / "a.png"
    write_image(a, size=(10, 12))
    write_image(b, size=(10, 13))
    ds = PairedImageDataset([a], [b])
    with pytest.raises(ValueError, match="differ in size") as info:
        ds[0]
    assert str(a) in str(info.value) and str(b) in str(info.value)


def test_paired_dataset_unequal_lengths():
    with pytest.raises(ValueError, match="as many clean as degraded"):
        PairedImageDataset([random_uint8((3, 4, 4), 0)] * 2, [random_uint8((3, 4, 4), 1)])


# --------------------------------------------------------------------------- paired_by_name


def test_paired_by_name_matches_relative_paths(tmp_path):
    names = ["b.png", "a.png", "sub/c.png"]
    for i, name in enumerate(names):
        write_image(tmp_path / "deg" / name, size=(6, 6), seed=i)
        write_image(tmp_path / "clean" / name, size=(6, 6), seed=10 + i)
    write_image(tmp_path / "clean" / "extra.png", size=(6, 6))  # unused clean images are fine
    write_image(tmp_path / "clean" / "c.png", size=(6, 6))  # same file name, other folder
    degraded, clean = paired_by_name(tmp_path / "deg", tmp_path / "clean")
    assert [p.relative_to(tmp_path / "deg") for p in degraded] == [
        Path("a.png"),
        Path("b.png"),
        Path("sub/c.png"),
    ]
    assert [p.relative_to(tmp_path / "clean") for p in clean] == [
        Path("a.png"),
        Path("b.png"),
        Path("sub/c.png"),
    ]


def test_paired_by_name_missing_counterpart(tmp_path):
    write_image(tmp_path / "deg" / "a.png", size=(6, 6))
    write_image(tmp_path / "deg" / "sub" / "lonely.png", size=(6, 6))
    write_image(tmp_path / "clean" / "a.png", size=(6, 6))
    write_image(tmp_path / "clean" / "lonely.png", size=(6, 6))  # wrong folder: no match
    with pytest.raises(FileNotFoundError, match=re.escape(str(Path("sub") / "lonely.png"))):
        paired_by_name(tmp_path / "deg", tmp_path / "clean")


# --------------------------------------------------------------------------- DPEDDataModule


TEST_NAMES = ["10.jpg", "2.jpg", "7.jpg"]  # sorted by path: 10, 2, 7


@pytest.fixture
def dped_root(tmp_path) -> Path:
    root = tmp_path / "dped"
    train = root / "iphone" / "training_data"
    test = root / "iphone" / "test_data" / "patches"
    for i in range(6):
        write_image(train / "iphone" / f"{i}.jpg", size=(100, 100), seed=i)
        write_image(train / "canon" / f"{i}.jpg", size=(100, 100), seed=100 + i)
    for i, name in enumerate(TEST_NAMES):
        write_image(test / "iphone" / name, size=(100, 100), seed=200 + i)
        write_image(test / "canon" / name, size=(100, 100), seed=300 + i)
    return root


def test_dped_datamodule(dped_root):
    dm = DPEDDataModule(
        root=dped_root, phone="iphone", patch_size=32, batch_size=4, patches_per_epoch=8
    )
    dm.setup("fit")
    train_set = dm.train_set
    dm.setup("validate")
    assert dm.train_set is train_set  # second setup is a no-op
    assert all(isinstance(p, Path) for p in train_set.source)  # DPED is read lazily
    assert len(train_set.source) == 6 and len(train_set.target) == 6
    assert all(p.parent.name == "iphone" for p in train_set.source)
    assert all(p.parent.name == "canon" for p in train_set.target)

    loader = dm.train_dataloader()
    assert len(loader) == 2
    batch = next(iter(loader))
    assert set(batch) == {"source", "target"}
    assert batch["source"].shape == (4, 3, 32, 32) and batch["target"].shape == (4, 3, 32, 32)

    items = list(dm.val_dataloader())
    assert len(items) == 3
    test = dped_root / "iphone" / "test_data" / "patches"
    for k, (item, name) in enumerate(zip(items, sorted(TEST_NAMES), strict=True)):
        assert item["source"].shape == (1, 3, 100, 100) and item["clean"].shape == (1, 3, 100, 100)
        assert int(item["index"]) == k
        torch.testing.assert_close(
            item["clean"][0], load_image(test / "canon" / name).float() / 255
        )
        torch.testing.assert_close(
            item["source"][0], load_image(test / "iphone" / name).float() / 255
        )


def test_dped_datamodule_new_patches_each_epoch(dped_root):
    dm = DPEDDataModule(root=dped_root, patch_size=32, batch_size=4, patches_per_epoch=8)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = next(iter(loader))["source"]
    assert torch.equal(first, next(iter(dm.train_dataloader()))["source"])  # reproducible
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))["source"])


def test_dped_datamodule_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root"):
        DPEDDataModule(root=tmp_path / "no_dped")


def test_dped_datamodule_unknown_phone(dped_root):
    with pytest.raises(ValueError, match="nokia"):
        DPEDDataModule(root=dped_root, phone="nokia")


# --------------------------------------------------------------------------- FolderDataModule


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    dirs = {key: tmp_path / key for key in ("src", "tgt", "eval_src", "eval_clean")}
    for i in range(3):
        write_image(dirs["src"] / f"s{i}.png", size=(40, 44), seed=i)
        write_image(dirs["tgt"] / "nested" / f"t{i}.png", size=(48, 40), seed=10 + i)
    for i in range(2):
        write_image(dirs["eval_src"] / f"e{i}.png", size=(30, 20), seed=20 + i)
        write_image(dirs["eval_clean"] / f"e{i}.png", size=(30, 20), seed=30 + i)
    return dirs


def test_folder_datamodule_without_eval(folders):
    dm = FolderDataModule(
        folders["src"], folders["tgt"], patch_size=16, batch_size=2, patches_per_epoch=4
    )
    dm.setup("fit")
    assert dm.val_set is None and dm.test_set is None
    assert dm.val_dataloader() == []
    assert dm.test_dataloader() == []
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (2, 3, 16, 16)
    assert batch["target"].shape == (2, 3, 16, 16)


def test_folder_datamodule_with_eval(folders):
    dm = FolderDataModule(
        folders["src"],
        folders["tgt"],
        folders["eval_src"],
        folders["eval_clean"],
        patch_size=16,
        batch_size=2,
        patches_per_epoch=4,
        eval_crop=10,
    )
    dm.setup("fit")
    items = list(dm.val_dataloader())
    assert len(items) == 2
    assert items[1]["clean"].shape == (1, 3, 10, 10)
    expected = load_image(folders["eval_clean"] / "e1.png")[:, 10:20, 5:15].float() / 255
    torch.testing.assert_close(items[1]["clean"][0], expected)
    # Without a test pair, `wespe test` evaluates the validation pair.
    tested = list(dm.test_dataloader())
    assert [item["name"] for item in tested] == [item["name"] for item in items]


def test_folder_datamodule_separate_test_pair(folders, tmp_path):
    for i in range(3):
        write_image(tmp_path / "test_src" / f"x{i}.png", size=(24, 26), seed=40 + i)
        write_image(tmp_path / "test_clean" / f"x{i}.png", size=(24, 26), seed=50 + i)
    dm = FolderDataModule(
        folders["src"],
        folders["tgt"],
        folders["eval_src"],
        folders["eval_clean"],
        test_source_dir=str(tmp_path / "test_src"),
        test_clean_dir=str(tmp_path / "test_clean"),
        patch_size=16,
        batch_size=2,
        patches_per_epoch=4,
    )
    dm.setup("fit")
    assert [item["name"][0] for item in dm.val_dataloader()] == ["e0", "e1"]
    tested = list(dm.test_dataloader())
    assert [item["name"][0] for item in tested] == ["x0", "x1", "x2"]
    expected = load_image(tmp_path / "test_clean" / "x2.png").float() / 255
    torch.testing.assert_close(tested[2]["clean"][0], expected)


@pytest.mark.parametrize(
    "which", ["eval_source_dir", "eval_clean_dir", "test_source_dir", "test_clean_dir"]
)
def test_folder_datamodule_needs_both_dirs_of_a_pair(folders, which):
    prefix = which.split("_")[0]
    with pytest.raises(ValueError, match=f"both {prefix}_source_dir and {prefix}_clean_dir"):
        FolderDataModule(folders["src"], folders["tgt"], **{which: str(folders["eval_src"])})


def test_folder_datamodule_preload(folders):
    lazy = FolderDataModule(
        folders["src"], folders["tgt"], patch_size=16, batch_size=2, patches_per_epoch=4
    )
    lazy.setup("fit")
    assert all(isinstance(p, Path) for p in lazy.train_set.source + lazy.train_set.target)
    eager = FolderDataModule(
        folders["src"],
        folders["tgt"],
        preload=True,
        patch_size=16,
        batch_size=2,
        patches_per_epoch=4,
    )
    eager.setup("fit")
    assert all(isinstance(t, Tensor) for t in eager.train_set.source + eager.train_set.target)
    for path, image in zip(lazy.train_set.source, eager.train_set.source, strict=True):
        assert image.dtype == torch.uint8 and torch.equal(image, load_image(path))
    # Preloading changes nothing in the patches.
    for index in range(4):
        assert torch.equal(lazy.train_set[index]["source"], eager.train_set[index]["source"])
        assert torch.equal(lazy.train_set[index]["target"], eager.train_set[index]["target"])


def test_folder_datamodule_patch_larger_than_images(folders):
    dm = FolderDataModule(
        folders["src"],
        folders["tgt"],
        preload=True,
        patch_size=41,
        batch_size=2,
        patches_per_epoch=4,
    )
    with pytest.raises(FileNotFoundError, match="44x40, smaller than patch_size=41"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_size": 0}, "patch_size must be >= 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 8, "patches_per_epoch": 4}, "patches_per_epoch >= batch_size"),
    ],
)
def test_datamodule_rejects_bad_sizes(folders, kwargs, match):
    with pytest.raises(ValueError, match=match):
        FolderDataModule(folders["src"], folders["tgt"], **kwargs)


# --------------------------------------------------------------------------- EmbeddedSampleDataModule


def scene(name: str) -> str:
    return name.split("_")[0]


def test_embedded_default_splits_are_disjoint():
    dm = EmbeddedSampleDataModule()
    splits = (dm.source_photos, dm.target_photos, dm.val_photos, dm.test_photos)
    assert all(len(split) > 0 for split in splits)
    assert all(name in EMBEDDED_PHOTOS for split in splits for name in split)
    scenes = [{scene(n) for n in split} for split in splits]
    for i, first in enumerate(scenes):
        for second in scenes[i + 1 :]:
            assert not first & second


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"val_photos": ("chelsea",), "source_photos": ("chelsea", "rocket")},
            "source_photos and val_photos share",
        ),
        ({"target_photos": ("coffee",), "val_photos": ("coffee",)}, "disjoint"),
        ({"test_photos": ("coffee",)}, "val_photos and test_photos share"),
        (
            {"source_photos": ("motorcycle_left",), "test_photos": ("motorcycle_right",)},
            "disjoint",
        ),
        ({"source_photos": ("camera",)}, "unknown photo"),
        ({"val_photos": ()}, "at least one"),
        ({"test_photos": ()}, "test_photos must name at least one"),
    ],
)
def test_embedded_rejects_bad_splits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddedSampleDataModule(**kwargs)


def test_embedded_photo_unknown_name():
    with pytest.raises(ValueError, match="unknown embedded photo"):
        embedded_photo("lena")


def test_embedded_photo_max_size():
    photo = embedded_photo("chelsea", 128)
    assert photo.dtype == torch.uint8 and max(photo.shape[1:]) == 128
    full = embedded_photo("chelsea", None)
    assert full.shape == (3, 300, 451)
    assert torch.equal(embedded_photo("chelsea", 1000), full)


def test_embedded_datamodule_setup():
    kwargs = {"patch_size": 32, "batch_size": 2, "patches_per_epoch": 4, "max_size": 128}
    kwargs["domains"] = "photos"
    dm = EmbeddedSampleDataModule(**kwargs)
    dm.setup("fit")
    for dataset, names in ((dm.val_set, dm.val_photos), (dm.test_set, dm.test_photos)):
        assert dataset is not None and len(dataset) == len(names)
        for index, name in enumerate(names):
            item = dataset[index]
            assert item["name"] == name
            clean = embedded_photo(name, 128).float() / 255
            torch.testing.assert_close(item["clean"], clean, atol=0, rtol=0)
            assert item["source"].shape == clean.shape
            assert not torch.equal(item["source"], clean)
            psnr = peak_signal_noise_ratio(item["source"][None], clean[None], data_range=1.0)
            assert psnr <= 20
    # Training: degraded source photos, clean target photos.
    for image, name in zip(dm.train_set.target, dm.target_photos, strict=True):
        assert torch.equal(image, embedded_photo(name, 128))
    for image, name in zip(dm.train_set.source, dm.source_photos, strict=True):
        clean = embedded_photo(name, 128)
        assert image.shape == clean.shape and not torch.equal(image, clean)
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (2, 3, 32, 32)
    assert len(list(dm.val_dataloader())) == len(dm.val_photos)
    assert [batch["name"][0] for batch in dm.test_dataloader()] == list(dm.test_photos)
    # The phone domain is the same data in every run.
    again = EmbeddedSampleDataModule(**kwargs)
    again.setup("fit")
    for a, b in zip(dm.train_set.source, again.train_set.source, strict=True):
        assert torch.equal(a, b)


def test_embedded_halves_give_each_domain_one_half_of_every_training_photo():
    kwargs = {"max_size": 96, "patch_size": 16, "batch_size": 2, "patches_per_epoch": 4}
    dm = EmbeddedSampleDataModule(**kwargs)  # halves by default
    assert dm.domains == "halves"
    source, target = dm.load_images()
    names = dm.source_photos + dm.target_photos
    assert len(source) == len(target) == len(names)
    for index, (degraded_half, clean_half, name) in enumerate(
        zip(source, target, names, strict=True)
    ):
        clean = embedded_photo(name, 96)
        degraded = dm._degraded(name)
        middle = clean.shape[-1] // 2
        left, right = (degraded_half, clean_half) if index % 2 == 0 else (clean_half, degraded_half)
        # The two halves tile the photo: no pixel is in both domains.
        assert left.shape[-1] + right.shape[-1] == clean.shape[-1]
        if index % 2 == 0:
            assert torch.equal(degraded_half, degraded[..., :middle])
            assert torch.equal(clean_half, clean[..., middle:])
        else:
            assert torch.equal(degraded_half, degraded[..., middle:])
            assert torch.equal(clean_half, clean[..., :middle])
    # The supervised reference's pairs: the clean original of the same half.
    paired = EmbeddedSampleDataModule(domains="halves", paired_training=True, **kwargs)
    paired_source, paired_target = paired.load_images()
    for index, (degraded_half, clean_half, name) in enumerate(
        zip(paired_source, paired_target, names, strict=True)
    ):
        clean = embedded_photo(name, 96)
        middle = clean.shape[-1] // 2
        same = clean[..., :middle] if index % 2 == 0 else clean[..., middle:]
        assert torch.equal(clean_half, same) and degraded_half.shape == same.shape


def test_embedded_domains_must_be_a_known_choice():
    with pytest.raises(ValueError, match="domains must be one of 'photos', 'halves'"):
        EmbeddedSampleDataModule(domains="tiles")


@pytest.mark.parametrize("kind", ["fixed", "phone"])
def test_degradation_strengths_order_every_parameter(kind):
    from wespe.data.degrade import DEGRADATIONS, _bounds

    mild, default, strong = (DEGRADATIONS[k] for k in (f"{kind}_mild", kind, f"{kind}_strong"))
    # Every range end moves away from the identity: mild < preset < strong.
    away_from_one = {"gamma": 1, "contrast": -1, "jpeg_quality": -1}
    for name in (
        "gamma",
        "contrast",
        "noise_std",
        "blur_sigma",
        "jpeg_quality",
        "vignetting",
        "shot_noise",
        "white_balance_error",
    ):
        sign = away_from_one.get(name, 1)
        ends = [tuple(sign * v for v in _bounds(getattr(d, name))) for d in (mild, default, strong)]
        if ends[0] != ends[1]:  # the parameters a preset uses
            assert ends[0] < ends[1] < ends[2], name
    assert 1 > mild.color_cast[2] > default.color_cast[2] > strong.color_cast[2]
    clean = embedded_photo("chelsea", 128).float() / 255
    psnr = [
        float(peak_signal_noise_ratio(d(clean, seed=0)[None], clean[None], data_range=1.0))
        for d in (mild, default, strong)
    ]
    assert psnr[0] > psnr[1] > psnr[2]


def test_fixed_preset_is_the_default_transform_and_the_data_default_is_phone():
    from wespe.data.degrade import DEGRADATIONS

    assert DEGRADATIONS["fixed"] == PhoneDegradation()
    assert EmbeddedSampleDataModule().degradation == DEGRADATIONS["phone"]


def test_phone_degradation_draws_its_values_per_photo_within_the_ranges():
    from wespe.data.degrade import DEGRADATIONS, _bounds

    phone = DEGRADATIONS["phone"]
    draws = [phone.draw(seed) for seed in range(40)]
    assert draws[7] == phone.draw(7)  # seeded
    for name in ("exposure", "gamma", "contrast", "vignetting", "blur_sigma", "noise_std"):
        low, high = _bounds(getattr(phone, name))
        values = [d[name] for d in draws]
        assert all(low <= v <= high for v in values), name
        assert max(values) - min(values) > 0.5 * (high - low), name  # spread, not one value
    gains = [d["red_gain"] for d in draws] + [d["blue_gain"] for d in draws]
    limit = 2**phone.white_balance_error
    assert all(1 / limit <= g <= limit for g in gains)
    assert min(gains) < 0.9 and max(gains) > 1.1
    # A fixed value is drawn as itself, with no white-balance error.
    assert PhoneDegradation().draw(5) | {} == PhoneDegradation().draw(6)
    assert PhoneDegradation().draw(5)["red_gain"] == 1.0
    # Different photos get different degradations; the same photo the same one.
    clean = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(phone(clean, seed=1), phone(clean, seed=1))
    assert (phone(clean, seed=1) - phone(clean, seed=2)).abs().mean() > 0.01


def _flat(value: float, size: int = 64) -> Tensor:
    return torch.full((3, size, size), value)


def test_over_exposure_clips_highlights():
    only = {"gamma": 1.0, "contrast": 1.0, "color_cast": (1.0, 1.0, 1.0), "blur_sigma": 0.0,
            "noise_std": 0.0, "jpeg_quality": 100}  # fmt: skip
    ramp = torch.linspace(0, 1, 64).expand(3, 64, 64).clone()
    out = PhoneDegradation(**only, exposure=1.0)(ramp, seed=0)
    # x * 2: the brighter half clips at 1 (JPEG at 100 keeps it within a level or two).
    assert out[:, :, 40:].min() > 0.98
    torch.testing.assert_close(out[:, :, :20], (2 * ramp[:, :, :20]), atol=0.02, rtol=0)


def test_vignetting_darkens_the_corners_not_the_centre():
    only = {"gamma": 1.0, "contrast": 1.0, "color_cast": (1.0, 1.0, 1.0), "blur_sigma": 0.0,
            "noise_std": 0.0, "jpeg_quality": 100}  # fmt: skip
    out = PhoneDegradation(**only, vignetting=0.4)(_flat(0.8), seed=0)
    assert abs(out[:, 30:34, 30:34].mean() - 0.8) < 0.01
    assert abs(out[:, 0, 0].mean() - 0.8 * 0.6) < 0.02


def test_shot_noise_grows_with_the_signal():
    only = {"gamma": 1.0, "contrast": 1.0, "color_cast": (1.0, 1.0, 1.0), "blur_sigma": 0.0,
            "jpeg_quality": 100}  # fmt: skip
    degrade = PhoneDegradation(**only, noise_std=0.01, shot_noise=0.004)
    dark, bright = degrade(_flat(0.1), seed=0).std(), degrade(_flat(0.8), seed=0).std()
    # sqrt(0.01^2 + 0.004 x): 0.0224 at 0.1, 0.0574 at 0.8, 2.6 times as much (JPEG's chroma
    # subsampling lowers both alike).
    assert 2.0 < bright / dark < 3.2
    # Read noise alone is the same at both levels.
    flat = PhoneDegradation(**only, noise_std=0.03)
    assert 0.85 < flat(_flat(0.7), seed=0).std() / flat(_flat(0.2), seed=0).std() < 1.15


def test_paired_patches_are_aligned_crops():
    clean = [random_uint8((3, 40, 50), 1), random_uint8((3, 30, 30), 2)]
    # A known, invertible "degradation": value - 1 (clamped at 0 before, so no underflow).
    clean = [c.clamp(min=1) for c in clean]
    degraded = [c - 1 for c in clean]
    ds = PairedPatchDataset(degraded, clean, patch_size=16, length=10, seed=3)
    for index in range(10):
        item = ds[index]
        assert torch.allclose(item["target"] - item["source"], torch.full((3, 16, 16), 1 / 255))


def test_paired_patches_need_matching_lists():
    with pytest.raises(ValueError, match="as many clean as degraded"):
        PairedPatchDataset([random_uint8((3, 20, 20), 1)], [], patch_size=8, length=2)


def test_embedded_paired_training_pairs_source_photos_with_their_originals():
    dm = EmbeddedSampleDataModule(
        patch_size=16,
        batch_size=2,
        patches_per_epoch=4,
        max_size=64,
        domains="photos",
        paired_training=True,
    )
    dm.setup("fit")
    assert isinstance(dm.train_set, PairedPatchDataset)
    originals = [embedded_photo(n, 64) for n in dm.source_photos]
    assert all(torch.equal(t, o) for t, o in zip(dm.train_set.target, originals, strict=True))
    assert not any(torch.equal(s, o) for s, o in zip(dm.train_set.source, originals, strict=True))


def test_epoch_sampler_counts_its_own_epochs_from_its_start():
    sampler = EpochSampler(6, start=4, epoch=2)
    iterator = iter(sampler)
    sampler.set_epoch(5)  # Lightning's epoch number, after the iterator started: ignored
    assert list(iterator) == [16, 17]  # the rest of epoch 2
    sampler.set_epoch(7)
    assert list(sampler) == list(range(18, 24))  # then epoch 3 whole
    with pytest.raises(ValueError, match="start must be in"):
        EpochSampler(6, start=7)


def test_image_folder_dataset_names_files_by_relative_path(tmp_path):
    (tmp_path / "trip").mkdir()
    for name, seed in (("0001", 0), ("trip/0001", 1)):  # the same stem in two folders
        Image.fromarray(random_uint8((20, 30, 3), seed).numpy()).save(tmp_path / f"{name}.png")
    dataset = ImageFolderDataset(tmp_path)
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["name"] for item in items] == ["0001", "trip/0001"]
    expected = random_uint8((20, 30, 3), 1).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(items[1]["source"], expected)


def test_predictions_of_files_with_one_stem_do_not_overwrite_each_other(tmp_path):
    from wespe.callbacks import EnhancedImageWriter

    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    for name, seed in (("a.jpg", 0), ("a.png", 1), ("trip/b.png", 2)):
        Image.fromarray(random_uint8((20, 30, 3), seed).numpy()).save(photos / name)
    dataset = ImageFolderDataset(photos)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["a_jpg", "a_png", "trip/b"]
    batch = {"name": [dataset[i]["name"] for i in range(3)]}
    images = torch.stack([dataset[i]["source"] for i in range(3)])
    writer = EnhancedImageWriter(tmp_path / "out")
    writer.write_on_batch_end(None, None, images, None, batch, 0)
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert written == ["a_jpg.png", "a_png.png", "trip/b.png"]


def test_image_folder_dataset_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")


# --------------------------------------------------------------------------- messy folders


def messy_folder(folder: Path) -> dict[str, str | None]:
    """A folder of what a real photo folder holds; returns each file's expected skip reason
    (a fragment of it), None for the usable ones."""
    folder.mkdir(parents=True)
    rgb = random_uint8((48, 64, 3), 0).numpy()
    Image.fromarray(rgb).save(folder / "good.jpg", quality=95)
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    (folder / "._good.jpg").write_bytes(data)  # macOS metadata, whatever it holds
    Image.fromarray(rgb[:20, :20]).save(folder / "small.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel
    Image.fromarray(rgba).save(folder / "alpha.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    sixteen = np.zeros((48, 64), np.uint16)
    sixteen[0, 0], sixteen[0, 1] = 65535, 32896
    Image.fromarray(sixteen).save(folder / "gray16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(folder / "portrait.jpg", exif=exif, quality=95)
    return {
        "good.jpg": None, "gray.png": None, "alpha.png": None, "palette.png": None,
        "cmyk.jpg": None, "gray16.png": None, "portrait.jpg": None,
        "truncated.jpg": "truncated", "empty.jpg": "empty file", "notes.png": "not an image",
        "._good.jpg": "macOS metadata", "small.png": "smaller than patch_size=32",
    }  # fmt: skip


def test_scan_reports_every_unusable_file_and_why(tmp_path):
    from wespe.data.datasets import scan_images

    expected = messy_folder(tmp_path / "photos")
    with pytest.warns(UserWarning, match="5 skipped") as caught:
        scan = scan_images(tmp_path / "photos", min_size=32)
    assert sorted(p.name for p in scan.usable) == sorted(k for k, v in expected.items() if not v)
    reasons = {path.name: why for path, why in scan.skipped}
    assert set(reasons) == {k for k, v in expected.items() if v}
    for name, fragment in expected.items():
        if fragment:
            assert fragment in reasons[name], (name, reasons[name])
            assert name in str(caught[0].message)


def test_messy_files_load_as_photos(tmp_path):
    messy_folder(tmp_path / "photos")
    folder = tmp_path / "photos"
    gray16 = load_image(folder / "gray16.png")
    assert gray16.shape == (3, 48, 64)
    assert gray16[:, 0, 0].tolist() == [255] * 3 and gray16[:, 0, 1].tolist() == [128] * 3
    alpha = load_image(folder / "alpha.png")
    assert alpha[:, 0, 0].tolist() == [255, 255, 255]  # transparent: white, not black
    assert torch.equal(
        alpha[:, 1:, 1:],
        torch.from_numpy(random_uint8((48, 64, 3), 0).numpy()).permute(2, 0, 1)[:, 1:, 1:],
    )
    portrait, landscape = load_image(folder / "portrait.jpg"), load_image(folder / "good.jpg")
    assert portrait.shape == (3, 64, 48)  # upright
    # Rotated back, it is the stored photo (JPEG: close, not equal).
    assert (portrait.rot90(1, (1, 2)).float() - landscape.float()).abs().mean() < 3
    for name in ("cmyk.jpg", "palette.png", "gray.png"):
        assert load_image(folder / name).shape == (3, 48, 64)


def test_a_messy_training_folder_trains_and_an_unusable_one_is_named(tmp_path):
    messy_folder(tmp_path / "source")
    messy_folder(tmp_path / "target")
    data = FolderDataModule(
        tmp_path / "source", tmp_path / "target", patch_size=32, batch_size=4, patches_per_epoch=64
    )
    with pytest.warns(UserWarning, match="skipping unusable files"):
        data.setup("fit")
    batches = list(data.train_dataloader())  # every patch of an epoch: no file fails mid-run
    assert len(batches) == 16 and batches[0]["source"].shape == (4, 3, 32, 32)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "empty.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"bad holds no usable image(.|\n)*empty file"):
        FolderDataModule(tmp_path / "bad", tmp_path / "target", patch_size=32).setup("fit")


def test_decompression_bomb_guard_stays_on_with_a_clear_message(tmp_path, monkeypatch):
    from wespe.data.datasets import image_problem

    write_image(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is over twice the limit
    assert "MAX_IMAGE_PIXELS" in image_problem(tmp_path / "big.png")


def test_loaders_keep_their_workers_and_pin_memory_only_for_a_cuda_gpu():
    from types import SimpleNamespace

    from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

    data = EmbeddedSampleDataModule(
        patch_size=32, batch_size=2, patches_per_epoch=8, max_size=64, num_workers=2
    )
    data.setup("fit")
    for accelerator, pinned in ((CPUAccelerator(), False), (CUDAAccelerator(), True)):
        data.trainer = SimpleNamespace(
            accelerator=accelerator, world_size=1, global_rank=0, fit_loop=None
        )
        data._data_position = lambda: (0, 0)
        for loader in (data.train_dataloader(), data.val_dataloader()):
            assert loader.pin_memory is pinned
            assert loader.persistent_workers  # no new worker processes every validation
    data.trainer = None
    assert data.train_dataloader().pin_memory is False
