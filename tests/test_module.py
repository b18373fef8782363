"""The WESPE LightningModule: the GAN step, optimizer separation, step counting, evaluation."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from wespe.data import EmbeddedSampleDataModule
from wespe.losses import ColorLoss, PerceptualLoss, TextureLoss, TVLoss
from wespe.module import WESPE
from wespe.networks import Discriminator, Generator


def tiny_wespe(cls: type[WESPE] = WESPE, **kwargs) -> WESPE:
    torch.manual_seed(0)
    defaults = dict(
        generator=Generator(channels=4, num_blocks=1),
        inverse_generator=Generator(channels=4, num_blocks=1),
        texture_discriminator=Discriminator(1, widths=(4, 4, 4, 4, 4), fc_features=8),
        color_discriminator=Discriminator(3, widths=(4, 4, 4, 4, 4), fc_features=8),
        content_loss=nn.MSELoss(),
        tv_loss=TVLoss(p=2, loss_weight=10.0),
        color_loss=ColorLoss(loss_weight=5e-3, kernel_size=5, sigma=1.0),
        texture_loss=TextureLoss(loss_weight=5e-3),
    )
    return cls(**{**defaults, **kwargs})


def tiny_data() -> EmbeddedSampleDataModule:
    # Whole photos per domain: at 64 px the halves would leave patches little room to move.
    return EmbeddedSampleDataModule(
        patch_size=32,
        batch_size=2,
        patches_per_epoch=8,
        max_size=64,
        eval_crop=32,
        domains="photos",
    )


def tiny_trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


class RecordingWESPE(WESPE):
    """Records, around each optimizer step, which networks it changed."""

    NETWORKS = ("generator", "inverse_generator", "texture_discriminator", "color_discriminator")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.changes: list[dict[str, bool]] = []

    def _step(self, optimizer, loss) -> None:
        before = {name: snapshot(getattr(self, name)) for name in self.NETWORKS}
        super()._step(optimizer, loss)
        self.changes.append({n: changed(before[n], getattr(self, n)) for n in self.NETWORKS})


def test_each_optimizer_changes_only_its_own_networks(tmp_path):
    model = tiny_wespe(RecordingWESPE)
    tiny_trainer(tmp_path, max_steps=4).fit(model, tiny_data())
    assert len(model.changes) == 4  # two iterations, two optimizer steps each
    generator_step, discriminator_step = model.changes[0], model.changes[1]
    assert generator_step == {
        "generator": True,
        "inverse_generator": True,
        "texture_discriminator": False,
        "color_discriminator": False,
    }
    assert discriminator_step == {
        "generator": False,
        "inverse_generator": False,
        "texture_discriminator": True,
        "color_discriminator": True,
    }


class DiscriminatorGradients(WESPE):
    """Records, at the generator's optimizer step, whether the generator's backward pass
    changed any discriminator gradient (toggling must keep them out of it)."""

    def on_train_batch_start(self, batch, batch_idx):
        self.grads_before = self.discriminator_grads()

    def discriminator_grads(self):
        return [
            None if p.grad is None else p.grad.clone()
            for name in ("color_discriminator", "texture_discriminator")
            for p in getattr(self, name).parameters()
        ]

    def on_before_optimizer_step(self, optimizer):
        if optimizer is self.optimizers()[0].optimizer:  # the generator's step
            after = self.discriminator_grads()
            self.touched = getattr(self, "touched", []) + [
                any(
                    (a is None) != (b is None) or (a is not None and not torch.equal(a, b))
                    for a, b in zip(self.grads_before, after, strict=True)
                )
            ]
        super().on_before_optimizer_step(optimizer)


def test_the_generator_step_leaves_discriminator_gradients_alone(tmp_path):
    model = tiny_wespe(DiscriminatorGradients)
    tiny_trainer(tmp_path, max_steps=4).fit(model, tiny_data())
    assert model.touched == [False, False]  # both iterations, including after a D step


def test_global_step_counts_two_optimizer_steps_per_iteration(tmp_path):
    model = tiny_wespe()
    batches = []
    model.on_train_batch_end = lambda outputs, batch, batch_idx: batches.append(batch_idx)
    trainer = tiny_trainer(tmp_path, max_steps=6)
    trainer.fit(model, tiny_data())
    assert len(batches) == 3
    assert trainer.global_step == 6
    assert model.iteration == 3


def test_generator_terms_are_finite_and_weighted():
    model = tiny_wespe()
    source = torch.rand(2, 3, 32, 32)
    enhanced, terms, views = model.generator_losses(source)
    assert enhanced.shape == source.shape
    assert set(terms) == {"content", "tv", "color_g", "texture_g"}
    assert all(math.isfinite(float(v)) for v in terms.values())
    # The TV term is the loss module's weight times the functional value.
    from wespe.losses import total_variation

    assert torch.allclose(terms["tv"], 10.0 * total_variation(enhanced, p=2))
    # The views the discriminators judged, for the discriminator step to reuse.
    assert torch.equal(views["color"], model.color_loss.view(enhanced))
    assert torch.equal(views["texture"], model.texture_loss.view(enhanced))


def test_the_discriminator_step_reuses_the_generator_steps_views(monkeypatch, tmp_path):
    model = tiny_wespe()
    enhanced, _, views = model.generator_losses(torch.rand(2, 3, 32, 32))
    target = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reused = model.discriminator_losses(target, enhanced, views)
        computed = model.discriminator_losses(target, enhanced)
    assert all(torch.equal(reused[k], computed[k]) for k in computed)

    # A training iteration blurs and grays G(x) once and the target photos once.
    calls = {"color": 0, "texture": 0}
    for kind, loss in (("color", model.color_loss), ("texture", model.texture_loss)):
        view = loss.view

        def counted(x, kind=kind, view=view):
            calls[kind] += 1
            return view(x)

        monkeypatch.setattr(loss, "view", counted)
    tiny_trainer(tmp_path, max_steps=2).fit(model, tiny_data())
    assert calls == {"color": 2, "texture": 2}


def test_discriminator_losses_do_not_reach_the_generator():
    model = tiny_wespe()
    enhanced, _, _ = model.generator_losses(torch.rand(2, 3, 32, 32))
    terms = model.discriminator_losses(torch.rand(2, 3, 32, 32), enhanced)
    (terms["color_d"] + terms["texture_d"]).backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert any(p.grad is not None for p in model.color_discriminator.parameters())
    assert 0 <= float(terms["color_d_acc"]) <= 1


def test_default_networks_and_losses_are_the_papers(monkeypatch, vgg19_torch_home):
    # The default content loss loads ImageNet VGG-19; point torch's hub at a file the tests write.
    monkeypatch.setenv("TORCH_HOME", str(vgg19_torch_home))
    model = WESPE()
    assert model.color_loss.loss_weight == 5e-3 and model.texture_loss.loss_weight == 5e-3
    assert model.tv_loss.loss_weight == 10.0
    assert model.content_loss.vgg.layers == ("relu5_4",)
    assert model.generator.head[0].out_channels == 64 and len(model.generator.blocks) == 4
    optimizers, schedulers = model.configure_optimizers()
    assert [o.defaults["lr"] for o in optimizers] == [5e-4, 5e-4]
    assert schedulers == []


@pytest.mark.slow
def test_frozen_vgg_is_not_checkpoint_state_and_evaluation_needs_no_weights(tmp_path):
    weights = tmp_path / "vgg.pth"
    conv = {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.randn(64)}
    torch.save(conv, weights)

    def with_vgg() -> WESPE:
        return tiny_wespe(content_loss=PerceptualLoss("relu1_1", weights=str(weights)))

    model = with_vgg()
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, tiny_data())
    torch.testing.assert_close(model.content_loss.vgg.features[0].weight, conv["features.0.weight"])
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    state = torch.load(tmp_path / "model.ckpt", weights_only=True)["state_dict"]
    assert not any(key.startswith("content_loss.vgg.features") for key in state)

    # Without the weights file: a checkpoint loads and tests; training stops before its first step.
    weights.unlink()
    evaluated = with_vgg()
    evaluated.load_state_dict(state)
    tested = tiny_trainer(tmp_path, limit_test_batches=1)
    tested.test(evaluated, tiny_data(), verbose=False)
    assert "test/psnr" in tested.callback_metrics
    retrained = tiny_trainer(tmp_path, max_steps=2)
    with pytest.raises(FileNotFoundError, match="vgg.pth does not exist"):
        retrained.fit(with_vgg(), tiny_data())
    assert retrained.global_step == 0


def test_batch_norm_discriminators_keep_running_statistics_of_their_own_step_only():
    model = tiny_wespe(
        texture_discriminator=Discriminator(1, widths=(4, 4, 4, 4, 4), fc_features=8, norm="batch"),
        color_discriminator=Discriminator(3, widths=(4, 4, 4, 4, 4), fc_features=8, norm="batch"),
    )
    model.train()

    def running(network):
        return [b.clone() for n, b in network.named_buffers() if "running" in n]

    before = running(model.color_discriminator) + running(model.texture_discriminator)
    enhanced, terms, _ = model.generator_losses(torch.rand(2, 3, 32, 32))
    after_generator = running(model.color_discriminator) + running(model.texture_discriminator)
    assert all(torch.equal(a, b) for a, b in zip(before, after_generator, strict=True))
    assert torch.isfinite(terms["color_g"])
    model.discriminator_losses(torch.rand(2, 3, 32, 32), enhanced.detach())
    after_discriminator = running(model.color_discriminator) + running(model.texture_discriminator)
    assert not all(torch.equal(a, b) for a, b in zip(before, after_discriminator, strict=True))


def test_one_scheduler_without_the_other_is_refused():
    model = tiny_wespe(generator_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    with pytest.raises(ValueError, match="generator_scheduler and discriminator_scheduler"):
        model.configure_optimizers()


def test_schedulers_step_once_per_iteration(tmp_path):
    def halve(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    model = tiny_wespe(generator_scheduler=halve, discriminator_scheduler=halve)
    tiny_trainer(tmp_path, max_steps=6).fit(model, tiny_data())
    lrs = [opt.param_groups[0]["lr"] for opt in model.trainer.optimizers]
    assert lrs == [5e-4 * 0.5**3, 5e-4 * 0.5**3]


def test_validation_reports_psnr_of_input_and_output(tmp_path):
    from wespe.callbacks import SampleGrids

    model = tiny_wespe()
    data = tiny_data()
    grids = SampleGrids(num_images=2, size=16)
    trainer = tiny_trainer(tmp_path, limit_val_batches=None, callbacks=[grids])
    (metrics,) = trainer.validate(model, data)
    data.setup()
    # The input's figures are a property of the data alone: recompute them directly.
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from wespe.metrics import ciede2000, colorfulness, luma_contrast

    pairs = [(item["source"][None], item["clean"][None]) for item in data.val_set]
    expected = {
        "psnr_input": [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in pairs],
        "ciede2000_input": [ciede2000(x, y) for x, y in pairs],
        "contrast_ratio_input": [luma_contrast(x) / luma_contrast(y) for x, y in pairs],
        "colorfulness_ratio_input": [colorfulness(x) / colorfulness(y) for x, y in pairs],
    }
    for name, values in expected.items():
        assert metrics[f"val/{name}"] == pytest.approx(float(torch.stack(values).mean()), rel=1e-4)
    assert metrics["val/psnr_gain"] == pytest.approx(
        metrics["val/psnr"] - metrics["val/psnr_input"], abs=1e-4
    )
    assert 0 <= metrics["val/entropy"] <= 8
    assert metrics["val/jpeg_bpp"] > 0
    # The degradation's color cast and flattened contrast show in the input's figures.
    assert metrics["val/ciede2000_input"] > 5
    assert metrics["val/contrast_ratio_input"] < 0.9
    for name in ("ciede2000", "contrast_ratio", "colorfulness_ratio"):
        assert math.isfinite(metrics[f"val/{name}"])
    # The sample grid: a row per photo (2), WESPE's four panels each, 16 px, 2 px padding.
    (sample,) = (tmp_path / "samples").glob("val_iter*.png")
    from PIL import Image

    assert Image.open(sample).size == (4 * 16 + 5 * 2, 2 * 16 + 3 * 2)


def test_test_stage_evaluates_the_test_photos_not_the_validation_ones(tmp_path):
    model = tiny_wespe()
    data = tiny_data()
    (validated,) = tiny_trainer(tmp_path, limit_val_batches=None).validate(model, data)
    (tested,) = tiny_trainer(tmp_path, limit_test_batches=None).test(model, data)
    data.setup()
    from torchmetrics.functional.image import peak_signal_noise_ratio

    for metrics, stage, dataset in (
        ("val", validated, data.val_set),
        ("test", tested, data.test_set),
    ):
        psnr = [
            peak_signal_noise_ratio(item["source"][None], item["clean"][None], data_range=1.0)
            for item in dataset
        ]
        assert stage[f"{metrics}/psnr_input"] == pytest.approx(
            float(torch.stack(psnr).mean()), abs=1e-3
        )
    assert validated["val/psnr_input"] != pytest.approx(tested["test/psnr_input"], abs=1e-2)


def test_sample_grid_reconstructs_through_the_trained_generator():
    """The grid's F(G(x)) panel is F of the trained G's output, the pairing F was trained on,
    even where evaluation enhances with G's moving average."""
    model = tiny_wespe(
        generator=Generator(channels=4, num_blocks=1, output="residual", init="identity"),
        ema_decay=0.5,
    )
    with torch.no_grad():  # G moves on; its average (a copy of G at construction) lags behind
        model.generator.to_image.bias.add_(0.2)
    x, clean = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        enhanced = model.enhance(x)
        panels = model.sample_panels(x, enhanced, clean)
        trained = model.inverse_generator(model.generator(x)).clamp(0, 1)
        through_average = model.inverse_generator(enhanced).clamp(0, 1)
    assert len(panels) == 4 and panels[1] is enhanced and panels[3] is clean
    torch.testing.assert_close(panels[2], trained)
    assert not torch.allclose(panels[2], through_average)


