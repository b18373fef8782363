"""WESPE's networks: the DPED ResNet generator (used for G and the inverse generator F) and the
DPED discriminator (used for the texture and the color discriminator).

Plain :class:`torch.nn.Module` s: they know nothing of losses, Lightning or configs.

Sources: Ignatov et al., "WESPE: Weakly Supervised Photo Enhancer for Digital Cameras", CVPRW 2018
(arXiv 1709.01118), Fig. 2 and Sec. 3, which reuse the networks of Ignatov et al., "DSLR-Quality
Photos on Mobile Devices with Deep Convolutional Networks", ICCV 2017 (DPED), whose released code
(``models.py``: ``resnet`` and ``adversarial``) gives the exact numbers below.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from wespe._checks import check_choice

__all__ = ["Discriminator", "Generator", "ResidualBlock"]

OutputKind = Literal["dped", "sigmoid", "residual"]
NormKind = Literal["instance", "batch", "spectral", "none"]


class ResidualBlock(nn.Module):
    """DPED residual block: two 3×3 convs with instance norm, ReLU after each, then the skip.

    DPED's code: ``relu(in(conv(relu(in(conv(x)))))) + x``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """The DPED ResNet image-to-image generator, WESPE's G and F.

    9×9 conv 3→``channels`` + ReLU; ``num_blocks`` residual blocks (:class:`ResidualBlock`);
    two 3×3 convs + ReLU; 9×9 conv ``channels``→3; output map. The paper's network is
    ``Generator(channels=64, num_blocks=4, output="dped")``; smaller widths make CPU runs fast.

    Args:
        channels: feature width (DPED: 64).
        num_blocks: number of residual blocks (DPED: 4).
        output: how the last conv's output ``z`` becomes an image:
            ``"dped"``: ``tanh(z) * 0.58 + 0.5`` as in DPED's code (range about [-0.08, 1.08]);
            ``"sigmoid"``: ``sigmoid(z)``, range (0, 1);
            ``"residual"``: ``x + z`` (not in the paper): the network learns a correction of its
            input. With ``init="identity"`` it starts as the identity map, so training starts
            from the photo instead of noise. Values are not clamped, so gradients never vanish.
        init: ``"dped"``: weights from a normal with std 0.01 truncated at 2 std and biases
            0.01, as DPED's code (``weight_variable``, ``bias_variable``); ``"default"``: PyTorch's default initialisation; ``"identity"``: default
            initialisation with the last conv zeroed (only with ``output="residual"``: G(x) = x).

    Shape:
        input ``(B, 3, H, W)`` in [0, 1], H·W > 1 (instance norm); output ``(B, 3, H, W)``.

    Example:
        >>> Generator(channels=8, num_blocks=1)(torch.rand(2, 3, 17, 23)).shape
        torch.Size([2, 3, 17, 23])
    """

    def __init__(
        self,
        channels: int = 64,
        num_blocks: int = 4,
        output: OutputKind = "dped",
        init: Literal["dped", "default", "identity"] = "dped",
    ) -> None:
        super().__init__()
        check_choice("output", output, ("dped", "sigmoid", "residual"))
        check_choice("init", init, ("dped", "default", "identity"))
        if init == "identity" and output != "residual":
            raise ValueError("init='identity' needs output='residual' (G(x) = x + 0 at start)")
        if channels < 1 or num_blocks < 0:
            raise ValueError(
                f"channels must be >= 1 and num_blocks >= 0; got {channels}, {num_blocks}"
            )
        self.output = output
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        self.tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.to_image = nn.Conv2d(channels, 3, 9, padding=4)
        if init == "dped":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
                    nn.init.constant_(module.bias, 0.01)
        elif init == "identity":
            nn.init.zeros_(self.to_image.weight)
            nn.init.zeros_(self.to_image.bias)

    def forward(self, x: Tensor) -> Tensor:
        z = self.to_image(self.tail(self.blocks(self.head(x))))
        if self.output == "dped":
            return torch.tanh(z) * 0.58 + 0.5
        if self.output == "sigmoid":
            return torch.sigmoid(z)
        return x + z


def _norm(kind: NormKind, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class Discriminator(nn.Module):
    """The DPED/WESPE discriminator, returning one logit per image.

    11×11 stride-4 conv 48 (no norm); 5×5/2 conv 128; 3×3 conv 192; 3×3 conv 192; 3×3/2 conv 128;
    each conv followed by LeakyReLU(0.2) and, after the first, a normalisation; then a fully
    connected layer of 1024 units + LeakyReLU(0.2) and a final one to a single logit (DPED's
    softmax over two classes is the same model as one logit with a sigmoid). DPED's FC layer
    assumes 100×100 patches (a 7×7×128 map); here an adaptive average pool to
    ``pooled_size``×``pooled_size`` comes first, which is the identity for 100×100 inputs and
    lets any patch size through.

    Args:
        in_channels: 1 for the texture discriminator (grayscale), 3 for the color one.
        widths: the five conv widths (DPED: 48, 128, 192, 192, 128).
        fc_features: width of the hidden FC layer (DPED: 1024).
        norm: ``"instance"`` (DPED's code), ``"batch"`` (per-device statistics under DDP),
            ``"spectral"`` (spectral normalisation of every conv and linear weight, no feature
            norm) or ``"none"``.
        pooled_size: spatial size of the map fed to the FC layer (DPED: 7).
        input_statistics: also give the FC layers each input channel's mean and standard
            deviation over the image (not in DPED). Instance normalisation removes exactly
            these from the conv features, which leaves the discriminator nearly blind to
            brightness, contrast and color balance, the things a color or tone error changes.

    Shape:
        input ``(B, in_channels, H, W)``; output ``(B,)`` logits. With ``norm="instance"``
        H, W >= 17 (the last conv's map must hold more than one pixel to be normalised).

    Example:
        >>> Discriminator(in_channels=1)(torch.rand(2, 1, 100, 100)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, int, int, int, int] = (48, 128, 192, 192, 128),
        fc_features: int = 1024,
        norm: NormKind = "instance",
        pooled_size: int = 7,
        input_statistics: bool = False,
    ) -> None:
        super().__init__()
        check_choice("norm", norm, ("instance", "batch", "spectral", "none"))
        self._arguments = {
            "in_channels": in_channels,
            "widths": tuple(widths),
            "fc_features": fc_features,
            "norm": norm,
            "pooled_size": pooled_size,
            "input_statistics": input_statistics,
        }
        if len(widths) != 5:
            raise ValueError(f"widths must list 5 conv widths; got {widths}")
        self.in_channels = in_channels
        self.input_statistics = input_statistics
        self.min_input_size = 17 if norm == "instance" else 1
        # (kernel, stride) of the five convs, DPED's adversarial network.
        geometry = ((11, 4), (5, 2), (3, 1), (3, 1), (3, 2))
        layers: list[nn.Module] = []
        previous = in_channels
        for index, ((kernel, stride), width) in enumerate(zip(geometry, widths, strict=True)):
            layers += [nn.Conv2d(previous, width, kernel, stride, padding=kernel // 2)]
            layers += [nn.LeakyReLU(0.2)]
            if index > 0:
                layers += [_norm(norm, width)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        features = previous * pooled_size * pooled_size
        if input_statistics:
            features += 2 * in_channels
        self.classifier = nn.Sequential(
            # Kept (a no-op on flat features) so the state dict keeps DPED-era layer indices.
            nn.Flatten(),
            nn.Linear(features, fc_features),
            nn.LeakyReLU(0.2),
            nn.Linear(fc_features, 1),
        )
        if norm == "spectral":
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)

    def __reduce__(self) -> tuple:
        # torch cannot pickle spectral norm's parametrized layers (ddp_spawn and other
        # multiprocessing pickle the model): rebuild from the arguments and the weights instead.
        if self._arguments["norm"] != "spectral":
            return super().__reduce__()
        return _rebuild_discriminator, (self._arguments, self.state_dict(), self.training)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Discriminator expects (B, {self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"Discriminator with instance norm needs inputs of at least {self.min_input_size} px "
                f"(its last feature map would be 1x1); got {tuple(x.shape[-2:])}: use larger "
                "patches or norm='batch'|'spectral'|'none'"
            )
        features = self.pool(self.features(x)).flatten(1)
        if self.input_statistics:
            std, mean = torch.std_mean(x.flatten(2), dim=2)
            features = torch.cat([features, mean, std], dim=1)
        return self.classifier(features).squeeze(1)


def _rebuild_discriminator(
    arguments: dict, state: dict[str, Tensor], training: bool
) -> Discriminator:
    """Unpickle a spectral-norm :class:`Discriminator` (see its ``__reduce__``)."""
    discriminator = Discriminator(**arguments)
    discriminator.load_state_dict(state)
    return discriminator.train(training)
