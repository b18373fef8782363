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

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from wespe._lightning import loggers_write_this_step
from wespe.inference import TiledEnhancer
from wespe.losses import ColorLoss, PerceptualLoss, TextureLoss, TVLoss, VGG19Features
from wespe.metrics import IMAGE_FIGURES, image_figures
from wespe.networks import Discriminator, Generator

__all__ = ["WESPE", "EnhancerModule", "NonFiniteLossError", "SupervisedEnhancer"]


def _ema_update(decay: float, *args: object) -> None:
    # torch's EMA update, behind a module-level function: its closure cannot be pickled, and
    # ddp_spawn (or any copy to another process) pickles the module.
    get_ema_multi_avg_fn(decay)(*args)


@contextmanager
def batch_statistics_kept(*networks: nn.Module) -> Iterator[None]:
    """Batch-norm layers of ``networks`` normalise with batch statistics as in training, but
    their running statistics are left as they were.

    The generator step shows the discriminators fakes alone; their running statistics should
    describe what they are trained on (their own step: real and fake batches), not that.
    (They normalise with batch statistics either way: the same view as in their own step.)
    """
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    layers = [m for network in networks for m in network.modules() if isinstance(m, kinds)]
    saved = [{k: v.clone() for k, v in layer.named_buffers(recurse=False)} for layer in layers]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, buffers in zip(layers, saved, strict=True):
                for name, value in buffers.items():
                    getattr(layer, name).copy_(value)


class NonFiniteLossError(FloatingPointError):
    """A training loss term is nan or inf. Raised before that term's optimizer step, so the
    networks and the moving average keep finite weights; :class:`wespe.callbacks.ModelCheckpoint`
    saves nothing on it, so ``last.ckpt`` stays the last finite state."""


