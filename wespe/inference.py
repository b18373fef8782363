"""Inference at full resolution: the trained generator alone, out of a checkpoint, run over a
photo of any size in tiles with bounded memory and no seams.

Two problems make naive tiling wrong for the DPED generator:

- **Context.** A convolution near a tile's edge sees zero padding instead of the neighbouring
  pixels. Each tile is therefore run with ``tile_pad`` pixels of real context on every side (by
  default the network's receptive radius, so the tile's centre is exactly what the whole image
  would give there) and only its centre is kept.
- **Instance normalisation.** Every residual block normalises its features with the mean and
  variance of the whole feature map. A tile has its own statistics, so naive tiles disagree
  (Real-ESRGAN-style tiling shows seams for that reason). Here each normalisation layer instead
  uses statistics of the *whole photo*, measured layer by layer in a first phase: pass ``k`` runs
  the tiles up to the ``k``-th normalisation (the earlier ones already using whole-photo
  statistics) and accumulates that layer's per-channel mean and variance over the tiles' centres.
  All tiles then share the same statistics, so neighbouring tiles agree to float precision and
  the result equals the untiled one (see :class:`TiledEnhancer` for the tolerance).

The first phase costs more than the enhancement itself: pass ``k`` runs the first ``k``
normalised layers, so the 2 norms per residual block cost about ``num_blocks`` extra passes
(measured: 3-5 times the untiled time on a CPU). Estimating the statistics on a sample of the
photo instead was tried and dropped: with lattices of 0.125-2 megapixels of 32-256 px tiles,
a trained quickstart generator's 12-megapixel outputs were 1.7-36 8-bit levels off on average,
worse than naive tiling in the worst case (README, "Enhancing your photos").
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "CheckpointError",
    "TiledEnhancer",
    "generator_state_dict",
    "load_generator",
    "receptive_radius",
]

Precision = Literal["32", "bf16", "fp16"]
_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class CheckpointError(ValueError):
    """A checkpoint that holds no usable wespe generator; the message says why and what to do."""


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # mmap: only the generator's tensors are read from disk, not F, the discriminators or
        # the optimizer states that share the file.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - torch raises several kinds for a foreign file
        raise CheckpointError(
            f"cannot read {path} as a checkpoint with weights_only=True ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); give a checkpoint that "
            "`wespe fit` wrote (runs/<name>/version_N/checkpoints/*.ckpt)"
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (it has no state_dict); give a checkpoint "
            "that `wespe fit` wrote (runs/<name>/version_N/checkpoints/*.ckpt)"
        )
    return checkpoint


def generator_state_dict(state_dict: dict[str, Tensor], use_ema: bool = True) -> dict[str, Tensor]:
    """The generator's weights in a wespe module's state dict: those of its moving average
    (``generator_ema.module.*``) if the run kept one and ``use_ema``, else ``generator.*``.

    Raises:
        CheckpointError: the state dict holds no generator (a checkpoint of another model).
    """
    for prefix in (["generator_ema.module."] if use_ema else []) + ["generator."]:
        weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if weights:
            return weights
    sample = ", ".join(list(state_dict)[:5])
    raise CheckpointError(
        "the checkpoint holds no wespe generator (no 'generator.*' weights; its first keys: "
        f"{sample}); it is a checkpoint of another model: give one written by `wespe fit` "
        "with a wespe model (wespe.WESPE or wespe.module.SupervisedEnhancer)"
    )


def _build_network(config: object, path: Path) -> nn.Module:
    """The generator a checkpoint's hyper-parameters describe (``class_path``/``init_args``)."""
    from wespe.networks import Generator

    if config is None:
        return Generator()  # the module's default generator
    if not (isinstance(config, dict) and isinstance(config.get("class_path"), str)):
        raise CheckpointError(
            f"{path} does not record how its generator was built (the module was constructed "
            "in Python with a network object, which is not stored); build the network yourself "
            "and pass it: wespe.inference.load_generator(path, generator=network)"
        )
    module_name, _, class_name = config["class_path"].rpartition(".")
    try:
        network_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: its generator class {config['class_path']!r} cannot be imported ({error}); "
            "install the package that defines it"
        ) from error
    # Only a network class is ever called with the checkpoint's arguments: a checkpoint is data.
    if not (isinstance(network_class, type) and issubclass(network_class, nn.Module)):
        raise CheckpointError(
            f"{path}: its generator class_path {config['class_path']!r} is not a torch.nn.Module"
        )
    return network_class(**(config.get("init_args") or {}))


