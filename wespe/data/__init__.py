"""Data: the phone degradation, datasets and LightningDataModules."""

from wespe.data.datamodule import (
    DPEDDataModule,
    EmbeddedSampleDataModule,
    FolderDataModule,
    UnpairedDataModule,
)
from wespe.data.datasets import ImageFolderDataset, PairedImageDataset, UnpairedPatchDataset
from wespe.data.degrade import PhoneDegradation

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
