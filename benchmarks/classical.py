"""Classical baselines on the benchmark's photos: what auto-levels and friends reach without
learning anything, under each degradation.

Every method is a :class:`~wespe.classical.ClassicalEnhancer` evaluated exactly as a trained
generator is (``EnhancerModule(generator=...)`` through Lightning's ``test``/``validate``, the
same figures at full resolution), on a fold's test photos or on the validation photos.
``benchmarks/quality.py`` adds these rows to every table it writes.

    python benchmarks/classical.py                       # every degradation, test photos, 3 folds
    python benchmarks/classical.py --stage val --tune    # the parameter search, validation only

The two parameters the methods have beyond the libraries' defaults, the gamma's target mean luma
and the bilateral filter's color sigma, were chosen with ``--tune`` on the validation photos
under the ``phone`` degradation (the best detail figure for the bilateral filter, the best PSNR
for the gamma), never on test photos.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from wespe.classical import ClassicalEnhancer
from wespe.module import EnhancerModule

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import script  # noqa: E402

#: The classical methods, name -> steps of :class:`~wespe.classical.ClassicalEnhancer`
#: (the targets and sigma chosen on validation with ``--tune``).
METHODS: dict[str, list[tuple[str, dict]]] = {
    "auto-levels": [("auto_levels", {})],
    "auto-levels + gamma": [("auto_levels", {}), ("gamma_to_mean", {"target": 0.45})],
    "gray world + auto-levels": [("gray_world", {}), ("auto_levels", {"per_channel": False})],
    "CLAHE (kornia)": [("clahe", {})],
    "histogram matching": [("match_histograms", {})],
    "auto-levels + bilateral": [("auto_levels", {}), ("bilateral_denoise", {"sigma_color": 0.3})],
}
#: What ``--tune`` searches (on validation): name -> (step to vary, option, values).
TUNED = {
    "auto-levels + gamma": (1, "target", (0.35, 0.4, 0.45, 0.5, 0.55)),
    "auto-levels + bilateral": (1, "sigma_color", (0.05, 0.1, 0.2, 0.3, 0.5)),
}


def _quality():  # noqa: ANN202 - the module of a script beside this one
    return script("quality")


def fold_data(
    configs: list[Path], fold: dict, degradation: str, val_photos: tuple[str, ...] | None = None
) -> pl.LightningDataModule:
    """The data module of ``wespe fit -c configs...`` for one fold and degradation, evaluating at
    full resolution."""
    from wespe.cli import cli_main

    quality = _quality()
    args = [arg for config in configs for arg in ("-c", str(config))]
    args += quality.fold_overrides(fold) + quality.degradation_overrides(degradation)
    args += ["--data.init_args.eval_crop=null"]
    if val_photos is not None:
        args.append(f"--data.init_args.val_photos=[{','.join(val_photos)}]")
    return cli_main(args, run=False).datamodule


def target_pixels(data: pl.LightningDataModule) -> torch.Tensor:
    """The target domain's training pixels side by side, ``(3, 1, N)`` in [0, 1]: histogram
    matching's reference (the only data an unpaired classical method may use)."""
    _, target = data.load_images()
    return torch.cat([image.float().flatten(1) / 255 for image in target], 1)[:, None]


def evaluate(
    enhancer: torch.nn.Module, data: pl.LightningDataModule, stage: str
) -> dict[str, float]:
    """The figures of ``wespe test``/``validate`` for a weightless enhancer."""
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module = EnhancerModule(generator=enhancer)
    (trainer.test if stage == "test" else trainer.validate)(module, datamodule=data, verbose=False)
    return {
        k.removeprefix(f"{stage}/"): float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(f"{stage}/")
    }


