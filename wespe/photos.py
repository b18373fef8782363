"""Photo files for ``wespe enhance``: finding the inputs, reading full-size camera photos with
their metadata, and writing the enhanced photos back, atomically.

Pixels travel as ``(3, H, W)`` RGB tensors, upright: uint8 in [0, 255], or uint16 in [0, 65535]
for files with 16 bits per channel, which keep their precision both ways. What each format
keeps (tested in ``tests/test_photos.py``):

======  =====================  ==========================  =====================================
format  read at 16 bits        written at 16 bits          metadata written
======  =====================  ==========================  =====================================
JPEG    no (8-bit format)      no: rounded to 8 bits       ICC profile, EXIF, dpi
PNG     yes                    yes (own encoder, below)    ICC profile, EXIF, dpi
TIFF    yes                    yes (tifffile)              ICC profile, EXIF, dpi
WebP    no (8-bit format)      no: rounded to 8 bits       ICC profile, EXIF
======  =====================  ==========================  =====================================

Pillow 13 decodes 16-bit grayscale PNG and TIFF exactly (mode ``I;16``) but truncates 16-bit
RGB and RGBA to 8 bits, and writes 16 bits per channel only for grayscale. So 16-bit colour
PNGs are decoded by torchvision (libpng), 16-bit colour TIFFs by tifffile, 16-bit PNGs written
by a small encoder here (zlib, Paeth filter) and TIFFs by tifffile; Pillow does the rest and
reads all metadata. EXIF in a TIFF shares the file's first directory, so a TIFF keeps its
descriptive text tags (Make, Model, DateTime, Artist, Copyright, ...) and its EXIF and GPS
directories, not the numeric first-directory tags of a camera's EXIF (resolution goes to dpi).
XMP and IPTC metadata are not carried over.
"""

from __future__ import annotations

import glob
import os
import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path, PurePath, PurePosixPath
from typing import BinaryIO

import numpy as np
import tifffile
import torch
from PIL import ExifTags, Image, TiffImagePlugin
from torch import Tensor

from wespe._files import replacing
from wespe.data.datasets import decode_image, find_images, image_problem

__all__ = [
    "FORMAT_SUFFIXES",
    "PHOTO_FORMATS",
    "Photo",
    "PhotoError",
    "find_photos",
    "format_name",
    "output_path",
    "read_photo",
    "write_photo",
]

#: File suffix -> PIL format name, for the files ``wespe enhance`` reads and writes.
PHOTO_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

#: PIL format name -> the suffix written files get.
FORMAT_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}

# Format spellings users type ("jpg", "tiff", ".png", "JPEG") -> PIL format name.
_SPELLINGS = {suffix[1:]: name for suffix, name in PHOTO_FORMATS.items()}

# The largest width or height each format can store.
_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1}

_GRAY16_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

# A TIFF's EXIF tags are its own first directory, mixed with the image structure (sizes,
# strips, compression) that describes that file alone; these text tags are the ones kept.
_EXIF_TEXT_TAGS = (
    ExifTags.Base.ImageDescription,
    ExifTags.Base.Make,
    ExifTags.Base.Model,
    ExifTags.Base.Software,
    ExifTags.Base.DateTime,
    ExifTags.Base.Artist,
    ExifTags.Base.HostComputer,
    ExifTags.Base.Copyright,
)

# tifffile refuses to write the EXIF and GPS directory pointers, so TIFFs are written with a
# placeholder tag just below each (no tag sits in between, so the directory stays sorted),
# then renamed and pointed at the directory appended to the file (_append_exif_directories).
_POINTER_PLACEHOLDERS = {ExifTags.IFD.Exif: 34664, ExifTags.IFD.GPSInfo: 34852}

# What decoders raise on a broken file (RuntimeError: torchvision's PNG decoder).
_DECODING_ERRORS = (
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    RuntimeError,
    struct.error,
    IndexError,
    KeyError,
)

_WILDCARD = re.compile(r"[*?[]")

_TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


class PhotoError(ValueError):
    """A photo that cannot be read or used; the message names the file and says what to do."""


