"""Shared fixtures: tiny networks and data so CLI training runs take seconds on a CPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Tests never talk to W&B's servers.
os.environ.setdefault("WANDB_MODE", "offline")


def tiny_overrides(run_dir: Path, iterations: int = 3) -> list[str]:
    """Command-line overrides that shrink configs/quickstart.yaml to a seconds-long CPU run."""
    network = "init_args"
    return [
        f"--max_iterations={iterations}",
        f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.val_check_interval=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--model.init_args.generator.{network}.channels=4",
        f"--model.init_args.generator.{network}.num_blocks=1",
        f"--model.init_args.inverse_generator.{network}.channels=4",
        f"--model.init_args.inverse_generator.{network}.num_blocks=1",
        f"--model.init_args.texture_discriminator.{network}.widths=[4,4,4,4,4]",
        f"--model.init_args.texture_discriminator.{network}.fc_features=8",
        f"--model.init_args.color_discriminator.{network}.widths=[4,4,4,4,4]",
        f"--model.init_args.color_discriminator.{network}.fc_features=8",
        "--data.init_args.patch_size=32",
        "--data.init_args.batch_size=2",
        "--data.init_args.patches_per_epoch=8",
        "--data.init_args.max_size=96",
        "--data.init_args.eval_crop=48",
    ]


# The file name torchvision's VGG19_Weights.IMAGENET1K_V1 is cached under.
IMAGENET_VGG19_FILE = "vgg19-dcbb9e9d.pth"


@pytest.fixture(scope="session")
def vgg19_torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a seeded random VGG-19 under the ImageNet file name.

    Written once per session and deleted at its end: a VGG-19 state dict is 548 MB, and pytest
    keeps the last three sessions' temporary folders.
    """
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # Seeded without moving the global generator, so test order does not change other tests' draws.
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        vgg19 = torchvision.models.vgg19(weights=None)
    torch.save(vgg19.state_dict(), checkpoints / IMAGENET_VGG19_FILE)
    yield home
    shutil.rmtree(home)


@pytest.fixture
def quickstart_args(tmp_path: Path) -> list[str]:
    return ["-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)]


def write_checkpoint(path: Path, run_dir: Path, seed: int = 0) -> Path:
    """A real Lightning checkpoint of the tiny quickstart model (no training), whose generator
    and moving-average generator have different random weights, so that each is told apart and
    the generator is not the identity it is initialised to."""
    from wespe.cli import cli_main

    cli = cli_main(["-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(run_dir)], run=False)
    model = cli.model
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for network in (model.generator, model.generator_ema.module):
            for parameter in network.parameters():
                parameter.copy_(torch.randn_like(parameter) * 0.2)
    cli.trainer.strategy.connect(model)
    cli.trainer.save_checkpoint(path)
    return path


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """:func:`write_checkpoint` in ``tmp_path``."""
    return write_checkpoint(tmp_path / "model.ckpt", tmp_path / "runs")


@pytest.fixture(autouse=True)
def decoded_image_cache(tmp_path_factory, monkeypatch):
    """Every test's decoded-image cache (FolderDataModule's default ``decode_cache``) lives in a
    temporary folder, never in the user's ``~/.cache``."""
    folder = tmp_path_factory.mktemp("decoded")
    monkeypatch.setenv("WESPE_CACHE_DIR", str(folder))
    return folder
