"""Resuming: a resumed run equals an uninterrupted one; kills and preemption leave resumable
checkpoints; resumes continue the same run folder and refuse changed model settings."""

from __future__ import annotations

import csv
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import CONFIGS, tiny_overrides
from test_module import tiny_data, tiny_trainer, tiny_wespe

from wespe.callbacks import ModelCheckpoint, RunState
from wespe.cli import cli_main


class BatchRecorder(pl.Callback):
    """Remembers every training batch's source patches, by iteration."""

    def __init__(self) -> None:
        self.batches: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches[pl_module.iteration] = batch["source"].clone()


def fit(
    tmp_path: Path,
    iterations: int,
    ckpt_path: Path | None = None,
    every: int | None = None,
    num_workers: int = 0,
    epoch_end: bool = False,
    **trainer_kwargs,
):
    torch.manual_seed(0)
    model = tiny_wespe(ema_decay=0.9)
    recorder = BatchRecorder()
    # RunState as the CLI adds it: the random streams continue across a resume.
    callbacks = [recorder, RunState(), *trainer_kwargs.pop("callbacks", [])]
    if every is not None:
        callbacks.append(
            ModelCheckpoint(
                dirpath=tmp_path / "checkpoints",
                every_n_train_steps=2 * every,  # Lightning counts optimizer steps
                save_top_k=-1,
                filename="iter{step}",
            )
        )
    if epoch_end:
        callbacks.append(
            ModelCheckpoint(
                dirpath=tmp_path / "checkpoints",
                every_n_epochs=1,
                save_on_train_epoch_end=True,
                save_top_k=-1,
                filename="epoch{epoch}",
            )
        )
    trainer = tiny_trainer(
        tmp_path,
        max_steps=2 * iterations,
        callbacks=callbacks,
        enable_checkpointing=True,
        deterministic=True,
        **trainer_kwargs,
    )
    data = tiny_data()
    data.num_workers = num_workers
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, trainer, recorder


def assert_same_training(straight, straight_trainer, resumed, resumed_trainer) -> None:
    """Bit-identical networks, EMA and optimizer states, and the same step count."""
    assert resumed_trainer.global_step == straight_trainer.global_step
    for name, value in straight.state_dict().items():  # all four networks and the EMA
        assert torch.equal(value, resumed.state_dict()[name]), name
    for a, b in zip(straight_trainer.optimizers, resumed_trainer.optimizers, strict=True):
        for state_a, state_b in zip(a.state.values(), b.state.values(), strict=True):
            for key in state_a:
                assert torch.equal(state_a[key], state_b[key]), key


def test_resumed_run_equals_uninterrupted_run_mid_epoch(tmp_path):
    # tiny_data: 8 patches per epoch, batch 2 -> 4 iterations an epoch. Stop at iteration 3
    # (mid-epoch), resume to 6 (into the second epoch).
    straight, straight_trainer, straight_batches = fit(tmp_path / "a", 6, every=3)
    checkpoint = tmp_path / "a" / "checkpoints" / "iterstep=6.ckpt"
    assert checkpoint.is_file(), sorted((tmp_path / "a" / "checkpoints").iterdir())
    resumed, resumed_trainer, resumed_batches = fit(tmp_path / "b", 6, ckpt_path=checkpoint)

    # The resumed run sees exactly the batches the uninterrupted one saw after iteration 3.
    assert sorted(resumed_batches.batches) == [3, 4, 5]
    for iteration, batch in resumed_batches.batches.items():
        assert torch.equal(batch, straight_batches.batches[iteration]), iteration

    assert resumed_trainer.global_step == straight_trainer.global_step == 12
    assert_same_training(straight, straight_trainer, resumed, resumed_trainer)


@pytest.mark.parametrize("workers", [2, 0])
@pytest.mark.parametrize("stop", [9, 8])
def test_resume_in_a_later_epoch_with_workers_continues_that_epoch(tmp_path, stop, workers):
    # 4 iterations an epoch: stop at iteration 9, a quarter into epoch 2 (or at 8, its first
    # batch), and resume to 11 with two worker processes, which fetch batches ahead as soon as
    # the loader starts.
    straight, straight_trainer, straight_batches = fit(
        tmp_path / "a", 11, every=stop, num_workers=workers
    )
    checkpoint = tmp_path / "a" / "checkpoints" / f"iterstep={2 * stop}.ckpt"
    resumed, resumed_trainer, resumed_batches = fit(
        tmp_path / "b", 11, ckpt_path=checkpoint, num_workers=workers
    )
    assert sorted(resumed_batches.batches) == list(range(stop, 11))
    for iteration, batch in resumed_batches.batches.items():
        assert torch.equal(batch, straight_batches.batches[iteration]), iteration
    assert_same_training(straight, straight_trainer, resumed, resumed_trainer)