@dataclass
class Photo:
    """A decoded photo and the metadata its enhanced version is written with.

    Attributes:
        pixels: ``(3, H, W)`` RGB, upright (EXIF orientation applied), contiguous; uint8 in
            [0, 255], or uint16 in [0, 65535] for files with 16 bits per channel.
        format: the file's PIL format name: ``"JPEG"``, ``"PNG"``, ``"TIFF"`` or ``"WEBP"``.
        icc_profile: the embedded ICC profile if it is an RGB one, else None (the profile of a
            grayscale or CMYK file does not describe the RGB pixels read from it).
        exif: the EXIF block (``b"Exif\\0\\0"`` and a TIFF structure, as JPEG stores it), with
            Orientation set to 1 since the pixels are upright; None if the file has none.
        dpi: ``(x, y)`` pixels per inch, if the file records it.
    """

    pixels: Tensor
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None


def format_name(spelling: str) -> str:
    """The PIL format name for a user's spelling of a photo format, any case, with or without
    the dot.

    Raises:
        ValueError: not a photo format; the message lists the choices.

    Example:
        >>> format_name("jpg"), format_name(".TIF"), format_name("WEBP")
        ('JPEG', 'TIFF', 'WEBP')
    """
    name = _SPELLINGS.get(spelling.strip().lower().removeprefix("."))
    if name is None:
        raise ValueError(
            f"unknown photo format {spelling!r}; choose one of {', '.join(_SPELLINGS)}"
        )
    return name


def output_path(
    relative: PurePosixPath, output_dir: str | os.PathLike, format: str | None = None
) -> Path:
    """Where the enhanced version of the photo named ``relative`` goes: ``output_dir / relative``,
    with the suffix of ``format`` (a PIL format name or a spelling :func:`format_name` takes) if
    given, else unchanged.

    Raises:
        ValueError: ``relative`` is empty, absolute or climbs out with ``..``; or ``format`` is
            not a photo format.

    Example:
        >>> output_path(PurePosixPath("trip/IMG_1.JPG"), Path("out"), "png").as_posix()
        'out/trip/IMG_1.png'
    """
    relative = PurePosixPath(relative)
    if not relative.parts or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"photo name {str(relative)!r} must be a relative path inside the output")
    path = Path(output_dir).joinpath(*relative.parts)
    return path if format is None else path.with_suffix(FORMAT_SUFFIXES[format_name(format)])


def _is_photo_file(path: Path) -> bool:
    # "._" files are macOS metadata (AppleDouble) beside each photo on exFAT/FAT cards and drives.
    return path.suffix.lower() in PHOTO_FORMATS and not path.name.startswith("._")


def _expand(spec: str | os.PathLike) -> list[tuple[Path, PurePosixPath]]:
    """The (file, relative name) pairs one input of :func:`find_photos` gives, unsorted."""
    path = Path(spec)
    if path.is_file():
        if path.suffix.lower() not in PHOTO_FORMATS:
            raise PhotoError(
                f"{path} is not a photo wespe can read (suffix {path.suffix or 'none'!r}); give "
                f"{', '.join(PHOTO_FORMATS)} files, folders of them, or glob patterns"
            )
        return [(path, PurePosixPath(path.name))]
    if path.is_dir():
        try:
            files = find_images(path)
        except FileNotFoundError:
            files = []
        base = path
    elif _WILDCARD.search(str(spec)):
        files = [Path(match) for match in glob.glob(str(spec), recursive=True)]
        base = Path(*takewhile(lambda part: not _WILDCARD.search(part), PurePath(spec).parts))
    else:
        raise FileNotFoundError(f"input {str(spec)!r} does not exist")
    pairs = [
        (file, PurePosixPath(*file.relative_to(base).parts))
        for file in files
        if _is_photo_file(file) and file.is_file()
    ]
    if not pairs:
        raise FileNotFoundError(
            f"input {str(spec)!r} holds or matches no photo ({', '.join(PHOTO_FORMATS)}, any case)"
        )
    return pairs


