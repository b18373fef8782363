"""``wespe enhance``: your photos, at full resolution, through a trained generator.

``wespe enhance INPUT... --ckpt_path CKPT -o OUTDIR`` takes files, folders (searched
recursively) and glob patterns of JPEG, PNG, TIFF and WebP photos, and writes each result under
``OUTDIR`` with the same relative name and format (``--format`` changes it), upright (EXIF
orientation applied), with the photo's ICC profile and EXIF kept. Photos of any size go through
:class:`~wespe.inference.TiledEnhancer`: memory is bounded by the tile size, and the result equals
the whole photo in one pass. A file that cannot be read or written is reported and skipped; an
existing output is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wespe.inference import TiledEnhancer, load_generator
from wespe.photos import PhotoError, find_photos, format_name, output_path, read_photo, write_photo

__all__ = ["EnhanceSummary", "enhance_main", "enhance_photos"]


@dataclass
class EnhanceSummary:
    """What a call of :func:`enhance_photos` did."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)  # outputs kept (no --overwrite)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # input and why
    megapixels: float = 0.0  # of the photos enhanced
    seconds: float = 0.0

    def report(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"enhanced {len(self.written)} photo(s), {self.megapixels:.1f} MP in "
            f"{self.seconds:.1f} s ({rate:.3g} MP/s); {len(self.existing)} kept as they were "
            f"(output exists; --overwrite replaces), {len(self.failed)} failed"
            + (":" if self.failed else "")
        ]
        lines += [f"  {path}: {why}" for path, why in self.failed]
        return "\n".join(lines)


def enhance_photos(
    inputs: Sequence[str | os.PathLike],
    enhancer: TiledEnhancer,
    output_dir: str | os.PathLike,
    format: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
) -> EnhanceSummary:
    """Enhance every photo ``inputs`` names into ``output_dir`` (see the module's docstring).

    Args:
        inputs: files, folders and glob patterns.
        enhancer: the tiled generator (e.g. ``TiledEnhancer(load_generator(ckpt))``).
        output_dir: where results go, under each photo's relative name.
        format: output format for every photo (``jpg``, ``png``, ``tiff``, ``webp``); None keeps
            each photo's own.
        quality: JPEG and WebP quality, 1-100.
        overwrite: replace existing outputs (default: keep them and report them).
        progress: show progress bars (photos, and tiles of the current photo) on stderr.

    Returns:
        The summary; failures are listed in it, not raised.

    Raises:
        FileNotFoundError, ValueError: an input names nothing, two inputs give one output name,
            or an option is invalid; nothing is written then.
    """
    from tqdm.auto import tqdm

    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1-100; got {quality}")
    target_format = format_name(format) if format is not None else None
    photos = find_photos(inputs, output_format=target_format)  # name clashes fail here
    output_dir = Path(output_dir)
    summary = EnhanceSummary()
    start = time.perf_counter()
    files = tqdm(photos, desc="photos", unit="photo", disable=not progress, dynamic_ncols=True)
    for path, relative in files:
        target = output_path(relative, output_dir, target_format)
        if target.exists() and not overwrite:
            summary.existing.append(target)
            continue
        try:
            photo = read_photo(path)
            height, width = photo.pixels.shape[-2:]
            with tqdm(
                desc=f"{relative} ({width}x{height})",
                unit="tile",
                leave=False,
                disable=not progress,
                dynamic_ncols=True,
            ) as tiles:

                def advance(done: int, total: int, tiles: tqdm = tiles) -> None:
                    tiles.total = total
                    tiles.update(done - tiles.n)

                enhanced = enhancer(photo.pixels, progress=advance)
            write_photo(
                target,
                enhanced,
                target_format or photo.format,
                quality=quality,
                icc_profile=photo.icc_profile,
                exif=photo.exif,
                overwrite=overwrite,
                dpi=photo.dpi,
            )
        except (PhotoError, OSError) as error:
            summary.failed.append((path, str(error)))
            continue
        finally:
            photo = enhanced = None  # noqa: F841 - free the pixels before the next photo
        summary.written.append(target)
        summary.megapixels += height * width / 1e6
        files.set_postfix_str(f"{summary.megapixels:.1f} MP")
    summary.seconds = time.perf_counter() - start
    return summary


def enhance_main(args: Sequence[str]) -> int:
    """``wespe enhance INPUT... --ckpt_path CKPT -o OUTDIR [options]``; returns the exit status
    (1 if any photo failed, the others are written)."""
    parser = argparse.ArgumentParser(
        prog="wespe enhance",
        description="Enhance photos at full resolution with a trained generator. Writes each "
        "result under OUTDIR with its relative name and format, upright, ICC profile and EXIF "
        "kept; existing outputs are kept unless --overwrite.",
    )
    parser.add_argument("inputs", nargs="+", help="photo files, folders (recursive) or globs")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `wespe fit`")
    parser.add_argument("-o", "--output_dir", required=True, help="folder for the results")
    parser.add_argument("--format", help="output format for all photos: jpg, png, tiff, webp")
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (95)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--tile_size", type=int, default=512, help="tile side, 0: untiled (512)")
    parser.add_argument("--tile_overlap", type=int, default=32, help="blended overlap (32)")
    parser.add_argument(
        "--tile_pad", type=int, default=None, help="context per tile (the receptive radius)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto)")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "fp16"])
    parser.add_argument(
        "--no_ema", action="store_true", help="use G's weights, not their moving average"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    options = parser.parse_args(args)
    try:
        enhancer = TiledEnhancer(
            load_generator(options.ckpt_path, use_ema=not options.no_ema),
            tile_size=options.tile_size,
            tile_overlap=options.tile_overlap,
            tile_pad=options.tile_pad,
            device=options.device,
            precision=options.precision,
        )
        summary = enhance_photos(
            options.inputs,
            enhancer,
            options.output_dir,
            format=options.format,
            quality=options.quality,
            overwrite=options.overwrite,
            progress=not options.quiet,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"wespe enhance: error: {error}\n")
    print(summary.report(), file=sys.stderr if summary.failed else sys.stdout)
    return 1 if summary.failed else 0