def test_raising_max_iterations_continues_exactly_from_the_final_checkpoint(tmp_path):
    # Validation every 2 iterations; the first run ends at 5, between two validations, so its
    # last.ckpt is the one written when training ends.
    validating = dict(val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0)
    straight, straight_trainer, _ = fit(tmp_path / "a", 7, **validating)

    def final_checkpoint(iterations: int) -> pl.Trainer:
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "b" / "checkpoints", save_last=True)
        ckpt_path = tmp_path / "b" / "checkpoints" / "last.ckpt"
        model, trainer, _ = fit(
            tmp_path / "b",
            iterations,
            ckpt_path=ckpt_path if ckpt_path.is_file() else None,
            callbacks=[checkpoint],
            **validating,
        )
        return model, trainer

    final_checkpoint(5)
    resumed, resumed_trainer = final_checkpoint(7)
    assert resumed_trainer.global_step == 14
    assert_same_training(straight, straight_trainer, resumed, resumed_trainer)


def test_resume_from_an_epoch_end_checkpoint_starts_the_next_epoch(tmp_path):
    straight, straight_trainer, straight_batches = fit(tmp_path / "a", 11, epoch_end=True)
    checkpoint = tmp_path / "a" / "checkpoints" / "epochepoch=1.ckpt"  # after iteration 8
    resumed, resumed_trainer, resumed_batches = fit(tmp_path / "b", 11, ckpt_path=checkpoint)
    assert sorted(resumed_batches.batches) == [8, 9, 10]
    for iteration, batch in resumed_batches.batches.items():
        assert torch.equal(batch, straight_batches.batches[iteration]), iteration
    assert_same_training(straight, straight_trainer, resumed, resumed_trainer)


class RandomStreams(pl.Callback):
    """Draws from each global random stream when a checkpoint is saved and at the first batch
    of a run: a resumed run must start with the draws its checkpoint was saved with."""

    def __init__(self) -> None:
        self.at_save: list[list] = []
        self.at_start: list[list] = []

    @staticmethod
    def draw() -> list:
        # Drawing moves the streams on; restore them so the run itself is unchanged.
        state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        draws = [random.random(), float(np.random.rand()), float(torch.rand(()))]
        random.setstate(state[0]), np.random.set_state(state[1]), torch.set_rng_state(state[2])
        return draws

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.at_save.append(self.draw())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.at_start:  # the first batch of this run
            self.at_start.append(self.draw())


def test_resume_restores_the_random_streams(tmp_path):
    saved = RandomStreams()
    fit(tmp_path / "a", 3, every=3, callbacks=[saved])
    checkpoint = torch.load(tmp_path / "a" / "checkpoints" / "iterstep=6.ckpt", weights_only=True)
    assert len(checkpoint["rng_states"]) == 1  # one process
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # anything else
    resumed = RandomStreams()
    fit(
        tmp_path / "b", 4, ckpt_path=tmp_path / "a" / "checkpoints" / "iterstep=6.ckpt",
        callbacks=[resumed],
    )  # fmt: skip
    assert resumed.at_start == [saved.at_save[0]]


def test_resume_last_continues_the_same_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path, iterations=3)]
    first = cli_main(["fit", *args])
    run = Path(first.trainer.log_dir)
    resumed = cli_main(["fit", *args, "--max_iterations=5", "--ckpt_path=last"])
    assert Path(resumed.trainer.log_dir) == run  # no version_1
    assert resumed.trainer.global_step == 10
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]
    with open(run / "metrics.csv") as f:
        steps = [row["step"] for row in csv.DictReader(f)]
    assert {"0", "4"} <= set(steps)  # both halves logged into one metrics file


def test_resume_refuses_changed_model_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path, iterations=2)]
    run = Path(cli_main(["fit", *args]).trainer.log_dir)
    with pytest.raises(ValueError, match=r"model.init_args.ema_decay: given 0.9, checkpoint 0.995"):
        cli_main(
            [
                "fit",
                *args,
                "--model.init_args.ema_decay=0.9",
                f"--ckpt_path={run}/checkpoints/last.ckpt",
            ]
        )
    with pytest.raises(FileNotFoundError, match="no \\*/checkpoints/last.ckpt"):
        cli_main(["fit", *args, "--trainer.logger.init_args.name=nothing_here", "--ckpt_path=last"])


# --------------------------------------------------------------------------- killed runs


