"""Data: the phone degradation, datasets and LightningDataModules."""

from wespe.data.datamodule import (
    DPEDDataModule,
    EmbeddedSampleDataModule,
    FolderDataModule,
    UnpairedDataModule,
)
from wespe.data.datasets import PairedImageDataset, UnpairedPatchDataset
from wespe.data.degrade import PhoneDegradation

__all__ = [
    "DPEDDataModule",
    "EmbeddedSampleDataModule",
    "FolderDataModule",
    "PairedImageDataset",
    "PhoneDegradation",
    "UnpairedDataModule",
    "UnpairedPatchDataset",
]