def find_photos(
    inputs: Sequence[str | os.PathLike], output_format: str | None = None
) -> list[tuple[Path, PurePosixPath]]:
    """The photo files named by ``inputs``, each with the relative name its output takes.

    Each input is a file, a folder (searched recursively) or a glob pattern (``shots/*.jpg``,
    ``shots/**/*.png``; ``**`` crosses folders). The relative name is, for a folder, the path
    below it (subfolders kept); for a file, its name; for a glob, the path below the pattern's
    leading folders without wildcards. Folders and globs give only files with a
    :data:`PHOTO_FORMATS` suffix (any case), leaving out macOS ``._`` metadata files; a file
    given by name must have one.

    Args:
        inputs: files, folders and glob patterns.
        output_format: the format outputs are converted to, if any (a spelling
            :func:`format_name` takes); names are checked for clashes after that suffix change
            (``a.jpg`` and ``a.png`` clash when both become ``a.png``).

    Returns:
        ``(file, relative name)`` pairs, sorted, each at most once; a file given twice under the
        same name (a folder and a glob inside it) counts once.

    Raises:
        FileNotFoundError: an input does not exist or holds/matches no photo; names it.
        PhotoError: a file given by name is not a photo file (wrong suffix).
        ValueError: two different files would be written under the same name; names both.
    """
    pairs: dict[tuple[Path, PurePosixPath], Path] = {}
    claimed: dict[PurePosixPath, tuple[Path, Path]] = {}
    for spec in inputs:
        for file, name in _expand(spec):
            resolved = file.resolve()
            output_name = name if output_format is None else _with_format(name, output_format)
            first_resolved, first_file = claimed.setdefault(output_name, (resolved, file))
            if first_resolved != resolved:
                raise ValueError(
                    f"{first_file} and {file} would both be written as {output_name}; rename "
                    "one, or enhance them in separate runs into different output folders"
                )
            pairs.setdefault((resolved, name), file)
    return sorted((file, name) for (_, name), file in pairs.items())


def _with_format(name: PurePosixPath, format: str) -> PurePosixPath:
    return name.with_suffix(FORMAT_SUFFIXES[format_name(format)])


