"""Datasets: image-folder reading, the decoded-image cache, unpaired patch streams, paired
evaluation sets, the DPED layout and the embedded sample made of scikit-image's photos.

Images travel as ``(3, H, W)`` tensors; ``uint8`` while stored, float32 in [0, 1] once cropped.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler
from torchvision.transforms.v2.functional import center_crop, resize

from wespe._files import replacing
from wespe.data.degrade import PhoneDegradation, pil_to_uint8

__all__ = [
    "DECODE_CACHE_MIN_PIXELS",
    "DECODE_CACHE_VERSION",
    "EMBEDDED_PHOTOS",
    "IMAGE_EXTENSIONS",
    "CacheEntry",
    "CachedImage",
    "DecodeCache",
    "EpochSampler",
    "ImageFolderDataset",
    "ImageScan",
    "PairedImageDataset",
    "PairedPatchDataset",
    "UnpairedPatchDataset",
    "dped_folders",
    "embedded_photo",
    "decode_image",
    "default_cache_dir",
    "find_images",
    "image_problem",
    "load_image",
    "scan_images",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: The real RGB photos that scikit-image ships (name -> loader name in ``skimage.data``).
EMBEDDED_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "motorcycle_right",
    "retina",
    "rocket",
)


@dataclass(frozen=True)
class CachedImage:
    """A photo decoded once into the decoded-image cache (:class:`DecodeCache`): an uncompressed
    ``.npy`` file of its uint8 ``(3, H, W)`` pixels, read through a memory map, so that cropping a
    patch reads only the pages the patch lies on instead of decoding the whole photo.

    Small and picklable: DataLoader workers receive the two paths, not the pixels.
    """

    array_path: Path
    source_path: Path

    def load(self) -> Tensor:
        """The pixels, ``(3, H, W)`` uint8, memory-mapped (nothing is read until indexed).

        Raises:
            FileNotFoundError: the cache file is gone (the cache folder was cleaned mid-run).
        """
        return _open_array(self.array_path, self.source_path)


#: A training or evaluation image: pixels in memory, a file decoded when read, or a cached photo.
ImageItem = Tensor | Path | CachedImage


def _candidates(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def find_images(folder: str | os.PathLike) -> list[Path]:
    """All image files below ``folder`` (any depth, common formats), sorted by path, by name
    alone (:func:`scan_images` also checks that each one decodes).

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no image file.
    """
    folder = Path(folder)
    paths = _candidates(folder)
    if not paths:
        raise FileNotFoundError(
            f"image folder {folder} holds no image ({', '.join(IMAGE_EXTENSIONS)} files, any depth)"
        )
    return paths


def image_problem(path: Path, min_size: int | None = None) -> str | None:
    """Why ``path`` cannot be used as an image (decoded in full), or None if it can.

    ``min_size``: the shorter side must be at least this (the data's ``patch_size``: a
    training patch must fit).
    """
    return _check_image(path, min_size)[0]


def _check_image(
    path: Path, min_size: int | None = None, decode_from: int | None = None
) -> tuple[str | None, Tensor | None]:
    """:func:`image_problem`'s reason, and the decoded photo (:func:`decode_image`) when the image
    is usable and has at least ``decode_from`` pixels (None: never decoded), so that the cache
    is filled from the very decode that checks the file."""
    if path.name.startswith("._"):
        return "a macOS metadata file (AppleDouble), not an image", None
    if path.stat().st_size == 0:
        return "an empty file", None
    try:
        with Image.open(path) as image:
            image.load()  # the whole file: a truncated one fails here, not mid-run
            width, height = image.size
            if min_size is not None and min(width, height) < min_size:
                return f"{width}x{height}, smaller than patch_size={min_size}", None
            if decode_from is None or width * height < decode_from:
                return None, None
            return None, decode_image(image)
    except Image.DecompressionBombError as error:
        return (
            f"larger than PIL's decompression-bomb guard allows ({error}); if you trust the "
            "file, raise PIL.Image.MAX_IMAGE_PIXELS or downscale it"
        ), None
    except UnidentifiedImageError:
        return "not an image format PIL can read", None
    except (OSError, SyntaxError, ValueError) as error:
        return f"truncated or corrupt ({error})", None


@dataclass
class ImageScan:
    """The usable images of a folder and the files skipped, each with the reason.

    With a :class:`DecodeCache`, ``cached`` maps the usable photos that are in the cache to
    their entries, and ``decoded`` lists those decoded into it by this scan (the rest of
    ``cached`` was there already).
    """

    folder: Path
    usable: list[Path]
    skipped: list[tuple[Path, str]]
    cached: dict[Path, CachedImage] = field(default_factory=dict)
    decoded: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every image file the scan looked at, usable or not."""
        return self.usable + [path for path, _ in self.skipped]

    @property
    def items(self) -> list[Path | CachedImage]:
        """The usable images for a dataset: each photo's cache entry if it has one, else its path."""
        return [self.cached.get(path, path) for path in self.usable]

    def report(self, limit: int = 10) -> str:
        lines = [
            f"{self.folder}: {len(self.usable)} usable image(s), {len(self.skipped)} skipped"
            + (":" if self.skipped else "")
        ]
        lines += [f"  {path.relative_to(self.folder)}: {why}" for path, why in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def _scan_one(
    path: Path, min_size: int | None, cache: DecodeCache | None
) -> tuple[str | None, CachedImage | None, bool]:
    """One file of :func:`scan_images`: (why it is unusable or None, its cache entry or None,
    whether it was decoded into the cache now)."""
    if cache is None:
        return image_problem(path, min_size), None, False
    # A valid entry proves that the file, as it is now, decoded in full: no need to decode it.
    array_path = cache.entry_path(path)
    entry = cache.lookup(path, array_path)
    if entry is not None:
        height, width = entry.shape
        if min_size is not None and min(width, height) < min_size:
            return f"{width}x{height}, smaller than patch_size={min_size}", None, False
        return None, entry.image, False
    problem, image = _check_image(path, min_size, decode_from=cache.min_pixels)
    if image is None:
        return problem, None, False
    return None, cache.store(path, image, array_path), True


def scan_images(
    folder: str | os.PathLike, min_size: int | None = None, cache: DecodeCache | None = None
) -> ImageScan:
    """Every image file below ``folder`` decoded once and checked (:func:`image_problem`), so
    that one bad file is reported at setup instead of stopping a run midway. Files are decoded
    on several threads (PIL releases the GIL while decoding). Skipped files are reported as a
    warning.

    With a ``cache``, each usable photo of at least ``cache.min_pixels`` pixels is stored into
    it from that same decode, and a photo whose entry is valid is neither decoded nor checked
    again (its entry was written only after a full decode of the file as it is now).

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no usable image; the message
            lists what was skipped and why.
        OSError: the cache folder cannot be written (see :meth:`DecodeCache.store`).
    """
    folder = Path(folder)
    candidates = _candidates(folder)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda path: _scan_one(path, min_size, cache), candidates))
    scan = ImageScan(
        folder,
        usable=[p for p, (why, _, _) in zip(candidates, results, strict=True) if why is None],
        skipped=[(p, why) for p, (why, _, _) in zip(candidates, results, strict=True) if why],
        cached={p: entry for p, (_, entry, _) in zip(candidates, results, strict=True) if entry},
        decoded=[p for p, (_, _, new) in zip(candidates, results, strict=True) if new],
    )
    if not scan.usable:
        raise FileNotFoundError(
            f"image folder {folder} holds no usable image ({', '.join(IMAGE_EXTENSIONS)} "
            f"files, any depth).\n{scan.report()}"
        )
    if scan.skipped:
        warnings.warn(f"skipping unusable files in {scan.report()}", UserWarning, stacklevel=2)
    return scan