def test_throughput_of_the_configs_monitor_counts_iterations_and_leaves_validation_out(tmp_path):
    # The configs' ThroughputMonitor (Lightning's), as they set it up: it counts batches, i.e.
    # WESPE iterations (two optimizer steps each), and leaves validation time out.
    import csv

    from pytorch_lightning.callbacks import ThroughputMonitor
    from pytorch_lightning.loggers import CSVLogger

    from wespe.callbacks import batch_size

    pause = 0.5

    class SlowValidation(WESPE):
        def validation_step(self, batch, batch_idx):
            time.sleep(pause)
            return super().validation_step(batch, batch_idx)

    monitor = ThroughputMonitor(batch_size_fn=batch_size, window_size=2, separator="/")
    trainer = tiny_trainer(
        tmp_path,
        max_steps=12,
        val_check_interval=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[monitor],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
    )
    start = time.perf_counter()
    trainer.fit(tiny_wespe(SlowValidation), tiny_data())
    wall = time.perf_counter() - start
    with open(Path(trainer.log_dir) / "metrics.csv") as f:
        # One process: Lightning logs the per-device figures (the global ones under DDP).
        rows = [r for r in csv.DictReader(f) if r.get("train/device/samples_per_sec")]
    # Six iterations; the window of 2 fills at the second.
    assert [float(r["train/batches"]) for r in rows] == [2, 3, 4, 5, 6]
    # The training time it measures leaves out the six validations' pauses (a difference of
    # times, so it holds however loaded the machine is).
    assert float(rows[-1]["train/time"]) <= wall - 5 * pause


