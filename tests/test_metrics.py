"""The detail figures: detail_psnr (PSNR after the best per-channel tone curve), noise_level and
sharpness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from wespe.data.datasets import embedded_photo
from wespe.metrics import detail_psnr, image_figures, noise_level, sharpness


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return (embedded_photo("chelsea", 256).float() / 255)[None]


def _tone(x: torch.Tensor) -> torch.Tensor:
    """A global tone and color change: gamma, contrast, a cast."""
    cast = torch.tensor([1.0, 0.92, 0.75]).view(1, 3, 1, 1)
    return ((0.2 + 0.7 * (x**1.5 - 0.2)) * cast).clamp(0, 1)


def _noisy(x: torch.Tensor, std: float = 0.04, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + std * noise).clamp(0, 1)


def test_a_pure_tone_change_scores_like_the_clean_photo_and_noise_does_not(clean):
    toned = _tone(clean)
    # PSNR sees the tone change; the detail figure does not.
    assert peak_signal_noise_ratio(toned, clean, data_range=1.0) < 20
    assert detail_psnr(toned, clean) > 40
    noisy = _noisy(clean)
    assert detail_psnr(noisy, clean) < 30
    # A tone change on top of the noise leaves the figure where the noise put it.
    assert abs(float(detail_psnr(_tone(noisy), clean) - detail_psnr(noisy, clean))) < 0.3


def test_denoising_and_blur_move_the_detail_figure(clean):
    import kornia

    noisy = _noisy(clean, std=0.06)
    denoised = kornia.filters.bilateral_blur(noisy, 7, 0.15, (2.0, 2.0))
    assert detail_psnr(denoised, clean) > detail_psnr(noisy, clean) + 1
    blurred = kornia.filters.gaussian_blur2d(clean, 9, (2.0, 2.0))
    assert detail_psnr(blurred, clean) < 32


def test_detail_psnr_equals_numpy_polyfit(clean):
    x = _noisy(_tone(clean), std=0.03)
    fitted = []
    for channel in range(3):
        a, b = x[0, channel].double().numpy().ravel(), clean[0, channel].double().numpy().ravel()
        fitted.append(np.clip(np.polyval(np.polyfit(a, b, 3), a), 0, 1) - b)
    expected = 10 * np.log10(1 / np.mean(np.concatenate(fitted) ** 2))
    assert abs(float(detail_psnr(x, clean)) - expected) < 1e-3
    # degree 1: an affine map per channel, the weakest fit
    assert detail_psnr(x, clean, degree=1) < detail_psnr(x, clean)


def test_detail_psnr_batched_equals_one_by_one_and_survives_a_flat_channel(clean):
    images = torch.cat([_noisy(clean, seed=1), _tone(clean)])
    references = torch.cat([clean, clean])
    batched = detail_psnr(images, references)
    single = torch.cat(
        [detail_psnr(i[None], r[None]) for i, r in zip(images, references, strict=True)]
    )
    torch.testing.assert_close(batched, single)
    flat = clean.clone()
    flat[:, 2] = 0.5  # a constant channel: a singular fit, still a finite figure
    assert torch.isfinite(detail_psnr(flat, clean)).all()
    with pytest.raises(ValueError, match="same shape"):
        detail_psnr(clean, clean[..., :-1])


def test_noise_level_is_scikit_images_estimate_in_levels(clean):
    from skimage.restoration import estimate_sigma

    noisy = _noisy(clean, std=0.05)
    expected = 255 * estimate_sigma(
        noisy[0].permute(1, 2, 0).double().numpy(), channel_axis=-1, average_sigmas=True
    )
    assert abs(float(noise_level(noisy, scale=1)) - expected) < 1e-3
    # Added noise of std 0.05 (12.75 levels) reads near that, the clean photo far below it.
    assert 11 < float(noise_level(noisy)) < 16
    assert float(noise_level(clean)) < 6


def test_noise_level_sees_noise_that_jpeg_filtered(clean):
    """JPEG removes the finest wavelet band: at full resolution a compressed noisy photo reads
    as clean as its original; on 2 x 2 blocks the noise shows."""
    from wespe.data.degrade import jpeg_roundtrip

    compressed = jpeg_roundtrip(_noisy(clean, std=0.04)[0], 60)[None]
    at_full = float(noise_level(compressed, scale=1))
    assert at_full < 2 * float(noise_level(clean, scale=1))
    assert float(noise_level(compressed)) > 1.3 * float(noise_level(clean))


def test_sharpness_falls_with_blur_and_the_ratio_is_one_for_the_clean_photo(clean):
    import kornia

    blurred = kornia.filters.gaussian_blur2d(clean, 9, (1.5, 1.5))
    assert sharpness(blurred) < 0.8 * sharpness(clean)
    figures = image_figures(torch.cat([clean, blurred]), torch.cat([clean, clean]))
    assert figures["sharpness_ratio"][0] == 1.0
    assert figures["sharpness_ratio"][1] < 0.8
    assert figures["noise"][1] < figures["noise"][0]  # blur removes the finest detail too
