"""Full-resolution enhancement: seams, peak memory and speed of ``wespe enhance``.

``seams``: a trained checkpoint's generator on photos scaled to ``--megapixels``, tiled several
ways, against the same generator on the whole photo at once (the reference; it needs a few GiB
at 12 MP). Per photo and method: the largest and the mean absolute difference to the reference
in 8-bit levels, and the seconds taken. Methods: naive tiling as Real-ESRGAN does it (each tile
normalised with its own statistics, 10 px of context, no blending), the same with the full
context and blended overlaps, and wespe's (whole-photo statistics shared by every tile).
The default photos are the validation ones; the README reports the test photos
(``--photos astronaut rocket motorcycle_left``).

``memory``: ``wespe enhance`` in a child process on synthetic photos of ``--sizes`` megapixels
(an embedded photo scaled up, saved as JPEG quality 95), for the quickstart's and the paper's
generator widths (random weights: the cost does not depend on them): peak resident memory of
the child (``getrusage`` through ``os.wait4`` in a small go-between process, the photo and
everything else included), wall seconds, and megapixels per second as the command reports them.

    python benchmarks/enhance.py seams --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt
    python benchmarks/enhance.py memory --sizes 12 48

Each writes ``<out>/enhance_<part>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_line, markdown  # noqa: E402

from wespe.data.datasets import embedded_photo  # noqa: E402
from wespe.inference import TiledEnhancer, load_generator  # noqa: E402

#: Generator widths measured for memory: (name, channels, residual blocks).
GENERATORS = {"quickstart": (16, 2), "paper": (64, 4)}


def _scaled_photo(name: str, megapixels: float) -> torch.Tensor:
    """An embedded photo scaled (bicubic) to about ``megapixels``, as (3, H, W) uint8."""
    photo = embedded_photo(name, max_size=None)
    height, width = photo.shape[-2:]
    scale = (megapixels * 1e6 / (height * width)) ** 0.5
    image = Image.fromarray(photo.permute(1, 2, 0).numpy())
    image = image.resize((round(width * scale), round(height * scale)), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def seams(options: argparse.Namespace) -> dict:
    torch.set_grad_enabled(False)
    network = load_generator(options.ckpt_path)
    methods = {
        "naive (own statistics, pad 10, no blending)": {
            "statistics": "tile",
            "tile_pad": 10,
            "tile_overlap": 0,
        },
        "own statistics, full context, blended": {"statistics": "tile"},
        "wespe: whole-photo statistics, full context, blended": {},
    }
    rows = []
    for name in options.photos:
        photo = _scaled_photo(name, options.megapixels)
        start = time.perf_counter()
        reference = (network(photo[None].float() / 255)[0].clamp(0, 1) * 255).round()
        untiled_seconds = time.perf_counter() - start
        height, width = photo.shape[-2:]
        print(f"{name}: {width}x{height}, untiled {untiled_seconds:.1f} s", flush=True)
        for method, settings in methods.items():
            enhancer = TiledEnhancer(network, tile_size=options.tile_size, **settings)
            start = time.perf_counter()
            result = enhancer(photo)
            seconds = time.perf_counter() - start
            difference = (result.float() - reference).abs()
            rows.append(
                {
                    "photo": name,
                    "size": f"{width}x{height}",
                    "method": method,
                    "max_levels": difference.max().item(),
                    "mean_levels": difference.mean().item(),
                    "p999_levels": difference.flatten()[::7].quantile(0.999).item(),
                    "seconds": seconds,
                    "untiled_seconds": untiled_seconds,
                }
            )
            print(f"  {method}: {rows[-1]}", flush=True)
    table = markdown(
        f"Tiled against untiled, {options.megapixels:g} MP, tile {options.tile_size} px, "
        f"{options.ckpt_path}; {machine_line()}",
        ["photo", "method", "max diff (8-bit levels)", "mean diff", "99.9th percentile",
         "seconds (untiled)"],
        [
            [r["photo"], r["method"], f"{r['max_levels']:.0f}", f"{r['mean_levels']:.3f}",
             f"{r['p999_levels']:.0f}", f"{r['seconds']:.1f} ({r['untiled_seconds']:.1f})"]
            for r in rows
        ],
    )  # fmt: skip
    return {"rows": rows, "table": table}


def _checkpoint(folder: Path, channels: int, blocks: int) -> Path:
    """A real Lightning checkpoint of the quickstart model with the given generator width."""
    from wespe.cli import cli_main

    path = folder / f"generator_{channels}x{blocks}.ckpt"
    network = "--model.init_args.generator.init_args"
    cli = cli_main(
        [
            "-c", str(REPO / "configs" / "quickstart.yaml"),
            f"{network}.channels={channels}", f"{network}.num_blocks={blocks}",
            f"{network}.init=default", "--trainer.logger=false",
            f"--trainer.default_root_dir={folder}",
        ],
        run=False,
    )  # fmt: skip
    cli.trainer.strategy.connect(cli.model)
    cli.trainer.save_checkpoint(path)
    return path


#: Runs its arguments as a child and prints the child's peak RSS (KiB) last. A go-between:
#: Linux carries a process's high-water mark across ``exec``, so a child started straight from
#: a large process (a driver that trained models first) would report that process's memory.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(f"peak_rss_kib={usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_rss(command: list[str]) -> tuple[int, float, str]:
    """Run ``command``; its peak resident memory in bytes, wall seconds and output."""
    start = time.perf_counter()
    launched = [sys.executable, "-c", _LAUNCHER, *command]
    done = subprocess.run(launched, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}")
    peak = int(re.findall(r"peak_rss_kib=(\d+)", done.stdout)[-1])
    return peak * 1024, seconds, done.stdout


def memory(options: argparse.Namespace) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for size in options.sizes:
            photo = _scaled_photo("astronaut", size)
            path = folder / f"photo_{size:g}mp.jpg"
            Image.fromarray(photo.permute(1, 2, 0).numpy()).save(path, quality=95)
            height, width = photo.shape[-2:]
            del photo
            for name in options.generators:
                checkpoint = _checkpoint(folder, *GENERATORS[name])
                command = [
                    sys.executable, "-m", "wespe", "enhance", str(path),
                    f"--ckpt_path={checkpoint}", f"--output_dir={folder / name}",
                    "--overwrite", "--quiet", "--device=cpu",
                ]  # fmt: skip
                peak, seconds, output = _peak_rss(command)
                rate = float(re.search(r"\(([\d.]+) MP/s\)", output).group(1))
                rows.append(
                    {
                        "megapixels": width * height / 1e6,
                        "size": f"{width}x{height}",
                        "generator": f"{name} ({GENERATORS[name][0]} channels, "
                        f"{GENERATORS[name][1]} blocks)",
                        "peak_rss_gib": peak / 2**30,
                        "wall_seconds": seconds,
                        "megapixels_per_second": rate,
                    }
                )
                print(rows[-1], flush=True)
    table = markdown(
        f"`wespe enhance` of one JPEG, CPU; {machine_line()}",
        ["photo", "generator", "peak RSS (GiB)", "wall (s)", "MP/s"],
        [
            [f"{r['megapixels']:.0f} MP ({r['size']})", r["generator"], f"{r['peak_rss_gib']:.2f}",
             f"{r['wall_seconds']:.0f}", f"{r['megapixels_per_second']:.2f}"]
            for r in rows
        ],
    )  # fmt: skip
    return {"rows": rows, "table": table}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    seam = parts.add_parser("seams", help="tiled against untiled on scaled photos")
    seam.add_argument("--ckpt_path", required=True)
    seam.add_argument("--photos", nargs="+", default=["chelsea", "coffee"])
    seam.add_argument("--megapixels", type=float, default=12)
    seam.add_argument("--tile_size", type=int, default=512)
    mem = parts.add_parser("memory", help="peak memory and speed of `wespe enhance`")
    mem.add_argument("--sizes", nargs="+", type=float, default=[12, 48])
    mem.add_argument("--generators", nargs="+", choices=list(GENERATORS), default=list(GENERATORS))
    parser.add_argument("--out", default="runs/benchmark", help="folder for the JSON")
    options = parser.parse_args(argv)
    result = seams(options) if options.part == "seams" else memory(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"enhance_{options.part}.json").write_text(json.dumps(result, indent=2))
    print(result["table"])
    return result


if __name__ == "__main__":
    main()