def read_photo(path: str | os.PathLike) -> Photo:
    """Decode a photo file at full resolution, with its ICC profile, EXIF and dpi.

    - The EXIF orientation is applied: pixels come upright and the kept EXIF says
      Orientation 1.
    - 8-bit files give uint8; 16-bit PNG and TIFF (RGB, RGBA or grayscale) give uint16 with
      their exact values.
    - Grayscale becomes 3 equal channels; transparency is flattened onto white; palette and
      CMYK become RGB.

    Memory: at most about twice the returned pixels at once (the decoded file and the
    upright copy) for RGB and grayscale files; no float copies.

    Returns:
        A :class:`Photo`; ``pixels`` ``(3, H, W)`` uint8 in [0, 255] or uint16 in [0, 65535].

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PhotoError: the file cannot be decoded (empty, truncated, not an image, larger than
            Pillow's decompression-bomb guard, a format other than JPEG/PNG/TIFF/WebP, a 16-bit
            TIFF kind or compression this installation cannot decode); names it and says
            what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"photo {path} does not exist")
    try:
        with Image.open(path) as image:
            return _decode(path, image)
    except (PhotoError, PermissionError, MemoryError):
        raise
    except _DECODING_ERRORS as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: Exception) -> PhotoError:
    reason = image_problem(path) or f"{type(error).__name__}: {error}"
    if isinstance(error, Image.DecompressionBombError):
        return PhotoError(f"cannot read photo {path}: {reason}")  # the reason says what to do
    return PhotoError(
        f"cannot read photo {path}: {reason}. Copy or export the file again, or leave it out"
    )


def _decode(path: Path, image: Image.Image) -> Photo:
    """The photo in ``image``, opened from ``path`` and not decoded yet."""
    file_format = "JPEG" if image.format == "MPO" else image.format  # MPO: multi-picture JPEG
    if file_format not in FORMAT_SUFFIXES:
        raise PhotoError(
            f"{path} is a {image.format} file; wespe reads JPEG, PNG, TIFF and WebP photos: "
            "convert it to one of them"
        )
    stored = None  # the file's pixels as (C, H, W), when not decoded by Pillow
    upright = None
    lean = image.mode in _GRAY16_MODES or (
        image.mode in ("RGB", "L") and "transparency" not in image.info
    )
    if file_format == "PNG" and _png_bit_depth(path) == 16 and image.mode not in _GRAY16_MODES:
        channels = _decode_png16(path)
        alpha = channels[-1] if len(channels) in (2, 4) else None
        stored = _rgb16(channels[: 3 if len(channels) > 2 else 1], alpha)
    elif file_format == "TIFF" and image.mode not in _GRAY16_MODES and _tiff_bits(image) == 16:
        stored = _decode_tiff16(path)
    elif lean:
        image.load()  # before the EXIF is read: a PNG may store it after the pixels
    else:
        # Palette, alpha, CMYK, 1-bit: converted (and turned upright) by Pillow.
        upright = decode_image(image).contiguous()
    exif = _read_exif(image, file_format)
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    orientation = orientation if isinstance(orientation, int) else 1
    if stored is not None:
        array = _oriented(stored, orientation)
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = np.array(array, order="C")
        upright = torch.from_numpy(array)
    elif upright is None:
        upright = _upright_from_pillow(image, orientation)
    icc_profile, dpi = _rgb_icc_profile(image), _dpi(image)
    return Photo(upright, file_format, icc_profile, _upright_exif(exif, path), dpi)


def _upright_from_pillow(image: Image.Image, orientation: int, band: int = 256) -> Tensor:
    """A decoded RGB, L or 16-bit grayscale Pillow image as ``(3, H, W)`` upright pixels, uint8
    (uint16 for 16-bit grayscale), copied ``band`` rows at a time straight into place: whole-image
    conversions (``np.asarray``, ``decode_image``) hold two or three more copies at once."""
    width, height = image.size
    sideways = orientation in (5, 6, 7, 8)
    dtype = np.uint16 if image.mode in _GRAY16_MODES else np.uint8
    upright = np.empty((3, width, height) if sideways else (3, height, width), dtype)
    # A view of the output in the file's layout; the inverse of 6 (turn right) is 8 (turn left).
    stored = _oriented(upright, {6: 8, 8: 6}.get(orientation, orientation))
    for top in range(0, height, band):
        rows = np.asarray(image.crop((0, top, width, min(top + band, height))))
        if image.mode == "I":  # 32-bit integers holding 16-bit values
            rows = np.clip(rows, 0, 65_535)
        stored[:, top : top + len(rows)] = rows.transpose(2, 0, 1) if rows.ndim == 3 else rows
    return torch.from_numpy(upright)


def _oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """``(C, H, W)`` ``array`` turned upright from EXIF ``orientation`` (1-8), as a view."""
    height_axis, width_axis = 1, 2
    if orientation in (5, 6, 7, 8):  # stored sideways: swap rows and columns first
        array = array.swapaxes(height_axis, width_axis)
    flip = {
        2: (width_axis,),
        3: (height_axis, width_axis),
        4: (height_axis,),
        6: (width_axis,),
        7: (height_axis, width_axis),
        8: (height_axis,),
    }.get(orientation, ())
    return np.flip(array, flip) if flip else array


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as file:
        header = file.read(26)  # signature, IHDR length and type, width, height, bit depth
    return header[24] if len(header) == 26 else 0


def _tiff_bits(image: Image.Image) -> int:
    bits = image.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE, 8)
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _decode_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG's channels, ``(C, H, W)`` uint16 (C: 1-4, alpha last)."""
    # Imported here: torchvision costs 160 MiB of resident memory, for this one decoder.
    from torchvision.io import ImageReadMode, decode_png

    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    with warnings.catch_warnings():
        # Deprecated since torchvision 0.29 in favour of TorchCodec, yet the only installed
        # decoder of 16-bit colour PNG; a RuntimeError names corrupt data.
        warnings.filterwarnings("ignore", _TORCHVISION_DEPRECATION, DeprecationWarning)
        return decode_png(data, mode=ImageReadMode.UNCHANGED).numpy()


def _decode_tiff16(path: Path) -> np.ndarray:
    """A 16-bit RGB or grayscale TIFF's pixels as ``(3, H, W)`` uint16 (a view if possible)."""
    photometric = tifffile.PHOTOMETRIC
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        if page.photometric not in (photometric.RGB, photometric.MINISBLACK):
            raise PhotoError(
                f"{path} is a 16-bit {page.photometric.name} TIFF; wespe reads 16-bit RGB or "
                "grayscale TIFFs: convert it to RGB"
            )
        try:
            array = page.asarray()
        except ValueError as error:  # e.g. "<COMPRESSION.LZW: 5> requires 'imagecodecs'"
            raise PhotoError(
                f"cannot decode the 16-bit TIFF {path} ({error}); install imagecodecs "
                "(pip install imagecodecs) or save the TIFF uncompressed or with ZIP compression"
            ) from error
        axes, extra_samples = page.axes, page.extrasamples
    channels = np.moveaxis(array, axes.index("S"), 0) if "S" in axes else array[None]
    channels = channels.astype(np.uint16, copy=False)  # native byte order, for torch
    colors = 3 if page.photometric == photometric.RGB else 1
    alpha, premultiplied = None, False
    if extra_samples and extra_samples[0] in (1, 2):  # associated (premultiplied), unassociated
        alpha, premultiplied = channels[colors], extra_samples[0] == 1
    return _rgb16(channels[:colors], alpha, premultiplied)


