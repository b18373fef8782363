"""Classical enhancers: the baselines a learned enhancer has to beat.

Each is a small function on RGB images ``(B, 3, H, W)`` in [0, 1] that returns the same shape in
[0, 1], built on the libraries' implementations (kornia's CLAHE and bilateral filter,
scikit-image's histogram matching); :class:`ClassicalEnhancer` chains them into an
``nn.Module`` with no weights, so the benchmark evaluates a classical method exactly as it
evaluates a trained generator (``EnhancerModule(generator=ClassicalEnhancer(...))``).

- :func:`auto_levels`: stretch the ``low``/``high`` quantiles of each channel (or of all
  channels together) to 0 and 1, clipping the rest: what "auto levels" does in photo editors;
- :func:`gamma_to_mean`: a gamma that moves the mean luma to ``target``;
- :func:`gray_world`: scale the channels to equal means (white balance by the gray-world
  assumption);
- :func:`clahe`: kornia's contrast-limited adaptive histogram equalisation;
- :func:`match_histograms`: scikit-image's per-channel histogram matching to reference photos
  (the unpaired classical method: it needs only good photos, like WESPE);
- :func:`bilateral_denoise`: kornia's edge-preserving bilateral filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
from torch import Tensor, nn

from wespe.losses import _check_image, to_grayscale

__all__ = [
    "ClassicalEnhancer",
    "auto_levels",
    "bilateral_denoise",
    "clahe",
    "gamma_to_mean",
    "gray_world",
    "match_histograms",
]


def _quantile(values: Tensor, q: float) -> Tensor:
    """The ``q`` quantile along the last dimension as its k-th smallest value (torch.quantile
    refuses more than 2 ** 24 values: a 12 MP photo's channel is near that)."""
    k = min(max(1, math.ceil(q * values.shape[-1])), values.shape[-1])
    return values.kthvalue(k, dim=-1).values


def auto_levels(
    x: Tensor, low: float = 0.005, high: float = 0.995, per_channel: bool = True
) -> Tensor:
    """Stretch each image's ``low`` and ``high`` quantiles to 0 and 1 (clipping beyond them).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        low, high: the quantiles mapped to black and white, ``0 <= low < high <= 1``.
        per_channel: stretch each channel on its own quantiles (also corrects a color cast), or
            all three on the quantiles of their pooled values (keeps the color balance).

    Returns:
        ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> x = torch.linspace(0.2, 0.6, 100).view(1, 1, 10, 10).expand(1, 3, 10, 10)
        >>> y = auto_levels(x, 0.0, 1.0)
        >>> float(y.min()), float(y.max())
        (0.0, 1.0)
    """
    _check_image("x", x, channels=3)
    if not 0 <= low < high <= 1:
        raise ValueError(f"auto_levels needs 0 <= low < high <= 1; got low={low}, high={high}")
    values = x.flatten(2) if per_channel else x.flatten(1)[:, None]
    black, white = _quantile(values, low), _quantile(values, high)
    shape = (x.shape[0], -1, 1, 1)
    span = (white - black).clamp_min(1e-6)
    return ((x - black.view(shape)) / span.view(shape)).clamp(0, 1)


def gamma_to_mean(x: Tensor, target: float = 0.45) -> Tensor:
    """``x ** gamma`` with, per image, ``gamma = log(target) / log(mean luma)``: brightens dark
    photos and darkens bright ones so their mean luma lands near ``target``.

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        target: the mean luma aimed at, in (0, 1).

    Returns:
        ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> round(float(gamma_to_mean(torch.full((1, 3, 4, 4), 0.2), 0.45).mean()), 3)
        0.45
    """
    _check_image("x", x, channels=3)
    if not 0 < target < 1:
        raise ValueError(f"gamma_to_mean needs 0 < target < 1; got {target}")
    mean = to_grayscale(x).mean(dim=(1, 2, 3)).clamp(1e-3, 1 - 1e-3)
    gamma = math.log(target) / mean.log()
    return x.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1))


def gray_world(x: Tensor) -> Tensor:
    """Scale each channel so that its mean equals the mean of the three (the gray-world white
    balance), clipped to [0, 1].

    Example:
        >>> x = torch.tensor([0.4, 0.3, 0.2]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
        >>> gray_world(x)[0, :, 0, 0]
        tensor([0.3000, 0.3000, 0.3000])
    """
    _check_image("x", x, channels=3)
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x * means.mean(dim=1, keepdim=True) / means.clamp_min(1e-6)).clamp(0, 1)


