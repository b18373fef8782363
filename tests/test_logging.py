"""Logging as researchers use it: W&B offline by default, full config and panels recorded, and
``wespe compare`` over local run records. Nothing here touches the network."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, tiny_overrides
from PIL import Image

from wespe.cli import cli_main, compare_main
from wespe.loggers import wandb_offline_by_default
from wespe.runs import find_runs, read_run, wandb_records

EXPECTED_METRICS = {
    "train/content", "train/tv", "train/color_g", "train/texture_g", "train/color_d",
    "train/texture_d", "train/color_d_acc", "train/texture_d_acc", "lr-Adam",
    "lr-Adam-1", "train/iteration", "val/psnr",
    "val/ssim", "val/psnr_input", "val/entropy", "val/jpeg_bpp",
}  # fmt: skip
# Throughput (train/device/samples_per_sec) needs the ThroughputMonitor's window of 10
# iterations, more than these 3-iteration runs have: tests/test_module.py checks it.


@pytest.fixture
def no_wandb_setup(tmp_path, monkeypatch):
    """A machine where W&B was never set up: no key, no WANDB_MODE, no ~/.netrc."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.chdir(tmp_path)


def wandb_args(tmp_path: Path, *extra: str) -> list[str]:
    args = [a for a in tiny_overrides(tmp_path) if "logger.init_args.save_dir" not in a]
    return [
        "fit", "-c", str(CONFIGS / "quickstart.yaml"), "-c", str(CONFIGS / "logger" / "wandb.yaml"),
        *args, f"--trainer.logger.init_args.save_dir={tmp_path}", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_offline_wandb_run_records_metrics_config_and_panels(tmp_path, no_wandb_setup):
    import wandb

    cli = cli_main(wandb_args(tmp_path))
    logger = cli.trainer.logger
    assert logger._offline  # chosen because no key is configured: no prompt, no network wait
    run_id = logger.version
    wandb.finish()

    (run,) = find_runs([tmp_path / "wandb"])
    assert EXPECTED_METRICS <= set(run.history)
    # The x-axis is iterations: the last logged iteration is 3, the run's length.
    assert run.history["train/iteration"][-1] == (3, 3.0)
    # The whole resolved config, every hyper-parameter, not only the model's.
    assert run.config["model.init_args.ema_decay"] == 0.995
    assert run.config["max_iterations"] == 3
    assert run.config["data.init_args.patch_size"] == 32
    # An image panel: recorded in the history and its PNG in the run's media folder.
    assert "val/samples/count" in run.history
    (panel,) = run.path.glob("files/media/images/val/samples_*.png")
    assert Image.open(panel).size[0] > 0

    # The checkpoint keeps the W&B run id, and a resume reuses it.
    checkpoint = tmp_path / "wespe" / run_id / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["wandb_run_id"] == run_id
    assert (tmp_path / "wespe" / run_id / "samples").is_dir()
    # Each run's own config beside its checkpoints, not only the shared save_dir's latest one.
    saved = yaml.safe_load((tmp_path / "wespe" / run_id / "config.yaml").read_text())
    assert saved["max_iterations"] == 3 and saved["model"]["init_args"]["ema_decay"] == 0.995
    tested = cli_main(
        ["test", "-c", str(tmp_path / "wespe" / run_id / "config.yaml"),
         f"--ckpt_path={checkpoint}", "--trainer.logger=false"]
    )  # fmt: skip
    assert "test/psnr" in tested.trainer.callback_metrics
    resumed = cli_main(wandb_args(tmp_path, "--max_iterations=4", f"--ckpt_path={checkpoint}"))
    assert resumed.trainer.logger.version == run_id
    assert resumed.trainer.global_step == 8
    wandb.finish()


@pytest.mark.slow
def test_wandb_resume_finds_its_own_run_keeps_its_name_and_follows_a_moved_checkpoint(
    tmp_path, no_wandb_setup
):
    import wandb

    named = "--trainer.logger.init_args.name=my-run"
    first = cli_main(wandb_args(tmp_path, named))
    run_id = first.trainer.logger.version
    wandb.finish()
    # A CSV run of the same config, newer: --ckpt_path last must not take its checkpoint.
    cli_main(["fit", "-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)])
    assert list((tmp_path / "quickstart").glob("*/checkpoints/last.ckpt"))

    resumed = cli_main(wandb_args(tmp_path, named, "--max_iterations=4", "--ckpt_path=last"))
    assert resumed.trainer.logger.version == run_id
    assert resumed.trainer.logger.experiment.name == "my-run"  # not renamed to the project
    assert resumed.trainer.global_step == 8
    assert (tmp_path / "wespe" / run_id / "checkpoints" / "last.ckpt").is_file()
    wandb.finish()

    # Moved out of its run folder, the checkpoint still continues its W&B run.
    moved = tmp_path / "elsewhere" / "model.ckpt"
    moved.parent.mkdir()
    (tmp_path / "wespe" / run_id / "checkpoints" / "last.ckpt").rename(moved)
    again = cli_main(wandb_args(tmp_path, named, "--max_iterations=5", f"--ckpt_path={moved}"))
    assert again.trainer.logger.version == run_id
    assert again.trainer.global_step == 10
    wandb.finish()


@pytest.mark.parametrize(
    ("env", "netrc_host", "offline"),
    [
        ({}, None, True),
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}, None, True),
        ({"WANDB_MODE": "online"}, None, False),
        ({"WANDB_API_KEY": "x" * 40}, None, False),
        ({}, "api.wandb.ai", False),
        ({}, "example.com", True),
    ],
)
def test_offline_unless_wandb_is_set_up(
    env, netrc_host, offline, tmp_path, no_wandb_setup, monkeypatch
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if netrc_host:
        netrc = tmp_path / ".netrc"
        netrc.write_text(f"machine {netrc_host}\n  login user\n  password {'y' * 40}\n")
        netrc.chmod(0o600)
    assert wandb_offline_by_default() is offline


def test_compare_shows_runs_and_their_differences(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["fit", "-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)]
    cli_main(base)
    cli_main([*base, "--model.init_args.ema_decay=0.9"])
    plot = tmp_path / "psnr.png"
    compare_main([str(tmp_path / "quickstart"), "--plot", str(plot)])
    out = capsys.readouterr().out
    assert "| quickstart/version_0 |" in out and "| quickstart/version_1 |" in out
    assert "| model.init_args.ema_decay | 0.995 | 0.9 |" in out
    assert "default_root_dir" not in out  # bookkeeping differences are not settings
    final = read_run(tmp_path / "quickstart" / "version_1").final("val/psnr")
    assert f"{final:.4g}" in out.split("| quickstart/version_1 |")[1].splitlines()[0]
    assert Image.open(plot).size == (700, 400)


def settings_that_differ(out: str) -> list[str]:
    rows = out.split("Settings that differ:")[1].strip().splitlines()[2:]
    return [row.split("|")[1].strip() for row in rows if row.startswith("|")]


@pytest.mark.slow
def test_compare_a_csv_run_with_a_wandb_run_lists_exactly_their_one_change(
    tmp_path, no_wandb_setup, capsys
):
    import wandb

    cli_main(["fit", "-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)])
    cli_main(wandb_args(tmp_path, "--model.init_args.ema_decay=0.9"))
    wandb.finish()
    compare_main([str(tmp_path / "quickstart"), str(tmp_path / "wandb")])
    assert settings_that_differ(capsys.readouterr().out) == ["model.init_args.ema_decay"]
    # Both records put the validation after iteration 2 (val_check_interval) at iteration 2.
    csv_run, wandb_run = find_runs([tmp_path / "quickstart", tmp_path / "wandb"])
    assert csv_run.history["val/psnr"][0][0] == wandb_run.history["val/psnr"][0][0] == 2
    assert (
        csv_run.history["train/iteration"][0] == wandb_run.history["train/iteration"][0] == (1, 1.0)
    )

    # A folder holding two record files (a resumed run's second file moved into it) is read
    # as one run, in order.
    (first,) = wandb_run.path.glob("run-*.wandb")
    second = wandb_run.path / "run-second.wandb"
    second.write_bytes(first.read_bytes())
    os.utime(second, (first.stat().st_mtime + 1,) * 2)
    doubled = read_run(wandb_run.path)
    assert doubled.history["train/iteration"] == wandb_run.history["train/iteration"] * 2


def test_compare_shows_a_diverged_run_as_diverged(tmp_path, capsys):
    run = tmp_path / "diverged" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/psnr\n0,9,18.5\n0,19,nan\n")
    assert read_run(run).history["val/psnr"][-1][0] == 20
    assert math.isnan(read_run(run).final("val/psnr"))
    compare_main([str(tmp_path), "--plot", str(tmp_path / "psnr.png")])
    assert "| diverged/version_0 | nan (diverged) |" in capsys.readouterr().out


def test_compare_refuses_folders_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        find_runs([tmp_path])
    (tmp_path / "run-x.wandb").write_bytes(b"not a record log")
    with pytest.raises(ValueError, match="not a W&B run record file"):
        list(wandb_records(tmp_path / "run-x.wandb"))