def _rgb16(colors: np.ndarray, alpha: np.ndarray | None, premultiplied: bool = False) -> np.ndarray:
    """``(1 or 3, H, W)`` uint16 ``colors`` flattened onto white by ``alpha`` ``(H, W)`` if
    given, as ``(3, H, W)`` (grayscale broadcast)."""
    if alpha is not None:
        white = 65_535
        alpha = alpha.astype(np.uint32)
        flat = np.empty(colors.shape, np.uint16)
        for channel, color in enumerate(colors):
            color = color.astype(np.uint32)  # one channel at a time bounds the memory
            if premultiplied:
                flat[channel] = np.minimum(color + (white - alpha), white)
            else:  # white - (white - color) * alpha / white, rounded, in exact integers
                flat[channel] = white - ((white - color) * alpha + white // 2) // white
        colors = flat
    return colors if len(colors) == 3 else np.broadcast_to(colors, (3, *colors.shape[1:]))


def _read_exif(image: Image.Image, file_format: str) -> Image.Exif:
    if file_format == "PNG" and not {"exif", "Raw profile type exif"} & image.info.keys():
        return Image.Exif()  # a PNG's getexif() would decode every pixel to look further
    exif = image.getexif()
    if file_format != "TIFF":
        return exif
    kept = Image.Exif()
    for tag in (*_EXIF_TEXT_TAGS, ExifTags.Base.Orientation):
        if tag in exif:
            kept[tag] = exif[tag]
    for pointer in _POINTER_PLACEHOLDERS:
        if directory := _sub_directory(exif, pointer):
            kept[pointer] = directory
    return kept


def _sub_directory(exif: Image.Exif, pointer: int) -> dict:
    """The EXIF or GPS directory of ``exif``, the Interop directory nested as a dict."""
    directory = dict(exif.get_ifd(pointer))
    if pointer == ExifTags.IFD.Exif and ExifTags.IFD.Interop in directory:
        interop = exif.get_ifd(ExifTags.IFD.Interop)
        directory[ExifTags.IFD.Interop] = interop
        if not interop:
            del directory[ExifTags.IFD.Interop]
    return directory


def _upright_exif(exif: Image.Exif, path: Path) -> bytes | None:
    """``exif`` as bytes with Orientation 1; None if empty."""
    if not exif:
        return None
    if ExifTags.Base.Orientation in exif:
        exif[ExifTags.Base.Orientation] = 1
    try:
        data = exif.tobytes()
    except (ValueError, TypeError, struct.error) as error:
        warnings.warn(f"{path}: EXIF left out, it cannot be rewritten ({error})", stacklevel=4)
        return None
    return data


def _rgb_icc_profile(image: Image.Image) -> bytes | None:
    profile = image.info.get("icc_profile")
    # Bytes 16-20 of an ICC profile name the colour space it describes.
    return profile if profile and profile[16:20] == b"RGB " else None


def _dpi(image: Image.Image) -> tuple[float, float] | None:
    dpi = image.info.get("dpi")
    if not dpi or len(dpi) != 2 or not all(float(value) > 0 for value in dpi):
        return None
    return float(dpi[0]), float(dpi[1])


def write_photo(
    path: str | os.PathLike,
    pixels: Tensor,
    format: str,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    overwrite: bool = False,
    dpi: tuple[float, float] | None = None,
    lossless: bool = False,
) -> None:
    """Write a photo file, atomically, with its ICC profile, EXIF and dpi.

    uint16 pixels are written at 16 bits per channel to PNG and TIFF, and rounded to 8 bits
    for JPEG and WebP. The file is written beside ``path`` under a temporary name and renamed
    into place, so ``path`` is never left half-written or empty; the temporary file is removed
    if writing fails. Parent folders are created.

    Args:
        path: the file to write; its suffix is not consulted (``format`` decides).
        pixels: ``(3, H, W)`` RGB, uint8 in [0, 255] or uint16 in [0, 65535], any device.
        format: ``"JPEG"``, ``"PNG"``, ``"TIFF"`` or ``"WEBP"`` (or a spelling
            :func:`format_name` takes).
        quality: JPEG and lossy WebP quality, 1-100 (for lossless WebP: the compression
            effort). JPEG at 90 and above keeps full colour resolution (4:4:4).
        icc_profile: an ICC profile to embed (all four formats).
        exif: an EXIF block to embed (all four formats), with or without the ``Exif\\0\\0``
            prefix; for TIFF its descriptive text tags and EXIF and GPS directories.
        overwrite: replace an existing file.
        dpi: ``(x, y)`` pixels per inch to record (JPEG, PNG, TIFF; WebP has no field).
        lossless: lossless WebP (ignored by the other formats).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False; names it.
        PhotoError: the photo is too large for the format (WebP: 16383 pixels a side, JPEG:
            65535); names the file and says to choose another format.
        ValueError: ``pixels`` is not ``(3, H, W)`` uint8/uint16, ``quality`` is outside 1-100,
            or ``format`` is not a photo format.
    """
    path = Path(path)
    file_format = format_name(format)
    if pixels.ndim != 3 or pixels.shape[0] != 3 or pixels.dtype not in (torch.uint8, torch.uint16):
        raise ValueError(
            f"pixels must be (3, H, W) uint8 or uint16; got {tuple(pixels.shape)} {pixels.dtype}"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1-100; got {quality}")
    height, width = pixels.shape[1:]
    if max(height, width) > _MAX_SIDE[file_format] or min(height, width) < 1:
        raise PhotoError(
            f"{path}: a {width}x{height} photo does not fit {file_format}, which stores 1 to "
            f"{_MAX_SIDE[file_format]} pixels a side; choose another format"
        )
    if not overwrite and path.exists():
        raise FileExistsError(_exists_message(path))
    if exif is not None and not exif.startswith(b"Exif\0\0"):
        exif = b"Exif\0\0" + exif
    pixels = pixels.cpu()
    with replacing(path, overwrite=overwrite) as temporary:
        if file_format == "TIFF":
            _write_tiff(temporary, pixels, icc_profile, exif, dpi)
        elif file_format == "PNG" and pixels.dtype == torch.uint16:
            _write_png16(temporary, pixels, icc_profile, exif, dpi)
        else:
            _save_with_pillow(
                temporary, _to_uint8(pixels), file_format, quality, icc_profile, exif, dpi, lossless
            )


def _exists_message(path: Path) -> str:
    return f"{path} already exists; choose another output folder or allow overwriting it"


def _to_uint8(pixels: Tensor) -> Tensor:
    """uint16 ``pixels`` rounded to uint8 (65535 -> 255), one channel at a time."""
    if pixels.dtype == torch.uint8:
        return pixels
    converted = torch.empty(pixels.shape, dtype=torch.uint8)
    for channel in range(pixels.shape[0]):
        # round(v * 255 / 65535) = round(v / 257), exact in integers
        converted[channel] = (pixels[channel].to(torch.int32) + 128) // 257
    return converted


def _hwc(pixels: Tensor) -> np.ndarray:
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def _save_with_pillow(
    path: Path,
    pixels: Tensor,
    file_format: str,
    quality: int,
    icc_profile: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    lossless: bool,
) -> None:
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif:
        options["exif"] = exif
    if dpi and file_format != "WEBP":
        options["dpi"] = dpi
    if file_format == "JPEG":
        # 4:2:0 halves colour resolution, visible on the colour edges enhancement sharpens;
        # photo editors switch to 4:4:4 at their top qualities too. No optimize=True: Pillow
        # then holds the whole compressed file in a buffer it sizes at 2 bytes per pixel,
        # which a detailed photo at 4:4:4 overflows ("Suspension not allowed here").
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif file_format == "WEBP":
        options.update(quality=quality, lossless=lossless)
    Image.fromarray(_hwc(pixels)).save(path, format=file_format, **options)


def _write_tiff(
    path: Path,
    pixels: Tensor,
    icc_profile: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
) -> None:
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    extratags = [
        (tag, "s", 0, tags[tag].encode("latin-1", "replace"), True)
        for tag in _EXIF_TEXT_TAGS
        if isinstance(tags.get(tag), str)
    ]
    directories = {
        pointer: directory
        for pointer in _POINTER_PLACEHOLDERS
        if (directory := _sub_directory(tags, pointer))
    }
    extratags += [(_POINTER_PLACEHOLDERS[pointer], 4, 1, 0, True) for pointer in directories]
    tifffile.imwrite(
        path,
        _hwc(pixels),
        photometric="rgb",
        compression="zlib",
        predictor=True,
        iccprofile=icc_profile,
        resolution=dpi,
        resolutionunit="INCH" if dpi else None,
        metadata=None,  # no JSON shape description in ImageDescription
        software=False,
        extratags=extratags,
        byteorder="<",  # what _append_exif_directories writes
        bigtiff=False,  # classic TIFF, whose 12-byte entries _append_exif_directories edits
    )
    if directories:
        _append_exif_directories(path, directories)


def _append_exif_directories(path: Path, directories: dict[int, dict]) -> None:
    """Append EXIF/GPS directories to a TIFF written with their placeholder tags, and turn
    each placeholder into the pointer to its directory."""
    with tifffile.TiffFile(path) as tiff:
        tags = tiff.pages[0].tags
        entries = {
            pointer: (tags[placeholder].offset, tags[placeholder].valueoffset)
            for pointer, placeholder in _POINTER_PLACEHOLDERS.items()
            if pointer in directories
        }
    with path.open("r+b") as file:
        for pointer, (entry_offset, value_offset) in entries.items():
            start = file.seek(0, os.SEEK_END)
            if start % 2:  # directories start on a word boundary
                start += file.write(b"\0")
            directory = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
            for tag, value in directories[pointer].items():
                directory[tag] = value
            file.write(directory.tobytes(start))
            file.seek(entry_offset)
            file.write(struct.pack("<H", pointer))
            file.seek(value_offset)
            file.write(struct.pack("<I", start))


def _write_png16(
    path: Path,
    pixels: Tensor,
    icc_profile: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    rows_per_chunk: int = 32,
) -> None:
    """A 16-bit RGB PNG (PNG spec, 3rd edition): metadata chunks, then the rows, Paeth-filtered
    and compressed ``rows_per_chunk`` at a time so memory stays small."""
    height, width = pixels.shape[1:]
    row_bytes = width * 6  # 3 channels, 2 bytes each, big-endian
    with path.open("wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        _png_chunk(file, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        if icc_profile:
            _png_chunk(file, b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))
        if dpi:
            per_metre = [round(value / 0.0254) for value in dpi]
            _png_chunk(file, b"pHYs", struct.pack(">IIB", *per_metre, 1))
        if exif:
            _png_chunk(file, b"eXIf", exif.removeprefix(b"Exif\0\0"))
        compressor = zlib.compressobj(6)
        above = np.zeros((1, row_bytes), np.uint8)
        for top in range(0, height, rows_per_chunk):
            rows = (
                pixels[:, top : top + rows_per_chunk]
                .permute(1, 2, 0)
                .numpy()
                .astype(">u2", order="C")
                .view(np.uint8)
                .reshape(-1, row_bytes)
            )
            filtered = _paeth_filter(rows, np.concatenate([above, rows[:-1]]))
            lines = np.concatenate([np.full((len(rows), 1), 4, np.uint8), filtered], axis=1)
            _png_chunk(file, b"IDAT", compressor.compress(lines.tobytes()))
            above = rows[-1:]
        _png_chunk(file, b"IDAT", compressor.flush())
        _png_chunk(file, b"IEND", b"")


def _paeth_filter(rows: np.ndarray, above: np.ndarray, bytes_per_pixel: int = 6) -> np.ndarray:
    """PNG filter type 4 of byte ``rows`` ``(n, row_bytes)`` given the rows ``above`` them."""
    rows, above = rows.astype(np.int16), above.astype(np.int16)
    left = np.zeros_like(rows)
    left[:, bytes_per_pixel:] = rows[:, :-bytes_per_pixel]
    above_left = np.zeros_like(above)
    above_left[:, bytes_per_pixel:] = above[:, :-bytes_per_pixel]
    estimate = left + above - above_left
    to_left, to_above = np.abs(estimate - left), np.abs(estimate - above)
    to_above_left = np.abs(estimate - above_left)
    predictor = np.where(
        (to_left <= to_above) & (to_left <= to_above_left),
        left,
        np.where(to_above <= to_above_left, above, above_left),
    )
    return (rows - predictor).astype(np.uint8)  # modulo 256


def _png_chunk(file: BinaryIO, kind: bytes, data: bytes) -> None:
    if kind == b"IDAT" and not data:
        return  # the compressor has buffered this part; a later chunk carries it
    file.write(struct.pack(">I", len(data)) + kind + data)
    file.write(struct.pack(">I", zlib.crc32(kind + data)))