def load_generator(
    ckpt_path: str | os.PathLike, generator: nn.Module | None = None, use_ema: bool = True
) -> nn.Module:
    """The trained generator of a wespe checkpoint, alone, in eval mode on the CPU.

    Reads the file with ``weights_only=True`` (a checkpoint is data, not code) and memory-mapped,
    so only the generator's weights are loaded; the content network (VGG-19) is never needed.
    The network is built from the checkpoint's recorded configuration (``model.init_args.
    generator`` of the run's config) and takes the weights of G's moving average if the run kept
    one (``ema_decay``) and ``use_ema``, else G's.

    Args:
        ckpt_path: a checkpoint ``wespe fit`` wrote.
        generator: the network to load the weights into, for a checkpoint of a module built in
            Python (whose network configuration is not stored). Default: built from the file.
        use_ema: prefer the moving average's weights when the checkpoint has them.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a checkpoint, holds no wespe generator, or its weights
            do not fit the network; the message says which.
    """
    path = Path(ckpt_path)
    checkpoint = _read_checkpoint(path)
    weights = generator_state_dict(checkpoint["state_dict"], use_ema=use_ema)
    if generator is None:
        generator = _build_network(checkpoint.get("hyper_parameters", {}).get("generator"), path)
    try:
        generator.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: the generator's weights do not fit the network "
            f"{type(generator).__name__}: {error}"
        ) from error
    return generator.eval().requires_grad_(False)


def receptive_radius(network: nn.Module) -> int:
    """How far (in pixels) an output pixel of ``network`` can see: the sum of its convolutions'
    radii, ``dilation * (kernel_size - 1) // 2``. Exact for a chain of convolutions such as the
    DPED generator (4 + 2 per residual block + 2 + 4: 18 for the paper's 4 blocks), an upper
    bound when branches run in parallel.

    Raises:
        ValueError: the network changes the resolution (strided, transposed or pooling layers),
            which tiling at full resolution does not support.
    """
    radius = 0
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.stride != (1, 1):
                raise ValueError(
                    f"tiled enhancement needs a network that keeps the resolution; layer {name} "
                    f"has stride {module.stride}: enhance untiled (tile_size 0)"
                )
            radius += max(
                d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True)
            )
        elif isinstance(module, nn.ConvTranspose2d | nn.MaxPool2d | nn.AvgPool2d | nn.Upsample):
            raise ValueError(
                f"tiled enhancement needs a network that keeps the resolution; layer {name} "
                f"({type(module).__name__}) does not: enhance untiled (tile_size 0)"
            )
    return radius


# ---------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class _Span:
    """One tile along one axis: output ``[start, stop)``, input ``[context_start, context_stop)``."""

    start: int
    stop: int
    context_start: int
    context_stop: int
    weights: Tensor  # (stop - start,) blending weights; they sum to 1 over the tiles at a pixel


