"""LightningDataModules: the embedded sample (default), unpaired image folders, and DPED.

All three give the same batches: training ``{"source": (B,3,P,P), "target": (B,3,P,P)}`` from two
independent patch streams, and evaluation ``{"source": (1,3,H,W), "clean": (1,3,H,W), "index"}``
from paired held-out sets (where they exist): a **validation** set, for every choice and for
checkpoint selection, and a **test** set, for the figures one reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import pytorch_lightning as pl
from pytorch_lightning.accelerators import CUDAAccelerator
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from wespe._checks import check_choice
from wespe._lightning import batches_trained
from wespe.data.datasets import (
    EMBEDDED_PHOTOS,
    DecodeCache,
    EpochSampler,
    ImageFolderDataset,
    ImageItem,
    ImageScan,
    PairedImageDataset,
    PairedPatchDataset,
    UnpairedPatchDataset,
    default_cache_dir,
    degrade_photo,
    dped_folders,
    embedded_photo,
    load_image,
    paired_by_name,
    scan_images,
)
from wespe.data.degrade import DEGRADATIONS, PhoneDegradation

__all__ = [
    "DPEDDataModule",
    "EmbeddedSampleDataModule",
    "EvaluationImages",
    "FolderDataModule",
    "UnpairedDataModule",
]


class EvaluationImages(NamedTuple):
    """A paired evaluation set: degraded images, their clean references, and optional names."""

    degraded: list[ImageItem]
    clean: list[ImageItem]
    names: list[str] | None = None


class UnpairedDataModule(pl.LightningDataModule):
    """Shared loaders of the data modules; subclasses only say where the images come from.

    Args:
        patch_size: side of the square training patches (WESPE: 100).
        batch_size: training patches per batch (WESPE: 30).
        patches_per_epoch: length of one training epoch, in patches of each domain.
        num_workers: DataLoader worker processes.
        seed: seed of the patch streams (independent of the model's seed).
        eval_crop: center-crop evaluation images to at most this size (None: full resolution).
        predict_dir: ``wespe predict`` enhances every image below this folder at full
            resolution (None: the test images, degraded).
    """

    def __init__(
        self,
        patch_size: int = 100,
        batch_size: int = 30,
        patches_per_epoch: int = 3000,
        num_workers: int = 0,
        seed: int = 0,
        eval_crop: int | None = None,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1; got {patch_size}")
        if batch_size < 1 or patches_per_epoch < batch_size:
            raise ValueError(
                f"need batch_size >= 1 and patches_per_epoch >= batch_size; got batch_size={batch_size}, "
                f"patches_per_epoch={patches_per_epoch}"
            )
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.patches_per_epoch = patches_per_epoch
        self.num_workers = num_workers
        self.seed = seed
        self.eval_crop = eval_crop
        self.predict_dir = predict_dir
        #: Train on aligned (degraded, clean) patches: only for the supervised reference point.
        self.paired_training = False
        self.train_set: UnpairedPatchDataset | None = None
        self.val_set: PairedImageDataset | None = None
        self.test_set: PairedImageDataset | None = None

    def load_images(self) -> tuple[list[ImageItem], list[ImageItem]]:
        """Training images: source (e.g. phone) and target (e.g. DSLR) domain."""
        raise NotImplementedError

    def load_evaluation(self, stage: Literal["val", "test"]) -> EvaluationImages | None:
        """The paired validation or test images (None: the data has none)."""
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:  # setup may be called once per stage
            return
        source, target = self.load_images()
        dataset = PairedPatchDataset if self.paired_training else UnpairedPatchDataset
        self.train_set = dataset(
            source, target, self.patch_size, self.patches_per_epoch, seed=self.seed
        )
        for name in ("val", "test"):
            images = self.load_evaluation(name)
            if images is not None and images.degraded:
                paired = PairedImageDataset(
                    images.degraded, images.clean, crop=self.eval_crop, names=images.names
                )
                setattr(self, f"{name}_set", paired)

    def train_dataloader(self) -> DataLoader:
        replicas = self.trainer.world_size if self.trainer else 1
        if self.patches_per_epoch // replicas < self.batch_size:
            raise ValueError(
                f"patches_per_epoch={self.patches_per_epoch} over {replicas} processes leaves "
                f"{self.patches_per_epoch // replicas} patches each, fewer than batch_size="
                f"{self.batch_size}: raise patches_per_epoch"
            )
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochSampler(
                self.patches_per_epoch,
                num_replicas=replicas,
                rank=self.trainer.global_rank if self.trainer else 0,
                position=self._data_position if self.trainer else None,
            ),
            drop_last=True,
            **self._loader_options(),
        )

    def _loader_options(self) -> dict:
        """Worker processes kept between epochs and validation runs (forking them anew costs
        seconds each time), and page-locked batches when training on a CUDA GPU, so that
        Lightning's non-blocking copy to the GPU overlaps the step."""
        on_cuda = self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)
        return {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": on_cuda,
        }

    def _data_position(self) -> tuple[int, int]:
        """Where the next training iterator starts: the data epoch, and the index of this
        process's shard of it (``EpochSampler``'s ``position``).

        Every patch is a function of its index, so starting after the batches already trained
        continues the data stream exactly, in a resumed run as in an uninterrupted one. The
        count is Lightning's progress (restored from the checkpoint before the loaders are
        built), not its epoch counter, which a resume from a checkpoint saved at an epoch's
        end leaves out of step with the data.
        """
        done = batches_trained(self.trainer)
        per_epoch = self.patches_per_epoch // self.trainer.world_size // self.batch_size
        epoch, batches = divmod(done, per_epoch)
        return epoch, batches * self.batch_size

    def _eval_dataloader(self, dataset: PairedImageDataset | None) -> DataLoader | list:
        if dataset is None:
            return []
        # Batch size 1: evaluation images keep their own full sizes.
        return DataLoader(dataset, batch_size=1, **self._loader_options())

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_dataloader(self.val_set)

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_dataloader(self.test_set)

    def predict_dataloader(self) -> DataLoader | list:
        if self.predict_dir is None:
            return self._eval_dataloader(self.test_set)
        # Batch size 1: every photo keeps its own full size.
        return DataLoader(
            ImageFolderDataset(self.predict_dir), batch_size=1, num_workers=self.num_workers
        )