def write_config(tmp_path: Path, every_iteration: bool) -> Path:
    """The quickstart, tiny, with a checkpoint after every iteration when asked."""
    config = yaml.safe_load((CONFIGS / "quickstart.yaml").read_text())
    checkpoint = config["trainer"]["callbacks"][0]["init_args"]
    if every_iteration:
        checkpoint.update(every_n_train_steps=2, save_top_k=0, monitor=None)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, tmp_path: Path, iterations: int, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-c", "from wespe.cli import main; main()", "fit", "-c", str(config),
        *tiny_overrides(tmp_path, iterations), "--trainer.val_check_interval=1000",
        "--trainer.limit_val_batches=0", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def saved_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_last_and_resumes(tmp_path):
    config = write_config(tmp_path, every_iteration=True)
    last = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    rng = random.Random(1234)
    steps = []
    for _ in range(3):
        extra = ["--ckpt_path=last"] if last.exists() else []
        process = launch(config, tmp_path, 100_000, *extra)
        wait_for(last, process)
        time.sleep(rng.uniform(0.0, 1.5))  # checkpoints are written every iteration: often mid-save
        process.send_signal(signal.SIGKILL)
        process.wait()
        steps.append(saved_step(last))  # loads: never a half-written file
    assert steps == sorted(steps)
    target = steps[-1] // 2 + 3
    process = launch(config, tmp_path, target, "--ckpt_path=last")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]
    assert saved_step(last) == 2 * target
    assert not (tmp_path / "quickstart" / "version_1").exists()


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint_and_exits_cleanly(tmp_path):
    config = write_config(tmp_path, every_iteration=False)
    run = tmp_path / "quickstart" / "version_0"
    process = launch(config, tmp_path, 100_000, "--trainer.log_every_n_steps=1")
    wait_for(run / "metrics.csv", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    step = saved_step(last)
    assert step > 0
    target = step // 2 + 2
    process = launch(config, tmp_path, target, "--ckpt_path=last")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]
    assert saved_step(last) == 2 * target


class WritesAFile:
    """Unpickling this touches ``path``: a stand-in for code a crafted checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_a_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch, subcommand):
    # With this set, torch's own default would unpickle anything.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": WritesAFile(marker)}, crafted)
    args = ["-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)]
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        cli_main([subcommand, *args, f"--ckpt_path={crafted}"])
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # the payload is real: unpickled, it runs
    assert marker.exists()


def test_gpu_random_state_is_the_process_own_device_and_restores_on_fewer_gpus(monkeypatch):
    """No GPU here: torch.cuda's state functions are stood in for, to check which device's
    state is saved and where it goes back (a process on GPU 3, resumed on a 1-GPU machine)."""
    from wespe import callbacks

    saved_from, restored_to = [], []
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda device: saved_from.append(device) or torch.ones(8)
    )
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: restored_to.append((state, device))
    )
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", None)  # would fail on fewer GPUs
    states = callbacks._rng_states(torch.device("cuda", 3))
    assert saved_from == [torch.device("cuda", 3)]
    callbacks._set_rng_states(states, torch.device("cuda", 0))
    assert len(restored_to) == 1 and restored_to[0][1] == torch.device("cuda", 0)
    assert torch.equal(restored_to[0][0], torch.ones(8))
    callbacks._set_rng_states(states, torch.device("cpu"))  # a CPU resume leaves CUDA alone
    assert len(restored_to) == 1


class NanAtCall(torch.nn.Module):
    """MSE, but nan at its ``at``-th call."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x, y):
        self.calls += 1
        loss = torch.nn.functional.mse_loss(x, y)
        return loss * float("nan") if self.calls == self.at else loss


@pytest.mark.parametrize("term", ["content", "color_d"])
def test_a_nan_loss_stops_training_naming_it_and_keeps_the_last_finite_checkpoint(tmp_path, term):
    from wespe.module import NonFiniteLossError

    model = tiny_wespe(ema_decay=0.9, content_loss=NanAtCall(4 if term == "content" else 0))
    if term == "color_d":
        discriminator_loss = model.color_loss.discriminator_loss
        calls = []

        def nan_at_fourth(*args, **kwargs):
            calls.append(1)
            loss, accuracy = discriminator_loss(*args, **kwargs)
            return (loss * float("nan") if len(calls) == 4 else loss), accuracy

        model.color_loss.discriminator_loss = nan_at_fourth
    checkpoints = tmp_path / "checkpoints"
    trainer = tiny_trainer(
        tmp_path,
        max_steps=20,
        enable_checkpointing=True,
        callbacks=[
            ModelCheckpoint(
                dirpath=checkpoints, save_last=True, every_n_train_steps=4, save_top_k=0
            )
        ],
    )
    with pytest.raises(NonFiniteLossError, match=f"train/{term} is nan at iteration 4"):
        trainer.fit(model, tiny_data())
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4  # iteration 2's, not overwritten when training stopped
    assert all(
        torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point()
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the EMA too


def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import errno

    from wespe import callbacks

    checkpoints = tmp_path / "checkpoints"

    def run(iterations: int, ckpt_path: Path | None = None) -> None:
        trainer = tiny_trainer(
            tmp_path,
            max_steps=2 * iterations,
            enable_checkpointing=True,
            callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0)],
        )
        trainer.fit(tiny_wespe(), tiny_data(), ckpt_path=ckpt_path)
        assert isinstance(trainer.strategy.checkpoint_io, callbacks.AtomicCheckpointIO)

    run(1)
    before = (checkpoints / "last.ckpt").read_bytes()

    def disk_full(file, data):
        file.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(callbacks, "_write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run(2, ckpt_path=checkpoints / "last.ckpt")
    assert (checkpoints / "last.ckpt").read_bytes() == before
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # no temporary left
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2
