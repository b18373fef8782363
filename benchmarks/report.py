"""The README's benchmark tables, read from the ``results.json`` files of ``quality.py`` and
``classical.py`` runs.

    python benchmarks/report.py                # runs/benchmark, runs/ablation and runs/texture
    python benchmarks/report.py --benchmark docs/results/benchmark --texture docs/results/texture

Expects, under ``--benchmark``: ``headline/`` (``quality.py``), ``length2x/`` and ``length4x/``
(``--length 2|4 --folds 0 --no-supervised``), ``degradation_mild/`` and ``degradation_strong/``
(``--degradation phone_mild|phone_strong --folds 0``) and ``classical/`` (``classical.py``);
under ``--ablation`` and ``--texture``: one folder per row of :data:`ABLATION` and
:data:`TEXTURE` (``--stage val --folds 0 --no-supervised``), ``recipe/`` first. Missing folders
are skipped. Every figure comes from those files; nothing is computed here but means and
differences. ``docs/results/`` keeps the files behind the README's current figures."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("quality", REPO / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)
gain, ciede2000_cut = quality.gain, quality.ciede2000_cut

#: Ablation rows: folder name, what the row changes, and the quality.py arguments after
#: ``--stage val --folds 0 --seeds 0 1 2 --no-supervised``.
ABLATION = (
    ("recipe", "the recipe (configs/quickstart.yaml + configs/benchmark.yaml)", ""),
    ("photos", "disjoint photos per domain (`domains: photos`)", "`-- --data.init_args.domains=photos`"),
    ("instance_norm", "instance-norm discriminators (paper)", "`-- ...{texture,color}_discriminator.init_args.norm=instance`"),
    ("no_statistics", "discriminators without input statistics", "`-- ...{texture,color}_discriminator.init_args.input_statistics=false`"),
    ("tv10", "TV weight 10 (paper)", "`-- ...tv_loss.init_args.loss_weight=10.0`"),
    ("gan_weight_5e-3", "GAN weights 5e-3 (paper)", "`-- ...{color,texture}_loss.init_args.loss_weight=0.005`"),
    ("adam_paper", "Adam lr 5e-4, β₁ 0.9 for both (paper)", "`-- ...{generator,discriminator}_optimizer.init_args.lr=0.0005 ...betas=[0.9,0.999]`"),
    ("no_ema", "no moving average of G (paper)", "`-- ...ema_decay=null`"),
    ("vanilla", "cross-entropy GAN instead of LSGAN (paper)", "`-- ...{color,texture}_loss.init_args.kind=vanilla`"),
    ("dped_output", "DPED output and init instead of identity residual (paper)", "`-- ...{generator,inverse_generator}.init_args.output=dped ...init=dped`"),
    ("paper", "the paper's recipe: all of the above but the data (configs/paper.yaml)", "`--config configs/quickstart.yaml configs/benchmark.yaml configs/paper.yaml`"),
)  # fmt: skip


#: Texture rows (issue #22), the recipe under the phone degradation and what was tried to make
#: it restore detail, each with ``--stage val --folds 0 --no-supervised`` and the seeds it lists.
TEXTURE = (
    ("recipe", "the recipe", ""),
    ("no_texture", "without the texture loss (its weight 0)", "`-- ...texture_loss.init_args.loss_weight=0.0`"),
    ("lowpass", "content loss on blurred images (`LowPassLoss`, σ 2)", "`-- ...content_loss.class_path=wespe.losses.LowPassLoss`"),
    ("highpass", "texture discriminator on high-pass gray (σ 1.5)", "`-- ...texture_loss.init_args.high_pass_sigma=1.5`"),
    ("lowpass_highpass", "both", "both of the above"),
)  # fmt: skip


def load(folder: Path) -> dict | None:
    path = folder / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fold_results(record: dict, fold: str, seeds: list[int]) -> list[dict]:
    """One fold's entries of the given seeds, each with its seed."""
    return [
        {"seed": r["seed"], **f}
        for r in record["results"]
        if r["seed"] in seeds
        for f in r["folds"]
        if f["fold"] == fold
    ]


def iterations(record: dict) -> int:
    """Training iterations of a record's WESPE runs: its configs' max_iterations x length."""
    return quality.config_iterations(record["config"], record["length"])


def per_seed(values: list[float], form: str) -> str:
    return " / ".join(format(v, form) for v in values)


