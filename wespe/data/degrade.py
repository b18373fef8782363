"""The synthetic "phone camera" degradations that make the embedded sample's source domain.

One chain, applied once to each photo; every parameter is either one value (the same for every
photo) or a ``(low, high)`` range from which each photo draws its own value, uniformly, from a
generator seeded by the photo's seed (the data modules give each photo a fixed seed, so the phone
domain is the same data in every run):

1. exposure: ``x * 2 ** exposure`` (EV stops), clipped to [0, 1]: over-exposure clips highlights,
2. tone: gamma ``x ** gamma`` (``gamma > 1`` darkens mid-tones, as an under-exposed phone shot),
3. contrast: ``mean + contrast * (x - mean)`` per image (``contrast < 1`` flattens it),
4. white balance: each channel multiplied by ``color_cast``, the red and blue gains each further
   by ``2 ** u`` with ``u`` drawn in ``[-white_balance_error, white_balance_error]`` per photo,
5. vignetting: ``x * (1 - vignetting * r ** 2)``, ``r`` the distance from the centre, 1 at the
   corners,
6. blur: Gaussian, std ``blur_sigma`` px (a soft lens),
7. noise: Gaussian with a signal-dependent std ``sqrt(noise_std ** 2 + shot_noise * x)``
   (read noise and the Gaussian approximation of shot noise),
8. JPEG at ``jpeg_quality`` (the phone's compression).

The result is clipped to [0, 1] at each step where a real camera would clip. ``PhoneDegradation()``
with its defaults is the fixed transform earlier versions used for every photo (the preset
``"fixed"``); :data:`DEGRADATIONS` names the presets, ``"phone"`` (random per photo) is the
data modules' default.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from wespe.losses import gaussian_blur

__all__ = ["DEGRADATIONS", "PhoneDegradation"]

#: One value for every photo, or a ``(low, high)`` range each photo draws its own value from.
Value = float | tuple[float, float]


def _bounds(value: Value | int | tuple[int, int]) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    low, high = value
    return float(low), float(high)


@dataclass(frozen=True)
class PhoneDegradation:
    """Degrade clean photos into the "phone" domain; see the module docstring for the chain.

    Every parameter but ``color_cast`` takes one value or a ``(low, high)`` range drawn per photo.
    The defaults are the fixed transform (preset ``"fixed"``); the phone-like presets are in
    :data:`DEGRADATIONS`.

    Example:
        >>> clean = torch.rand(3, 16, 16)
        >>> phone = PhoneDegradation()(clean, seed=0)
        >>> phone.shape, bool(phone.min() >= 0), bool(phone.max() <= 1)
        (torch.Size([3, 16, 16]), True, True)
        >>> bool((PhoneDegradation()(clean, seed=0) == phone).all())
        True
        >>> DEGRADATIONS["phone"].draw(seed=3) == DEGRADATIONS["phone"].draw(seed=3)
        True
    """

    gamma: Value = 1.6
    contrast: Value = 0.7
    color_cast: tuple[float, float, float] = (1.0, 0.95, 0.75)
    blur_sigma: Value = 1.0
    noise_std: Value = 0.04
    jpeg_quality: int | tuple[int, int] = 70
    exposure: Value = 0.0
    white_balance_error: float = 0.0
    vignetting: Value = 0.0
    shot_noise: Value = 0.0

    def __post_init__(self) -> None:
        # Ranges from YAML or JSON arrive as lists: tuples keep the dataclass hashable and equal
        # to the same degradation written in Python.
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        # (name, lowest allowed, lowest is allowed itself, highest allowed)
        limits = {
            "gamma": (0.0, False, math.inf),
            "contrast": (0.0, False, math.inf),
            "blur_sigma": (0.0, True, math.inf),
            "noise_std": (0.0, True, math.inf),
            "jpeg_quality": (1.0, True, 100.0),
            "exposure": (-math.inf, True, math.inf),
            "white_balance_error": (0.0, True, math.inf),
            "vignetting": (0.0, True, 1.0),
            "shot_noise": (0.0, True, math.inf),
        }
        for name, (lowest, inclusive, highest) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) and len(value) != 2:
                raise ValueError(
                    f"PhoneDegradation.{name} takes one value or a (low, high) range; got {value}"
                )
            low, high = _bounds(value)
            above = low >= lowest if inclusive else low > lowest
            if not (above and high <= highest and low <= high):
                sign = ">=" if inclusive else ">"
                raise ValueError(
                    f"PhoneDegradation needs {name} {sign} {lowest:g}"
                    + (f" and <= {highest:g}" if highest < math.inf else "")
                    + f" (a range as (low, high) with low <= high); got {name}={value}"
                )
        if len(self.color_cast) != 3:
            raise ValueError(f"color_cast needs one factor per RGB channel; got {self.color_cast}")

    def draw(self, seed: int) -> dict[str, float]:
        """The values one photo gets: each range drawn uniformly from a generator seeded by
        ``seed`` (fixed values as they are), plus ``red_gain``/``blue_gain``, the white-balance
        error's factors."""
        rng = np.random.default_rng([seed, 0x5EED])
        values: dict[str, float] = {}
        for field in fields(self):
            if field.name in ("color_cast", "white_balance_error"):
                continue
            low, high = _bounds(getattr(self, field.name))
            values[field.name] = float(rng.uniform(low, high)) if high > low else low
        values["jpeg_quality"] = round(values["jpeg_quality"])
        error = self.white_balance_error
        values["red_gain"], values["blue_gain"] = (
            (float(2 ** rng.uniform(-error, error)) for _ in range(2)) if error > 0 else (1.0, 1.0)
        )
        return values

    def __call__(self, image: Tensor, seed: int) -> Tensor:
        """Degrade one image ``(3, H, W)`` in [0, 1]; the values drawn and the noise depend only
        on ``seed``."""
        v = self.draw(seed)
        x = image.float().clamp(0, 1)
        if v["exposure"] != 0:
            x = (x * 2 ** v["exposure"]).clamp(0, 1)
        x = x ** v["gamma"]
        mean = x.mean()
        x = (mean + v["contrast"] * (x - mean)).clamp(0, 1)
        gains = torch.tensor(self.color_cast) * torch.tensor([v["red_gain"], 1.0, v["blue_gain"]])
        x = (x * gains.view(3, 1, 1)).clamp(0, 1)
        if v["vignetting"] > 0:
            x = x * (1 - v["vignetting"] * _radius_squared(*x.shape[-2:]))
        if v["blur_sigma"] > 0:
            size = 2 * int(3 * v["blur_sigma"] + 0.5) + 1
            x = gaussian_blur(x[None], kernel_size=size, sigma=v["blur_sigma"])[0]
        generator = torch.Generator().manual_seed(seed)
        std = v["noise_std"]
        if v["shot_noise"] > 0:
            std = (std**2 + v["shot_noise"] * x).sqrt()
        x = (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        return jpeg_roundtrip(x, v["jpeg_quality"])


def _radius_squared(height: int, width: int) -> Tensor:
    """``(H, W)`` squared distance from the image centre, 1 at the corners."""
    y = torch.linspace(-1, 1, height).view(-1, 1)
    x = torch.linspace(-1, 1, width).view(1, -1)
    return (x.square() + y.square()) / 2


#: The named degradations. ``fixed``: one transform for every photo (gamma 1.6, contrast 0.7, a
#: (1, 0.95, 0.75) cast, blur 1 px, noise 0.04, JPEG 70), the default of earlier versions, kept
#: for comparison. ``phone``: each photo draws its own exposure error (-0.8 to +0.4 EV: under- and
#: over-exposed, the latter with clipped highlights), tone curve, contrast, white-balance error
#: (red and blue gains each within a factor 2 ** ±0.3 of the cast), vignetting, blur,
#: signal-dependent noise and JPEG quality. ``_mild`` moves every parameter about half way from the
#: identity to its preset, ``_strong`` about half as far again beyond it.
DEGRADATIONS: dict[str, PhoneDegradation] = {
    "phone": PhoneDegradation(
        exposure=(-0.8, 0.4),
        gamma=(1.1, 1.5),
        contrast=(0.6, 0.85),
        color_cast=(1.0, 0.95, 0.8),
        white_balance_error=0.3,
        vignetting=(0.1, 0.4),
        blur_sigma=(0.6, 1.4),
        noise_std=(0.01, 0.03),
        shot_noise=(0.001, 0.004),
        jpeg_quality=(55, 85),
    ),
    "phone_mild": PhoneDegradation(
        exposure=(-0.4, 0.2),
        gamma=(1.05, 1.25),
        contrast=(0.8, 0.92),
        color_cast=(1.0, 0.975, 0.9),
        white_balance_error=0.15,
        vignetting=(0.05, 0.2),
        blur_sigma=(0.3, 0.7),
        noise_std=(0.005, 0.015),
        shot_noise=(0.0005, 0.002),
        jpeg_quality=(75, 92),
    ),
    "phone_strong": PhoneDegradation(
        exposure=(-1.2, 0.6),
        gamma=(1.2, 1.8),
        contrast=(0.45, 0.75),
        color_cast=(1.0, 0.925, 0.7),
        white_balance_error=0.45,
        vignetting=(0.15, 0.6),
        blur_sigma=(0.9, 2.1),
        noise_std=(0.015, 0.045),
        shot_noise=(0.0015, 0.006),
        jpeg_quality=(40, 75),
    ),
    "fixed": PhoneDegradation(),
    "fixed_mild": PhoneDegradation(
        gamma=1.3,
        contrast=0.85,
        color_cast=(1.0, 0.975, 0.875),
        blur_sigma=0.5,
        noise_std=0.02,
        jpeg_quality=90,
    ),
    "fixed_strong": PhoneDegradation(
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
