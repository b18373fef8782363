"""Loggers the configs use beside Lightning's own."""

from __future__ import annotations

import csv
import netrc
import os
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

__all__ = ["CSVLogger", "WandbLogger", "run_folder", "wandb_offline_by_default"]


def run_folder(trainer: pl.Trainer) -> Path:
    """The folder of this run's files: the CSV/TensorBoard version folder, or for W&B the
    folder that holds its checkpoints (``<save_dir>/<project>/<run id>``); Lightning's
    ``log_dir`` is the shared ``save_dir`` there. Call it on every process under DDP."""
    logger = trainer.logger
    if isinstance(logger, _LightningWandbLogger):
        return Path(logger.save_dir or ".") / str(logger.name) / str(logger.version)
    return Path(trainer.log_dir or trainer.default_root_dir)


class CSVLogger(_LightningCSVLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.CSVLogger`, except that a resumed run
    (``wespe fit --ckpt_path ...`` continues the checkpoint's version folder) appends to its
    ``metrics.csv`` where Lightning deletes it: one file holds the whole run. Rows logged after
    the checkpoint by a run that was then killed appear again, with the same steps, after the
    resume."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class _AppendingExperimentWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Keep an existing metrics file and its columns; new columns rewrite the header.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])


def wandb_offline_by_default() -> bool:
    """Whether W&B should run offline when the config does not say: ``WANDB_MODE`` decides if
    set; otherwise offline unless an API key is configured (``WANDB_API_KEY`` or the
    ``api.wandb.ai`` entry ``wandb login`` writes to ``~/.netrc``), so a machine without an
    account never prompts or waits for the network."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun"):
        return True
    if mode in ("online", "run", "disabled"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return True


class WandbLogger(_LightningWandbLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.WandbLogger` with safe defaults.

    - ``offline=None`` (default): online only when W&B is set up on this machine, see
      :func:`wandb_offline_by_default`; ``True``/``False`` force it.
    - ``project="wespe"``, ``save_dir="runs"``; ``log_model=False`` (checkpoints are uploaded
      as artifacts only when asked, and never offline).

    Sync an offline run later with ``wandb sync runs/wandb/offline-run-*``.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = "runs",
        version: str | None = None,
        offline: bool | None = None,
        id: str | None = None,  # noqa: A002 - W&B's name for the run id
        project: str | None = "wespe",
        log_model: Literal["all"] | bool = False,
        prefix: str = "",
        **kwargs: Any,
    ) -> None:
        if offline is None:
            offline = wandb_offline_by_default() and not log_model
        super().__init__(
            name=name,
            save_dir=save_dir,
            version=version,
            offline=offline,
            id=id,
            project=project,
            log_model=log_model,
            prefix=prefix,
            **kwargs,
        )
