"""Data loading: training patches from full-size photos, with and without the decoded-image cache.

Measures, each a median over ``--repeats``:

a. **folder**: ``--photos`` JPEGs per domain of ``--megapixels`` (default 3 of 4000x3000, 12 MP;
   embedded photos scaled up and saved at quality 95 in a temporary folder), read by
   :class:`~wespe.data.FolderDataModule` on one core (``num_workers=0``, batch 30 of 100 px
   patches): (source, target) pairs per second decoding the photo for every patch
   (``decode_cache=false``, the only path before the cache), then from the cache once it is
   filled (the one-time fill is reported apart), warm (the entries in the page cache, as right
   after filling) and cold (their pages evicted before each repeat, as after a reboot), and the
   speed-up of the warm cache over decoding.
b. **embedded**: the quickstart's data (:class:`~wespe.data.EmbeddedSampleDataModule`, patch
   64, batch 8, in memory), pairs per second, one core.
c. **workers**: batches per second that ``--workers`` DataLoader processes deliver from the
   cached folder (batch 30 of 100 px), the first batch (the workers' start) left out.
d. **training**: the share of training time spent waiting for data: the quickstart model
   (configs/quickstart.yaml) trained ``--iterations`` iterations after ``--warmup`` on its own
   data, and on the cached folder (patch 64, batch 8: the same model and step) with 0 and
   ``--workers`` workers. Per batch, the wait is the time from the previous batch's end to this
   batch's start (fetching the batch, and the loop's own overhead), the total the time from the
   previous batch's end to this one's; the share is sum(wait) / sum(total).

Parts a-c compute on one torch thread (figures per core, as one core feeds each GPU); part d
trains with torch's default threads, as ``wespe fit`` does.
The cache lives in the temporary folder too: nothing is written outside it but the JSON.

    python benchmarks/data.py                  # about 80 s on 2 cores
    python benchmarks/data.py --quick          # fewer repeats and iterations: about 40 s
    python benchmarks/data.py --quick --megapixels 0.3   # tiny photos (the test's run)

Prints a Markdown table and writes ``<out>/data.json``. ``main(argv)`` returns the results, for a
driver script.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_line, markdown, training_only_trainer  # noqa: E402

from wespe.data import FolderDataModule  # noqa: E402
from wespe.data.datasets import EMBEDDED_PHOTOS, embedded_photo  # noqa: E402


def _photo(name: str, width: int, height: int) -> np.ndarray:
    """An embedded photo scaled (bicubic) to cover ``width`` x ``height`` and center-cropped to
    it: ``(height, width, 3)`` uint8, a phone-sized photo with real content."""
    photo = embedded_photo(name, max_size=None).permute(1, 2, 0).numpy()
    scale = max(width / photo.shape[1], height / photo.shape[0])
    size = (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale)))
    image = Image.fromarray(photo).resize(size, Image.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def write_photos(folder: Path, per_domain: int, megapixels: float) -> tuple[int, int]:
    """``per_domain`` JPEGs (quality 95) of 4:3 photos of about ``megapixels`` in ``folder/source``
    and ``folder/target``, each domain different embedded photos; returns (width, height)."""
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    jobs = [
        (folder / domain / f"{index}_{name}.jpg", name)
        for domain, offset in (("source", 0), ("target", 1))
        for index in range(per_domain)
        for name in [EMBEDDED_PHOTOS[(2 * index + offset) % len(EMBEDDED_PHOTOS)]]
    ]
    for domain in ("source", "target"):
        (folder / domain).mkdir(parents=True)

    def write(job: tuple[Path, str]) -> None:
        Image.fromarray(_photo(job[1], width, height)).save(job[0], quality=95)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, jobs))
    return width, height


def _evict(folder: Path) -> None:
    """Drop ``folder``'s ``.npy`` files from the page cache (the next read comes from disk), after
    closing this process's memory maps of them (mapped pages are never dropped)."""
    from wespe.data.datasets import _open_array

    _open_array.cache_clear()
    gc.collect()
    for path in folder.rglob("*.npy"):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def pairs_per_second(
    data: pl.LightningDataModule, batches: int, repeats: int, before: object = None
) -> list[float]:
    """(source, target) pairs per second of ``data``'s training loader, one value per repeat:
    ``batches`` batches from a new iterator each time (``before()``, if given, runs untimed
    before each). With workers, the first batch (their start) is fetched before the clock."""
    rates = []
    for _ in range(repeats):
        if before is not None:
            before()
        iterator = iter(data.train_dataloader())
        if data.num_workers > 0:
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * data.batch_size / (time.perf_counter() - start))
        del iterator
        gc.collect()  # ends the workers of this repeat's loader before the next one starts
    return rates