class EmbeddedSampleDataModule(UnpairedDataModule):
    """The default data: real photos shipped with scikit-image, no download needed.

    Source photos are degraded by a :class:`~wespe.data.degrade.PhoneDegradation` (the "phone"
    domain); target photos stay clean (the "DSLR" domain); validation and test photos are
    degraded for the input and kept clean as the reference. The four lists must be disjoint
    scenes (the two motorcycle views are one scene), so training never sees a (degraded, clean)
    pair of the same photo and no choice made on validation photos touches the test photos.

    The default split: validation chelsea and coffee (every choice of the recipe was made on
    them), test the motorcycle scene (never used for a choice), and training on the rest.
    ``benchmarks/quality.py`` rotates the test scene over astronaut, rocket and motorcycle
    (folds) to report on more than one scene.

    Args:
        source_photos: names from :data:`~wespe.data.datasets.EMBEDDED_PHOTOS` for the phone domain.
        target_photos: names for the high-quality domain.
        val_photos: names for validation (``wespe validate``, checkpoint selection).
        test_photos: names for the reported figures (``wespe test``).
        max_size: photos are resized so the longer side is at most this many pixels.
        degradation: the phone degradation; the default, ``DEGRADATIONS["phone"]``, draws
            its exposure, white balance, tone, vignetting, blur, noise and JPEG errors per
            photo (:data:`~wespe.data.degrade.DEGRADATIONS` names the others, ``"fixed"`` the
            one transform of earlier versions).
        domains: how the training photos make the two domains. ``"halves"`` (default): every
            training photo (source and target lists together) gives one half to each domain,
            the degraded left half to the source and the clean right half to the target (the
            other way round for every second photo), so both domains show the same scenes, as
            DPED's two cameras do, and no pixel is ever seen both degraded and clean.
            ``"photos"``: the source domain is the degraded ``source_photos``, the target
            domain the clean ``target_photos``; with a few photos per domain the
            discriminators then learn the difference between those photos' contents, not the
            degradation (the README's ablation).
        paired_training: train on aligned (degraded, clean) patches of the source photos
            instead of two unpaired domains. Only for the supervised reference point of the
            benchmark (:class:`~wespe.module.SupervisedEnhancer`); never for WESPE.
        **kwargs: see :class:`UnpairedDataModule`.
    """

    def __init__(
        self,
        source_photos: Sequence[str] = ("rocket", "retina", "hubble_deep_field"),
        target_photos: Sequence[str] = ("astronaut", "immunohistochemistry"),
        val_photos: Sequence[str] = ("chelsea", "coffee"),
        test_photos: Sequence[str] = ("motorcycle_left", "motorcycle_right"),
        max_size: int | None = 512,
        degradation: PhoneDegradation = DEGRADATIONS["phone"],
        patch_size: int = 64,
        batch_size: int = 8,
        patches_per_epoch: int = 800,
        num_workers: int = 0,
        seed: int = 0,
        eval_crop: int | None = None,
        predict_dir: str | None = None,
        domains: Literal["photos", "halves"] = "halves",
        paired_training: bool = False,
    ) -> None:
        super().__init__(
            patch_size, batch_size, patches_per_epoch, num_workers, seed, eval_crop, predict_dir
        )
        check_choice("domains", domains, ("photos", "halves"))
        self.domains = domains
        self.paired_training = paired_training
        groups = {
            "source_photos": source_photos,
            "target_photos": target_photos,
            "val_photos": val_photos,
            "test_photos": test_photos,
        }
        for field, names in groups.items():
            if not names:
                raise ValueError(f"{field} must name at least one photo")
            unknown = [n for n in names if n not in EMBEDDED_PHOTOS]
            if unknown:
                raise ValueError(
                    f"{field}: unknown photo(s) {unknown}; choose from {', '.join(EMBEDDED_PHOTOS)}"
                )
        scenes = {
            field: {n.split("_")[0] if n.startswith("motorcycle") else n for n in names}
            for field, names in groups.items()
        }
        fields = list(scenes)
        for i, first in enumerate(fields):
            for second in fields[i + 1 :]:
                if scenes[first] & scenes[second]:
                    raise ValueError(
                        f"{first} and {second} share {sorted(scenes[first] & scenes[second])}: "
                        "the four lists must be disjoint photos (the two motorcycle views count "
                        f"as one scene); got {dict(groups)}"
                    )
        self.source_photos = tuple(source_photos)
        self.target_photos = tuple(target_photos)
        self.val_photos = tuple(val_photos)
        self.test_photos = tuple(test_photos)
        self.max_size = max_size
        self.degradation = degradation

    def _degraded(self, name: str) -> Tensor:
        # A fixed seed per photo: the phone domain is the same data in every run.
        return degrade_photo(
            embedded_photo(name, self.max_size), self.degradation, EMBEDDED_PHOTOS.index(name)
        )

    def load_images(self) -> tuple[list[ImageItem], list[ImageItem]]:
        if self.domains == "halves":
            return self._halves()
        source = [self._degraded(n) for n in self.source_photos]
        # Paired (supervised reference only): the clean originals of the source photos.
        target_names = self.source_photos if self.paired_training else self.target_photos
        return source, [embedded_photo(n, self.max_size) for n in target_names]

    def _halves(self) -> tuple[list[Tensor], list[Tensor]]:
        source, target = [], []
        for index, name in enumerate(self.source_photos + self.target_photos):
            clean = embedded_photo(name, self.max_size)
            middle = clean.shape[-1] // 2
            halves = [slice(None, middle), slice(middle, None)]
            source_half, target_half = halves if index % 2 == 0 else halves[::-1]
            source.append(self._degraded(name)[..., source_half])
            # Paired (supervised reference only): the clean original of the source half.
            target.append(clean[..., source_half if self.paired_training else target_half])
        return source, target

    def load_evaluation(self, stage: Literal["val", "test"]) -> EvaluationImages:
        names = self.val_photos if stage == "val" else self.test_photos
        return EvaluationImages(
            [self._degraded(n) for n in names],
            [embedded_photo(n, self.max_size) for n in names],
            list(names),
        )


