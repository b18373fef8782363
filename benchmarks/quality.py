"""Does training enhance? WESPE against the degraded input and a supervised upper bound, per seed.

For each seed: ``wespe fit`` with the given config (timed), then ``wespe test`` of the final
checkpoint on the held-out photos at full resolution; then the supervised reference
(``configs/supervised_upper_bound.yaml``: the same generator, L1 on paired patches of the same
photos) trained for the same wall time and tested the same way. Prints a table, writes
``results.json``, ``table.md`` and ``grid.png`` (held-out photos: degraded | WESPE | supervised |
clean) under ``--out``.

    python benchmarks/quality.py                                   # the quickstart, seeds 0 1 2
    python benchmarks/quality.py --config configs/quickstart_paper.yaml --name paper --no-supervised
    python benchmarks/quality.py --name no_ema --no-supervised -- --model.init_args.ema_decay=null

Arguments after ``--`` are passed to ``wespe fit`` as overrides (ablations).

The targets it checks (issue #4): per seed, PSNR gain >= 2 dB over the degraded input, SSIM
above the input's, and at least half the supervised model's PSNR gain.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("psnr", "ssim", "entropy", "jpeg_bpp")


def fit(
    config: Path, seed: int, run_root: Path, overrides: list[str], extra: list[str]
) -> tuple[Path, float]:
    """Train one run; returns its run folder and the fit's wall time in seconds."""
    from wespe.cli import cli_main

    args = [
        "fit",
        "-c",
        str(config),
        f"--seed_everything={seed}",
        f"--data.init_args.seed={seed}",
        f"--trainer.default_root_dir={run_root}",
        f"--trainer.logger.init_args.save_dir={run_root.parent}",
        f"--trainer.logger.init_args.name={run_root.name}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
        *overrides,
    ]
    start = time.perf_counter()
    cli = cli_main(args)
    return Path(cli.trainer.log_dir), time.perf_counter() - start


def test(run: Path) -> dict[str, float]:
    """Full-resolution figures of the run's final checkpoint on the held-out photos."""
    from wespe.cli import cli_main

    cli = cli_main(
        [
            "test",
            "-c",
            str(run / "config.yaml"),
            f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "--data.init_args.eval_crop=null",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
        ]
    )
    return {k.removeprefix("test/"): float(v) for k, v in cli.trainer.callback_metrics.items()}


def targets(wespe: dict[str, float], supervised: dict[str, float] | None) -> dict[str, bool]:
    """Issue #4's per-seed targets for one WESPE result (and its supervised reference)."""
    checks = {
        "psnr_gain>=2dB": wespe["psnr"] - wespe["psnr_input"] >= 2.0,
        "ssim_up": wespe["ssim"] > wespe["ssim_input"],
    }
    if supervised is not None:
        supervised_gain = supervised["psnr"] - supervised["psnr_input"]
        checks[">=half_supervised_gain"] = (
            wespe["psnr"] - wespe["psnr_input"] >= 0.5 * supervised_gain
        )
    return checks


