"""The parts of Lightning that wespe relies on beyond its public API, listed in one place.

Lightning offers no public way to do these; each entry names the code that needs it and why.
``tests/test_lightning_api.py`` checks every entry against the installed Lightning, so an
upgrade that renames or removes one fails there, by name, instead of deep inside a run.
setup.cfg pins the Lightning versions these were checked with.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRIVATE_API", "PrivateUse", "batches_trained", "loggers_write_this_step"]


@dataclass(frozen=True)
class PrivateUse:
    """One private Lightning name: ``owner`` (import path of a class) and ``name`` (a method
    or, with ``instance``, an attribute its instances have), used ``where``, ``why``."""

    owner: str
    name: str
    where: str
    why: str
    instance: bool = False


PRIVATE_API = (
    PrivateUse(
        "pytorch_lightning.cli.LightningCLI", "_parse_ckpt_path", "wespe.cli.WESPECLI",
        "resuming: compare the given model settings with the checkpoint's before Lightning "
        "replaces them silently",
    ),
    PrivateUse(
        "pytorch_lightning.callbacks.ModelCheckpoint", "_save_last_checkpoint",
        "wespe.callbacks.ModelCheckpoint.on_train_end", "write last.ckpt when training ends",
    ),
    PrivateUse(
        "pytorch_lightning.callbacks.ModelCheckpoint", "_monitor_candidates",
        "wespe.callbacks.ModelCheckpoint.on_train_end", "the metrics a checkpoint name may use",
    ),
    PrivateUse(
        "pytorch_lightning.callbacks.ModelCheckpoint", "_last_global_step_saved",
        "wespe.callbacks.ModelCheckpoint.on_train_end",
        "whether last.ckpt already holds this step", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.strategies.DDPStrategy", "_setup_model",
        "wespe.strategies.PerNetworkDDPStrategy.configure_ddp",
        "wrap each network in DistributedDataParallel the way Lightning wraps a module",
    ),
    PrivateUse(
        "pytorch_lightning.strategies.DDPStrategy", "_ddp_comm_hook",
        "wespe.strategies.PerNetworkDDPStrategy.configure_ddp",
        "refuse communication hooks it does not register", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.strategies.DDPStrategy", "_ddp_comm_state",
        "wespe.strategies.PerNetworkDDPStrategy.configure_ddp",
        "refuse communication hooks it does not register", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.loggers.CSVLogger", "_experiment", "wespe.loggers.CSVLogger",
        "its experiment writer, replaced by one that appends on resume", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.loggers.CSVLogger", "_fs", "wespe.loggers.CSVLogger",
        "the file system it writes to", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.loggers.csv_logs.ExperimentWriter", "_check_log_dir_exists",
        "wespe.loggers._AppendingExperimentWriter", "keep metrics.csv instead of deleting it",
    ),
    PrivateUse(
        "pytorch_lightning.LightningModule", "_trainer", "wespe.module.EnhancerModule",
        "whether a trainer is attached (the trainer property raises when none is)",
        instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.loops.fit_loop._FitLoop", "epoch_loop", "batches_trained",
        "the training loop's progress, restored from a checkpoint", instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.Trainer", "_logger_connector", "loggers_write_this_step",
        "Lightning's own test of whether this step's logged values reach the loggers",
        instance=True,
    ),
    PrivateUse(
        "pytorch_lightning.trainer.connectors.logger_connector.logger_connector._LoggerConnector",
        "should_update_logs", "loggers_write_this_step",
        "Lightning's own test of whether this step's logged values reach the loggers",
    ),
)  # fmt: skip


def batches_trained(trainer: object) -> int:
    """Training batches this process has run, as restored from a checkpoint on resume.

    "processed", not "completed": a checkpoint saved in ``on_train_batch_end`` has the batch
    processed (its optimizer steps done) but not yet counted as completed.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


def loggers_write_this_step(trainer: object) -> bool:
    """Whether values logged in this training step reach the loggers (every
    ``log_every_n_steps`` batches, and when training stops), as Lightning decides it.

    Each ``self.log`` call costs tens of microseconds of bookkeeping whether or not the value
    is written; a step that logs a dozen values on the other steps spends that for nothing.
    """
    return trainer._logger_connector.should_update_logs
