"""The WESPE LightningModule: four networks, their losses, and the manual GAN step.

Ignatov et al., "WESPE: Weakly Supervised Photo Enhancer for Digital Cameras", CVPRW 2018
(arXiv 1709.01118). Per training iteration, with ``x`` a batch of source photos and ``y`` an
unrelated batch of target photos:

1. generator step (G and F): ``content(F(G(x)), x) + TV(G(x)) + color_G(G(x)) + texture_G(G(x))``,
   each term weighted by its loss's ``loss_weight`` (paper: 1, 10, 5e-3, 5e-3);
2. discriminator step (D_c and D_t): each tells blurred / grayscale ``y`` from the same view of
   the detached ``G(x)`` of step 1.

An *iteration* is one batch: two optimizer steps. Lightning's ``global_step`` counts optimizer
steps, so it is twice the iteration count; :attr:`WESPE.iteration` gives iterations.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from wespe.losses import ColorLoss, PerceptualLoss, TextureLoss, TVLoss
from wespe.metrics import image_entropy, jpeg_bits_per_pixel
from wespe.networks import Discriminator, Generator

__all__ = ["WESPE"]


def _reference_metrics() -> MetricCollection:
    return MetricCollection(
        {
            # dim=(1, 2, 3): PSNR per image, then the mean (as papers report), not pooled MSE.
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    )


class WESPE(pl.LightningModule):
    """WESPE: generator G, inverse generator F, texture and color discriminators.

    Every argument has the paper's value as its default; configs name them with ``class_path``.

    Args:
        generator: G, source photo -> enhanced photo. Default ``Generator()`` (DPED ResNet).
        inverse_generator: F, enhanced photo -> source photo. Default ``Generator()``.
        texture_discriminator: sees grayscale images. Default ``Discriminator(in_channels=1)``.
        color_discriminator: sees blurred RGB images. Default ``Discriminator(in_channels=3)``.
        content_loss: ``(input, target) -> scalar`` between ``F(G(x))`` and ``x``. Default
            ``PerceptualLoss("relu5_4", weights="imagenet")``. Any such module works, e.g.
            ``torch.nn.MSELoss`` for a pixel-space cycle loss where no pretrained VGG exists.
        tv_loss: total variation of ``G(x)``. Default ``TVLoss(p=2, loss_weight=10)`` (DPED's
            squared form).
        color_loss: default ``ColorLoss(loss_weight=5e-3)`` (21 px blur, std 3).
        texture_loss: default ``TextureLoss(loss_weight=5e-3)``.
        generator_optimizer: optimizer of G and F. Default Adam, lr 5e-4 (the paper).
        discriminator_optimizer: one optimizer over both discriminators: Adam's update is
            per parameter, so this equals one optimizer each, with half the step bookkeeping.
            Default Adam, lr 5e-4.
        generator_scheduler: optional LR scheduler of the generator optimizer, stepped once per
            iteration.
        discriminator_scheduler: likewise for the discriminator optimizer.
        gradient_clip_val: clip each optimizer's gradient norm to this (None: no clipping).
        num_sample_images: evaluation images shown in the sample grid.
        sample_size: the grid shows center crops of at most this size.
    """

    #: Optimizer steps per training iteration (generators, then discriminators).
    OPTIMIZER_STEPS_PER_ITERATION = 2

    def __init__(
        self,
        generator: nn.Module | None = None,
        inverse_generator: nn.Module | None = None,
        texture_discriminator: nn.Module | None = None,
        color_discriminator: nn.Module | None = None,
        content_loss: nn.Module | None = None,
        tv_loss: nn.Module | None = None,
        color_loss: ColorLoss | None = None,
        texture_loss: TextureLoss | None = None,
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        generator_scheduler: LRSchedulerCallable | None = None,
        discriminator_scheduler: LRSchedulerCallable | None = None,
        gradient_clip_val: float | None = None,
        num_sample_images: int = 4,
        sample_size: int = 192,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = generator if generator is not None else Generator()
        self.inverse_generator = inverse_generator if inverse_generator is not None else Generator()
        self.texture_discriminator = texture_discriminator or Discriminator(in_channels=1)
        self.color_discriminator = color_discriminator or Discriminator(in_channels=3)
        self.content_loss = content_loss if content_loss is not None else PerceptualLoss("relu5_4")
        self.tv_loss = tv_loss if tv_loss is not None else TVLoss(p=2, loss_weight=10.0)
        self.color_loss = color_loss if color_loss is not None else ColorLoss(loss_weight=5e-3)
        self.texture_loss = (
            texture_loss if texture_loss is not None else TextureLoss(loss_weight=5e-3)
        )
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.generator_scheduler = generator_scheduler
        self.discriminator_scheduler = discriminator_scheduler
        self.gradient_clip_val = gradient_clip_val
        self.num_sample_images = num_sample_images
        self.sample_size = sample_size

        # One metric object per stage, so validation never mixes with test.
        self.eval_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "enhanced": _reference_metrics(),
                        "input": _reference_metrics(),
                        "entropy": MeanMetric(),
                        "jpeg_bpp": MeanMetric(),
                    }
                )
                for stage in ("val", "test")
            }
        )
        self._samples: list[Tensor] = []

    # ------------------------------------------------------------------ inference

    def forward(self, x: Tensor) -> Tensor:
        """Enhance photos ``(B, 3, H, W)`` in [0, 1]; returns G(x), unclamped."""
        return self.generator(x)

    @torch.no_grad()
    def enhance(self, x: Tensor) -> Tensor:
        """Enhanced photos clamped to [0, 1], same shape as ``x``."""
        return self.generator(x).clamp(0, 1)

    @property
    def iteration(self) -> int:
        """Training iterations (batches) done: ``global_step`` counts two optimizer steps each."""
        return self.global_step // self.OPTIMIZER_STEPS_PER_ITERATION

    # ------------------------------------------------------------------ optimizers

    @property
    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.generator.parameters(), *self.inverse_generator.parameters()]

    @property
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.texture_discriminator.parameters(), *self.color_discriminator.parameters()]

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's union of return types
        def build(
            make: OptimizerCallable | None, params: list[nn.Parameter]
        ) -> torch.optim.Optimizer:
            return make(params) if make is not None else torch.optim.Adam(params, lr=5e-4)

        optimizers = [
            build(self.generator_optimizer, self.generator_parameters),
            build(self.discriminator_optimizer, self.discriminator_parameters),
        ]
        schedulers = [
            make(optimizer)
            for make, optimizer in zip(
                (self.generator_scheduler, self.discriminator_scheduler), optimizers, strict=True
            )
            if make is not None
        ]
        if len(schedulers) == 1:
            raise ValueError(
                "give both generator_scheduler and discriminator_scheduler, or neither, so the "
                "two optimizers' learning rates stay in step"
            )
        return optimizers, schedulers

    # ------------------------------------------------------------------ training

    def _step(self, optimizer: pl.core.optimizer.LightningOptimizer, loss: Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        optimizer.step()

    def generator_losses(self, source: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """G(x) and the generator objective's terms for source photos ``(B, 3, H, W)``."""
        enhanced = self.generator(source)
        reconstructed = self.inverse_generator(enhanced)
        terms = {
            "content": self.content_loss(reconstructed, source),
            "tv": self.tv_loss(enhanced),
            "color_g": self.color_loss.generator_loss(self.color_discriminator, enhanced),
            "texture_g": self.texture_loss.generator_loss(self.texture_discriminator, enhanced),
        }
        return enhanced, terms

    def discriminator_losses(self, target: Tensor, enhanced: Tensor) -> dict[str, Tensor]:
        """Discriminator losses and accuracies: target photos versus detached enhanced ones."""
        color_d, color_acc = self.color_loss.discriminator_loss(
            self.color_discriminator, target, enhanced
        )
        texture_d, texture_acc = self.texture_loss.discriminator_loss(
            self.texture_discriminator, target, enhanced
        )
        return {
            "color_d": color_d,
            "texture_d": texture_d,
            "color_d_acc": color_acc,
            "texture_d_acc": texture_acc,
        }

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        generator_optimizer, discriminator_optimizer = self.optimizers()
        source, target = batch["source"], batch["target"]

        # Toggling freezes the other optimizer's networks: the generator step gives the
        # discriminators no gradient, and the discriminator step sees only a detached G(x).
        self.toggle_optimizer(generator_optimizer)
        enhanced, generator_terms = self.generator_losses(source)
        generator_total = sum(generator_terms.values())
        self._step(generator_optimizer, generator_total)
        self.untoggle_optimizer(generator_optimizer)

        self.toggle_optimizer(discriminator_optimizer)
        discriminator_terms = self.discriminator_losses(target, enhanced)
        self._step(
            discriminator_optimizer,
            discriminator_terms["color_d"] + discriminator_terms["texture_d"],
        )
        self.untoggle_optimizer(discriminator_optimizer)

        for scheduler in self.lr_schedulers() or []:
            scheduler.step()

        logged = {**generator_terms, "generator": generator_total, **discriminator_terms}
        self.log_dict({f"train/{k}": v.detach() for k, v in logged.items()}, prog_bar=False)
        self.log("train/iteration", float(self.iteration))
        self.log("g", generator_total.detach(), prog_bar=True, logger=False)
        self.log(
            "d_acc",
            0.5 * (discriminator_terms["color_d_acc"] + discriminator_terms["texture_d_acc"]),
            prog_bar=True,
            logger=False,
        )

    # ------------------------------------------------------------------ evaluation

    def _evaluation_step(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        source, clean = batch["source"], batch["clean"]
        enhanced = self.generator(source).clamp(0, 1)
        metrics = self.eval_metrics[stage]
        metrics["enhanced"].update(enhanced, clean)
        metrics["input"].update(source, clean)
        metrics["entropy"].update(image_entropy(enhanced))
        metrics["jpeg_bpp"].update(jpeg_bits_per_pixel(enhanced).to(self.device))
        if batch_idx < self.num_sample_images:
            reconstructed = self.inverse_generator(enhanced).clamp(0, 1)
            self._samples.append(self._sample_row(source, enhanced, reconstructed, clean))

    def _sample_row(self, *images: Tensor) -> Tensor:
        height, width = images[0].shape[-2:]
        h, w = min(height, self.sample_size), min(width, self.sample_size)
        top, left = (height - h) // 2, (width - w) // 2
        crops = [img[0, :, top : top + h, left : left + w].detach().cpu() for img in images]
        # Rows of different photos get a common size so they fit one grid.
        return torch.stack(
            [
                nn.functional.interpolate(
                    c[None],
                    size=(self.sample_size, self.sample_size),
                    mode="bilinear",
                    align_corners=False,
                )[0]
                for c in crops
            ]
        )

    def _evaluation_epoch_end(self, stage: str) -> None:
        metrics = self.eval_metrics[stage]
        logged = {f"{stage}/{k}": v for k, v in metrics["enhanced"].compute().items()}
        logged.update({f"{stage}/{k}_input": v for k, v in metrics["input"].compute().items()})
        logged[f"{stage}/entropy"] = metrics["entropy"].compute()
        logged[f"{stage}/jpeg_bpp"] = metrics["jpeg_bpp"].compute()
        logged[f"{stage}/psnr_gain"] = logged[f"{stage}/psnr"] - logged[f"{stage}/psnr_input"]
        self.log_dict(logged)
        if stage == "val":
            self.log("psnr_gain", logged["val/psnr_gain"], prog_bar=True, logger=False)
        for metric in metrics.values():
            metric.reset()
        if self._samples and not self.trainer.sanity_checking:
            self._write_samples(stage)
        self._samples = []

    def _write_samples(self, stage: str) -> None:
        """Grid rows: degraded input | G(x) | F(G(x)) | clean reference."""
        grid = torchvision.utils.make_grid(
            torch.cat(self._samples), nrow=4, padding=2, pad_value=1.0
        )
        if not self.trainer.is_global_zero:
            return
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stage}_iter{self.iteration:07d}.png"
        torchvision.utils.save_image(grid, path)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(
                    key=f"{stage}/samples",
                    images=[grid],
                    caption=["input | enhanced | F(G(x)) | clean"],
                )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self.enhance(batch["source"])
