"""Classical baselines: auto-levels, gamma, gray world, CLAHE, histogram matching, bilateral."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wespe.classical import (
    ClassicalEnhancer,
    auto_levels,
    bilateral_denoise,
    clahe,
    gamma_to_mean,
    gray_world,
    match_histograms,
)
from wespe.data.datasets import embedded_photo
from wespe.losses import to_grayscale
from wespe.metrics import detail_psnr


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return (embedded_photo("coffee", 192).float() / 255)[None]


def _cast(x: torch.Tensor) -> torch.Tensor:
    """Dark, flat and warm: what a phone might give."""
    return (0.1 + 0.5 * x * torch.tensor([1.0, 0.85, 0.6]).view(1, 3, 1, 1)).clamp(0, 1)


def test_auto_levels_maps_each_channels_quantiles_to_black_and_white(photo):
    x = _cast(photo)
    out = auto_levels(x, 0.01, 0.99)
    for channel in range(3):
        values = x[0, channel].numpy().ravel()
        low, high = np.quantile(values, [0.01, 0.99], method="inverted_cdf")
        expected = np.clip((x[0, channel].numpy() - low) / (high - low), 0, 1)
        np.testing.assert_allclose(out[0, channel].numpy(), expected, atol=1e-5)
    # Per channel it undoes any affine change of a channel, the cast included; pooled it keeps
    # the channels' ratios (the cast stays).
    torch.testing.assert_close(out, auto_levels(photo, 0.01, 0.99), atol=1e-4, rtol=0)
    pooled = auto_levels(x, 0.01, 0.99, per_channel=False)
    assert pooled[0, 2].mean() < 0.8 * pooled[0, 0].mean()
    with pytest.raises(ValueError, match="0 <= low < high <= 1"):
        auto_levels(x, 0.6, 0.4)


def test_gamma_to_mean_sets_the_mean_luma(photo):
    for target in (0.3, 0.45, 0.6):
        mean = float(to_grayscale(gamma_to_mean(_cast(photo), target)).mean())
        assert abs(mean - target) < 0.06
    with pytest.raises(ValueError, match="0 < target < 1"):
        gamma_to_mean(photo, 1.0)


def test_gray_world_equalises_the_channel_means(photo):
    means = gray_world(_cast(photo)).mean(dim=(2, 3))[0]
    assert float(means.max() - means.min()) < 0.01


def test_clahe_raises_local_contrast_of_a_flat_photo(photo):
    flat = 0.4 + 0.2 * photo
    out = clahe(flat)
    assert out.shape == flat.shape and 0 <= out.min() and out.max() <= 1
    assert out.std() > 1.5 * flat.std()


def test_match_histograms_takes_the_references_distribution(photo):
    reference = embedded_photo("astronaut", 128).float() / 255
    out = match_histograms(_cast(photo), reference)
    for channel in range(3):
        ours = np.quantile(out[0, channel].numpy(), [0.1, 0.5, 0.9])
        theirs = np.quantile(reference[channel].numpy(), [0.1, 0.5, 0.9])
        np.testing.assert_allclose(ours, theirs, atol=0.02)


def test_bilateral_denoise_restores_detail(photo):
    noisy = photo + 0.05 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    noisy = noisy.clamp(0, 1)
    assert (
        detail_psnr(bilateral_denoise(noisy, sigma_color=0.3), photo)
        > detail_psnr(noisy, photo) + 1
    )


def test_classical_enhancer_chains_its_steps_in_order(photo):
    x = _cast(photo)
    enhancer = ClassicalEnhancer(
        [("auto_levels", {"low": 0.01}), ("gamma_to_mean", {"target": 0.5})]
    )
    torch.testing.assert_close(enhancer(x), gamma_to_mean(auto_levels(x, low=0.01), 0.5))
    assert "auto_levels -> gamma_to_mean" in repr(enhancer)
    assert not list(enhancer.parameters())
    with pytest.raises(ValueError, match="unknown classical step 'levels'"):
        ClassicalEnhancer([("levels", {})])
    with pytest.raises(ValueError, match="needs reference pixels"):
        ClassicalEnhancer([("match_histograms", {})])
