"""Photo files for ``wespe enhance``: discovery, reading (orientation, 16 bits, metadata, broken
files) and atomic writing with metadata, per format."""

from __future__ import annotations

import os
import struct
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import tifffile
import torch
from PIL import ExifTags, Image, ImageCms, ImageOps
from torch import Tensor

from wespe import photos
from wespe.photos import (
    PHOTO_FORMATS,
    PhotoError,
    find_photos,
    format_name,
    output_path,
    read_photo,
    write_photo,
)

# --------------------------------------------------------------------------- helpers

HEIGHT, WIDTH = 20, 30


def gradient(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``(H, W, 3)`` uint8, smooth (lossy codecs keep it close) and asymmetric (any rotation or
    flip changes it)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) * 3 % 256], -1).astype(
        np.uint8
    )


def random16(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65_536, shape, dtype=np.uint16)


def chw(array: np.ndarray) -> Tensor:
    """``(H, W, 3)`` -> ``(3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def make_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Acme"
    exif[ExifTags.Base.ImageDescription] = "harbour at dawn"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:05:06 07:08:09"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    return exif


def parse_exif(data: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    if data:
        exif.load(data)
    return exif


def assert_exif_tags_kept(data: bytes | None) -> None:
    exif = parse_exif(data)
    assert exif[ExifTags.Base.Make] == "Acme"
    assert exif[ExifTags.Base.ImageDescription] == "harbour at dawn"
    assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2024:05:06 07:08:09"
    assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"


@pytest.fixture(scope="module")
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- find_photos


def test_find_photos_in_a_folder_keeps_subfolders_and_skips_other_files(tmp_path):
    shots = tmp_path / "shots"
    for name in ["b.JPG", "a.jpeg", "trip/day1/c.Png", "trip/d.TIFF", "e.webp", "f.tif"]:
        touch(shots / name)
    for name in ["notes.txt", "trip/raw.CR2", "._b.JPG", "g.bmp"]:
        touch(shots / name)
    found = find_photos([shots])
    assert [(file.relative_to(shots).as_posix(), str(name)) for file, name in found] == [
        ("a.jpeg", "a.jpeg"),
        ("b.JPG", "b.JPG"),
        ("e.webp", "e.webp"),
        ("f.tif", "f.tif"),
        ("trip/d.TIFF", "trip/d.TIFF"),
        ("trip/day1/c.Png", "trip/day1/c.Png"),
    ]
    assert all(isinstance(name, PurePosixPath) for _, name in found)


def test_find_photos_single_file_is_named_by_its_file_name(tmp_path):
    photo = touch(tmp_path / "deep" / "IMG_0001.JPG")
    assert find_photos([str(photo)]) == [(photo, PurePosixPath("IMG_0001.JPG"))]


def test_find_photos_explicit_file_with_another_suffix_is_an_error(tmp_path):
    notes = touch(tmp_path / "notes.txt")
    with pytest.raises(PhotoError, match="notes.txt"):
        find_photos([notes])


def test_find_photos_glob_names_below_the_leading_folder(tmp_path):
    shots = tmp_path / "shots"
    for name in ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]:
        touch(shots / name)
    flat = find_photos([f"{shots}/*.png"])
    assert [str(name) for _, name in flat] == ["a.png"]
    recursive = find_photos([f"{shots}/**/*.png"])
    assert [str(name) for _, name in recursive] == ["a.png", "sub/c.png", "sub/deeper/d.png"]
    assert [file for file, _ in recursive] == [
        shots / "a.png",
        shots / "sub/c.png",
        shots / "sub/deeper/d.png",
    ]


def test_find_photos_relative_glob(tmp_path, monkeypatch):
    touch(tmp_path / "x.webp")
    touch(tmp_path / "y.txt")
    monkeypatch.chdir(tmp_path)
    assert find_photos(["*"]) == [(Path("x.webp"), PurePosixPath("x.webp"))]


@pytest.mark.parametrize("spec", ["missing", "missing/*.jpg"])
def test_find_photos_input_matching_nothing(tmp_path, spec):
    with pytest.raises(FileNotFoundError, match=spec.split("/")[0]):
        find_photos([tmp_path / spec])


def test_find_photos_folder_without_photos(tmp_path):
    touch(tmp_path / "empty" / "notes.txt")
    with pytest.raises(FileNotFoundError, match="empty"):
        find_photos([tmp_path / "empty"])


def test_find_photos_name_clash_between_inputs(tmp_path):
    first, second = touch(tmp_path / "a" / "x.jpg"), touch(tmp_path / "b" / "x.jpg")
    with pytest.raises(ValueError, match="would both be written") as error:
        find_photos([first, tmp_path / "b"])
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_find_photos_name_clash_after_the_format_change(tmp_path):
    touch(tmp_path / "x.jpg")
    touch(tmp_path / "x.png")
    assert len(find_photos([tmp_path])) == 2
    with pytest.raises(ValueError, match="x.png"):
        find_photos([tmp_path], output_format="png")


def test_find_photos_same_file_twice_counts_once(tmp_path):
    photo = touch(tmp_path / "x.jpg")
    found = find_photos([tmp_path, photo, f"{tmp_path}/*.jpg"])
    assert found == [(photo, PurePosixPath("x.jpg"))]


# --------------------------------------------------------------------------- read_photo


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_photo_applies_exif_orientation_like_pillow(tmp_path, orientation):
    path = tmp_path / "photo.jpg"
    Image.fromarray(gradient()).save(path, quality=95, exif=make_exif(orientation))
    photo = read_photo(path)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    assert photo.pixels.dtype == torch.uint8 and photo.pixels.is_contiguous()
    assert torch.equal(photo.pixels, chw(expected))
    assert photo.pixels.shape[1:] == ((WIDTH, HEIGHT) if orientation >= 5 else (HEIGHT, WIDTH))
    assert parse_exif(photo.exif)[ExifTags.Base.Orientation] == 1
    assert_exif_tags_kept(photo.exif)


@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, -1), (8, 1)])
def test_read_photo_rotations_are_the_exif_ones(tmp_path, orientation, turns):
    """6 is stored turned left (turned right to view), 8 the opposite: checked against numpy,
    not Pillow, on a lossless file."""
    path = tmp_path / "photo.png"
    Image.fromarray(gradient()).save(path, exif=make_exif(orientation))
    expected = np.rot90(gradient(), turns)  # numpy turns counter-clockwise for turns > 0
    assert torch.equal(read_photo(path).pixels, chw(expected))


def test_read_photo_16_bit_tiff_with_orientation(tmp_path):
    values = random16((HEIGHT, WIDTH, 3))
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, values, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    photo = read_photo(path)
    assert photo.pixels.dtype == torch.uint16
    assert torch.equal(photo.pixels, chw(np.rot90(values, -1)))


def test_read_photo_keeps_an_rgb_icc_profile_and_dpi(tmp_path, srgb_profile):
    path = tmp_path / "photo.jpg"
    Image.fromarray(gradient()).save(path, icc_profile=srgb_profile, dpi=(240, 240))
    photo = read_photo(path)
    assert photo.format == "JPEG"
    assert photo.icc_profile == srgb_profile
    assert photo.dpi == (240.0, 240.0)
    assert photo.exif is None


def test_read_photo_drops_a_profile_that_is_not_rgb(tmp_path, srgb_profile):
    # A grayscale file's profile describes one channel, not the RGB pixels read from it.
    gray_profile = srgb_profile[:16] + b"GRAY" + srgb_profile[20:]
    path = tmp_path / "gray.jpg"
    Image.fromarray(gradient()[..., 0]).save(path, icc_profile=gray_profile)
    assert read_photo(path).icc_profile is None


def test_read_photo_16_bit_rgb_png_exact(tmp_path, srgb_profile):
    values = random16((3, HEIGHT, WIDTH))
    path = tmp_path / "photo.png"
    write_photo(path, torch.from_numpy(values), "PNG", icc_profile=srgb_profile)
    with Image.open(path) as image:
        # Pillow, an independent decoder of the file, keeps the high bytes only.
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), (values >> 8).astype(np.uint8).transpose(1, 2, 0))
    photo = read_photo(path)
    assert photo.pixels.dtype == torch.uint16
    assert np.array_equal(photo.pixels.numpy(), values)
    assert photo.icc_profile == srgb_profile


def test_read_photo_16_bit_grayscale_png_exact(tmp_path):
    values = random16((HEIGHT, WIDTH))
    path = tmp_path / "gray.png"
    Image.fromarray(values).save(path)
    pixels = read_photo(path).pixels
    assert pixels.dtype == torch.uint16
    assert all(np.array_equal(channel, values) for channel in pixels.numpy())


@pytest.mark.parametrize(
    "layout", ["contiguous", "planar", "big-endian", "zlib"], ids=lambda layout: layout
)
def test_read_photo_16_bit_rgb_tiff_exact(tmp_path, layout):
    values = random16((HEIGHT, WIDTH, 3))
    path = tmp_path / "photo.tif"
    if layout == "planar":
        data, options = values.transpose(2, 0, 1).copy(), {"planarconfig": "separate"}
    else:
        data = values
        options = {"big-endian": {"byteorder": ">"}, "zlib": {"compression": "zlib"}}.get(
            layout, {}
        )
    tifffile.imwrite(path, data, photometric="rgb", **options)
    photo = read_photo(path)
    assert photo.format == "TIFF" and photo.pixels.dtype == torch.uint16
    assert torch.equal(photo.pixels, chw(values))


def test_read_photo_16_bit_grayscale_tiff_exact(tmp_path):
    values = random16((HEIGHT, WIDTH))
    path = tmp_path / "gray.tif"
    tifffile.imwrite(path, values, photometric="minisblack")
    pixels = read_photo(path).pixels
    assert pixels.dtype == torch.uint16
    assert torch.equal(pixels, torch.from_numpy(values).expand(3, -1, -1))


def test_read_photo_16_bit_tiff_alpha_flattened_on_white(tmp_path):
    color = random16((HEIGHT, WIDTH, 3))
    alpha = np.zeros((HEIGHT, WIDTH, 1), np.uint16)
    alpha[:, 10:20], alpha[:, 20:] = 32_768, 65_535
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(
        path, np.concatenate([color, alpha], -1), photometric="rgb", extrasamples=["unassalpha"]
    )
    pixels = read_photo(path).pixels.numpy()
    assert pixels.dtype == np.uint16
    assert (pixels[:, :, :10] == 65_535).all()  # transparent: white
    assert np.array_equal(pixels[:, :, 20:], color[:, 20:].transpose(2, 0, 1))  # opaque
    half = color[:, 10:20].transpose(2, 0, 1).astype(float)
    expected = np.round(65_535 - (65_535 - half) * 32_768 / 65_535)
    assert np.array_equal(pixels[:, :, 10:20], expected)


def test_read_photo_16_bit_tiff_this_installation_cannot_decode(tmp_path):
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, random16((HEIGHT, WIDTH, 3)), photometric="rgb")
    with tifffile.TiffFile(path) as tiff:
        compression = tiff.pages[0].tags["Compression"].valueoffset
    with path.open("r+b") as file:  # claim LZW, which tifffile needs imagecodecs for
        file.seek(compression)
        file.write(struct.pack("<H", 5))
    try:
        import imagecodecs  # noqa: F401

        pytest.skip("imagecodecs is installed: LZW decodes")
    except ImportError:
        pass
    with pytest.raises(PhotoError, match="lzw.tif.*imagecodecs"):
        read_photo(path)


def test_read_photo_grayscale_becomes_three_equal_channels(tmp_path):
    gray = gradient()[..., 1]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    pixels = read_photo(path).pixels
    assert pixels.dtype == torch.uint8
    assert torch.equal(pixels, torch.from_numpy(gray).expand(3, -1, -1))


def test_read_photo_flattens_alpha_onto_white(tmp_path):
    rgba = np.concatenate([gradient(), np.zeros((HEIGHT, WIDTH, 1), np.uint8)], -1)
    rgba[:, 15:, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    pixels = read_photo(path).pixels
    assert (pixels[:, :, :15] == 255).all()
    assert torch.equal(pixels[:, :, 15:], chw(gradient()[:, 15:]))


def test_read_photo_palette_and_cmyk_become_rgb(tmp_path):
    palette = Image.fromarray(gradient()).quantize(16)
    palette.save(tmp_path / "palette.png")
    assert torch.equal(
        read_photo(tmp_path / "palette.png").pixels, chw(np.asarray(palette.convert("RGB")))
    )
    Image.fromarray(gradient()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    cmyk = read_photo(tmp_path / "cmyk.jpg")
    assert cmyk.pixels.dtype == torch.uint8
    assert torch.equal(cmyk.pixels, chw(expected))


def test_read_photo_multi_picture_jpeg_is_jpeg(tmp_path):
    path = tmp_path / "mpo.jpg"
    first = Image.fromarray(gradient())
    first.save(path, "MPO", save_all=True, append_images=[first.rotate(90)])
    with Image.open(path) as image:
        assert image.format == "MPO"
    photo = read_photo(path)
    assert photo.format == "JPEG" and photo.pixels.shape == (3, HEIGHT, WIDTH)


def truncated_jpeg(path: Path) -> None:
    Image.fromarray(gradient()).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("truncated.jpg", truncated_jpeg, "truncated"),
        ("empty.jpg", lambda path: path.write_bytes(b""), "empty"),
        ("notes.jpg", lambda path: path.write_text("not a photo"), "not an image"),
        ("drawing.jpg", lambda path: Image.fromarray(gradient()).save(path, "BMP"), "BMP"),
    ],
)
def test_read_photo_unreadable_file(tmp_path, name, make, reason):
    make(tmp_path / name)
    with pytest.raises(PhotoError, match=reason) as error:
        read_photo(tmp_path / name)
    assert name in str(error.value)


def test_read_photo_decompression_bomb(tmp_path, monkeypatch):
    Image.fromarray(gradient()).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PhotoError, match="huge.png.*MAX_IMAGE_PIXELS"):
        read_photo(tmp_path / "huge.png")


def test_read_photo_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jpg"):
        read_photo(tmp_path / "nothing.jpg")


# --------------------------------------------------------------------------- write_photo

# (format, keyword arguments, largest difference allowed on the 0-255 scale)
ROUND_TRIPS = [
    ("JPEG", {"quality": 95}, 6),
    ("PNG", {}, 0),
    ("TIFF", {}, 0),
    ("WEBP", {"lossless": True}, 0),
    ("WEBP", {"quality": 95}, 12),
]


@pytest.mark.parametrize(("file_format", "options", "tolerance"), ROUND_TRIPS)
def test_write_photo_round_trip_keeps_pixels_and_metadata(
    tmp_path, srgb_profile, file_format, options, tolerance
):
    pixels = chw(gradient())
    path = tmp_path / "out" / "nested" / "photo.bin"  # parents created; suffix not consulted
    write_photo(
        path,
        pixels,
        file_format,
        icc_profile=srgb_profile,
        exif=make_exif(orientation=1).tobytes(),
        dpi=(300, 300),
        **options,
    )
    photo = read_photo(path)
    assert photo.format == file_format and photo.pixels.dtype == torch.uint8
    assert (photo.pixels.int() - pixels.int()).abs().max() <= tolerance
    assert photo.icc_profile == srgb_profile
    assert_exif_tags_kept(photo.exif)
    if file_format != "WEBP":  # WebP has no resolution field
        assert photo.dpi == pytest.approx((300, 300), abs=0.01)


@pytest.mark.parametrize("file_format", ["TIFF", "PNG"])
def test_write_photo_16_bit_round_trip_exact(tmp_path, srgb_profile, file_format):
    pixels = torch.from_numpy(random16((3, HEIGHT, WIDTH)))
    path = tmp_path / "photo"
    write_photo(path, pixels, file_format, icc_profile=srgb_profile, exif=make_exif().tobytes())
    photo = read_photo(path)
    assert photo.pixels.dtype == torch.uint16
    assert torch.equal(photo.pixels, pixels)
    assert photo.icc_profile == srgb_profile
    assert_exif_tags_kept(photo.exif)


def test_write_photo_16_bit_tiff_is_a_plain_16_bit_rgb_tiff(tmp_path):
    pixels = torch.from_numpy(random16((3, HEIGHT, WIDTH)))
    write_photo(tmp_path / "photo.tif", pixels, "TIFF", exif=make_exif().tobytes())
    with tifffile.TiffFile(tmp_path / "photo.tif") as tiff:
        page = tiff.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.RGB and page.bitspersample == 16
        assert np.array_equal(page.asarray(), pixels.permute(1, 2, 0).numpy())
        assert page.tags["Make"].value == "Acme"
        assert "DateTimeOriginal" in str(page.tags["ExifTag"].value)


def test_write_photo_16_bit_to_an_8_bit_format_rounds(tmp_path):
    values = [0, 128, 129, 257, 385, 386, 65_406, 65_407, 65_535]
    pixels = torch.tensor(values, dtype=torch.uint16)
    pixels = pixels.expand(3, 2, -1)
    write_photo(tmp_path / "photo.webp", pixels, "WEBP", lossless=True)
    written = read_photo(tmp_path / "photo.webp").pixels
    assert written.dtype == torch.uint8
    assert written[0, 0].tolist() == [0, 0, 1, 1, 1, 2, 254, 255, 255]  # round(v * 255 / 65535)


def test_write_photo_does_not_overwrite_unless_asked(tmp_path):
    path = touch(tmp_path / "photo.png", b"already here")
    with pytest.raises(FileExistsError, match="photo.png"):
        write_photo(path, chw(gradient()), "PNG")
    assert path.read_bytes() == b"already here"
    assert os.listdir(tmp_path) == ["photo.png"]
    write_photo(path, chw(gradient()), "PNG", overwrite=True)
    assert torch.equal(read_photo(path).pixels, chw(gradient()))


def fail_midway(path, *args, **kwargs):
    Path(path).write_bytes(b"half a photo")
    raise OSError("disk full")


@pytest.mark.parametrize(
    ("file_format", "target", "attribute"),
    [
        ("JPEG", Image.Image, "save"),
        ("TIFF", tifffile, "imwrite"),
        ("PNG", photos, "_write_png16"),
    ],
)
def test_write_photo_failure_leaves_nothing(tmp_path, monkeypatch, file_format, target, attribute):
    folder = tmp_path / "out"
    folder.mkdir()
    previous = touch(folder / "previous.jpg", b"an earlier photo")
    if attribute == "save":
        monkeypatch.setattr(target, attribute, lambda self, path, **_: fail_midway(path))
    else:
        monkeypatch.setattr(target, attribute, fail_midway)
    pixels = torch.from_numpy(random16((3, HEIGHT, WIDTH)))
    with pytest.raises(OSError, match="disk full"):
        write_photo(folder / "photo.jpg", pixels, file_format)
    with pytest.raises(OSError, match="disk full"):
        write_photo(previous, pixels, file_format, overwrite=True)
    assert os.listdir(folder) == ["previous.jpg"]  # no target, no temporary file
    assert previous.read_bytes() == b"an earlier photo"


def test_write_photo_gets_the_usual_file_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_photo(tmp_path / "photo.jpg", chw(gradient()), "JPEG")
    finally:
        os.umask(umask)
    assert (tmp_path / "photo.jpg").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("pixels", "options", "match"),
    [
        (torch.zeros(HEIGHT, WIDTH, 3, dtype=torch.uint8), {}, r"\(3, H, W\)"),
        (torch.zeros(3, HEIGHT, WIDTH), {}, "uint8 or uint16"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), {"quality": 0}, "quality"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), {"format": "gif"}, "jpg, jpeg"),
    ],
)
def test_write_photo_rejects_bad_arguments(tmp_path, pixels, options, match):
    options = {"format": "JPEG", **options}
    with pytest.raises(ValueError, match=match):
        write_photo(tmp_path / "photo", pixels, **options)
    assert not list(tmp_path.iterdir())


def test_write_photo_too_large_for_the_format(tmp_path):
    pixels = torch.zeros(3, 1, 16_384, dtype=torch.uint8)
    with pytest.raises(PhotoError, match="wide.webp.*16383"):
        write_photo(tmp_path / "wide.webp", pixels, "WEBP")
    write_photo(tmp_path / "wide.png", pixels, "PNG")
    assert read_photo(tmp_path / "wide.png").pixels.shape == (3, 1, 16_384)


# --------------------------------------------------------------------------- names and formats


@pytest.mark.parametrize(
    ("file_format", "suffix"),
    [("jpg", ".jpg"), ("JPEG", ".jpg"), (".tiff", ".tif"), ("Png", ".png"), ("WEBP", ".webp")],
)
def test_output_path_changes_the_suffix(file_format, suffix):
    path = output_path(PurePosixPath("trip/IMG_1.JPG"), Path("out"), file_format)
    assert path == Path("out", "trip", f"IMG_1{suffix}")


def test_output_path_keeps_the_name_without_a_format():
    assert output_path(PurePosixPath("trip/IMG_1.JPG"), Path("out"), None) == Path(
        "out/trip/IMG_1.JPG"
    )


@pytest.mark.parametrize("relative", ["../escape.jpg", "/etc/photo.jpg"])
def test_output_path_stays_inside_the_output_folder(relative):
    with pytest.raises(ValueError, match="relative path"):
        output_path(PurePosixPath(relative), Path("out"), None)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("jpg", "JPEG"), ("JPEG", "JPEG"), (".jpeg", "JPEG"), ("tif", "TIFF"), ("TIFF", "TIFF")]
    + [("png", "PNG"), ("webp", "WEBP")],
)
def test_format_name(spelling, name):
    assert format_name(spelling) == name


def test_every_photo_suffix_is_a_format_spelling():
    assert {suffix: format_name(suffix) for suffix in PHOTO_FORMATS} == PHOTO_FORMATS


def test_format_name_unknown_lists_the_choices():
    with pytest.raises(ValueError, match="'heic'.*jpg, jpeg, png, tif, tiff, webp"):
        format_name("heic")
