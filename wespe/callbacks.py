"""Callbacks the configs use beside Lightning's own."""

from __future__ import annotations

import io
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytorch_lightning as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import BasePredictionWriter, Callback
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from wespe._files import replacing
from wespe.loggers import run_folder

__all__ = [
    "AtomicCheckpointIO",
    "ChannelsLast",
    "CompileNetworks",
    "EnhancedImageWriter",
    "ModelCheckpoint",
    "RunState",
    "SampleGrids",
    "batch_size",
]


def batch_size(batch: dict[str, Tensor]) -> int:
    """Photos in a batch (its ``source``): the ``batch_size_fn`` of Lightning's
    ``ThroughputMonitor`` in the configs."""
    return batch["source"].shape[0]


def _rng_states(device: torch.device) -> dict:
    """Python, numpy and torch random states (CPU, and ``device``'s if it is a GPU), in types
    ``weights_only`` loads."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        # This process's GPU only: a machine with fewer GPUs can restore it, and under DDP
        # each process has its own.
        states["torch.cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict, device: torch.device) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "torch.cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["torch.cuda"], device)


class RunState(Callback):
    """What a resumed run needs beside the weights, kept in the checkpoint: each process's
    random states (Python, numpy, torch, its GPU's), so that a resumed run continues the same
    random streams, and the W&B run id, so that ``wespe fit --ckpt_path`` continues the same
    W&B run. The ``wespe`` CLI adds it to every run; add it yourself to a Trainer built in
    Python.
    """

    def __init__(self) -> None:
        self._restored: dict | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        # One entry per process (global rank): only rank 0 writes the file, so under DDP the
        # others' states are gathered to it (every process saves: Lightning calls this on all).
        states = _rng_states(pl_module.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[dict | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            checkpoint["rng_states"] = gathered
        else:
            checkpoint["rng_states"] = [states]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # Lightning does not keep the W&B run id; the CLI reuses it on resume.
                checkpoint["wandb_run_id"] = logger.version

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        # Only a resumed fit continues the random streams; loading weights to evaluate or
        # predict leaves the caller's random state alone.
        if "rng_states" not in checkpoint or trainer.state.fn != "fit":
            return
        states = checkpoint["rng_states"]
        states = [states] if isinstance(states, dict) else states  # older checkpoints
        rank = trainer.global_rank
        if rank < len(states):
            # Applied when training starts: Lightning builds the data iterator in between,
            # which draws a seed from torch's generator.
            self._restored = states[rank]
        else:
            warnings.warn(
                f"The checkpoint holds the random states of {len(states)} processes; "
                f"process {rank} of this run continues with its own, so the run is not "
                "bit-identical to one that was not interrupted.",
                UserWarning,
                stacklevel=2,
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored is not None:
            _set_rng_states(self._restored, pl_module.device)
            self._restored = None


class CompileNetworks(Callback):
    """``torch.compile`` the networks training updates when training starts (an option: add it
    to the config's callbacks).

    Each network is compiled in place (:meth:`torch.nn.Module.compile`), so its parameters,
    state dict and checkpoints stay those of the plain network, and distributed wrappers,
    the weight average and evaluation see the same object. The first iterations pay the
    compilation (for the quickstart on 2 CPU cores about a minute), and every new input size
    (validation crops) compiles again; ``benchmarks/step.py --variants compile`` measures the
    compilation time against the gain on your machine.

    Args:
        networks: attribute names of the networks to compile (default: the module's
            ``TRAINED_NETWORKS``; add ``content_loss`` for the VGG-19 of a perceptual loss).
        mode: ``torch.compile``'s mode (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``).
        dynamic: ``torch.compile``'s ``dynamic`` (None: recompile once with dynamic shapes
            when a second input size arrives).
    """

    def __init__(
        self,
        networks: Sequence[str] | None = None,
        mode: str | None = None,
        dynamic: bool | None = None,
    ) -> None:
        self.networks = None if networks is None else tuple(networks)
        self.mode = mode
        self.dynamic = dynamic

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        names = self.networks or getattr(pl_module, "TRAINED_NETWORKS", ())
        for name in names:
            network = getattr(pl_module, name, None)
            if not isinstance(network, torch.nn.Module):
                raise ValueError(
                    f"CompileNetworks: the model has no network {name!r}; choose from "
                    f"{', '.join(n for n, _ in pl_module.named_children())}"
                )
            network.compile(mode=self.mode, dynamic=self.dynamic)


class ChannelsLast(Callback):
    """Keep the model's weights in the channels-last (NHWC) memory layout (an option: add it to
    the config's callbacks).

    oneDNN's CPU convolutions, and cuDNN's with tensor cores, run faster in NHWC; a network
    whose weights are NHWC gives NHWC outputs whatever the layout of its input, so the batches
    need no change. The values computed are the same up to rounding (other kernels); state
    dicts and checkpoints hold the same values and load into a plain model.
    ``benchmarks/step.py --variants channels_last`` measures the gain on your machine.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class SampleGrids(Callback):
    """Sample grids of validation and test: one row per evaluation photo, its panels as the
    model's ``sample_panels`` gives them (center crops, scaled to a common size), written to
    ``<run folder>/samples/<stage>_iter<iteration>.png`` and handed to every logger that takes
    images (W&B's ``log_image``).

    Args:
        num_images: evaluation photos shown (the first batches', one each).
        size: the grid shows center crops of at most this size, scaled to it.
    """

    def __init__(self, num_images: int = 4, size: int = 192) -> None:
        if num_images < 1 or size < 1:
            raise ValueError(f"num_images and size must be >= 1; got {num_images}, {size}")
        self.num_images = num_images
        self.size = size
        self._rows: list[Tensor] = []

    def _row(self, panels: Sequence[Tensor]) -> Tensor:
        height, width = panels[0].shape[-2:]
        h, w = min(height, self.size), min(width, self.size)
        top, left = (height - h) // 2, (width - w) // 2
        crops = torch.stack([p[0, :, top : top + h, left : left + w].detach() for p in panels])
        # Rows of different photos get a common size so they fit one grid.
        return torch.nn.functional.interpolate(
            crops.float().cpu(), size=(self.size, self.size), mode="bilinear", align_corners=False
        )

    def _collect(
        self, pl_module: pl.LightningModule, outputs: Any, batch: dict, index: int
    ) -> None:
        if index < self.num_images and isinstance(outputs, dict) and "enhanced" in outputs:
            panels = pl_module.sample_panels(batch["source"], outputs["enhanced"], batch["clean"])
            self._rows.append(self._row(panels))

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        rows, self._rows = self._rows, []
        if not rows or trainer.sanity_checking:
            return
        grid = make_grid(torch.cat(rows), nrow=len(rows[0]), padding=2, pad_value=1.0)
        # Every process asks: Trainer.log_dir is a collective call (a broadcast from rank 0).
        folder = run_folder(trainer) / "samples"
        if not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"{stage}_iter{pl_module.iteration:07d}.png")
        caption = getattr(pl_module, "SAMPLE_CAPTION", "")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=f"{stage}/samples", images=[grid], caption=[caption])

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(pl_module, outputs, batch, batch_idx)

    on_test_batch_end = on_validation_batch_end  # the same collection for the test photos

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "test")


