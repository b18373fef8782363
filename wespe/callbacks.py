"""Callbacks the configs use beside Lightning's own."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytorch_lightning as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from torch import Tensor
from torchvision.utils import save_image

from wespe._files import replacing

__all__ = ["AtomicCheckpointIO", "EnhancedImageWriter", "ModelCheckpoint"]


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
        output_dir: folder for the images; created if missing. Relative paths are relative to
            the working directory.
        tile_size, tile_overlap: the tiling (see :class:`~wespe.inference.TiledEnhancer`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike = "predictions",
        tile_size: int = 512,
        tile_overlap: int = 32,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.tiling = {"tile_size": tile_size, "tile_overlap": tile_overlap}

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from wespe.inference import TiledEnhancer

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