def check_finite(terms: dict[str, Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first of ``terms`` that is nan or inf."""
    values = torch.stack([value.detach().float() for value in terms.values()])
    if bool(torch.isfinite(values).all()):  # one device sync per check
        return
    name, value = next(
        (n, float(v)) for n, v in zip(terms, values, strict=True) if not v.isfinite()
    )
    raise NonFiniteLossError(
        f"train/{name} is {value} at iteration {iteration}: training stopped before this "
        "step, and the checkpoints keep the last finite state. Lower the learning rates or "
        "this term's loss_weight, or set gradient_clip_val, and resume from last.ckpt."
    )


def _reference_metrics() -> MetricCollection:
    return MetricCollection(
        {
            # dim=(1, 2, 3): PSNR per image, then the mean (as papers report), not pooled MSE.
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    )


class EnhancerModule(pl.LightningModule):
    """What every enhancer here shares: a generator, its optional moving average, and the
    evaluation (PSNR/SSIM against clean references, no-reference figures, the panels of a
    sample grid, prediction). Subclasses add the training.

    What is not the model lives in callbacks (:mod:`wespe.callbacks`): sample-grid files
    (:class:`~wespe.callbacks.SampleGrids`, which asks :meth:`sample_panels`), random states
    and the W&B run id in checkpoints (:class:`~wespe.callbacks.RunState`), learning rates and
    throughput (Lightning's ``LearningRateMonitor`` and ``ThroughputMonitor``).

    Args:
        generator: the enhancing network, ``(B, 3, H, W)`` in [0, 1] to the same shape;
            default the DPED :class:`Generator`.
        ema_decay: keep an exponential moving average of the generator's weights with this
            decay (None: off). Evaluation, prediction and :meth:`enhance` then use the average.
    """

    #: Optimizer steps per training iteration; Lightning's global_step counts optimizer steps.
    OPTIMIZER_STEPS_PER_ITERATION = 1
    #: Attributes holding the networks that training updates; PerNetworkDDPStrategy wraps each.
    TRAINED_NETWORKS: tuple[str, ...] = ("generator",)
    #: FLOPs of one training iteration, for Lightning's ThroughputMonitor (None: not counted).
    flops_per_batch: int | None = None

    def __init__(self, generator: nn.Module | None = None, ema_decay: float | None = None) -> None:
        super().__init__()
        self.generator = generator if generator is not None else Generator()
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            if not 0 < ema_decay < 1:
                raise ValueError(f"ema_decay must be in (0, 1) or None; got {ema_decay}")
            self.generator_ema = AveragedModel(
                self.generator, multi_avg_fn=partial(_ema_update, ema_decay), use_buffers=True
            )
            self.generator_ema.requires_grad_(False)
        # One metric object per stage, so validation never mixes with test.
        self.eval_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "enhanced": _reference_metrics(),
                        "input": _reference_metrics(),
                        **{
                            f"{name}{suffix}": MeanMetric()
                            for name in IMAGE_FIGURES
                            for suffix in ("", "_input")
                        },
                    }
                )
                for stage in ("val", "test")
            }
        )
        # A plain dict, not a ModuleDict: the wrappers share the networks' weights and must not
        # add a second copy of them to the state dict.
        self._distributed_networks: dict[str, nn.Module] = {}
        #: What ``predict_step`` runs: set by :class:`~wespe.callbacks.EnhancedImageWriter` with
        #: its tiling options, else built with the defaults when prediction starts.
        self.predict_enhancer: TiledEnhancer | None = None

    # ------------------------------------------------------------------ inference

    @property
    def enhancer(self) -> nn.Module:
        """The generator used for evaluation: G's moving average if ``ema_decay`` is set, else G."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def forward(self, x: Tensor) -> Tensor:
        """Enhance photos ``(B, 3, H, W)`` in [0, 1] with :attr:`enhancer`; unclamped."""
        return self.enhancer(x)

    @torch.no_grad()
    def enhance(self, x: Tensor) -> Tensor:
        """Enhanced photos clamped to [0, 1], same shape and device as ``x``.

        Runs :attr:`enhancer` in eval mode on the module's device whatever mode the module is in
        (a freshly built or loaded module is in train mode), and leaves the mode as it was.
        """
        enhancer = self.enhancer
        was_training = enhancer.training
        enhancer.eval()
        try:
            return self(x.to(self.device)).clamp(0, 1).to(x.device)
        finally:
            enhancer.train(was_training)

    def distribute_networks(self, wrap: Callable[[nn.Module], nn.Module] | None) -> None:
        """Wrap each of :attr:`TRAINED_NETWORKS` with ``wrap`` (its own DistributedDataParallel,
        from :class:`~wespe.strategies.PerNetworkDDPStrategy`), or drop the wrappers (None)."""
        self._distributed_networks = (
            {}
            if wrap is None
            else {name: wrap(getattr(self, name)) for name in self.TRAINED_NETWORKS}
        )

    def trained(self, name: str) -> nn.Module:
        """The network ``name`` for a training forward pass whose loss trains it: its own
        DistributedDataParallel wrapper under PerNetworkDDPStrategy (which all-reduces its
        gradients in the backward pass), else the network itself."""
        if name in self._distributed_networks:
            return self._distributed_networks[name]
        return getattr(self, name)

    @property
    def iteration(self) -> int:
        """Training iterations (batches) done; ``global_step`` counts optimizer steps."""
        return self.global_step // self.OPTIMIZER_STEPS_PER_ITERATION

    def _save_configuration(self) -> None:
        """``save_hyperparameters`` of the calling ``__init__``, keeping only configuration.

        Through the CLI, networks, losses and optimizers arrive as their configuration
        (``class_path``/``init_args``), which is what Lightning stores. Built in Python they are
        objects: their weights are in the state dict already, and pickling them would make the
        checkpoint unloadable with ``weights_only=True`` (what resuming uses). Pass them again to
        ``load_from_checkpoint`` in that case.
        """
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        for key in [k for k, v in self.hparams.items() if isinstance(v, nn.Module) or callable(v)]:
            del self.hparams[key]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            # Frozen loss networks read their weights now, so a missing weights file stops the
            # run before its first step; evaluation and prediction never need them.
            for module in self.modules():
                if isinstance(module, VGG19Features):
                    module.load_weights()

    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        """:func:`check_finite`, except under a GradScaler (16-mixed): there an overflowing
        fp16 loss is expected now and then, and the scaler skips that step and halves its
        scale, as torch and Lightning intend."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:
            check_finite(terms, self.iteration + 1)

    @staticmethod
    def build_optimizer(
        make: OptimizerCallable | None, parameters: list[nn.Parameter], field: str = "optimizer"
    ) -> torch.optim.Optimizer:
        """``make(parameters)``, or the paper's Adam with lr 5e-4 when no optimizer is given.
        A setting the optimizer refuses (a negative learning rate) is reported with the
        config field ``model.init_args.<field>``, before training starts."""
        if make is None:
            return torch.optim.Adam(parameters, lr=5e-4)
        try:
            return make(parameters)
        except ValueError as error:
            raise ValueError(f"model.init_args.{field}: {error}") from error

    def update_ema(self) -> None:
        """Fold the generator's current weights into the moving average (if any)."""
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)

    # ------------------------------------------------------------------ evaluation

    def _evaluation_step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        source, clean = batch["source"], batch["clean"]
        enhanced = self(source).clamp(0, 1)
        metrics = self.eval_metrics[stage]
        metrics["enhanced"].update(enhanced, clean)
        metrics["input"].update(source, clean)
        for suffix, images in (("", enhanced), ("_input", source)):
            for name, values in image_figures(images, clean).items():
                metrics[f"{name}{suffix}"].update(values)
        return {"enhanced": enhanced}  # for callbacks' on_*_batch_end (sample grids)

    def sample_panels(self, source: Tensor, enhanced: Tensor, clean: Tensor) -> list[Tensor]:
        """The images of a sample-grid row, left to right, each ``(B, 3, H, W)`` in [0, 1]
        (:class:`~wespe.callbacks.SampleGrids` shows the first of the batch)."""
        return [source, enhanced, clean]

    #: Caption of a sample-grid row.
    SAMPLE_CAPTION = "input | enhanced | clean"

    def _evaluation_epoch_end(self, stage: str) -> None:
        metrics = self.eval_metrics[stage]
        logged = {f"{stage}/{k}": v for k, v in metrics["enhanced"].compute().items()}
        logged.update({f"{stage}/{k}_input": v for k, v in metrics["input"].compute().items()})
        for name in IMAGE_FIGURES:
            for suffix in ("", "_input"):
                logged[f"{stage}/{name}{suffix}"] = metrics[f"{name}{suffix}"].compute()
        logged[f"{stage}/psnr_gain"] = logged[f"{stage}/psnr"] - logged[f"{stage}/psnr_input"]
        # The figures come from torchmetrics, already reduced over all processes; sync_dist
        # only tells Lightning so (averaging equal values).
        self.log_dict(logged, sync_dist=True)
        if stage == "val":
            self.log(
                "psnr_gain", logged["val/psnr_gain"], prog_bar=True, logger=False, sync_dist=True
            )
        for metric in metrics.values():
            metric.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def on_predict_start(self) -> None:
        if self.predict_enhancer is None:
            self.predict_enhancer = TiledEnhancer(self.enhancer, device=self.device)

    def on_predict_end(self) -> None:
        self.predict_enhancer = None  # a snapshot of the weights: not kept past this run

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The batch's photos at full resolution through :class:`~wespe.inference.TiledEnhancer`
        (bounded memory, equal to the untiled generator), clamped to [0, 1], on the CPU."""
        return torch.stack([self.predict_enhancer(photo.cpu()) for photo in batch["source"]])


class WESPE(EnhancerModule):
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
        ema_decay: keep an exponential moving average of G's weights with this decay (not in
            the paper; None: off). Evaluation, prediction and :meth:`enhance` then use the
            average, which smooths out the oscillation of adversarial training.
    """

    #: Optimizer steps per training iteration (generators, then discriminators).
    OPTIMIZER_STEPS_PER_ITERATION = 2
    TRAINED_NETWORKS = (
        "generator",
        "inverse_generator",
        "texture_discriminator",
        "color_discriminator",
    )
    SAMPLE_CAPTION = "input | G(x) | F(G(x)) | clean"

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
        ema_decay: float | None = None,
    ) -> None:
        super().__init__(generator, ema_decay=ema_decay)
        self._save_configuration()
        self.automatic_optimization = False
        self.inverse_generator = inverse_generator if inverse_generator is not None else Generator()
        self.texture_discriminator = (
            texture_discriminator
            if texture_discriminator is not None
            else Discriminator(in_channels=1)
        )
        self.color_discriminator = (
            color_discriminator if color_discriminator is not None else Discriminator(in_channels=3)
        )
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

    # ------------------------------------------------------------------ optimizers

    @property
    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.generator.parameters(), *self.inverse_generator.parameters()]

    @property
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.texture_discriminator.parameters(), *self.color_discriminator.parameters()]

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's union of return types
        optimizers = [
            self.build_optimizer(
                self.generator_optimizer, self.generator_parameters, "generator_optimizer"
            ),
            self.build_optimizer(
                self.discriminator_optimizer,
                self.discriminator_parameters,
                "discriminator_optimizer",
            ),
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
        optimizer.step()  # clips in on_before_optimizer_step

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Clipping here, not between backward and step: with 16-mixed, Lightning calls this hook
        # after the GradScaler unscaled the gradients, so the threshold applies to the true norm.
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def generator_losses(
        self, source: Tensor
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """The generator objective for source photos ``(B, 3, H, W)``: G(x), the objective's
        terms, and the views of G(x) the discriminators judged (``"color"``: blurred,
        ``"texture"``: gray), which :meth:`discriminator_losses` reuses instead of computing
        them again."""
        enhanced = self.trained("generator")(source)
        reconstructed = self.trained("inverse_generator")(enhanced)
        # The discriminators judge G(x) here but are not trained by this loss: their own DDP
        # wrappers would wait for weight gradients that this backward pass never computes.
        terms = {
            "content": self.content_loss(reconstructed, source),
            "tv": self.tv_loss(enhanced),
        }
        # (In this order: autograd sums G(x)'s gradient in the order the graph was built, and
        # the README's figures were measured with it.)
        views = {}
        with batch_statistics_kept(self.color_discriminator, self.texture_discriminator):
            views["color"] = self.color_loss.view(enhanced)
            terms["color_g"] = self.color_loss.generator_loss(
                self.color_discriminator, enhanced, fake_view=views["color"]
            )
            views["texture"] = self.texture_loss.view(enhanced)
            terms["texture_g"] = self.texture_loss.generator_loss(
                self.texture_discriminator, enhanced, fake_view=views["texture"]
            )
        return enhanced, terms, views

    def discriminator_losses(
        self, target: Tensor, enhanced: Tensor, views: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Discriminator losses and accuracies: target photos versus detached enhanced ones
        (``views``: those :meth:`generator_losses` returned, else computed here)."""
        views = views or {}
        color_d, color_acc = self.color_loss.discriminator_loss(
            self.trained("color_discriminator"), target, enhanced, fake_view=views.get("color")
        )
        texture_d, texture_acc = self.texture_loss.discriminator_loss(
            self.trained("texture_discriminator"),
            target,
            enhanced,
            fake_view=views.get("texture"),
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
        enhanced, generator_terms, views = self.generator_losses(source)
        self._check_finite(generator_terms)
        generator_total = sum(generator_terms.values())
        self._step(generator_optimizer, generator_total)
        self.untoggle_optimizer(generator_optimizer)
        self.update_ema()

        self.toggle_optimizer(discriminator_optimizer)
        discriminator_terms = self.discriminator_losses(target, enhanced, views)
        self._check_finite({k: discriminator_terms[k] for k in ("color_d", "texture_d")})
        self._step(
            discriminator_optimizer,
            discriminator_terms["color_d"] + discriminator_terms["texture_d"],
        )
        self.untoggle_optimizer(discriminator_optimizer)

        for scheduler in self.lr_schedulers() or []:
            scheduler.step()

        if loggers_write_this_step(self.trainer):
            logged = {**generator_terms, "generator": generator_total, **discriminator_terms}
            self.log_dict({f"train/{k}": v.detach() for k, v in logged.items()})
        # Every step: checkpoint names read it, whenever they are saved.
        self.log("train/iteration", float(self.iteration))
        self.log("g", generator_total.detach(), prog_bar=True, logger=False)
        self.log(
            "d_acc",
            0.5 * (discriminator_terms["color_d_acc"] + discriminator_terms["texture_d_acc"]),
            prog_bar=True,
            logger=False,
        )

    def sample_panels(self, source: Tensor, enhanced: Tensor, clean: Tensor) -> list[Tensor]:
        """Sample-grid row: input, the enhanced photo (G's moving average where one is kept),
        the reconstruction F(G(x)), the clean reference.

        The reconstruction runs F on the trained G's output, the pairing the content loss
        trains; F never saw the moving average's outputs, which it maps with a color cast.
        """
        reconstructed = self.inverse_generator(self.generator(source))
        return [source, enhanced, reconstructed.clamp(0, 1), clean]


class SupervisedEnhancer(EnhancerModule):
    """A supervised reference point, not WESPE: the generator trained on *paired* (degraded,
    clean) patches with a pixel loss. The benchmark trains it on the same photos for the same
    wall time as WESPE, as an upper bound for what weak supervision could reach.

    Training batches are ``{"source": degraded, "target": clean}`` patches of the same place
    (``EmbeddedSampleDataModule(paired_training=True)``).

    Args:
        generator: the enhancing network; default ``Generator()``.
        loss: ``(enhanced, clean) -> scalar``; default ``torch.nn.L1Loss()``.
        optimizer: default Adam, lr 5e-4.
        ema_decay: see :class:`EnhancerModule`.
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        loss: nn.Module | None = None,
        optimizer: OptimizerCallable | None = None,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__(generator, ema_decay=ema_decay)
        self._save_configuration()
        self.loss = loss if loss is not None else nn.L1Loss()
        self.optimizer = optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer(self.optimizer, list(self.generator.parameters()))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(self.trained("generator")(batch["source"]), batch["target"])
        self._check_finite({"loss": loss})
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log("train/iteration", float(self.iteration + 1))
        return loss

    def on_train_batch_end(self, outputs: object, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.update_ema()