def test_enhance_keeps_size_and_range():
    model = tiny_wespe()
    x = torch.rand(1, 3, 37, 29)
    y = model.enhance(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_given_networks_are_kept_even_when_falsy():
    # An empty nn.Sequential has len 0: `given or default` would replace it.
    texture, color = nn.Sequential(), nn.Sequential()
    model = tiny_wespe(texture_discriminator=texture, color_discriminator=color)
    assert model.texture_discriminator is texture and model.color_discriminator is color


def test_enhance_runs_the_enhancer_in_eval_mode_and_restores_the_mode():
    model = tiny_wespe(ema_decay=None)
    model.generator = nn.Sequential(nn.Dropout(0.5))  # train mode would zero half the pixels
    assert model.training
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(model.enhance(x), x)
    assert model.generator.training and model.training


def test_short_training_lowers_content_and_color_losses(tmp_path):
    """G's optimizer really descends its objective: on a fixed batch, after a short run, the
    cycle content loss and the color loss are lower. The discriminators get lr 0 so the color
    loss is a fixed target, and a DPED-initialised G starts as a flat gray image, far from x."""
    model = tiny_wespe(
        color_loss=ColorLoss(kind="lsgan", loss_weight=0.1, kernel_size=5, sigma=1.0),
        discriminator_optimizer=lambda params: torch.optim.Adam(params, lr=0.0),
    )
    data = tiny_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))

    def losses() -> dict[str, float]:
        with torch.no_grad():
            _, terms, _ = model.generator_losses(batch["source"])
        return {k: float(v) for k, v in terms.items()}

    before = losses()
    tiny_trainer(tmp_path, max_steps=2 * 30).fit(model, data)
    after = losses()
    assert after["content"] < 0.5 * before["content"]
    assert after["color_g"] < before["color_g"]