def decode_image(image: Image.Image) -> Tensor:
    """A PIL image as a photo: ``(3, H, W)`` uint8 RGB, upright.

    - The EXIF orientation is applied (phones store portrait photos sideways with a tag).
    - 16-bit and 32-bit integer grayscale is scaled from 0-65535 to 0-255, not clipped.
    - Transparency (RGBA, LA, a palette's transparent color) is flattened onto white.
    - Grayscale, palette and CMYK are converted to RGB.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image, dtype=np.float64) * (255 / 65535)
        gray = torch.from_numpy(np.clip(np.round(array), 0, 255).astype(np.uint8))
        return gray.expand(3, *gray.shape).clone()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return pil_to_uint8(image)


def load_image(path: str | os.PathLike) -> Tensor:
    """Decode an image file to ``(3, H, W)`` uint8 RGB (see :func:`decode_image`).

    Raises:
        ValueError: the file cannot be decoded; the message names it.
    """
    try:
        with Image.open(path) as image:
            return decode_image(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"cannot read image {path}: {error}; remove or replace the file"
        ) from error


def _as_uint8(item: ImageItem) -> Tensor:
    if isinstance(item, Path):
        return load_image(item)
    if isinstance(item, CachedImage):
        return item.load()
    return item


def _origin(item: ImageItem) -> str:
    """How an error message names an image: its file, or "an in-memory image"."""
    if isinstance(item, CachedImage):
        return str(item.source_path)
    return str(item) if isinstance(item, Path) else "an in-memory image"


def _name(item: ImageItem, index: int) -> str:
    """An evaluation image's default name: its file's stem, else its index."""
    if isinstance(item, CachedImage):
        return item.source_path.stem
    return item.stem if isinstance(item, Path) else f"{index:04d}"


# --------------------------------------------------------------------------- decoded-image cache

#: Format of the cache's entries, part of every entry's key: raise it whenever
#: :func:`decode_image` would give other pixels, and every photo is decoded again.
DECODE_CACHE_VERSION = 1

#: Images of at least this many pixels (500x500) are cached; smaller ones are decoded per patch.
#: Measured on 2 CPU cores, one of them used, JPEG quality 95: decoding a whole image and
#: cropping one 100x100 patch costs 0.22 ms at 100x100, 0.47 ms at 300x300, 1.0 ms at 500x500,
#: 4.3 ms at 1 MP, 56 ms at 4 MP and 0.2-0.3 s at 12 MP; opening a memory-mapped entry and
#: cropping the patch costs 0.2-0.35 ms at any size. From 500x500 on the cache reads patches at
#: least 5x faster; below, it gains at most 2x, not worth a file per image (DPED's 160,000
#: 100x100 patches: 1.3x, for 4.8 GB of files).
DECODE_CACHE_MIN_PIXELS = 500 * 500


def default_cache_dir() -> Path:
    """Where decoded photos are cached by default: ``$WESPE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/wespe/decoded``, else ``~/.cache/wespe/decoded``."""
    if os.environ.get("WESPE_CACHE_DIR"):
        return Path(os.environ["WESPE_CACHE_DIR"]).expanduser()
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home).expanduser() / "wespe" / "decoded"


@lru_cache(maxsize=256)
def _open_array(array_path: Path, source_path: Path) -> Tensor:
    # Copy-on-write ("c"): writable, so torch.from_numpy does not warn, yet the file is never
    # written. Memoised per process (a map stays valid even if its file is deleted later):
    # opening a map costs about as much as cropping the patch, and the memo doubled the pairs
    # per second from 12 MP photos (2760 against 1380 on one core). 256 maps are address space
    # only; the kernel keeps or drops their pages as it does any file's.
    try:
        return torch.from_numpy(np.load(array_path, mmap_mode="c"))
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"decoded-image cache file {array_path} (of {source_path}) is gone: was the cache "
            "folder cleaned during the run? Start again (or resume): setup decodes it again"
        ) from error


@dataclass(frozen=True)
class CacheEntry:
    """A valid entry of :class:`DecodeCache`: the image and its ``(height, width)``."""

    image: CachedImage
    shape: tuple[int, int]


class DecodeCache:
    """Photos decoded once (:func:`decode_image`: upright, RGB, 8-bit) into uncompressed uint8
    ``(3, H, W)`` ``.npy`` files below ``folder``, to be read patch by patch through a memory map.

    An entry is keyed on the photo's resolved path, size and modification time (ns) and
    :data:`DECODE_CACHE_VERSION`: an edited or replaced photo is decoded again, and its stale
    entry is deleted then. Entries are written atomically (:func:`wespe._files.replacing`): a
    crash or an error never leaves a half-written one, and processes filling the same cache at
    once (DDP ranks) each write whole files. Layout: ``folder/<stem>.<path hash>/<state hash>.npy``,
    one subfolder per photo. Only images of at least ``min_pixels`` pixels are worth it (None:
    :data:`DECODE_CACHE_MIN_PIXELS`).
    """

    def __init__(self, folder: str | os.PathLike, min_pixels: int | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.min_pixels = DECODE_CACHE_MIN_PIXELS if min_pixels is None else min_pixels

    def entry_path(self, path: Path) -> Path:
        """Where the current version of ``path`` is (or would be) cached."""
        source = Path(path).resolve()
        stat = source.stat()
        where = hashlib.sha256(os.fsencode(source)).hexdigest()[:16]
        state = f"{DECODE_CACHE_VERSION}:{stat.st_size}:{stat.st_mtime_ns}"
        version = hashlib.sha256(state.encode()).hexdigest()[:16]
        stem = re.sub(r"[^\w-]", "_", source.stem)[:40]
        return self.folder / f"{stem}.{where}" / f"{version}.npy"

    def lookup(self, path: Path, array_path: Path | None = None) -> CacheEntry | None:
        """The valid entry of ``path`` as it is now (or at ``array_path``, its
        :meth:`entry_path`), or None: never cached, changed since, or an unreadable entry."""
        array_path = self.entry_path(path) if array_path is None else array_path
        try:
            array = np.load(array_path, mmap_mode="r")  # reads the header only
        except (OSError, ValueError):
            return None
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != 3:
            return None
        return CacheEntry(CachedImage(array_path, Path(path)), (array.shape[1], array.shape[2]))

    def store(self, path: Path, image: Tensor, array_path: Path | None = None) -> CachedImage:
        """Write ``image`` (``(3, H, W)`` uint8, decoded from ``path``) as ``path``'s entry and
        delete the photo's stale entries. ``array_path``: the entry's :meth:`entry_path` taken
        before decoding, so that a file changed meanwhile is keyed on its old state (and decoded
        again next time), never the new state on the old pixels.

        Raises:
            OSError: the cache folder cannot be written (read-only, full disk...); the message
                names it and the settings to change.
        """
        array_path = self.entry_path(path) if array_path is None else array_path
        array = np.ascontiguousarray(image.numpy())
        try:
            with replacing(array_path) as temporary, temporary.open("wb") as file:
                # A file object: given a name, np.save would append ".npy" to the temporary's.
                np.save(file, array, allow_pickle=False)
        except OSError as error:
            raise OSError(
                f"cannot write the decoded-image cache in {self.folder} ({error}): set "
                "data.init_args.cache_dir (or $WESPE_CACHE_DIR) to a writable folder with room "
                f"for {array.nbytes / 2**20:.0f} MiB per photo like {path}, or "
                "data.init_args.decode_cache=false to decode the photo for every patch (slow)"
            ) from error
        for stale in array_path.parent.glob("*.npy"):
            if stale != array_path:
                stale.unlink(missing_ok=True)
        return CachedImage(array_path, Path(path))


def _to_float(image: Tensor) -> Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def embedded_photo(name: str, max_size: int | None = 512) -> Tensor:
    """One of scikit-image's photos as ``(3, H, W)`` uint8, longer side at most ``max_size``."""
    import skimage.data

    if name not in EMBEDDED_PHOTOS:
        raise ValueError(
            f"unknown embedded photo {name!r}; choose from {', '.join(EMBEDDED_PHOTOS)}"
        )
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        array = left if name == "motorcycle_left" else right
    else:
        array = getattr(skimage.data, name)()
    image = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1)
    if max_size is not None and max(image.shape[1:]) > max_size:
        scale = max_size / max(image.shape[1:])
        size = [round(s * scale) for s in image.shape[1:]]
        # In float, then rounded: torchvision's uint8 path rounds differently, and the sample's
        # pixels (and the README's figures) must not move.
        image = resize(image.float(), size, antialias=True).round().clamp(0, 255).byte()
    return image


