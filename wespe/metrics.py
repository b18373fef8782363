"""Image figures beside torchmetrics' PSNR and SSIM (``data_range=1.0``).

- WESPE's no-reference figures for photos without a reference: :func:`image_entropy` and
  :func:`jpeg_bits_per_pixel`;
- color and tone: :func:`ciede2000` to a reference, and :func:`luma_contrast` and
  :func:`colorfulness`, reported as ratios to the clean photo's (1 is right; below 1 is flat or
  washed out);
- detail, which a global tone and color curve cannot fake: :func:`detail_psnr` (PSNR after the
  best per-channel tone curve to the reference), and the no-reference :func:`noise_level` and
  :func:`sharpness` for photos without one.
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

from wespe.data.degrade import jpeg_bytes
from wespe.losses import _check_image, to_grayscale

__all__ = [
    "IMAGE_FIGURES",
    "ciede2000",
    "colorfulness",
    "detail_psnr",
    "image_entropy",
    "image_figures",
    "jpeg_bits_per_pixel",
    "luma_contrast",
    "noise_level",
    "sharpness",
]


def image_entropy(x: Tensor) -> Tensor:
    """Shannon entropy (bits) of the 256-bin histogram of each image's 8-bit luma.

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].

    Returns:
        ``(B,)`` entropies in [0, 8].

    Example:
        >>> image_entropy(torch.zeros(1, 3, 4, 4))
        tensor([0.])
        >>> ramp = torch.arange(256.0).view(1, 1, 16, 16).expand(1, 3, 16, 16) / 255
        >>> image_entropy(ramp)
        tensor([8.])
    """
    levels = (to_grayscale(x.clamp(0, 1)) * 255).round().long().flatten(1)
    counts = torch.zeros(levels.shape[0], 256, device=x.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float)
    )
    p = counts / levels.shape[1]
    # "+ 0.0" turns the -0.0 of a one-level image into 0.0.
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(1) + 0.0


def jpeg_bits_per_pixel(x: Tensor, quality: int = 95) -> Tensor:
    """Size of each image as a JPEG at ``quality``, in bits per pixel.

    More detail (and more noise) compresses worse, so this is a rough measure of information.

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        quality: JPEG quality, 1..100.

    Returns:
        ``(B,)`` bits per pixel, on the CPU.

    Example:
        >>> flat, noisy = torch.full((1, 3, 32, 32), 0.5), torch.rand(1, 3, 32, 32)
        >>> bool(jpeg_bits_per_pixel(flat) < jpeg_bits_per_pixel(noisy))
        True
    """
    pixels = x.shape[-1] * x.shape[-2]
    return torch.tensor([8 * len(jpeg_bytes(image, quality)) / pixels for image in x])


def _lab(x: Tensor) -> Tensor:
    """CIELAB (D65) of RGB images ``(B, 3, H, W)`` in [0, 1], by kornia: L* in [0, 100]."""
    return kornia.color.rgb_to_lab(x.clamp(0, 1).float())


def ciede2000(x: Tensor, reference: Tensor) -> Tensor:
    """Mean CIEDE2000 color difference of each image to its reference.

    The perceptual color error that enhancement papers report beside PSNR (about 1 is a just
    noticeable difference). Lab by kornia, the difference by scikit-image's
    ``deltaE_ciede2000`` (computed on the CPU in float64).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        reference: RGB images of the same shape in [0, 1].

    Returns:
        ``(B,)`` mean CIEDE2000 per image, >= 0, on ``x``'s device.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> ciede2000(x, x)
        tensor([0., 0.])
        >>> bool(ciede2000(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)) > 99)
        True
    """
    from skimage.color import deltaE_ciede2000

    if x.shape != reference.shape:
        raise ValueError(
            f"ciede2000 needs images of the same shape; got {tuple(x.shape)} and "
            f"{tuple(reference.shape)}"
        )
    lab_x = _lab(x).permute(0, 2, 3, 1).double().cpu().numpy()
    lab_reference = _lab(reference).permute(0, 2, 3, 1).double().cpu().numpy()
    errors = [
        float(deltaE_ciede2000(a, b).mean()) for a, b in zip(lab_x, lab_reference, strict=True)
    ]
    return torch.tensor(errors, device=x.device)


def luma_contrast(x: Tensor) -> Tensor:
    """Standard deviation of each image's CIELAB lightness L* (0-100): its global contrast.

    The ratio ``luma_contrast(enhanced) / luma_contrast(clean)`` says whether an enhancer leaves
    photos flat (< 1: washed out, lifted blacks) or harsh (> 1).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].

    Returns:
        ``(B,)`` standard deviations of L*, in L* units.

    Example:
        >>> luma_contrast(torch.full((1, 3, 4, 4), 0.5)).round()
        tensor([0.])
        >>> halves = torch.cat([torch.zeros(1, 3, 2, 4), torch.ones(1, 3, 2, 4)], dim=2)
        >>> luma_contrast(halves).round()
        tensor([50.])
    """
    _check_image("x", x, channels=3)
    return _lab(x)[:, 0].flatten(1).std(dim=1, unbiased=False)


def colorfulness(x: Tensor) -> Tensor:
    """Colorfulness of each image, Hasler & Süsstrunk (2003), on RGB scaled to [0, 1].

    With ``rg = R - G`` and ``yb = (R + G) / 2 - B`` over the image's pixels:
    ``sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)``. Gray images score 0;
    the paper's scale is 255 times this one. The ratio to the clean photo's says whether colors
    came out washed out (< 1) or oversaturated (> 1).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].

    Returns:
        ``(B,)`` colorfulness, >= 0.

    Example:
        >>> colorfulness(torch.full((1, 3, 4, 4), 0.3))
        tensor([0.])
        >>> red = torch.zeros(1, 3, 4, 4); red[:, 0] = 1
        >>> colorfulness(red)  # 0.3 * sqrt(1 + 0.25)
        tensor([0.3354])
    """
    _check_image("x", x, channels=3)
    red, green, blue = x.clamp(0, 1).float().flatten(2).unbind(1)
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    offset = (rg.mean(dim=1).square() + yb.mean(dim=1).square()).sqrt()
    return spread + 0.3 * offset


def detail_psnr(x: Tensor, reference: Tensor, degree: int = 3) -> Tensor:
    """PSNR (dB, ``data_range`` 1) of each image after the best per-channel tone curve to its
    reference: what is left when global tone and color no longer count.

    For each image and channel the least-squares polynomial of ``degree`` mapping ``x``'s values
    to the reference's (fitted over all pixels, float64 normal equations) is applied, the result
    clipped to [0, 1], and its PSNR to the reference taken. Any global, per-channel tone or color
    change (gamma, contrast, white balance, exposure short of clipping) is undone by the fit, so
    such an image scores about as high as the reference itself; what lowers the figure is local:
    noise, blur, JPEG artefacts, vignetting, local color. An enhancer that only learned a tone
    curve scores what its input scores; one that removes noise or blur scores above it.

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        reference: the clean images, same shape, in [0, 1].
        degree: of the per-channel polynomial (3: a cubic, flexible enough for gamma and
            contrast curves, too stiff to follow noise).

    Returns:
        ``(B,)`` PSNR in dB on ``x``'s device (100 where the fit is exact).

    Example:
        >>> clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> toned = 0.1 + 0.8 * clean**1.3 * torch.tensor([1.0, 0.9, 0.7]).view(1, 3, 1, 1)
        >>> bool(detail_psnr(toned, clean) > 40)  # a pure tone change: about the clean photo
        True
        >>> noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
        >>> round(float(detail_psnr(noisy.clamp(0, 1), clean)), 1)  # noise: ~26 dB at std 0.05
        26.2
    """
    if x.shape != reference.shape:
        raise ValueError(
            f"detail_psnr needs images of the same shape; got {tuple(x.shape)} and "
            f"{tuple(reference.shape)}"
        )
    _check_image("x", x, channels=3)
    values = x.detach().clamp(0, 1).double().flatten(2)  # (B, 3, N)
    target = reference.detach().clamp(0, 1).double().flatten(2)
    # Normal equations from power sums, one power in memory at a time: neither an (N, degree + 1)
    # design matrix nor 2 degree + 1 float64 copies of a 12 MP photo (2 GB).
    moments, right = [], []
    power = torch.ones_like(values)
    for k in range(2 * degree + 1):
        moments.append(power.sum(-1))
        if k <= degree:
            right.append((power * target).sum(-1))
        if k < 2 * degree:
            power = power * values
    del power
    index = torch.arange(degree + 1)
    gram = torch.stack(moments, -1)[..., index[:, None] + index[None, :]]  # (B, 3, d + 1, d + 1)
    # lstsq rather than solve: a flat channel makes the system singular.
    coefficients = torch.linalg.lstsq(gram.cpu(), torch.stack(right, -1).cpu()[..., None])
    coefficients = coefficients.solution[..., 0].to(values.device)  # (B, 3, d + 1)
    fitted = coefficients[..., degree, None].expand_as(values)  # Horner's scheme
    for k in range(degree - 1, -1, -1):
        fitted = fitted * values + coefficients[..., k, None]
    mse = (fitted.clamp(0, 1) - target).square().mean(dim=(1, 2))
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).float().to(x.device)


def noise_level(x: Tensor, scale: int = 2) -> Tensor:
    """Estimated standard deviation of each image's noise, in 8-bit levels, without a
    reference: scikit-image's ``estimate_sigma`` (Donoho's wavelet estimator: the median
    absolute finest-scale wavelet coefficient, averaged over the channels) on the image averaged
    over ``scale`` x ``scale`` blocks, times ``scale``.

    Why not at full resolution: JPEG compression removes the finest wavelet band, where the
    estimator looks, and leaves the noise as coarser blotches; at full resolution the benchmark's
    degraded photos (noise std 2.5-10 levels before JPEG) read 0.6-2.1 levels, below their clean
    originals (1.2). Averaged over 2 x 2 blocks (white noise's std halves, hence ``times
    scale``) they read 4.5-6.7 against the clean photos' 3.5-4.6, and auto-levels, which
    stretches the noise with the contrast, reads 12-18. Fine texture counts too: compare against
    the clean photo's figure, not 0.

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        scale: block size of the averaging (1: the estimator at full resolution).

    Returns:
        ``(B,)`` noise std in levels of 255, on ``x``'s device.

    Example:
        >>> flat = torch.full((1, 3, 64, 64), 0.5)
        >>> noisy = flat + 0.04 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
        >>> round(float(noise_level(flat))), round(float(noise_level(noisy)))  # 0.04 * 255 = 10.2
        (0, 10)
    """
    from skimage.restoration import estimate_sigma

    _check_image("x", x, channels=3)
    pixels = x.detach().float()
    blocks = torch.nn.functional.avg_pool2d(pixels, scale) if scale > 1 else pixels
    arrays = blocks.permute(0, 2, 3, 1).double().cpu().numpy()
    sigmas = [estimate_sigma(a, channel_axis=-1, average_sigmas=True) for a in arrays]
    return 255 * scale * torch.tensor(sigmas, dtype=torch.float32, device=x.device)


def sharpness(x: Tensor) -> Tensor:
    """Root-mean-square gradient magnitude of each image's luma (Tenengrad; kornia's Sobel
    gradient): higher for sharper edges, and for noise too, so read it beside
    :func:`noise_level`. Reported as a ratio to the clean photo's (below 1: blurred).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].

    Returns:
        ``(B,)`` RMS Sobel gradient magnitude (kornia's normalised kernel).

    Example:
        >>> sharpness(torch.full((1, 3, 8, 8), 0.5))
        tensor([0.])
        >>> edge = torch.zeros(1, 3, 16, 16); edge[..., 8:] = 1
        >>> bool(sharpness(edge) > sharpness(kornia.filters.gaussian_blur2d(edge, 9, (2.0, 2.0))))
        True
    """
    _check_image("x", x, channels=3)
    gradient = kornia.filters.spatial_gradient(to_grayscale(x.clamp(0, 1).float()))  # Sobel
    # Root mean square, not the mean: an edge's mean |gradient| (its height) survives blur.
    return gradient.square().sum(2).flatten(1).mean(1).sqrt()


def image_figures(images: Tensor, clean: Tensor) -> dict[str, Tensor]:
    """Per-image evaluation figures of ``images`` against their ``clean`` references, each
    ``(B,)``: WESPE's no-reference ``entropy`` and ``jpeg_bpp``, the color error ``ciede2000``,
    the tone figures ``contrast_ratio`` and ``colorfulness_ratio`` (1 matches the clean
    photo; below 1 is flat or washed out), and the detail figures ``detail_psnr``
    (:func:`detail_psnr`), ``noise`` (:func:`noise_level`, 8-bit levels) and
    ``sharpness_ratio`` (:func:`sharpness` over the clean photo's). Images ``(B, 3, H, W)`` in
    [0, 1].

    Example:
        >>> clean = torch.rand(2, 3, 16, 16)
        >>> figures = image_figures(clean, clean)
        >>> sorted(figures) == sorted(IMAGE_FIGURES)
        True
        >>> figures["ciede2000"], figures["contrast_ratio"], figures["colorfulness_ratio"]
        (tensor([0., 0.]), tensor([1., 1.]), tensor([1., 1.]))
        >>> figures["sharpness_ratio"], bool((figures["detail_psnr"] > 60).all())
        (tensor([1., 1.]), True)
    """
    return {
        "entropy": image_entropy(images),
        "jpeg_bpp": jpeg_bits_per_pixel(images).to(images.device),
        "ciede2000": ciede2000(images, clean),
        # A flat reference has no contrast or color to match; the floor keeps the ratio finite.
        "contrast_ratio": luma_contrast(images) / luma_contrast(clean).clamp_min(1e-6),
        "colorfulness_ratio": colorfulness(images) / colorfulness(clean).clamp_min(1e-6),
        "detail_psnr": detail_psnr(images, clean),
        "noise": noise_level(images),
        "sharpness_ratio": sharpness(images) / sharpness(clean).clamp_min(1e-6),
    }


#: Names of :func:`image_figures`' figures, logged as ``<stage>/<name>`` and ``<name>_input``.
IMAGE_FIGURES = (
    "entropy",
    "jpeg_bpp",
    "ciede2000",
    "contrast_ratio",
    "colorfulness_ratio",
    "detail_psnr",
    "noise",
    "sharpness_ratio",
)