def _spans(length: int, tile: int, overlap: int, pad: int) -> list[_Span]:
    """Tiles of at most ``tile`` covering ``[0, length)``, neighbours overlapping by at least
    ``overlap``, each with ``pad`` of context (clipped at the border), and linear blending ramps
    across each overlap, normalised to sum to one at every pixel."""
    if tile <= 0 or tile >= length:
        starts, size = [0], length
    else:
        count = math.ceil((length - overlap) / (tile - overlap))
        size = math.ceil((length - overlap) / count) + overlap  # even tiles, each <= tile
        starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    ramps = []
    for index, start in enumerate(starts):
        weights = torch.ones(size)
        if index > 0:  # ramp up across the overlap with the previous tile
            shared = starts[index - 1] + size - start
            weights[:shared] = (torch.arange(shared) + 0.5) / shared
        if index < len(starts) - 1:  # ramp down across the overlap with the next one
            shared = start + size - starts[index + 1]
            weights[size - shared :] = torch.minimum(
                weights[size - shared :], 1 - (torch.arange(shared) + 0.5) / shared
            )
        ramps.append(weights)
    # Normalised so that the weights at each pixel sum to one, however many tiles share it.
    total = torch.zeros(length)
    for start, weights in zip(starts, ramps, strict=True):
        total[start : start + size] += weights
    return [
        _Span(
            start,
            start + size,
            max(0, start - pad),
            min(length, start + size + pad),
            weights / total[start : start + size],
        )
        for start, weights in zip(starts, ramps, strict=True)
    ]


def _partition(length: int, tile: int, pad: int) -> list[_Span]:
    """Tiles of ``tile`` (the last one shorter) that partition ``[0, length)``: each pixel in
    exactly one, so statistics count it once."""
    tile = tile if 0 < tile < length else length
    return [
        _Span(
            start,
            min(start + tile, length),
            max(0, start - pad),
            min(length, start + tile + pad),
            torch.ones(min(tile, length - start)),
        )
        for start in range(0, length, tile)
    ]


# ---------------------------------------------------------------------------- statistics


class _StopForward(Exception):
    """Ends a statistics pass at the layer being measured."""


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged tile by tile (Chan et
    al.'s parallel update, in float64) so that millions of pixels lose no precision."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, features: Tensor) -> None:
        flat = features.detach().double().flatten(1)  # (C, N): one tile's centre
        count = flat.shape[1]
        mean = flat.mean(1)
        m2 = ((flat - mean[:, None]) ** 2).sum(1)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / total
        self.count = total

    def mean_and_variance(self) -> tuple[Tensor, Tensor]:
        return self.mean.float(), (self.m2 / self.count).float()  # biased, as instance norm


class _SharedStatisticsNorm(nn.Module):
    """Stands in for an ``InstanceNorm2d``: normalises with given per-channel statistics (those
    of the whole photo) instead of the input's own, or measures its input for them."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.norm = norm
        self.mean: Tensor | None = None
        self.variance: Tensor | None = None
        self.measure: Callable[[Tensor], None] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.measure is not None:
            self.measure(x)
            raise _StopForward
        if self.mean is None:
            return self.norm(x)  # per-tile statistics (only for comparisons)
        # In float32 whatever the autocast dtype: batch_norm wants its input and parameters in
        # one dtype, and the statistics are float32.
        return nn.functional.batch_norm(
            x.float(),
            self.mean.to(x.device),
            self.variance.to(x.device),
            self.norm.weight,
            self.norm.bias,
            training=False,
            eps=self.norm.eps,
        ).to(x.dtype)


def _with_shared_statistics(network: nn.Module) -> tuple[nn.Module, list[_SharedStatisticsNorm]]:
    """``network`` with its instance norms replaced (in place) by ones that use shared
    statistics, and those in forward order."""
    unsupported = [
        f"{name} ({type(m).__name__})"
        for name, m in network.named_modules()
        if isinstance(m, nn.GroupNorm | nn.LayerNorm | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
    ]
    if unsupported:
        raise ValueError(
            "tiled enhancement cannot reproduce layers that pool over the whole image: "
            f"{', '.join(unsupported)}; enhance untiled (tile_size 0)"
        )
    copied = network
    norms: list[_SharedStatisticsNorm] = []
    for name, module in list(copied.named_modules()):
        # In eval mode a norm with running statistics already ignores the image's own.
        if isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
            shared = _SharedStatisticsNorm(module)
            copied.set_submodule(name, shared)
            norms.append(shared)
    order: list[_SharedStatisticsNorm] = []
    hooks = [n.register_forward_pre_hook(lambda m, _: order.append(m)) for n in norms]
    try:
        with torch.no_grad():
            copied(torch.zeros(1, 3, 8, 8, device=next(copied.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    if sorted(map(id, order)) != sorted(map(id, norms)) or len(order) != len(norms):
        raise ValueError("tiled enhancement needs each instance norm to run once per forward")
    return copied, order


def _measure_centre(moments: _Moments, rows: _Span, columns: _Span, features: Tensor) -> None:
    """Add the statistics of a tile's centre (its output region) to ``moments``."""
    if features.shape[-2:] != (
        rows.context_stop - rows.context_start,
        columns.context_stop - columns.context_start,
    ):
        raise ValueError(
            "tiled enhancement needs a network whose features keep the photo's resolution; "
            "enhance untiled (tile_size 0)"
        )
    top, left = rows.start - rows.context_start, columns.start - columns.context_start
    moments.add(
        features[
            0, :, top : top + rows.stop - rows.start, left : left + columns.stop - columns.start
        ]
    )


# ---------------------------------------------------------------------------- enhancer


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    dtype = _PRECISIONS[precision]
    if dtype is None:
        return None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16: {device} does not support bfloat16; use 32 or fp16")
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"precision {precision}: no autocast on {device.type}; use 32")
    return dtype


