"""Data: the phone degradation, datasets and LightningDataModules.

The names below are imported when first used, so that reading photos (``wespe enhance``) does
not pay for Lightning's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "DPEDDataModule",
    "EmbeddedSampleDataModule",
    "FolderDataModule",
    "ImageFolderDataset",
    "PairedImageDataset",
    "PhoneDegradation",
    "UnpairedDataModule",
    "UnpairedPatchDataset",
]

_HOMES = {
    "DPEDDataModule": "wespe.data.datamodule",
    "EmbeddedSampleDataModule": "wespe.data.datamodule",
    "FolderDataModule": "wespe.data.datamodule",
    "UnpairedDataModule": "wespe.data.datamodule",
    "ImageFolderDataset": "wespe.data.datasets",
    "PairedImageDataset": "wespe.data.datasets",
    "UnpairedPatchDataset": "wespe.data.datasets",
    "PhoneDegradation": "wespe.data.degrade",
}

if TYPE_CHECKING:
    from wespe.data.datamodule import (
        DPEDDataModule,
        EmbeddedSampleDataModule,
        FolderDataModule,
        UnpairedDataModule,
    )
    from wespe.data.datasets import ImageFolderDataset, PairedImageDataset, UnpairedPatchDataset
    from wespe.data.degrade import PhoneDegradation


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'wespe.data' has no attribute {name!r}")
