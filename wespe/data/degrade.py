"""The synthetic "phone camera" degradation that makes the embedded sample's source domain.

A fixed, documented chain, applied once to each photo with its own seeded noise:

1. tone: gamma ``x ** gamma`` (``gamma > 1`` darkens mid-tones, as an under-exposed phone shot),
2. contrast: ``mean + contrast * (x - mean)`` per image (``contrast < 1`` flattens it),
3. color cast: each channel multiplied by ``color_cast`` (a warm/green cast of cheap white balance),
4. blur: Gaussian, std ``blur_sigma`` px (a soft lens),
5. noise: Gaussian, std ``noise_std`` (sensor noise),
6. JPEG at ``jpeg_quality`` (the phone's compression).

The result is clipped to [0, 1] at each step where a real camera would clip.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from wespe.losses import gaussian_blur

__all__ = ["DEGRADATION_STRENGTHS", "PhoneDegradation"]


@dataclass(frozen=True)
class PhoneDegradation:
    """Degrade clean photos into the "phone" domain; see the module docstring for the chain.

    Example:
        >>> clean = torch.rand(3, 16, 16)
        >>> phone = PhoneDegradation()(clean, seed=0)
        >>> phone.shape, bool(phone.min() >= 0), bool(phone.max() <= 1)
        (torch.Size([3, 16, 16]), True, True)
        >>> bool((PhoneDegradation()(clean, seed=0) == phone).all())
        True
    """

    gamma: float = 1.6
    contrast: float = 0.7
    color_cast: tuple[float, float, float] = (1.0, 0.95, 0.75)
    blur_sigma: float = 1.0
    noise_std: float = 0.04
    jpeg_quality: int = 70

    def __post_init__(self) -> None:
        if self.gamma <= 0 or self.contrast <= 0 or self.noise_std < 0 or self.blur_sigma < 0:
            raise ValueError(
                "PhoneDegradation needs gamma > 0, contrast > 0, noise_std >= 0, blur_sigma >= 0; "
                f"got {self}"
            )
        if len(self.color_cast) != 3:
            raise ValueError(f"color_cast needs one factor per RGB channel; got {self.color_cast}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100; got {self.jpeg_quality}")

    def __call__(self, image: Tensor, seed: int) -> Tensor:
        """Degrade one image ``(3, H, W)`` in [0, 1]; the noise depends only on ``seed``."""
        x = image.float().clamp(0, 1) ** self.gamma
        mean = x.mean()
        x = (mean + self.contrast * (x - mean)).clamp(0, 1)
        x = (x * torch.tensor(self.color_cast).view(3, 1, 1)).clamp(0, 1)
        if self.blur_sigma > 0:
            size = 2 * int(3 * self.blur_sigma + 0.5) + 1
            x = gaussian_blur(x[None], kernel_size=size, sigma=self.blur_sigma)[0]
        generator = torch.Generator().manual_seed(seed)
        x = (x + self.noise_std * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        return jpeg_roundtrip(x, self.jpeg_quality)


#: Three strengths of the same chain, for showing a method on more than one setting: ``mild``
#: moves every parameter half way from the identity to the default, ``strong`` half as far again
#: beyond it (JPEG quality from 90 through 70 to 50).
DEGRADATION_STRENGTHS: dict[str, PhoneDegradation] = {
    "mild": PhoneDegradation(
        gamma=1.3,
        contrast=0.85,
        color_cast=(1.0, 0.975, 0.875),
        blur_sigma=0.5,
        noise_std=0.02,
        jpeg_quality=90,
    ),
    "default": PhoneDegradation(),
    "strong": PhoneDegradation(
        gamma=1.9,
        contrast=0.55,
        color_cast=(1.0, 0.925, 0.625),
        blur_sigma=1.5,
        noise_std=0.06,
        jpeg_quality=50,
    ),
}


def jpeg_bytes(image: Tensor, quality: int) -> bytes:
    """``(3, H, W)`` in [0, 1] encoded as an 8-bit JPEG at ``quality``."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_roundtrip(image: Tensor, quality: int) -> Tensor:
    """Encode ``(3, H, W)`` in [0, 1] as JPEG at ``quality`` and decode it again."""
    with Image.open(io.BytesIO(jpeg_bytes(image, quality))) as decoded:
        return from_pil(decoded)


def to_pil(image: Tensor) -> Image.Image:
    """``(3, H, W)`` float in [0, 1] to an 8-bit RGB PIL image (rounded)."""
    array = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def pil_to_uint8(image: Image.Image) -> Tensor:
    """A PIL image to ``(3, H, W)`` uint8 RGB (converted to RGB)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def from_pil(image: Image.Image) -> Tensor:
    """A PIL image to ``(3, H, W)`` float32 in [0, 1] (converted to RGB)."""
    return pil_to_uint8(image).float() / 255
