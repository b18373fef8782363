"""The quality benchmark's verdicts and table (the runs themselves are a script, not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
spec = importlib.util.spec_from_file_location("quality", SCRIPT)
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


def figures(psnr: float, psnr_input: float, ssim: float, ssim_input: float) -> dict[str, float]:
    return {
        "psnr": psnr,
        "psnr_input": psnr_input,
        "ssim": ssim,
        "ssim_input": ssim_input,
        "entropy": 7.0,
        "entropy_input": 6.5,
        "jpeg_bpp": 2.0,
        "jpeg_bpp_input": 2.5,
    }


@pytest.mark.parametrize(
    ("wespe", "supervised", "expected"),
    [
        # +3 dB, SSIM up, supervised +5 dB: half is 2.5, met.
        (figures(18, 15, 0.7, 0.6), figures(20, 15, 0.8, 0.6), (True, True, True)),
        # +1.9 dB misses the 2 dB bar; SSIM down.
        (figures(16.9, 15, 0.5, 0.6), figures(17, 15, 0.8, 0.6), (False, False, True)),
        # +3 dB but the supervised model gained 7 dB: less than half.
        (figures(18, 15, 0.7, 0.6), figures(22, 15, 0.8, 0.6), (True, True, False)),
    ],
)
def test_targets(wespe, supervised, expected):
    checks = quality.targets(wespe, supervised)
    assert tuple(checks.values()) == expected


def test_targets_without_supervised_reference():
    assert set(quality.targets(figures(18, 15, 0.7, 0.6), None)) == {"psnr_gain>=2dB", "ssim_up"}


def test_table_reports_every_seed_and_the_summary():
    results = []
    for seed, psnr in ((0, 18.0), (1, 16.0)):
        wespe, supervised = figures(psnr, 15, 0.7, 0.6), figures(20, 15, 0.8, 0.6)
        results.append(
            {
                "seed": seed,
                "wespe": wespe,
                "supervised": supervised,
                "wespe_seconds": 60.0,
                "supervised_seconds": 61.0,
                "targets": quality.targets(wespe, supervised),
            }
        )
    markdown = quality.table(results)
    assert markdown.count("identity (degraded input)") == 2
    assert "| 0 | WESPE | 18.00 | +3.00 |" in markdown
    assert "no: psnr_gain>=2dB, >=half_supervised_gain" in markdown  # seed 1: +1 dB
    assert "mean +2.00 dB, min +1.00, max +3.00; targets met for 1 of 2 seeds" in markdown
