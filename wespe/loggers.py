"""Loggers the configs use beside Lightning's own."""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

__all__ = ["CSVLogger"]


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
