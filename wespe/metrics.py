"""No-reference image figures used by WESPE for photos without a reference.

PSNR and SSIM come from torchmetrics (``data_range=1.0``); these two complete them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wespe.data.degrade import jpeg_bytes
from wespe.losses import to_grayscale

__all__ = ["image_entropy", "jpeg_bits_per_pixel"]


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
