"""Callbacks the configs use beside Lightning's own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from torch import Tensor
from torchvision.utils import save_image

__all__ = ["EnhancedImageWriter", "ModelCheckpoint"]


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

    Writes are atomic as Lightning makes them (a local file is written to a temporary file and
    moved into place), so a process killed while saving leaves the previous checkpoint intact.
    """

    def __init__(self, *args: Any, save_on_exception: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, save_on_exception=save_on_exception, **kwargs)

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
    """Writes each enhanced image of ``wespe predict`` as ``<output_dir>/<name>.png``; a name
    with subfolders (``trip/0001``, from ``data.predict_dir``) keeps them.

    Args:
        output_dir: folder for the images; created if missing. Relative paths are relative to
            the working directory.
    """

    def __init__(self, output_dir: str | os.PathLike = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

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