def _write(file: BinaryIO, data: memoryview) -> None:
    file.write(data)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's :class:`~lightning_fabric.plugins.TorchCheckpointIO` whose local saves are
    atomic on the checkpoint's own disk.

    The bytes go to a temporary file beside the target, are flushed to disk, and then replace
    the target in one rename; on any failure (disk full, an exception) the temporary file is
    removed and the previous checkpoint is untouched. Lightning's own save writes its temporary
    file to the system's temp folder and moves it into place, which is a copy into the target
    when that folder is on another disk (a cluster's local /tmp and a shared runs/ folder): a
    full disk or a kill during that copy leaves a truncated checkpoint. Remote paths (``s3://``
    and the like) are saved as Lightning saves them.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with replacing(path) as temporary, temporary.open("wb") as file:
            _write(file, buffer.getbuffer())
        return None


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's :class:`~pytorch_lightning.callbacks.ModelCheckpoint` with two differences:

    - with ``save_last``, ``last.ckpt`` always holds the final state when training ends.
      Lightning saves ``last`` only after validation (or at an epoch end), and at the end of
      training only if it never saved it before; a run whose ``max_iterations`` is not a
      multiple of the validation interval would otherwise end with a stale ``last.ckpt``;
    - ``save_on_exception`` defaults to True: on SIGTERM (preemption) Lightning stops the loop
      with an exception at the next step, and this saves a resumable checkpoint then; but not
      on :class:`~wespe.module.NonFiniteLossError` (a loss went nan or inf), so ``last.ckpt``
      stays the last finite state.

    - saves go through :class:`AtomicCheckpointIO` (set on the trainer's strategy at setup
      when it uses Lightning's default), so a full disk or a process killed while saving
      leaves the previous checkpoint intact.
    """

    def __init__(self, *args: Any, save_on_exception: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, save_on_exception=save_on_exception, **kwargs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        from wespe.module import NonFiniteLossError

        # A diverged run is not saved: its last.ckpt stays the last finite state.
        if not isinstance(exception, NonFiniteLossError):
            super().on_exception(trainer, pl_module, exception)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)


class EnhancedImageWriter(BasePredictionWriter):
    """Writes each enhanced image of ``wespe predict`` as ``<output_dir>/<name>.png`` as soon as
    its batch is done (nothing is kept in memory); a name with subfolders (``trip/0001``, from
    ``data.predict_dir``) keeps them. Photos of any size are enhanced in tiles by
    :class:`~wespe.inference.TiledEnhancer`, as ``wespe enhance`` does.

    Args:
        output_dir: folder for the images; created if missing. Default: ``predictions`` beside
            the logger's runs (``<save_dir>/<name>/predictions``, e.g.
            ``runs/quickstart/predictions``), so the run's name is given once, to the logger.
        tile_size, tile_overlap: the tiling (see :class:`~wespe.inference.TiledEnhancer`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None = None,
        tile_size: int = 512,
        tile_overlap: int = 32,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.tiling = {"tile_size": tile_size, "tile_overlap": tile_overlap}

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from wespe.inference import TiledEnhancer

        if self.output_dir is None:
            logger = trainer.logger
            runs = (
                Path(logger.save_dir or ".") / str(logger.name)
                if logger is not None
                else Path(trainer.default_root_dir)
            )
            self.output_dir = runs / "predictions"
        pl_module.predict_enhancer = TiledEnhancer(
            pl_module.enhancer, device=pl_module.device, **self.tiling
        )

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Tensor,
        batch_indices: Sequence[int] | None,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for image, name in zip(prediction, batch["name"], strict=True):
            path = self.output_dir / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)  # names may hold subfolders
            save_image(image, path)