def table(results: list[dict]) -> str:
    """Markdown table: identity, WESPE and supervised rows per seed, then the means."""
    lines = [
        "| seed | model | PSNR (dB) | gain (dB) | SSIM | entropy (bits) | JPEG bpp | train time (s) | targets met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(seed: object, name: str, m: dict, gain: float, seconds: str, verdict: str) -> str:
        return (
            f"| {seed} | {name} | {m['psnr']:.2f} | {gain:+.2f} | {m['ssim']:.4f} | "
            f"{m['entropy']:.3f} | {m['jpeg_bpp']:.3f} | {seconds} | {verdict} |"
        )

    for r in results:
        w, s = r["wespe"], r.get("supervised")
        identity = {k: w[f"{k}_input"] for k in FIGURES}
        lines.append(row(r["seed"], "identity (degraded input)", identity, 0.0, "", ""))
        met = (
            "yes"
            if all(r["targets"].values())
            else "no: " + ", ".join(k for k, v in r["targets"].items() if not v)
        )
        lines.append(
            row(
                r["seed"], "WESPE", w, w["psnr"] - w["psnr_input"], f"{r['wespe_seconds']:.0f}", met
            )
        )
        if s is not None:
            lines.append(
                row(
                    r["seed"],
                    "supervised (paired L1)",
                    s,
                    s["psnr"] - s["psnr_input"],
                    f"{r['supervised_seconds']:.0f}",
                    "",
                )
            )
    gains = [r["wespe"]["psnr"] - r["wespe"]["psnr_input"] for r in results]
    lines.append("")
    lines.append(
        f"WESPE PSNR gain over {len(results)} seeds: mean {statistics.mean(gains):+.2f} dB, "
        f"min {min(gains):+.2f}, max {max(gains):+.2f}; targets met for "
        f"{sum(all(r['targets'].values()) for r in results)} of {len(results)} seeds."
    )
    return "\n".join(lines)


def grid(runs: list[Path], out: Path) -> None:
    """Held-out photos at full resolution, one row each: degraded | each run's output | clean."""
    import yaml

    from wespe.cli import import_class

    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in runs]
    models = [
        import_class(config["model"]["class_path"])
        .load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
        .eval()
        for run, config in zip(runs, configs, strict=True)
    ]
    data_config = configs[0]["data"]
    data = import_class(data_config["class_path"])(
        **{**data_config["init_args"], "eval_crop": None}
    )
    data.setup("test")
    rows = []
    for item in data.eval_set:
        source, clean = item["source"][None], item["clean"][None]
        panels = [source, *(model.enhance(source) for model in models), clean]
        # Half size keeps the grid small enough for the README.
        rows += [
            torch.nn.functional.interpolate(p, scale_factor=0.5, mode="area")[0] for p in panels
        ]
    width = max(r.shape[-1] for r in rows)
    height = max(r.shape[-2] for r in rows)
    rows = [
        torch.nn.functional.pad(r, (0, width - r.shape[-1], 0, height - r.shape[-2]), value=1.0)
        for r in rows
    ]
    image = torchvision.utils.make_grid(
        torch.stack(rows), nrow=len(models) + 2, padding=4, pad_value=1.0
    )
    torchvision.utils.save_image(image, out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, overrides = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.yaml")
    parser.add_argument(
        "--supervised-config", type=Path, default=REPO / "configs" / "supervised_upper_bound.yaml"
    )
    parser.add_argument(
        "--no-supervised", action="store_true", help="skip the supervised reference"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="quickstart", help="name of this variant's folder")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmark")
    args = parser.parse_args(argv)

    os.environ.setdefault("WANDB_MODE", "offline")
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    out = args.out / args.name
    out.mkdir(parents=True, exist_ok=True)

    results = []
    for seed in args.seeds:
        run, seconds = fit(args.config, seed, out / f"wespe_seed{seed}", overrides, [])
        result = {"seed": seed, "wespe_run": str(run), "wespe_seconds": seconds, "wespe": test(run)}
        supervised = None
        if not args.no_supervised:
            limit = time.strftime("00:%H:%M:%S", time.gmtime(round(seconds)))
            supervised_run, supervised_seconds = fit(
                args.supervised_config,
                seed,
                out / f"supervised_seed{seed}",
                [],
                [f"--trainer.max_time={limit}"],
            )
            supervised = test(supervised_run)
            result.update(
                supervised_run=str(supervised_run),
                supervised_seconds=supervised_seconds,
                supervised=supervised,
            )
        result["targets"] = targets(result["wespe"], supervised)
        results.append(result)
        print(
            f"seed {seed}: WESPE gain {result['wespe']['psnr'] - result['wespe']['psnr_input']:+.2f} dB, targets {result['targets']}",
            flush=True,
        )

    summary = {
        "config": str(args.config),
        "overrides": overrides,
        "seeds": args.seeds,
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    markdown = table(results)
    (out / "table.md").write_text(markdown + "\n")
    print(markdown)
    runs = [Path(results[0]["wespe_run"])] + (
        [Path(results[0]["supervised_run"])] if not args.no_supervised else []
    )
    grid(runs, out / "grid.png")
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'grid.png'}")
    return 0 if all(all(r["targets"].values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