def classical_figures(
    data: pl.LightningDataModule, stage: str, methods: dict | None = None
) -> dict[str, dict[str, float]]:
    """Figures of every method in ``methods`` (default :data:`METHODS`) on the data module's
    validation or test photos; each also carries the input's (``*_input``)."""
    reference = target_pixels(data)
    return {
        name: evaluate(ClassicalEnhancer(steps, reference=reference), data, stage)
        for name, steps in (methods or METHODS).items()
    }


def clean_noise(data: pl.LightningDataModule, stage: str) -> float:
    """The clean photos' own noise figure (8-bit levels): what an enhancer should come down to."""
    from wespe.metrics import noise_level

    data.setup(stage if stage == "test" else "validate")
    dataset = data.test_set if stage == "test" else data.val_set
    levels = [float(noise_level(item["clean"][None])) for item in dataset]
    return sum(levels) / len(levels)


def tune(configs: list[Path], degradation: str) -> dict[str, list[tuple[float, dict]]]:
    """Figures on the validation photos for each value in :data:`TUNED`."""
    quality = _quality()
    data = fold_data(configs, quality.FOLDS[0], degradation)
    found = {}
    for name, (step, option, values) in TUNED.items():
        rows = []
        for value in values:
            steps = [(s, dict(o)) for s, o in METHODS[name]]
            steps[step][1][option] = value
            figures = classical_figures(data, "val", {name: steps})[name]
            rows.append((value, figures))
            print(
                f"{name}: {option}={value}: PSNR {figures['psnr']:.2f}, detail "
                f"{figures['detail_psnr']:.2f} (input {figures['detail_psnr_input']:.2f}), "
                f"CIEDE2000 {figures['ciede2000']:.2f}"
            )
        found[name] = rows
    return found


def table(record: dict) -> str:
    """Markdown: for each degradation, every method's mean over the folds."""
    lines = [
        "| degradation | method | PSNR (dB) | SSIM | CIEDE2000 | detail PSNR (dB) | noise (levels) | "
        "contrast ratio | sharpness ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    quality = _quality()
    for degradation, entry in record["degradations"].items():
        first = next(iter(entry["methods"].values()))
        rows = {"identity (degraded input)": quality.input_figures(first)}
        rows.update(entry["methods"])
        for name, m in rows.items():
            lines.append(
                f"| {degradation} | {name} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                f"{m['ciede2000']:.2f} | {m['detail_psnr']:.2f} | {m['noise']:.1f} | "
                f"{m['contrast_ratio']:.2f} | {m['sharpness_ratio']:.2f} |"
            )
    noise = sorted({round(e["clean_noise"], 1) for e in record["degradations"].values()})
    lines.append(
        f"\nThe clean photos' own noise figure: {' / '.join(map(str, noise))} levels; "
        "detail PSNR of the clean photos themselves: 100 (exact)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    quality = _quality()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, nargs="+", default=quality.RECIPE)
    parser.add_argument(
        "--degradations",
        nargs="+",
        default=["phone", "phone_mild", "phone_strong", "fixed", "fixed_mild", "fixed_strong"],
    )
    parser.add_argument("--stage", choices=("test", "val"), default="test")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tune", action="store_true", help="search TUNED on validation, print")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmark" / "classical")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    if args.tune:
        if args.stage != "val":
            parser.error("--tune searches on the validation photos only: add --stage val")
        tune(args.config, args.degradations[0])
        return 0
    folds = [0] if args.stage == "val" else args.folds  # validation photos are every fold's
    record = {"stage": args.stage, "folds": [quality.FOLDS[i]["name"] for i in folds]}
    record["degradations"] = {}
    for degradation in args.degradations:
        per_fold, noise = [], []
        for index in folds:
            data = fold_data(args.config, quality.FOLDS[index], degradation)
            per_fold.append(classical_figures(data, args.stage))
            noise.append(clean_noise(data, args.stage))
        record["degradations"][degradation] = {
            "methods": quality.mean_classical(per_fold),
            "clean_noise": sum(noise) / len(noise),
        }
        print(f"{degradation}: done")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    markdown = table(record)
    (args.out / "table.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
