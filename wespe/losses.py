"""Losses for image enhancement: total variation, blur and grayscale views, VGG-19 perceptual loss,
and WESPE's adversarial color and texture losses.

Each operation is a pure function with a thin :class:`torch.nn.Module` twin that takes the same
arguments (the kornia habit); each loss module carries ``loss_weight`` and, where it reduces over
a batch, ``reduction`` (the BasicSR habit). Images are float tensors of shape ``(B, C, H, W)``
with values in ``[0, 1]``.

Mean squared error needs nothing beyond :class:`torch.nn.MSELoss`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wespe._checks import check_choice

__all__ = [
    "AdversarialLoss",
    "ColorLoss",
    "GaussianBlur",
    "LowPassLoss",
    "PerceptualLoss",
    "TVLoss",
    "TextureLoss",
    "VGG19Features",
    "VGG19_LAYER_INDEX",
    "adversarial_loss",
    "discriminator_accuracy",
    "gaussian_blur",
    "to_grayscale",
    "total_variation",
]

Reduction = Literal["none", "mean", "sum"]
_REDUCTIONS = ("none", "mean", "sum")


def _check_image(name: str, x: object, channels: int | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W); got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (B, {channels}, H, W); got shape {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------------------------
# Total variation
# --------------------------------------------------------------------------------------------


def total_variation(x: Tensor, p: int = 1, reduction: Reduction = "mean") -> Tensor:
    r"""Total variation of a batch of images.

    Per image :math:`b`:

    .. math::
        TV_p(x_b) = \sum_{c,i,j} |x_{b,c,i+1,j} - x_{b,c,i,j}|^p + |x_{b,c,i,j+1} - x_{b,c,i,j}|^p

    ``p=1`` is the anisotropic (L1) total variation, the definition written in the formula of
    the seed blog post and used by kornia. ``p=2`` is the squared form that the seed blog's
    ``TVLoss`` code (and DPED, up to a constant) actually computes.

    Args:
        x: images of shape ``(B, C, H, W)``, any value range.
        p: exponent of the differences, 1 or 2.
        reduction: ``"none"``: the per-image sums, shape ``(B,)``; ``"sum"``: their sum over the
            batch; ``"mean"``: that sum divided by ``B*C*H*W``, so ``p=2, reduction="mean"``
            equals the seed blog's ``TVLoss`` exactly. Note this divides by the number of pixels,
            not by the number of differences ``(H-1)*W`` and ``H*(W-1)`` as kornia's "mean" does.

    Returns:
        shape ``(B,)`` for ``"none"``, a scalar otherwise.

    Example:
        >>> x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
        >>> total_variation(x, p=1, reduction="sum")
        tensor(8.)
        >>> total_variation(x, p=2, reduction="none")
        tensor([18.])
    """
    _check_image("x", x)
    check_choice("p", p, (1, 2))
    check_choice("reduction", reduction, _REDUCTIONS)
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    if p == 1:
        per_image = dy.abs().flatten(1).sum(1) + dx.abs().flatten(1).sum(1)
    else:
        per_image = dy.square().flatten(1).sum(1) + dx.square().flatten(1).sum(1)
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    return per_image.sum() / x.numel()


class TVLoss(nn.Module):
    """Weighted :func:`total_variation`; see there for ``p`` and ``reduction``.

    Example:
        >>> TVLoss(p=2, loss_weight=10.0)(torch.zeros(2, 3, 8, 8))
        tensor(0.)
    """

    def __init__(self, p: int = 1, reduction: Reduction = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        check_choice("p", p, (1, 2))
        check_choice("reduction", reduction, _REDUCTIONS)
        self.p = p
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, x: Tensor) -> Tensor:
        return self.loss_weight * total_variation(x, p=self.p, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"


# --------------------------------------------------------------------------------------------
# The views WESPE's discriminators see
# --------------------------------------------------------------------------------------------


def gaussian_blur(x: Tensor, kernel_size: int = 21, sigma: float = 3.0) -> Tensor:
    r"""Gaussian blur with kornia's :func:`kornia.filters.gaussian_blur2d`, reflect padding.

    ``sigma`` is the **standard deviation** in pixels. The defaults, a 21 px kernel with std 3,
    are DPED's/WESPE's code (``gauss_kernel(21, nsig=3)`` spreads ±3.5 std over 21 px, so its
    std is 3 px) and what public WESPE ports use. The WESPE paper writes the kernel as
    :math:`A\exp(-\frac{k^2}{2\sigma} - \frac{l^2}{2\sigma})` with :math:`A = 0.053` and
    :math:`\sigma = 3`; since :math:`1/(2\pi\cdot 3) = 0.053`, that "σ" acts as a variance
    (std √3 ≈ 1.73 px). We follow the released code, which produced the paper's results; pass
    ``sigma=3 ** 0.5, kernel_size=13`` for the formula as printed.

    Args:
        x: images ``(B, C, H, W)``, any value range; H and W larger than ``kernel_size // 2``
            (reflect padding mirrors that many pixels).
        kernel_size: odd kernel width and height in pixels.
        sigma: standard deviation in pixels, > 0.

    Returns:
        blurred images, same shape and dtype as ``x``.

    Example:
        >>> gaussian_blur(torch.full((1, 3, 32, 32), 0.5)).unique()
        tensor([0.5000])
    """
    _check_image("x", x)
    _check_blur_arguments(kernel_size, sigma)
    if min(x.shape[-2:]) <= kernel_size // 2:
        raise ValueError(
            f"gaussian_blur with kernel_size={kernel_size} needs H and W > {kernel_size // 2} "
            f"(reflect padding); got {tuple(x.shape[-2:])}: use a smaller kernel or larger images"
        )
    return kornia.filters.gaussian_blur2d(
        x, (kernel_size, kernel_size), (float(sigma), float(sigma)), border_type="reflect"
    )


def _check_blur_arguments(kernel_size: int, sigma: float) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")


class GaussianBlur(nn.Module):
    """Module twin of :func:`gaussian_blur` with the same arguments."""

    def __init__(self, kernel_size: int = 21, sigma: float = 3.0) -> None:
        super().__init__()
        # Checked here too, so a bad config fails when it is built, not at the first step.
        _check_blur_arguments(kernel_size, sigma)
        self.kernel_size = kernel_size
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_blur(x, self.kernel_size, self.sigma)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}"


class LowPassLoss(nn.Module):
    """A loss between Gaussian-blurred images: what it compares is the images' coarse content,
    their fine texture (noise, grain, sharpness) is left free.

    WESPE's content loss compares ``x`` with ``F(G(x))``. As a pixel loss it rewards ``G`` for
    keeping ``x``'s noise and blur, since ``F`` can give back only what ``G`` kept; the paper's
    VGG-19 relu5_4 features barely see pixel noise. Comparing blurred images is the pixel-space
    way to the same freedom: ``G`` may remove noise and sharpen, and the texture discriminator
    says how.

    Args:
        loss: the loss on the blurred images, ``(input, target) -> scalar``; default
            :class:`torch.nn.MSELoss`.
        kernel_size: blur kernel width in pixels (odd).
        sigma: blur standard deviation in pixels.
        loss_weight: multiplies the loss.

    Example:
        >>> x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        >>> loss = LowPassLoss(kernel_size=9, sigma=2.0)
        >>> bool(loss(noisy, x) < 0.05 * torch.nn.functional.mse_loss(noisy, x))
        True
    """

    def __init__(
        self,
        loss: nn.Module | None = None,
        kernel_size: int = 9,
        sigma: float = 2.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.loss = loss if loss is not None else nn.MSELoss()
        self.blur = GaussianBlur(kernel_size, sigma)
        self.loss_weight = loss_weight

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - torch's name
        return self.loss_weight * self.loss(self.blur(input), self.blur(target))

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}"


def to_grayscale(x: Tensor) -> Tensor:
    """RGB to luma with kornia's BT.601 weights (0.299, 0.587, 0.114).

    Args:
        x: RGB images ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        grayscale images ``(B, 1, H, W)`` in ``[0, 1]``.

    Example:
        >>> to_grayscale(torch.ones(1, 3, 2, 2)).shape
        torch.Size([1, 1, 2, 2])
    """
    _check_image("x", x, channels=3)
    return kornia.color.rgb_to_grayscale(x)


# --------------------------------------------------------------------------------------------
# VGG-19 features and the perceptual (content) loss
# --------------------------------------------------------------------------------------------


def _vgg19_layer_names() -> list[str]:
    # torchvision's vgg19 "E" configuration: blocks of 2, 2, 4, 4, 4 convolutions.
    names = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


#: Layer name -> index in ``torchvision.models.vgg19().features`` (``conv5_4`` = 34, ``relu5_4`` = 35).
VGG19_LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(_vgg19_layer_names())}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_IMAGENET_FILE = "vgg19-dcbb9e9d.pth"


def vgg19_imagenet_path() -> Path:
    """Where torchvision caches ``VGG19_Weights.IMAGENET1K_V1`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_IMAGENET_FILE


def _load_vgg19_state_dict(weights: str | os.PathLike) -> dict[str, Tensor]:
    from torchvision.models import VGG19_Weights

    if str(weights) == "imagenet":
        cached = vgg19_imagenet_path()
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        try:
            return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as error:  # no network, proxy, partial download...
            raise RuntimeError(
                "Could not get torchvision's ImageNet VGG-19 weights "
                f"({VGG19_Weights.IMAGENET1K_V1.url}): {error}.\n"
                f"Download {VGG19_IMAGENET_FILE} on a machine with internet access and put it at "
                f"{cached} (the torch hub cache; set TORCH_HOME to move it), or pass "
                "weights=<path to a torchvision-layout VGG-19 state dict>."
            ) from error
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-19 weights file {path} does not exist. weights must be 'imagenet', a path to a "
            "torchvision-layout VGG-19 state dict (keys 'features.0.weight', ...), or None."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _leave_out_features(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, local_metadata: dict
) -> None:
    for key in [k for k in state_dict if k.startswith(f"{prefix}features.")]:
        del state_dict[key]


def _keep_own_features(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *args: object
) -> None:
    # Checkpoints hold no VGG weights (and older ones' are ignored): the configured ones count.
    for key, value in module.features.state_dict().items():
        state_dict[f"{prefix}features.{key}"] = value


class VGG19Features(nn.Module):
    """Frozen VGG-19 feature extractor; returns the features of the named layers.

    Layer names follow the paper convention: ``conv{block}_{i}``, ``relu{block}_{i}``,
    ``pool{block}``, mapped to ``torchvision.models.vgg19().features`` by
    :data:`VGG19_LAYER_INDEX`. Only the layers up to the deepest requested one are kept. The
    ReLUs are made out-of-place, so a ``conv`` output is the pre-activation feature (ESRGAN
    uses ``conv5_4``, SRGAN/WESPE ``relu5_4``), not silently clipped by torchvision's in-place
    ReLU. Parameters are frozen and the network stays in eval mode whatever ``.train()`` says;
    gradients flow to the input.

    Args:
        layers: layer names, e.g. ``("relu5_4",)`` or ``("relu2_2", "conv5_4")``.
        weights: ``"imagenet"``: torchvision's ``VGG19_Weights.IMAGENET1K_V1``, read from the
            torch hub cache or downloaded; a clear error when neither works. A path: a local
            torchvision-layout state dict (loaded with ``weights_only=True``). ``None``: random
            initialisation, with a warning (features of a random VGG are not perceptual).
            Read by :meth:`load_weights`, at the first forward pass or when training starts,
            not when built; they are not part of :meth:`state_dict` (not checkpoint state).
        normalize_input: inputs are in ``[0, 1]`` and are ImageNet-normalised inside (mean
            0.485, 0.456, 0.406; std 0.229, 0.224, 0.225). Set False only for inputs that are
            already normalised.

    Shape:
        input ``(B, 3, H, W)``; output dict layer name -> ``(B, C_l, H_l, W_l)``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     vgg = VGG19Features(layers=("relu1_2",), weights=None)
        >>> vgg(torch.rand(1, 3, 8, 8))["relu1_2"].shape
        torch.Size([1, 64, 8, 8])
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu5_4",),
        # A path is a str here: with os.PathLike in the union, jsonargparse reads "null" from
        # the command line as the string "None".
        weights: str | None = "imagenet",
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        from torchvision.models import vgg19

        if isinstance(layers, str):
            layers = (layers,)
        if not layers:
            raise ValueError("layers must name at least one VGG-19 layer, e.g. ('relu5_4',)")
        for name in layers:
            if name not in VGG19_LAYER_INDEX:
                raise ValueError(
                    f"unknown VGG-19 layer {name!r}; choose from {', '.join(VGG19_LAYER_INDEX)}"
                )
        self.layers = tuple(layers)
        self.weights = None if weights is None else str(weights)
        self.normalize_input = normalize_input

        if weights is None:
            warnings.warn(
                "VGG19Features(weights=None): using a randomly initialised VGG-19; its features "
                "are not perceptual. Use weights='imagenet' or a local state dict for a real "
                "content loss.",
                UserWarning,
                stacklevel=2,
            )
        last = max(VGG19_LAYER_INDEX[name] for name in self.layers)
        modules = list(vgg19(weights=None).features.children())[: last + 1]
        self.features = nn.Sequential(
            *(nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m for m in modules)
        )
        # The weights are read by load_weights(), at the first forward pass or when training
        # starts (EnhancerModule.setup): evaluating or enhancing with a model whose content loss
        # is never used then needs no weights file.
        self._weights_loaded = weights is None
        self._index_to_name = {VGG19_LAYER_INDEX[name]: name for name in self.layers}
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Frozen, configured weights are not state: keep them out of checkpoints (80 MB in
        # every DPED checkpoint) and let loading a checkpoint leave them as they are.
        self.register_state_dict_post_hook(_leave_out_features)
        self.register_load_state_dict_pre_hook(_keep_own_features)
        self.train(False)

    def load_weights(self) -> None:
        """Read the configured weights into the network, once.

        Raises:
            RuntimeError, FileNotFoundError: the weights cannot be had; the message says where
                to put the file.
        """
        if self._weights_loaded:
            return
        state_dict = _load_vgg19_state_dict(self.weights)
        prefix = "features."
        wanted = {f"{prefix}{key}" for key in self.features.state_dict()}
        missing = sorted(wanted - set(state_dict))
        if missing:
            raise ValueError(
                f"VGG-19 weights {self.weights!r} are not a torchvision-layout VGG-19 state dict: "
                f"missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
            )
        self.features.load_state_dict({k.removeprefix(prefix): state_dict[k] for k in wanted})
        self._weights_loaded = True

    def train(self, mode: bool = True) -> VGG19Features:
        # Frozen feature extractor: eval mode always, whatever the parent module asks.
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        _check_image("x", x, channels=3)
        self.load_weights()
        if self.normalize_input:
            x = (x - self.mean) / self.std
        out: dict[str, Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self._index_to_name:
                out[self._index_to_name[index]] = x
        return out

    def extra_repr(self) -> str:
        return f"layers={self.layers}, weights={self.weights!r}, normalize_input={self.normalize_input}"


_CRITERIA = {"mse": F.mse_loss, "l1": F.l1_loss}


class PerceptualLoss(nn.Module):
    """Content (perceptual) loss: distance between VGG-19 features of two images.

    WESPE's content loss is ``PerceptualLoss("relu5_4")`` between the input photo ``x`` and its
    reconstruction ``F(G(x))``. The target's features are computed without gradient.

    Args:
        layer: a layer name, or a list of names; see :class:`VGG19Features`.
        weights: VGG-19 weights; see :class:`VGG19Features`.
        criterion: ``"mse"`` or ``"l1"``, the mean over feature elements of each layer.
        loss_weight: multiplies the loss.
        layer_weights: one weight per layer when ``layer`` is a list (default: all 1).
        normalize_input: see :class:`VGG19Features`.

    Shape:
        input and target ``(B, 3, H, W)`` in ``[0, 1]``; output a scalar.
    """

    def __init__(
        self,
        layer: str | Sequence[str] = "relu5_4",
        weights: str | None = "imagenet",
        criterion: Literal["mse", "l1"] = "mse",
        loss_weight: float = 1.0,
        layer_weights: Sequence[float] | None = None,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        check_choice("criterion", criterion, tuple(_CRITERIA))
        layers = (layer,) if isinstance(layer, str) else tuple(layer)
        if layer_weights is None:
            layer_weights = [1.0] * len(layers)
        if len(layer_weights) != len(layers):
            raise ValueError(
                f"layer_weights needs one weight per layer: {len(layers)} layers {layers}, "
                f"got {len(layer_weights)} weights"
            )
        self.layer_weights = dict(zip(layers, (float(w) for w in layer_weights), strict=True))
        self.criterion = criterion
        self.loss_weight = loss_weight
        self.vgg = VGG19Features(layers, weights=weights, normalize_input=normalize_input)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape; got {tuple(input.shape)} and "
                f"{tuple(target.shape)}"
            )
        distance = _CRITERIA[self.criterion]
        input_features = self.vgg(input)
        with torch.no_grad():
            target_features = self.vgg(target)
        loss = sum(
            weight * distance(input_features[name], target_features[name])
            for name, weight in self.layer_weights.items()
        )
        return self.loss_weight * loss


# --------------------------------------------------------------------------------------------
# Adversarial losses
# --------------------------------------------------------------------------------------------

AdversarialKind = Literal["vanilla", "lsgan", "hinge"]
_KINDS = ("vanilla", "lsgan", "hinge")


def adversarial_loss(
    logits: Tensor,
    target_is_real: bool,
    kind: AdversarialKind = "vanilla",
    for_discriminator: bool = True,
) -> Tensor:
    """GAN loss of discriminator logits, averaged over all elements.

    - ``"vanilla"``: binary cross-entropy on logits (``softplus(-l)`` for real, ``softplus(l)``
      for fake), stable for any logit; WESPE's/DPED's softmax over two classes is equivalent.
    - ``"lsgan"``: ``(l - 1)^2`` for real, ``l^2`` for fake (Mao et al., 2017).
    - ``"hinge"``: discriminator ``relu(1 - l)`` for real, ``relu(1 + l)`` for fake; the
      generator minimises ``-l`` (``target_is_real=True, for_discriminator=False``).

    Args:
        logits: raw discriminator outputs, any shape.
        target_is_real: the label the loss pushes ``logits`` towards.
        kind: ``"vanilla"``, ``"lsgan"`` or ``"hinge"``.
        for_discriminator: only matters for ``"hinge"``, whose generator side differs.

    Returns:
        a scalar.

    Example:
        >>> adversarial_loss(torch.zeros(4), target_is_real=True)
        tensor(0.6931)
        >>> adversarial_loss(torch.tensor([2.0]), True, kind="hinge", for_discriminator=False)
        tensor(-2.)
    """
    check_choice("kind", kind, _KINDS)
    if kind == "vanilla":
        return F.softplus(-logits if target_is_real else logits).mean()
    if kind == "lsgan":
        return (logits - 1).square().mean() if target_is_real else logits.square().mean()
    if not for_discriminator:
        if not target_is_real:
            raise ValueError("the hinge generator loss is defined for target_is_real=True only")
        return -logits.mean()
    return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()


def discriminator_accuracy(
    real_logits: Tensor, fake_logits: Tensor, threshold: float = 0.0
) -> Tensor:
    """Fraction of real logits above ``threshold`` and fake logits below it, over both sets.

    The threshold is the loss's decision boundary: 0 for ``"vanilla"`` and ``"hinge"``, 0.5 for
    ``"lsgan"``, whose targets are 1 (real) and 0 (fake).

    Example:
        >>> discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-3.0, -2.0]))
        tensor(0.7500)
        >>> discriminator_accuracy(torch.tensor([0.9]), torch.tensor([0.2]), threshold=0.5)
        tensor(1.)
    """
    correct = (real_logits > threshold).sum() + (fake_logits < threshold).sum()
    return correct.float() / (real_logits.numel() + fake_logits.numel())


class AdversarialLoss(nn.Module):
    """Module twin of :func:`adversarial_loss`, with a generator and a discriminator side.

    Args:
        kind: ``"vanilla"``, ``"lsgan"`` or ``"hinge"``.
        loss_weight: multiplies the generator side only; the discriminator objective is not
            weighted (its scale only matters relative to its own optimizer).
    """

    def __init__(self, kind: AdversarialKind = "vanilla", loss_weight: float = 1.0) -> None:
        super().__init__()
        check_choice("kind", kind, _KINDS)
        self.kind = kind
        self.loss_weight = loss_weight

    def forward(
        self, logits: Tensor, target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        loss = adversarial_loss(logits, target_is_real, self.kind, for_discriminator)
        return loss if for_discriminator else self.loss_weight * loss

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """Weighted loss that pushes the discriminator to call generated images real."""
        return self(fake_logits, target_is_real=True, for_discriminator=False)

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Mean of the real-side and fake-side losses (unweighted)."""
        return 0.5 * (self(real_logits, True) + self(fake_logits, False))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, loss_weight={self.loss_weight}"


class _ViewAdversarialLoss(nn.Module):
    """An adversarial loss whose discriminator sees a fixed view of the images (WESPE).

    Not an :class:`AdversarialLoss` but built on one (``self.adversarial``): its methods take
    the discriminator and images, where :class:`AdversarialLoss`'s take logits, so it could not
    stand in for one.
    """

    def __init__(self, kind: AdversarialKind = "vanilla", loss_weight: float = 1.0) -> None:
        super().__init__()
        self.adversarial = AdversarialLoss(kind, loss_weight)

    @property
    def kind(self) -> AdversarialKind:
        return self.adversarial.kind

    @property
    def loss_weight(self) -> float:
        return self.adversarial.loss_weight

    def view(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, discriminator: nn.Module, fake: Tensor) -> Tensor:
        """:meth:`generator_loss`."""
        return self.generator_loss(discriminator, fake)

    def generator_loss(
        self, discriminator: nn.Module, fake: Tensor, fake_view: Tensor | None = None
    ) -> Tensor:
        """Weighted generator loss of ``fake`` images ``(B, 3, H, W)`` in [0, 1].

        ``fake_view``: ``self.view(fake)`` if the caller has it already (it is then not
        computed again).
        """
        if fake_view is None:
            fake_view = self.view(fake)
        return self.adversarial.generator_loss(discriminator(fake_view))

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        fake_view: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Discriminator loss and accuracy on ``real`` photos versus ``fake`` (detached) images.

        Real and fake go through the discriminator in one batch, so a batch-normalised
        discriminator never sees a batch of a single class. ``fake_view``: ``self.view(fake)``
        if the caller has it already, e.g. from the generator step (detached here).
        """
        if fake_view is None:
            fake_view = self.view(fake.detach())
        logits = discriminator(torch.cat([self.view(real), fake_view.detach()]))
        real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
        loss = self.adversarial.discriminator_loss(real_logits, fake_logits)
        threshold = 0.5 if self.kind == "lsgan" else 0.0
        return loss, discriminator_accuracy(real_logits.detach(), fake_logits.detach(), threshold)


class ColorLoss(_ViewAdversarialLoss):
    """WESPE's color loss: an adversarial loss whose discriminator sees Gaussian-blurred images.

    Blurring removes texture and noise, so the discriminator can only judge brightness, contrast
    and colors. See :func:`gaussian_blur` for the kernel and the paper's σ.

    Args:
        kind: adversarial loss kind, see :func:`adversarial_loss`.
        loss_weight: weight of the generator side (WESPE: 5e-3).
        kernel_size: blur kernel width in pixels (odd).
        sigma: blur standard deviation in pixels.

    Example:
        >>> loss = ColorLoss(kernel_size=5, sigma=1.0)
        >>> discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
        >>> loss.generator_loss(discriminator, torch.rand(2, 3, 8, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        kind: AdversarialKind = "vanilla",
        loss_weight: float = 1.0,
        kernel_size: int = 21,
        sigma: float = 3.0,
    ) -> None:
        super().__init__(kind, loss_weight)
        self.blur = GaussianBlur(kernel_size, sigma)

    def view(self, x: Tensor) -> Tensor:
        return self.blur(x)


class TextureLoss(_ViewAdversarialLoss):
    """WESPE's texture loss: an adversarial loss whose discriminator sees grayscale images.

    Without color the discriminator has to judge texture, sharpness and noise (and, in the
    paper's form, brightness and contrast too). With ``high_pass_sigma`` it sees only the
    gray image's fine detail, ``gray - blur(gray)``: texture, noise and sharpness alone (not in
    the paper).

    Args:
        kind: adversarial loss kind, see :func:`adversarial_loss`.
        loss_weight: weight of the generator side (WESPE: 5e-3).
        high_pass_sigma: if set, the std in pixels of the blur subtracted from the gray image
            (kernel ``2 * ceil(3 * sigma) + 1`` px); None: the gray image itself (paper).

    Example:
        >>> flat = torch.full((1, 3, 16, 16), 0.7)  # no detail at all
        >>> bool(TextureLoss(high_pass_sigma=1.5).view(flat).abs().max() < 1e-6)
        True
        >>> TextureLoss().view(flat).shape  # the paper's gray view
        torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        kind: AdversarialKind = "vanilla",
        loss_weight: float = 1.0,
        high_pass_sigma: float | None = None,
    ) -> None:
        super().__init__(kind, loss_weight)
        self.high_pass = (
            None
            if high_pass_sigma is None
            else GaussianBlur(2 * math.ceil(3 * high_pass_sigma) + 1, high_pass_sigma)
        )

    def view(self, x: Tensor) -> Tensor:
        gray = to_grayscale(x)
        return gray if self.high_pass is None else gray - self.high_pass(gray)