def degrade_photo(image: Tensor, degradation: PhoneDegradation, seed: int) -> Tensor:
    """Apply ``degradation`` to a uint8 photo; returns uint8 (as a phone would store it)."""
    degraded = degradation(_to_float(image), seed=seed)
    return (degraded * 255).round().clamp(0, 255).byte()


class UnpairedPatchDataset(Dataset):
    """Two independent streams of random patches: source photos and target photos.

    Item ``i`` is ``{"source": patch, "target": patch}``, each ``(3, patch_size, patch_size)``
    float32 in [0, 1], cropped at random positions from a random source and a random target
    image (with random horizontal flips). The source and target picks are drawn independently,
    so no pairing between the domains is ever assumed. The randomness of item ``i`` depends on
    ``(seed, i)`` alone: any index, in any worker, after any resume, gives the same patches.
    Indices beyond ``len()`` are valid (see :class:`EpochSampler`).

    Args:
        source: source-domain images, uint8 ``(3, H, W)`` tensors, file paths (decoded for each
            patch) or :class:`CachedImage` entries (only the patch is read).
        target: target-domain images, same forms.
        patch_size: side of the square patches; every image must be at least that big.
        length: patches per epoch.
        seed: base seed of the crop positions.
        flip: random horizontal flips.
    """

    def __init__(
        self,
        source: Sequence[ImageItem],
        target: Sequence[ImageItem],
        patch_size: int,
        length: int,
        seed: int = 0,
        flip: bool = True,
    ) -> None:
        if not source or not target:
            raise ValueError("UnpairedPatchDataset needs at least one source and one target image")
        if patch_size < 1 or length < 1:
            raise ValueError(f"patch_size and length must be >= 1; got {patch_size}, {length}")
        self.source = list(source)
        self.target = list(target)
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.flip = flip
        for item in self.source + self.target:
            if isinstance(item, Tensor):
                self._check_size(item, item)

    def _check_size(self, image: Tensor, item: ImageItem) -> None:
        height, width = image.shape[-2:]
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(
                f"{_origin(item)} is {height}x{width}, smaller than patch_size={self.patch_size}; "
                "lower patch_size or remove the image"
            )

    def __len__(self) -> int:
        return self.length

    def _patch(self, items: Sequence[ImageItem], generator: torch.Generator) -> Tensor:
        return self._patches((items,), generator)[0]

    def _patches(
        self, domains: Sequence[Sequence[ImageItem]], generator: torch.Generator
    ) -> list[Tensor]:
        """The same random image index, crop and flip applied to each of ``domains``."""
        index = int(torch.randint(len(domains[0]), (1,), generator=generator))
        images = [_as_uint8(items[index]) for items in domains]
        for image, items in zip(images, domains, strict=True):
            self._check_size(image, items[index])
        height, width = images[0].shape[-2:]
        top = int(torch.randint(height - self.patch_size + 1, (1,), generator=generator))
        left = int(torch.randint(width - self.patch_size + 1, (1,), generator=generator))
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        patches = []
        for image in images:
            patch = image[:, top : top + self.patch_size, left : left + self.patch_size]
            patches.append(_to_float(patch.flip(-1) if flip else patch))
        return patches

    def _generators(self, index: int) -> tuple[torch.Generator, torch.Generator]:
        # Seeded from (seed, index) through numpy's SeedSequence: torch's CPU generator keeps
        # only 32 bits of a seed, so arithmetic mixing would drop the seed.
        first, second = np.random.SeedSequence([self.seed, int(index)]).generate_state(2)
        return torch.Generator().manual_seed(int(first)), torch.Generator().manual_seed(int(second))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        # One generator per domain: the source stream never depends on the target's.
        source_rng, target_rng = self._generators(index)
        return {
            "source": self._patch(self.source, source_rng),
            "target": self._patch(self.target, target_rng),
        }