class TiledEnhancer:
    """Enhance photos of any size with ``network`` in tiles, with memory bounded by the tile
    size, and the same result as the whole photo in one pass.

    The photo stays in host memory; one tile at a time goes to ``device``. Results are blended
    across ``tile_overlap`` with linear ramps and written into the output band by band.

    Tolerance: with whole-photo statistics and the default ``tile_pad`` the result equals the
    untiled network's within float32 rounding; ``tests/test_inference.py`` asserts at most 1e-4
    (on [0, 1]) on photos several tiles wide with odd sizes (measured: about 3e-7, and at
    most one 8-bit level after rounding on 12-megapixel photos).

    Args:
        network: a generator mapping ``(1, 3, H, W)`` in [0, 1] to the same shape, keeping the
            resolution (e.g. :func:`load_generator`'s). Not modified.
        tile_size: side of the tiles' output (0: the whole photo in one pass).
        tile_overlap: pixels shared by neighbouring tiles' outputs, blended (at most half the
            tile).
        tile_pad: context around each tile (default: :func:`receptive_radius`, which makes the
            tile's output exact).
        statistics: ``"image"``: instance norms use whole-photo statistics (above);
            ``"tile"``: each tile's own (what naive tiling does; for comparisons only).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision: ``"32"``, or ``"bf16"``/``"fp16"`` autocast where the device supports it.

    Example:
        >>> from wespe.networks import Generator
        >>> enhance = TiledEnhancer(Generator(channels=4, num_blocks=1), tile_size=32, tile_overlap=8)
        >>> enhance(torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)).shape
        torch.Size([3, 50, 70])
    """

    def __init__(
        self,
        network: nn.Module,
        tile_size: int = 512,
        tile_overlap: int = 32,
        tile_pad: int | None = None,
        statistics: Literal["image", "tile"] = "image",
        device: str | torch.device = "cpu",
        precision: Precision = "32",
    ) -> None:
        if tile_size < 0 or tile_overlap < 0 or (tile_pad is not None and tile_pad < 0):
            raise ValueError(
                f"tile_size, tile_overlap and tile_pad must be >= 0; got {tile_size}, "
                f"{tile_overlap}, {tile_pad}"
            )
        if tile_size and tile_overlap * 2 > tile_size:
            raise ValueError(
                f"tile_overlap={tile_overlap} must be at most half of tile_size={tile_size}"
            )
        if statistics not in ("image", "tile"):
            raise ValueError(f"statistics must be 'image' or 'tile'; got {statistics!r}")
        self.device = _device(device)
        self.autocast_dtype = _check_precision(precision, self.device)
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.tile_pad = receptive_radius(network) if tile_pad is None else tile_pad
        self.statistics = statistics
        # A copy: the caller's network keeps its device and mode.
        copied = copy.deepcopy(network).eval().to(self.device)
        self.network, self.norms = _with_shared_statistics(copied)
        self.network.requires_grad_(False)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if self.autocast_dtype is not None:
                stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
            yield

    def _run(self, image: Tensor, rows: _Span, columns: _Span) -> Tensor:
        """The network on one tile with its context, on the device, as float32 ``(1, 3, h, w)``."""
        window = image[
            :, rows.context_start : rows.context_stop, columns.context_start : columns.context_stop
        ]
        return self.network(_as_float(window)[None].to(self.device, non_blocking=True)).float()

    def _measure_statistics(
        self, image: Tensor, rows: list[_Span], columns: list[_Span], step: Callable[[], None]
    ) -> None:
        for norm in self.norms:
            moments = _Moments()
            for row in rows:
                for column in columns:
                    norm.measure = partial(_measure_centre, moments, row, column)
                    try:
                        self._run(image, row, column)
                    except _StopForward:
                        pass
                    finally:
                        norm.measure = None
                    step()
            norm.mean, norm.variance = moments.mean_and_variance()

    def __call__(self, image: Tensor, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Enhance one photo.

        Args:
            image: ``(3, H, W)``, uint8 (0-255), uint16 (0-65535) or float in [0, 1], on the CPU.
            progress: called as ``progress(done, total)`` after each tile (statistics passes
                included), e.g. to drive a progress bar.

        Returns:
            The enhanced photo, ``(3, H, W)``, same dtype as ``image``, on the CPU.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W); got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        rows = _spans(height, self.tile_size, self.tile_overlap, self.tile_pad)
        columns = _spans(width, self.tile_size, self.tile_overlap, self.tile_pad)
        shared = self.statistics == "image" and bool(self.norms)
        # Statistics tiles partition the photo (each pixel counted once), with the same context.
        statistics_rows = _partition(height, self.tile_size, self.tile_pad) if shared else []
        statistics_columns = _partition(width, self.tile_size, self.tile_pad) if shared else []
        total = len(rows) * len(columns) + (
            len(statistics_rows) * len(statistics_columns) * len(self.norms)
        )
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        for norm in self.norms:
            norm.mean = norm.variance = None  # per-tile statistics unless measured below
        with self._autocast():
            if shared:
                self._measure_statistics(image, statistics_rows, statistics_columns, step)
            output = torch.empty_like(image)
            band: Tensor | None = None  # float32 rows [row.start, row.stop) of the tile row
            for index, row in enumerate(rows):
                carried = band[:, row.start - rows[index - 1].start :] if band is not None else None
                band = torch.zeros(3, row.stop - row.start, width)
                if carried is not None:
                    # Rows shared with the previous tile row keep what its tiles added.
                    band[:, : carried.shape[1]] = carried
                for column in columns:
                    result = self._run(image, row, column)[0].cpu()
                    result = result[
                        :,
                        row.start - row.context_start : row.stop - row.context_start,
                        column.start - column.context_start : column.stop - column.context_start,
                    ]
                    band[:, :, column.start : column.stop] += (
                        result * row.weights[:, None] * column.weights[None, :]
                    )
                    step()
                # Rows no later tile touches are final: written out, the band moves on.
                final = rows[index + 1].start if index + 1 < len(rows) else height
                output[:, row.start : final] = _like(band[:, : final - row.start], image)
        return output


def _as_float(image: Tensor) -> Tensor:
    if image.dtype == torch.uint8:
        return image.float() / 255
    if image.dtype == torch.uint16:
        return image.float() / 65535
    return image.float()


def _like(values: Tensor, image: Tensor) -> Tensor:
    """Float values in [0, 1] (clamped) in ``image``'s dtype and range."""
    values = values.clamp(0, 1)
    if image.dtype == torch.uint8:
        return (values * 255).round_().to(torch.uint8)
    if image.dtype == torch.uint16:
        return (values * 65535).round_().to(torch.int32).to(torch.uint16)
    return values.to(image.dtype)