def test_ema_generator_is_what_evaluation_uses(tmp_path):
    model = tiny_wespe(
        generator=Generator(channels=4, num_blocks=1, output="residual", init="identity"),
        ema_decay=0.9,
    )
    x = torch.rand(1, 3, 33, 35)
    assert torch.equal(model.enhance(x), x.clamp(0, 1))  # identity-initialised residual G
    tiny_trainer(tmp_path, max_steps=2 * 3).fit(model, tiny_data())
    average = model.generator_ema.module
    assert model.enhancer is average
    assert not torch.equal(average.to_image.weight, model.generator.to_image.weight)
    y = model.enhance(x)
    assert torch.equal(y, average(x).clamp(0, 1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


def test_ema_follows_the_generator_once_per_iteration_with_its_decay(tmp_path):
    decay = 0.5
    model = tiny_wespe(ema_decay=decay)
    after_each_iteration = []
    model.on_train_batch_end = lambda *args: after_each_iteration.append(
        {k: v.detach().clone() for k, v in model.generator.state_dict().items()}
    )
    tiny_trainer(tmp_path, max_steps=2 * 3).fit(model, tiny_data())
    assert len(after_each_iteration) == 3
    # torch's AveragedModel: the first update copies G, later ones blend with the decay.
    expected = dict(after_each_iteration[0])
    for weights in after_each_iteration[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    average = model.generator_ema.module.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(average[name], value, rtol=1e-6, atol=1e-7, msg=name)
    assert int(model.generator_ema.n_averaged) == 3


def test_bad_ema_decay_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_wespe(ema_decay=1.0)


def test_supervised_reference_learns_paired_data(tmp_path):
    from wespe.module import SupervisedEnhancer

    torch.manual_seed(0)
    model = SupervisedEnhancer(
        generator=Generator(channels=4, num_blocks=1, output="residual", init="identity"),
    )
    data = EmbeddedSampleDataModule(
        patch_size=32, batch_size=4, patches_per_epoch=8, max_size=64, paired_training=True
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        before = float(nn.functional.l1_loss(model.generator(batch["source"]), batch["target"]))
    trainer = tiny_trainer(tmp_path, max_steps=40)
    trainer.fit(model, data)
    assert model.iteration == 40  # one optimizer step per iteration
    with torch.no_grad():
        after = float(nn.functional.l1_loss(model.generator(batch["source"]), batch["target"]))
    assert after < before


class RecordingLogger(pl.loggers.Logger):
    """Keeps every ``log_metrics`` call: ``{step: metrics}``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.setdefault(step, {}).update(metrics)


def test_loss_terms_are_logged_at_the_steps_the_loggers_write(tmp_path):
    # The module logs its loss terms only when Lightning writes them (each self.log call
    # costs bookkeeping); what is written is the same as when every step is logged.
    written = {}
    for every in (1, 2):
        logger = RecordingLogger()
        pl.seed_everything(0, verbose=False)
        model = tiny_wespe()
        trainer = tiny_trainer(tmp_path, max_steps=2 * 4, logger=logger, log_every_n_steps=every)
        trainer.fit(model, tiny_data())
        written[every] = {step: row for step, row in logger.rows.items() if "train/content" in row}
        assert trainer.callback_metrics["train/iteration"] == 4
    assert sorted(written[1]) == [0, 1, 2, 3]
    assert sorted(written[2]) == [1, 3]
    for step, row in written[2].items():
        assert row == written[1][step]