def clahe(x: Tensor, clip_limit: float = 2.0, grid_size: tuple[int, int] = (8, 8)) -> Tensor:
    """kornia's contrast-limited adaptive histogram equalisation (each channel on its own):
    ``kornia.enhance.equalize_clahe``.

    Example:
        >>> flat = 0.4 + 0.1 * torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> bool(clahe(flat).std() > flat.std())
        True
    """
    _check_image("x", x, channels=3)
    return kornia.enhance.equalize_clahe(x.clamp(0, 1), clip_limit=clip_limit, grid_size=grid_size)


def match_histograms(x: Tensor, reference: Tensor) -> Tensor:
    """Match each channel's histogram to the reference pixels' (scikit-image's
    ``exposure.match_histograms``).

    Args:
        x: RGB images ``(B, 3, H, W)`` in [0, 1].
        reference: RGB reference pixels ``(3, H', W')`` in [0, 1], e.g. the good photos laid side
            by side (their sizes need not match ``x``'s).

    Returns:
        ``(B, 3, H, W)`` in [0, 1], on ``x``'s device.

    Example:
        >>> x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5
        >>> reference = torch.linspace(0, 1, 3 * 64).view(3, 8, 8)
        >>> bool(match_histograms(x, reference).max() > 0.9)
        True
    """
    from skimage.exposure import match_histograms as skimage_match

    _check_image("x", x, channels=3)
    target = reference.detach().float().permute(1, 2, 0).cpu().numpy()
    matched = [
        torch.from_numpy(skimage_match(image, target, channel_axis=-1)).permute(2, 0, 1)
        for image in x.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    ]
    return torch.stack(matched).to(x.device, x.dtype).clamp(0, 1)


def bilateral_denoise(
    x: Tensor, kernel_size: int = 7, sigma_color: float = 0.1, sigma_space: float = 2.0
) -> Tensor:
    """kornia's bilateral filter (``kornia.filters.bilateral_blur``): smooths noise, keeps
    edges whose color difference is large against ``sigma_color``.

    Example:
        >>> flat = torch.full((1, 3, 16, 16), 0.5)
        >>> noisy = flat + 0.05 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
        >>> bool((bilateral_denoise(noisy, sigma_color=0.3) - flat).std() < 0.5 * (noisy - flat).std())
        True
    """
    _check_image("x", x, channels=3)
    return kornia.filters.bilateral_blur(
        x.clamp(0, 1), kernel_size, sigma_color, (sigma_space, sigma_space)
    ).clamp(0, 1)


#: The steps :class:`ClassicalEnhancer` chains, by name.
STEPS = {
    "auto_levels": auto_levels,
    "gamma_to_mean": gamma_to_mean,
    "gray_world": gray_world,
    "clahe": clahe,
    "match_histograms": match_histograms,
    "bilateral_denoise": bilateral_denoise,
}


class ClassicalEnhancer(nn.Module):
    """A classical method as a weightless network: the named :data:`STEPS` applied in order.

    Args:
        steps: ``(name, keyword arguments)`` pairs, e.g.
            ``[("auto_levels", {}), ("gamma_to_mean", {"target": 0.45})]``.
        reference: RGB reference pixels ``(3, H', W')`` in [0, 1] for ``match_histograms``.

    Example:
        >>> enhancer = ClassicalEnhancer([("gray_world", {}), ("auto_levels", {"per_channel": False})])
        >>> enhancer(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, steps: Sequence[tuple[str, dict]], reference: Tensor | None = None) -> None:
        super().__init__()
        for name, _ in steps:
            if name not in STEPS:
                raise ValueError(f"unknown classical step {name!r}; choose from {', '.join(STEPS)}")
            if name == "match_histograms" and reference is None:
                raise ValueError("the match_histograms step needs reference pixels (reference=)")
        self.steps = [(name, dict(options)) for name, options in steps]
        self.reference = reference

    def forward(self, x: Tensor) -> Tensor:
        x = x.clamp(0, 1)
        for name, options in self.steps:
            if name == "match_histograms":
                x = match_histograms(x, self.reference)
            else:
                x = STEPS[name](x, **options)
        return x

    def extra_repr(self) -> str:
        return " -> ".join(name for name, _ in self.steps)
