"""The Lightning internals wespe relies on (wespe/_lightning.py) still exist in the installed
Lightning: an upgrade that changes one fails here, by name."""

from __future__ import annotations

import importlib

import pytest
import pytorch_lightning as pl

from wespe._lightning import PRIVATE_API, batches_trained


def owner_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def instance_of(cls: type, tmp_path):
    if issubclass(cls, pl.loggers.CSVLogger):
        return cls(tmp_path)
    if cls.__name__ == "_FitLoop":
        return pl.Trainer(logger=False, enable_checkpointing=False).fit_loop
    return cls()


@pytest.mark.parametrize("use", PRIVATE_API, ids=lambda use: f"{use.owner}.{use.name}")
def test_each_private_lightning_name_still_exists(use, tmp_path):
    cls = owner_class(use.owner)
    holder = instance_of(cls, tmp_path) if use.instance else cls
    assert hasattr(holder, use.name), (
        f"Lightning {pl.__version__} has no {use.owner}.{use.name}, which {use.where} uses "
        f"({use.why}): adapt it, or pin the Lightning version it was written for"
    )


def test_batches_trained_reads_the_restored_progress():
    trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    assert batches_trained(trainer) == 0
    trainer.fit_loop.epoch_loop.batch_progress.total.processed = 7
    assert batches_trained(trainer) == 7