class FolderDataModule(UnpairedDataModule):
    """Unpaired training from two image folders, with optional paired evaluation sets.

    Args:
        source_dir: source-domain photos (e.g. phone photos), any depth, common formats.
        target_dir: target-domain photos (e.g. DSLR photos), unrelated to the source ones.
        eval_source_dir: optional degraded validation images...
        eval_clean_dir: ...and their clean references, matched by relative path.
        test_source_dir: optional degraded test images (``wespe test``) and...
        test_clean_dir: ...their clean references. Without them ``wespe test`` evaluates the
            validation pair; give a separate pair to report figures no choice was made on.
        preload: decode all training images once into memory (fast for a few large photos;
            leave off for many small patches such as DPED's). The decoded-image cache is not
            used then.
        decode_cache: decode each training photo of at least 0.25 MP (500x500) once into an
            uncompressed file under ``cache_dir`` and crop patches from it through a memory map,
            instead of decoding the whole photo for every patch: from 12 MP JPEGs, hundreds of
            times more patches per second, the same patches (``benchmarks/data.py``). Costs 3
            bytes of disk per pixel (36 MB per 12 MP photo); smaller images are read from their
            files, where a cache would gain at most 2x (see
            :data:`~wespe.data.datasets.DECODE_CACHE_MIN_PIXELS`). Entries are keyed on each
            photo's path, size and modification time, so an edited photo is decoded again (and
            its old entry deleted). ``False``: decode the photo for every patch.
        cache_dir: the decoded-image cache's folder (None: ``$WESPE_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/wespe/decoded``, else ``~/.cache/wespe/decoded``). Runs share it;
            entries of photos since deleted stay until the folder is deleted, which is safe
            between runs. A folder that cannot be written stops setup with an error naming it
            and these settings, rather than falling back to decoding per patch: that would make
            training from full-size photos hundreds of times slower, unnoticed. A read-only
            folder that already holds every photo's entry is fine.
        **kwargs: see :class:`UnpairedDataModule`.

    The cache is filled in :meth:`prepare_data` (once per node, on several threads, from the
    decode that checks each file anyway), or in :meth:`setup` when that is called alone; a later
    setup finds valid entries without decoding their photos again. One log line says how much
    was decoded and where.
    """

    def __init__(
        self,
        source_dir: str | os.PathLike,
        target_dir: str | os.PathLike,
        # str | None, not str | os.PathLike | None: jsonargparse would read "null" as "None".
        eval_source_dir: str | None = None,
        eval_clean_dir: str | None = None,
        test_source_dir: str | None = None,
        test_clean_dir: str | None = None,
        preload: bool = False,
        patch_size: int = 100,
        batch_size: int = 30,
        patches_per_epoch: int = 3000,
        num_workers: int = 0,
        seed: int = 0,
        eval_crop: int | None = None,
        predict_dir: str | None = None,
        decode_cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            patch_size, batch_size, patches_per_epoch, num_workers, seed, eval_crop, predict_dir
        )
        for prefix, degraded, clean in (
            ("eval", eval_source_dir, eval_clean_dir),
            ("test", test_source_dir, test_clean_dir),
        ):
            if (degraded is None) != (clean is None):
                raise ValueError(
                    f"give both {prefix}_source_dir and {prefix}_clean_dir, or neither"
                )
        self.source_dir = Path(source_dir)
        self.target_dir = Path(target_dir)
        self.eval_source_dir = None if eval_source_dir is None else Path(eval_source_dir)
        self.eval_clean_dir = None if eval_clean_dir is None else Path(eval_clean_dir)
        self.test_source_dir = None if test_source_dir is None else Path(test_source_dir)
        self.test_clean_dir = None if test_clean_dir is None else Path(test_clean_dir)
        self.preload = preload
        self.decode_cache = decode_cache
        self.cache_dir = cache_dir
        # prepare_data's scans, for setup in the same process (other DDP ranks scan again).
        self._scans: tuple[ImageScan, ImageScan] | None = None

    def _cache(self) -> DecodeCache | None:
        """The decoded-image cache training reads from (None: off, or not needed with preload)."""
        if not self.decode_cache or self.preload:
            return None
        return DecodeCache(default_cache_dir() if self.cache_dir is None else self.cache_dir)

    def _scan_training(self) -> tuple[ImageScan, ImageScan]:
        """Both training folders checked (and their large photos cached), one line logged."""
        cache = self._cache()
        scans = (
            scan_images(self.source_dir, self.patch_size, cache),
            scan_images(self.target_dir, self.patch_size, cache),
        )
        if cache is not None and any(scan.cached for scan in scans):  # else no disk was used
            rank_zero_info(_cache_summary(scans, cache))
        return scans

    def prepare_data(self) -> None:
        """Fill the decoded-image cache. Lightning calls this on one process per node before
        :meth:`setup` on every process, so each photo is decoded once per node, not per rank."""
        if self.train_set is None and self._cache() is not None:
            self._scans = self._scan_training()

    def load_images(self) -> tuple[list[ImageItem], list[ImageItem]]:
        # Checked once here: a file that cannot be used is skipped and reported, never met
        # mid-run; a resume sees the same files.
        scans, self._scans = self._scans or self._scan_training(), None
        source: list[ImageItem] = list(scans[0].items)
        target: list[ImageItem] = list(scans[1].items)
        if self.preload:
            source = [load_image(p) for p in source]
            target = [load_image(p) for p in target]
        return source, target

    def load_evaluation(self, stage: Literal["val", "test"]) -> EvaluationImages | None:
        degraded_dir, clean_dir = self.eval_source_dir, self.eval_clean_dir
        if stage == "test" and self.test_source_dir is not None:
            degraded_dir, clean_dir = self.test_source_dir, self.test_clean_dir
        if degraded_dir is None or clean_dir is None:
            return None
        return EvaluationImages(*paired_by_name(degraded_dir, clean_dir))