class PairedPatchDataset(UnpairedPatchDataset):
    """Aligned patches of paired images: item ``i`` is ``{"source": degraded, "target": clean}``
    cropped at the same place of the same photo. For the supervised reference point only;
    WESPE itself never trains on pairs.

    Args:
        source: degraded images; ``target``: their clean versions, same order and sizes.
        Others as :class:`UnpairedPatchDataset`.
    """

    def __init__(
        self,
        source: Sequence[ImageItem],
        target: Sequence[ImageItem],
        *args: object,
        **kwargs: object,
    ) -> None:
        if len(source) != len(target):
            raise ValueError(
                f"paired patches need as many clean as degraded images; got {len(target)} and "
                f"{len(source)}"
            )
        super().__init__(source, target, *args, **kwargs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        source, target = self._patches((self.source, self.target), self._generators(index)[0])
        if source.shape != target.shape:
            raise ValueError(
                f"paired images {index} differ in size: {tuple(source.shape)} vs {tuple(target.shape)}"
            )
        return {"source": source, "target": target}


class EpochSampler(DistributedSampler):
    """Yields ``epoch * length + i``: new patches every epoch, sharded across processes.

    With ``num_replicas`` processes, process ``rank`` takes ``i = rank, rank + num_replicas,
    ...`` over the first ``length // num_replicas * num_replicas`` positions, so the shards are
    disjoint and all the same size (unequal shards would leave DDP waiting).

    Where an iteration starts is decided when it starts, never later: by ``position()``, a
    callable returning ``(epoch, start)``, if given (the data module passes one computed from
    the batches trained so far); otherwise the first iteration yields epoch ``epoch`` from
    this process's ``start``-th index and each later one the next epoch whole. An iteration
    yields from its start to the end of its epoch. Lightning's :meth:`set_epoch` is ignored:
    Lightning calls it only after starting the first iterator (whose worker processes fetch
    batches ahead at once), and after a resume from a checkpoint saved at an epoch's end its
    epochs no longer match the data's (it runs one batch in a left-over epoch first).

    It is a :class:`~torch.utils.data.DistributedSampler` so that Lightning uses it as it is
    under DDP instead of wrapping it in a second, index-shuffling sharder.

    Example:
        >>> sampler = EpochSampler(6, start=4, epoch=2)
        >>> list(sampler), list(sampler)  # the rest of epoch 2, then all of epoch 3
        ([16, 17], [18, 19, 20, 21, 22, 23])
    """

    def __init__(
        self,
        length: int,
        start: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        position: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}); got {rank}")
        self.length = length
        self.num_replicas = num_replicas
        self.rank = rank
        self.per_replica = length // num_replicas
        if not 0 <= start <= self.per_replica:
            raise ValueError(f"start must be in [0, {self.per_replica}]; got {start}")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch}")
        self.start = start
        self.epoch = epoch
        self.position = position

    def set_epoch(self, epoch: int) -> None:
        """Ignored (see the class docstring)."""

    def __iter__(self) -> Iterator[int]:
        epoch, first = self.position() if self.position is not None else (self.epoch, self.start)
        if not 0 <= first <= self.per_replica:
            raise ValueError(f"start must be in [0, {self.per_replica}]; got {first}")
        self.epoch, self.start = epoch + 1, 0
        positions = range(self.rank, self.per_replica * self.num_replicas, self.num_replicas)
        # A list: every index is fixed now, not when the loader draws it.
        return iter([epoch * self.length + i for i in positions[first:]])

    def __len__(self) -> int:
        return self.per_replica


