"""DDP on CPU: 2 processes over gloo (Lightning's ddp_spawn, so the test can look inside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONFIGS, tiny_overrides
from test_module import tiny_data, tiny_wespe

from wespe.callbacks import ModelCheckpoint
from wespe.data.datasets import EpochSampler


class SaveRankState(pl.Callback):
    """Each process writes its networks' weights at the end of training."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.folder / f"rank{trainer.global_rank}.pt")


def sgd(params):
    return torch.optim.SGD(params, lr=0.5)


def ddp_trainer(tmp_path: Path, iterations: int, devices: int, *callbacks) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn_find_unused_parameters_true" if devices > 1 else "auto",
        max_steps=2 * iterations,
        default_root_dir=tmp_path,
        logger=False,
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def test_epoch_sampler_shards_are_disjoint_and_equal():
    shards = [list(EpochSampler(10, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(i for s in shards for i in s) == list(range(9))


def test_ddp_step_equals_single_process_with_the_double_batch(tmp_path):
    # 2 ranks x batch 2 against 1 process x batch 4: the same 4 patches (the sampler gives
    # rank r the indices r, r+2, ...), and DDP averages the gradients, as the mean over 4 does.
    single = tiny_wespe(generator_optimizer=sgd)
    data = tiny_data()
    data.batch_size = 4
    ddp_trainer(tmp_path / "single", 1, 1).fit(single, data)

    (tmp_path / "ddp").mkdir()
    ddp = tiny_wespe(generator_optimizer=sgd)
    ddp_trainer(tmp_path / "ddp", 1, 2, SaveRankState(tmp_path / "ddp")).fit(ddp, tiny_data())
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    initial = tiny_wespe(generator_optimizer=sgd).state_dict()
    assert not torch.equal(
        single.state_dict()["generator.to_image.weight"], initial["generator.to_image.weight"]
    )
    for name, value in single.state_dict().items():
        if name.startswith(("generator.", "inverse_generator.")):
            torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_ddp_training_keeps_ranks_identical_saves_and_resumes(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    model = tiny_wespe(ema_decay=0.9)
    trainer = ddp_trainer(
        tmp_path,
        3,
        2,
        SaveRankState(tmp_path),
        ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0),
    )
    trainer.fit(model, tiny_data())
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # written once
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6

    resumed = tiny_wespe(ema_decay=0.9)
    (tmp_path / "resumed").mkdir()
    trainer = ddp_trainer(tmp_path / "resumed", 5, 2, SaveRankState(tmp_path / "resumed"))
    trainer.fit(resumed, tiny_data(), ckpt_path=checkpoints / "last.ckpt")
    rank0, rank1 = (
        torch.load(tmp_path / "resumed" / f"rank{r}.pt", weights_only=True) for r in (0, 1)
    )
    assert all(torch.equal(v, rank1[k]) for k, v in rank0.items())
    assert not torch.equal(
        rank0["generator.to_image.weight"], last["state_dict"]["generator.to_image.weight"]
    )


def test_too_few_patches_per_process_is_refused(tmp_path):
    data = tiny_data()
    data.patches_per_epoch, data.batch_size = 3, 4  # set after __init__, which checks this too
    with pytest.raises(ValueError, match="raise patches_per_epoch"):
        ddp_trainer(tmp_path, 1, 1).fit(tiny_wespe(), data)


def run_wespe(tmp_path: Path, iterations: int, *extra: str) -> subprocess.CompletedProcess:
    """The real command with the CPU DDP config: Lightning starts the second process itself."""
    wespe = Path(sys.executable).parent / "wespe"
    args = [
        str(wespe), "fit", "-c", str(CONFIGS / "quickstart.yaml"),
        "-c", str(CONFIGS / "trainer" / "ddp_cpu.yaml"), *tiny_overrides(tmp_path, iterations), *extra,
    ]  # fmt: skip
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_cli_ddp_run_writes_once_and_resumes(tmp_path):
    done = run_wespe(tmp_path, 4)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stderr
    run = tmp_path / "quickstart" / "version_0"
    assert sorted(p.name for p in (tmp_path / "quickstart").iterdir()) == ["version_0"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "val_iter0000002.png",
        "val_iter0000004.png",
    ]
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 8
    resumed = run_wespe(tmp_path, 6, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 12


def test_bf16_mixed_precision_trains_with_two_optimizers(tmp_path):
    model = tiny_wespe()
    before = model.generator.to_image.weight.detach().clone()
    trainer = pl.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=4, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, tiny_data())
    after = model.generator.to_image.weight
    assert after.dtype == torch.float32  # weights stay fp32; autocast only computes in bf16
    assert torch.isfinite(after).all() and not torch.equal(after, before)
