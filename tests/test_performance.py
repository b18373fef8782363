"""The performance benchmarks compute what they claim (their timings are figures, not tests),
and the speed options leave training's results as they were."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from wespe.callbacks import CompileNetworks
from wespe.module import WESPE

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


step = script("step")


def test_lightning_and_the_plain_loop_compute_the_same_iterations(tmp_path):
    results = step.main(
        ["--models", "quickstart", "--iterations", "2", "--warmup", "1", "--repeats", "1",
         "--out", str(tmp_path)]
    )  # fmt: skip
    (measured,) = results["steps"]
    # Same weights and batches in, same weights out: the plain loop is WESPE's iteration.
    assert measured["max_weight_difference"] < 1e-6
    assert measured["lightning_over_plain"] > 0
    assert 0 < measured["mfu"] < 1.5
    written = json.loads((tmp_path / "step_quickstart.json").read_text())
    assert written["steps"][0]["model"] == "quickstart"
    assert "| quickstart (64 px) | 8 |" in results["table"]


def test_iteration_flops_count_both_steps_forward_and_backward():
    # A model whose every FLOP is counted here by hand: 1x1 convolutions, linear
    # discriminators, and the color loss's blur (kornia's two depthwise 1-D convolutions).
    torch.manual_seed(0)
    model = WESPE(
        generator=torch.nn.Conv2d(3, 3, 1, bias=False),
        inverse_generator=torch.nn.Conv2d(3, 3, 1, bias=False),
        texture_discriminator=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1)),
        color_discriminator=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 1)),
        content_loss=torch.nn.MSELoss(),
    )
    model.color_loss.blur.kernel_size = 3
    batch = {"source": torch.rand(2, 3, 8, 8), "target": torch.rand(2, 3, 8, 8)}
    conv = 2 * 2 * 3 * 3 * 64  # forward of a 1x1 conv: batch 2, 3 -> 3 channels, 64 pixels
    blur = 2 * (2 * 2 * 3 * 64 * 3)  # two passes of a 3-tap depthwise conv, batch 2
    generator_step = (
        conv * 2  # G: forward, weight gradient (the photos need no gradient)
        + conv * 3  # F: forward, weight gradient, input gradient (G's output needs it)
        + blur * 2  # the blur of G(x): forward, input gradient
        + 2 * 2 * 192 * 2  # color discriminator: forward, input gradient (weights frozen)
        + 2 * 2 * 64 * 2  # texture discriminator, likewise
    )
    discriminator_step = (
        blur  # the target photos' blur; G(x)'s is the generator step's, reused
        + 2 * 4 * 192 * 2  # real and fake together (4 images): forward, weight gradient
        + 2 * 4 * 64 * 2
    )
    assert step.iteration_flops(model, batch) == generator_step + discriminator_step


def test_the_blurs_compared_return_the_same_images(tmp_path):
    results = script("blur").main(
        ["--shapes", "2x3x32x40", "--repeats", "1", "--out", str(tmp_path)]
    )
    assert len(results["rows"]) == 4
    assert all(row["max_difference"] < 1e-5 for row in results["rows"])
    assert results["rows"][0]["forward_ratio"] == 1.0


def tiny_wespe() -> WESPE:
    from wespe.losses import ColorLoss, TextureLoss
    from wespe.networks import Discriminator, Generator

    torch.manual_seed(0)
    return WESPE(
        generator=Generator(channels=4, num_blocks=1),
        inverse_generator=Generator(channels=4, num_blocks=1),
        texture_discriminator=Discriminator(1, widths=(4, 4, 4, 4, 4), fc_features=8),
        color_discriminator=Discriminator(3, widths=(4, 4, 4, 4, 4), fc_features=8),
        content_loss=torch.nn.MSELoss(),
        color_loss=ColorLoss(loss_weight=5e-3, kernel_size=5, sigma=1.0),
        texture_loss=TextureLoss(loss_weight=5e-3),
        # SGD: Adam divides by the gradients' size, which would blow up rounding differences.
        generator_optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        discriminator_optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
    )


def train(tmp_path: Path, callbacks: list) -> WESPE:
    from wespe.data import EmbeddedSampleDataModule

    pl.seed_everything(0, verbose=False)
    model = tiny_wespe()
    data = EmbeddedSampleDataModule(
        patch_size=32, batch_size=2, patches_per_epoch=8, max_size=64, domains="photos"
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(model, data)
    return model


@pytest.mark.slow
def test_compiled_networks_train_as_the_plain_ones(tmp_path):
    plain = train(tmp_path, [])
    compiled = train(tmp_path, [CompileNetworks()])
    assert compiled.generator._compiled_call_impl is not None  # it did compile
    plain_state, compiled_state = plain.state_dict(), compiled.state_dict()
    assert plain_state.keys() == compiled_state.keys()  # checkpoints unchanged
    for key, value in plain_state.items():
        torch.testing.assert_close(compiled_state[key], value, atol=1e-5, rtol=1e-4)


def test_compile_networks_names_a_missing_network(tmp_path):
    with pytest.raises(ValueError, match="no network 'vgg'.*generator"):
        train(tmp_path, [CompileNetworks(networks=["vgg"])])


@pytest.mark.slow
def test_one_command_writes_every_part(tmp_path):
    results = script("performance").main(["--quick", "--out", str(tmp_path)])
    assert set(results) >= {"step_quickstart", "step_paper", "blur", "data", "enhance"}
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["step_quickstart"]["steps"][0]["variants"]["fused_adam"]["speedup"] > 0
    table = (tmp_path / "table.md").read_text()
    for part in ("## step_quickstart", "## step_paper", "## blur", "## data", "## enhance"):
        assert part in table
    # One part run again replaces its own figures; the others' stay.
    again = script("performance").main(["--quick", "--only", "blur", "--out", str(tmp_path)])
    assert again["step_quickstart"] == written["step_quickstart"]
    assert again["blur"]["rows"] != written["blur"]["rows"]  # timed anew
    assert "## data" in (tmp_path / "table.md").read_text()