class PairedImageDataset(Dataset):
    """Paired evaluation images: a degraded (source-domain) image and its clean reference.

    Item ``i`` is ``{"source": x, "clean": y, "index": i, "name": str}``, images float32
    ``(3, H, W)`` in [0, 1]. ``name`` is ``names[i]``, else the degraded file's stem, else ``i``.
    With ``crop`` set, both are center-cropped to at most ``crop``×``crop`` (fast validation);
    otherwise full resolution.
    """

    def __init__(
        self,
        degraded: Sequence[ImageItem],
        clean: Sequence[ImageItem],
        crop: int | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(degraded) != len(clean):
            raise ValueError(
                f"paired set needs as many clean as degraded images; got {len(clean)} and {len(degraded)}"
            )
        self.degraded = list(degraded)
        self.clean = list(clean)
        self.crop = crop
        if names is None:
            names = [_name(item, index) for index, item in enumerate(self.degraded)]
        if len(names) != len(self.degraded):
            raise ValueError(f"need one name per image; got {len(names)} for {len(self.degraded)}")
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.degraded)

    def _center_crop(self, image: Tensor) -> Tensor:
        if self.crop is None:
            return image
        height, width = image.shape[-2:]
        return center_crop(image, [min(self.crop, height), min(self.crop, width)])

    def __getitem__(self, index: int) -> dict[str, Tensor | int | str]:
        source = _as_uint8(self.degraded[index])
        clean = _as_uint8(self.clean[index])
        if source.shape != clean.shape:
            raise ValueError(
                f"paired images differ in size: {self.degraded[index]} is {tuple(source.shape)}, "
                f"{self.clean[index]} is {tuple(clean.shape)}"
            )
        return {
            "source": _to_float(self._center_crop(source)),
            "clean": _to_float(self._center_crop(clean)),
            "index": index,
            "name": self.names[index],
        }