def classical_note(record: dict, fold: str | None = None) -> str:
    """One line: the best classical baseline on a record's photos (one fold's, or the mean
    over its folds), from the figures quality.py stored beside the runs."""
    if fold is None:
        classical = record.get("classical")
    else:
        classical = record.get("classical_folds", {}).get(fold)
    if not classical:
        return ""
    name, best = quality.best_classical(classical)
    return (
        f"{name} {gain(best):+.2f} dB, CIEDE2000 {best['ciede2000']:.2f}, detail "
        f"{quality.detail_gain(best):+.2f} dB"
    )


def per_fold_table(headline: dict) -> str:
    lines = [
        "| test scene | WESPE gain (dB) | supervised gain (dB) | share | CIEDE2000 (input) | "
        "contrast ratio (input) | colorfulness ratio (input) | detail WESPE / supervised (dB over "
        "input) | best classical baseline | seeds meeting the targets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seeds = [r["seed"] for r in headline["results"]]
    for fold in headline["folds"]:
        entries = fold_results(headline, fold, seeds)
        w = quality.mean_figures([e["wespe"] for e in entries])
        s = quality.mean_figures([e["supervised"] for e in entries])
        classical = headline.get("classical_folds", {}).get(fold)
        met = sum(
            all(quality.targets(e["wespe"], e["supervised"], classical).values()) for e in entries
        )
        lines.append(
            f"| {fold} | {gain(w):+.2f} | {gain(s):+.2f} | {gain(w) / gain(s):.0%} | "
            f"{w['ciede2000']:.2f} ({w['ciede2000_input']:.2f}) | {w['contrast_ratio']:.2f} "
            f"({w['contrast_ratio_input']:.2f}) | {w['colorfulness_ratio']:.2f} "
            f"({w['colorfulness_ratio_input']:.2f}) | {quality.detail_gain(w):+.2f} / "
            f"{quality.detail_gain(s):+.2f} | {classical_note(headline, fold) or '-'} | "
            f"{met} of {len(entries)} |"
        )
    return "\n".join(lines)


def length_table(headline: dict, longer: dict[str, dict]) -> str:
    """The recipe at 1x (the headline's runs of the same fold and seeds) and longer; each row
    lists its own seeds, as a longer run may have fewer."""
    fold = next(iter(longer.values()))["folds"][0]
    seeds = sorted({s for record in longer.values() for s in record["seeds"]})
    lines = [
        "| length | iterations | seeds | PSNR gain (dB) | SSIM | CIEDE2000 | contrast ratio | "
        "colorfulness ratio | detail (dB over input) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("1x", headline)] + list(longer.items())
    for name, record in rows:
        entries = fold_results(record, fold, seeds)
        figures = [e["wespe"] for e in entries]
        lines.append(
            f"| {name} | {iterations(record)} | {' / '.join(str(e['seed']) for e in entries)} | "
            f"{per_seed([gain(f) for f in figures], '+.2f')} | "
            f"{per_seed([f['ssim'] for f in figures], '.3f')} | "
            f"{per_seed([f['ciede2000'] for f in figures], '.2f')} | "
            f"{per_seed([f['contrast_ratio'] for f in figures], '.2f')} | "
            f"{per_seed([f['colorfulness_ratio'] for f in figures], '.2f')} | "
            f"{per_seed([quality.detail_gain(f) for f in figures], '+.2f')} |"
        )
    if note := classical_note(headline, fold):
        lines.append(f"\nBest classical baseline on these photos: {note}.")
    return "\n".join(lines)


def degradation_table(headline: dict, strengths: dict[str, dict]) -> str:
    first = next(iter(strengths.values()))
    fold, seeds = first["folds"][0], first["seeds"]
    lines = [
        "| degradation | input PSNR (dB) | WESPE gain per seed (dB) | supervised gain per seed (dB) | "
        "share of supervised | CIEDE2000 WESPE / supervised (input) | contrast ratio (input) | "
        "detail WESPE / supervised (dB over input) | best classical baseline | "
        "seeds meeting the targets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    records = {
        "mild": strengths.get("mild"),
        "default": headline,
        "strong": strengths.get("strong"),
    }
    for name, record in records.items():
        if record is None:
            continue
        entries = fold_results(record, fold, seeds)
        w = [e["wespe"] for e in entries]
        s = [e["supervised"] for e in entries]
        mean_w, mean_s = quality.mean_figures(w), quality.mean_figures(s)
        shares = [gain(a) / gain(b) for a, b in zip(w, s, strict=True)]
        classical = record.get("classical_folds", {}).get(fold)
        met = sum(all(quality.targets(a, b, classical).values()) for a, b in zip(w, s, strict=True))
        lines.append(
            f"| {name} | {mean_w['psnr_input']:.2f} | {per_seed([gain(f) for f in w], '+.2f')} | "
            f"{per_seed([gain(f) for f in s], '+.2f')} | {per_seed(shares, '.0%')} | "
            f"{mean_w['ciede2000']:.2f} / {mean_s['ciede2000']:.2f} ({mean_w['ciede2000_input']:.2f}) | "
            f"{mean_w['contrast_ratio']:.2f} ({mean_w['contrast_ratio_input']:.2f}) | "
            f"{quality.detail_gain(mean_w):+.2f} / {quality.detail_gain(mean_s):+.2f} | "
            f"{classical_note(record, fold) or '-'} | {met} of {len(entries)} |"
        )
    return "\n".join(lines)


def ablation_table(ablation: Path, rows: tuple = ABLATION) -> str:
    """Markdown: one row per variant folder of ``rows`` found under ``ablation``, each seed's
    figures and their means, then the degraded validation input's and the best classical
    baseline's (from the first row's record)."""
    lines = [
        "| variant | PSNR gain per seed (dB) | mean | SSIM change (mean) | CIEDE2000 (mean) | "
        "contrast ratio per seed | colorfulness ratio (mean) | detail per seed (dB over input) | "
        "noise (mean, levels) | sharpness ratio (mean) | benchmark arguments |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, what, arguments in rows:
        record = load(ablation / folder)
        if record is None:
            continue
        figures = [r["wespe"] for r in record["results"]]
        gains = [gain(f) for f in figures]
        lines.append(
            f"| {what} | {per_seed(gains, '+.2f')} | {statistics.mean(gains):+.2f} | "
            f"{statistics.mean(f['ssim'] - f['ssim_input'] for f in figures):+.3f} | "
            f"{statistics.mean(f['ciede2000'] for f in figures):.2f} | "
            f"{per_seed([f['contrast_ratio'] for f in figures], '.2f')} | "
            f"{statistics.mean(f['colorfulness_ratio'] for f in figures):.2f} | "
            f"{per_seed([quality.detail_gain(f) for f in figures], '+.2f')} | "
            f"{statistics.mean(f['noise'] for f in figures):.1f} | "
            f"{statistics.mean(f['sharpness_ratio'] for f in figures):.2f} | {arguments} |"
        )
    first = load(ablation / rows[0][0])
    if first is not None:
        f = first["results"][0]["wespe"]
        lines.append(
            f"\nThe degraded validation input: PSNR {f['psnr_input']:.2f} dB, SSIM "
            f"{f['ssim_input']:.4f}, CIEDE2000 {f['ciede2000_input']:.2f}, contrast ratio "
            f"{f['contrast_ratio_input']:.2f}, colorfulness ratio {f['colorfulness_ratio_input']:.2f}, "
            f"detail PSNR {f['detail_psnr_input']:.2f} dB, noise {f['noise_input']:.1f} levels, "
            f"sharpness ratio {f['sharpness_ratio_input']:.2f}."
        )
        if note := classical_note(first):
            lines.append(f"Best classical baseline on the validation photos: {note}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmark", type=Path, default=REPO / "runs" / "benchmark")
    parser.add_argument("--ablation", type=Path, default=REPO / "runs" / "ablation")
    parser.add_argument("--texture", type=Path, default=REPO / "runs" / "texture")
    args = parser.parse_args(argv)
    headline = load(args.benchmark / "headline")
    if headline is not None:
        print("## Headline\n")
        print(quality.table(headline["results"], headline["stage"], headline.get("classical")))
        print("\n## Per test scene (mean over seeds)\n")
        print(per_fold_table(headline))
        longer = {n: load(args.benchmark / f"length{n}") for n in ("2x", "4x")}
        longer = {n: r for n, r in longer.items() if r is not None}
        if longer:
            print("\n## Training length (test photos)\n")
            print(length_table(headline, longer))
        strengths = {n: load(args.benchmark / f"degradation_{n}") for n in ("mild", "strong")}
        strengths = {n: r for n, r in strengths.items() if r is not None}
        if strengths:
            print("\n## Degradation strength (test photos)\n")
            print(degradation_table(headline, strengths))
    classical = load(args.benchmark / "classical")
    if classical is not None:
        print("\n## Classical baselines under each degradation (test photos)\n")
        print(quality.classical_baselines().table(classical))
    if args.ablation.is_dir():
        print("\n## Ablation (validation photos)\n")
        print(ablation_table(args.ablation))
    if args.texture.is_dir():
        print("\n## Restoring texture: what was tried (validation photos)\n")
        print(ablation_table(args.texture, TEXTURE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