class DPEDDataModule(FolderDataModule):
    """The DPED dataset (Ignatov et al., ICCV 2017) for one phone.

    Training: ``root/<phone>/training_data/<phone>`` (source) and ``.../canon`` (target), used
    as two independent streams: DPED's patches are aligned, and drawing them at independent
    random indices keeps the supervision weak as in WESPE. Evaluation: the aligned test patches
    ``root/<phone>/test_data/patches/{<phone>,canon}`` (PSNR/SSIM as in the paper). DPED has
    no other paired set, so validation and test both use them, as the paper's protocol does.

    Args:
        root: the ``dped`` folder.
        phone: ``"iphone"``, ``"blackberry"`` or ``"sony"``.
        decode_cache, cache_dir: see :class:`FolderDataModule`. DPED's 100x100 patches are below
            the size worth caching, so they are read from their files either way.
        **kwargs: see :class:`UnpairedDataModule`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phone: Literal["iphone", "blackberry", "sony"] = "iphone",
        patch_size: int = 100,
        batch_size: int = 30,
        patches_per_epoch: int = 3000,
        num_workers: int = 0,
        seed: int = 0,
        eval_crop: int | None = None,
        predict_dir: str | None = None,
        decode_cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        if phone not in ("iphone", "blackberry", "sony"):
            raise ValueError(f"phone must be one of 'iphone', 'blackberry', 'sony'; got {phone!r}")
        folders = dped_folders(root, phone)
        if not folders["source"].is_dir():
            raise FileNotFoundError(
                f"DPED folder {folders['source']} not found: download DPED and set data.root to "
                "the folder holding iphone/, blackberry/ and sony/"
            )
        super().__init__(
            folders["source"],
            folders["target"],
            folders["val_source"],
            folders["val_clean"],
            preload=False,
            patch_size=patch_size,
            batch_size=batch_size,
            patches_per_epoch=patches_per_epoch,
            num_workers=num_workers,
            seed=seed,
            eval_crop=eval_crop,
            predict_dir=predict_dir,
            decode_cache=decode_cache,
            cache_dir=cache_dir,
        )
        self.root = Path(root)
        self.phone = phone


def _cache_summary(scans: Sequence[ImageScan], cache: DecodeCache) -> str:
    """One line on what filling ``cache`` did: photos decoded into it now (and their size on
    disk), entries reused, and images left uncached (too small to be worth it)."""
    decoded = [scan.cached[path] for scan in scans for path in scan.decoded]
    reused = sum(len(scan.cached) for scan in scans) - len(decoded)
    small = sum(len(scan.usable) - len(scan.cached) for scan in scans)
    size = sum(entry.array_path.stat().st_size for entry in decoded) / 2**30
    line = f"decoded {len(decoded)} photos ({size:.2f} GiB) into {cache.folder}; reusing {reused} cached"
    if small:
        line += (
            f"; {small} images under {cache.min_pixels / 1e6:.2f} MP are read from their files "
            "(too small to be worth caching)"
        )
    return line