class ImageFolderDataset(Dataset):
    """Every image below ``folder`` at full resolution, for ``wespe predict`` on your photos.

    Item ``i`` is ``{"source": x, "index": i, "name": str}``, ``x`` float32 ``(3, H, W)`` in
    [0, 1]. ``name`` is the file's path below ``folder`` without its suffix (``"trip/0001"``), so
    predictions keep the folder's layout and files of the same stem in different folders stay
    apart. Files of the same stem in one folder keep their suffix in the name, ``.`` written as
    ``_`` (``trip/0001_jpg``, ``trip/0001_png``), so each gets its own prediction.

    Files that cannot be decoded are skipped, with a warning that lists them.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no usable image.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.paths = scan_images(self.folder).usable
        stems = Counter(path.relative_to(self.folder).with_suffix("") for path in self.paths)
        self.names = [
            stem.as_posix() if stems[stem] == 1 else f"{stem.as_posix()}_{path.suffix[1:]}"
            for path in self.paths
            for stem in [path.relative_to(self.folder).with_suffix("")]
        ]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor | int | str]:
        path = self.paths[index]
        return {
            "source": _to_float(load_image(path)),
            "index": index,
            "name": self.names[index],
        }


def paired_by_name(
    degraded_dir: str | os.PathLike, clean_dir: str | os.PathLike
) -> tuple[list[Path], list[Path]]:
    """Match the usable images of two folders (:func:`scan_images`) by their path relative to
    the folder. A pair with an unusable file on either side is left out (and reported).

    Raises:
        FileNotFoundError: a degraded image has no clean twin at all; the message names it.
    """
    degraded_dir, clean_dir = Path(degraded_dir), Path(clean_dir)
    degraded_scan, clean_scan = scan_images(degraded_dir), scan_images(clean_dir)
    clean_files = {p.relative_to(clean_dir) for p in clean_scan.files}
    missing = [p for p in degraded_scan.usable if p.relative_to(degraded_dir) not in clean_files]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {degraded_dir} have no counterpart of the same name in "
            f"{clean_dir}, e.g. {missing[0].relative_to(degraded_dir)}"
        )
    clean_by_name = {p.relative_to(clean_dir): p for p in clean_scan.usable}
    pairs = [
        (p, clean_by_name[p.relative_to(degraded_dir)])
        for p in degraded_scan.usable
        if p.relative_to(degraded_dir) in clean_by_name
    ]
    if not pairs:
        raise FileNotFoundError(f"no usable pair of images in {degraded_dir} and {clean_dir}")
    return [d for d, _ in pairs], [c for _, c in pairs]


def dped_folders(root: str | os.PathLike, phone: str) -> dict[str, Path]:
    """The DPED dataset's folders for one phone.

    ``root/<phone>/training_data/{<phone>,canon}`` (training patches, aligned in the dataset
    but used here as two unpaired streams) and ``root/<phone>/test_data/patches/{<phone>,canon}``
    (the paired test patches).
    """
    base = Path(root) / phone
    return {
        "source": base / "training_data" / phone,
        "target": base / "training_data" / "canon",
        "val_source": base / "test_data" / "patches" / phone,
        "val_clean": base / "test_data" / "patches" / "canon",
    }