class DataWait(pl.Callback):
    """Per batch: the wait (previous batch's end to this one's start) and the total (previous
    batch's end to this one's end). The first batch has no previous end and is left out."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.totals: list[float] = []
        self._end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._end is not None:
            self.waits.append(time.perf_counter() - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._end is not None:
            self.totals.append(now - self._end)
        self._end = now


def quickstart_model_and_data() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The quickstart's model and data, as ``wespe fit -c configs/quickstart.yaml`` builds them."""
    from wespe.cli import cli_main

    cli = cli_main(
        ["-c", str(REPO / "configs" / "quickstart.yaml"), "--trainer.logger=false"], run=False
    )
    return cli.model, cli.datamodule


def wait_share(
    data: pl.LightningDataModule, iterations: int, warmup: int, root: Path
) -> dict[str, float]:
    """Train the quickstart model on ``data`` for ``warmup + iterations`` iterations; the share
    of the last ``iterations`` spent waiting for data, and seconds per iteration."""
    pl.seed_everything(0, verbose=False)
    model, _ = quickstart_model_and_data()
    wait = DataWait()
    # WESPE makes two optimizer steps per iteration; Lightning counts steps.
    steps = model.OPTIMIZER_STEPS_PER_ITERATION * (warmup + iterations + 1)
    trainer = training_only_trainer(root, steps, [wait])
    trainer.fit(model, data)
    waits, totals = wait.waits[warmup:], wait.totals[warmup:]
    return {
        "wait_fraction": sum(waits) / sum(totals),
        "seconds_per_iteration": statistics.median(totals),
        "wait_seconds_per_iteration": statistics.median(waits),
        "iterations": len(totals),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=3, help="JPEGs per domain")
    parser.add_argument("--megapixels", type=float, default=12, help="per photo (4:3)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 2)")
    parser.add_argument(
        "--uncached_repeats",
        type=int,
        default=None,
        help="of one batch decoding per patch (slow: ~10 s at 12 MP); default 3 (--quick: 1)",
    )
    parser.add_argument(
        "--batches", type=int, default=None, help="per repeat, default 20 (quick 5)"
    )
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for c and d")
    parser.add_argument("--iterations", type=int, default=None, help="default 30 (--quick: 8)")
    parser.add_argument("--warmup", type=int, default=None, help="default 5 (--quick: 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and iterations")
    parser.add_argument("--out", default="runs/benchmark/performance", help="folder for data.json")
    options = parser.parse_args(argv)
    quick = options.quick
    for name, full, small in (
        ("repeats", 3, 2),
        ("uncached_repeats", 3, 1),
        ("batches", 20, 5),
        ("iterations", 30, 8),
        ("warmup", 5, 2),
    ):
        if getattr(options, name) is None:
            setattr(options, name, small if quick else full)
    return options


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark (``argv``: the command line's arguments); returns what it writes."""
    options = parse(argv)
    threads = torch.get_num_threads()
    # Parts a-c on one core, as on a GPU node one core feeds each GPU: figures per core.
    torch.set_num_threads(1)
    options.training_threads = threads
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = measure(options)
    finally:
        torch.set_num_threads(threads)  # a calling script keeps its own setting
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.json").write_text(json.dumps(results, indent=2))
    print(results["table"])
    return results


def measure(options: argparse.Namespace) -> dict:
    """Parts a-d (see the module docstring); the results with their Markdown table."""
    started = time.perf_counter()
    results: dict = {"machine": machine_line(), "settings": vars(options).copy()}
    with tempfile.TemporaryDirectory(prefix="wespe_data_benchmark_") as temporary:
        folder = Path(temporary)
        width, height = write_photos(folder, options.photos, options.megapixels)
        jpeg_bytes = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
        print(f"{2 * options.photos} photos of {width}x{height} written", flush=True)

        def folder_data(cache: bool, workers: int = 0, patch: int = 100, batch: int = 30):
            return FolderDataModule(
                folder / "source",
                folder / "target",
                patch_size=patch,
                batch_size=batch,
                patches_per_epoch=batch * 1000,
                num_workers=workers,
                decode_cache=cache,
                cache_dir=str(folder / "cache"),
            )

        # a. One core: the data pipeline in this process.
        uncached = folder_data(cache=False)
        uncached.setup("fit")
        slow = pairs_per_second(uncached, 1, options.uncached_repeats)
        print(f"decoding per patch: {statistics.median(slow):.1f} pairs/s", flush=True)

        cached = folder_data(cache=True)
        start = time.perf_counter()
        cached.prepare_data()
        cached.setup("fit")
        fill_seconds = time.perf_counter() - start
        cache_bytes = sum(p.stat().st_size for p in (folder / "cache").rglob("*.npy"))
        start = time.perf_counter()
        again = folder_data(cache=True)
        again.prepare_data()
        again.setup("fit")
        reuse_seconds = time.perf_counter() - start
        warm = pairs_per_second(cached, options.batches, options.repeats)
        cold = pairs_per_second(
            cached, options.batches, options.repeats, before=lambda: _evict(folder / "cache")
        )
        print(
            f"cache: filled in {fill_seconds:.1f} s, {statistics.median(warm):.0f} pairs/s warm, "
            f"{statistics.median(cold):.0f} cold",
            flush=True,
        )
        results["folder"] = {
            "photos_per_domain": options.photos,
            "size": f"{width}x{height}",
            "megapixels": width * height / 1e6,
            "jpeg_mib": jpeg_bytes / 2**20,
            "patch_size": 100,
            "batch_size": 30,
            "uncached_pairs_per_second": statistics.median(slow),
            "uncached_runs": slow,
            "fill_seconds": fill_seconds,
            "reuse_setup_seconds": reuse_seconds,
            "cache_gib": cache_bytes / 2**30,
            "cached_pairs_per_second": statistics.median(warm),
            "cached_runs": warm,
            "cold_pairs_per_second": statistics.median(cold),
            "cold_runs": cold,
            "speedup": statistics.median(warm) / statistics.median(slow),
            "cold_speedup": statistics.median(cold) / statistics.median(slow),
        }

        # b. The quickstart's data: the embedded sample, in memory.
        _, embedded = quickstart_model_and_data()
        embedded.setup("fit")
        rates = pairs_per_second(embedded, options.batches * 4, options.repeats)
        results["embedded"] = {
            "patch_size": embedded.patch_size,
            "batch_size": embedded.batch_size,
            "pairs_per_second": statistics.median(rates),
            "runs": rates,
        }
        print(f"embedded sample: {statistics.median(rates):.0f} pairs/s", flush=True)

        # c. Worker processes over the cached folder.
        parallel = folder_data(cache=True, workers=options.workers)
        parallel.setup("fit")
        rates = pairs_per_second(parallel, options.batches, options.repeats)
        results["workers"] = {
            "workers": options.workers,
            "batch_size": 30,
            "batches_per_second": statistics.median(rates) / 30,
            "pairs_per_second": statistics.median(rates),
            "runs": rates,
        }
        print(
            f"{options.workers} workers: {statistics.median(rates) / 30:.1f} batches/s", flush=True
        )

        # d. Training: the share of time spent waiting for data, with the default threads.
        torch.set_num_threads(options.training_threads)
        runs = [("quickstart: embedded sample", 0, embedded)]
        for workers in (0, options.workers):
            data = folder_data(cache=True, workers=workers, patch=64, batch=8)
            runs.append((f"quickstart model, cached {width}x{height} folder", workers, data))
        results["training"] = []
        for name, workers, data in runs:
            share = wait_share(data, options.iterations, options.warmup, folder / "runs")
            results["training"].append({"data": name, "workers": workers, **share})
            print(f"{name}, {workers} workers: {share}", flush=True)
    results["seconds"] = time.perf_counter() - started
    results["table"] = table(results)
    return results


def table(results: dict) -> str:
    """The results as a Markdown table under a title naming the machine and settings."""
    folder, embedded, workers = results["folder"], results["embedded"], results["workers"]
    photos = f"{2 * folder['photos_per_domain']} JPEGs of {folder['size']} (q95)"
    rows = [
        ["a", f"{photos}, decoding the photo per patch (`decode_cache=false`)", "0",
         f"{folder['uncached_pairs_per_second']:.1f} pairs/s", "1x"],
        ["a", f"{photos}, decoded-image cache, warm (fill once: {folder['fill_seconds']:.1f} s, "
         f"{folder['cache_gib']:.2f} GiB; a later setup: {folder['reuse_setup_seconds']:.2f} s)",
         "0", f"{folder['cached_pairs_per_second']:.0f} pairs/s", f"{folder['speedup']:.0f}x"],
        ["a", f"{photos}, decoded-image cache, cold (pages evicted)", "0",
         f"{folder['cold_pairs_per_second']:.0f} pairs/s", f"{folder['cold_speedup']:.0f}x"],
        ["b", f"embedded sample (quickstart data, patch {embedded['patch_size']}, "
         f"batch {embedded['batch_size']})", "0", f"{embedded['pairs_per_second']:.0f} pairs/s", ""],
        ["c", f"{photos}, cache, batch 30", str(workers["workers"]),
         f"{workers['batches_per_second']:.1f} batches/s ({workers['pairs_per_second']:.0f} pairs/s)",
         ""],
    ]  # fmt: skip
    for run in results["training"]:
        rows.append(
            ["d", f"training wait: {run['data']} (patch 64, batch 8)", str(run["workers"]),
             f"{100 * run['wait_fraction']:.1f} % waiting ({1e3 * run['wait_seconds_per_iteration']:.1f} "
             f"of {1e3 * run['seconds_per_iteration']:.0f} ms per iteration)", ""]
        )  # fmt: skip
    return markdown(
        f"Training data speed, CPU only: {machine_line()}, this process on one torch thread; "
        f"patch 100, batch 30 unless said; medians of {results['settings']['repeats']} repeats "
        f"({results['settings']['uncached_repeats']} decoding per patch); "
        f"{results['seconds']:.0f} s in all",
        ["part", "data", "workers", "speed", "vs decoding"],
        rows,
    )


if __name__ == "__main__":
    main()
