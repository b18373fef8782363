"""DDP on CPU: 2 processes over gloo (Lightning's ddp_spawn, so the test can look inside)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONFIGS, tiny_overrides
from pytorch_lightning.demos.boring_classes import BoringModel
from test_module import tiny_data, tiny_wespe
from torch.nn.parallel import DistributedDataParallel

from wespe.callbacks import ModelCheckpoint, RunState
from wespe.cli import cli_main
from wespe.data import EmbeddedSampleDataModule
from wespe.data.datasets import EpochSampler
from wespe.module import WESPE, SupervisedEnhancer
from wespe.networks import Generator
from wespe.strategies import PerNetworkDDPStrategy

#: The two ways to run WESPE data-parallel, started with spawn so tests can look inside.
STRATEGIES = {
    "whole_module": lambda: "ddp_spawn_find_unused_parameters_true",
    "per_network": lambda: PerNetworkDDPStrategy(start_method="spawn"),
}
TRAINED_NETWORKS = WESPE.TRAINED_NETWORKS
TRAINED = tuple(f"{name}." for name in TRAINED_NETWORKS)


class SaveRankState(pl.Callback):
    """Each process writes its networks' weights at the end of training, and how DDP wrapped
    them (``rank<r>_wrapping.pt``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.folder / f"rank{trainer.global_rank}.pt")
        wrapping = {
            "whole_module": isinstance(trainer.strategy.model, DistributedDataParallel),
            "per_network": sorted(
                name
                for name, wrapper in pl_module._distributed_networks.items()
                if isinstance(wrapper, DistributedDataParallel)
                and wrapper.module is getattr(pl_module, name)
            ),
        }
        torch.save(wrapping, self.folder / f"rank{trainer.global_rank}_wrapping.pt")


class RankRandomStreams(pl.Callback):
    """Gives each process its own torch random stream (``seed_offset + rank``, when given) and
    writes a draw from it per process, at a checkpoint save and at the run's first batch."""

    def __init__(self, folder: Path, seed_offset: int | None = None) -> None:
        self.folder, self.seed_offset, self.drawn = folder, seed_offset, False

    def draw(self, trainer, when: str) -> None:
        state = torch.get_rng_state()
        torch.save(torch.rand(4), self.folder / f"rank{trainer.global_rank}_{when}.pt")
        torch.set_rng_state(state)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.seed_offset is not None:
            torch.manual_seed(self.seed_offset + trainer.global_rank)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.draw(trainer, "save")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.drawn:
            self.draw(trainer, "start")
            self.drawn = True


def sgd(params):
    return torch.optim.SGD(params, lr=0.5)


def ddp_trainer(
    tmp_path: Path, iterations: int, devices: int, *callbacks, strategy: str = "per_network"
) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=STRATEGIES[strategy]() if devices > 1 else "auto",
        max_steps=2 * iterations,
        default_root_dir=tmp_path,
        logger=False,
        callbacks=[RunState(), *callbacks],  # as the CLI adds it
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def test_epoch_sampler_shards_are_disjoint_and_equal():
    shards = [list(EpochSampler(10, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(i for s in shards for i in s) == list(range(9))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_ddp_step_equals_single_process_with_the_double_batch(tmp_path, strategy):
    # 2 ranks x batch 2 against 1 process x batch 4: the same 4 patches (the sampler gives
    # rank r the indices r, r+2, ...), and DDP averages the gradients, as the mean over 4 does.
    # Plain SGD for both optimizers, so every network's update is its averaged gradient.
    def model():
        return tiny_wespe(generator_optimizer=sgd, discriminator_optimizer=sgd)

    single = model()
    data = tiny_data()
    data.batch_size = 4
    ddp_trainer(tmp_path / "single", 1, 1).fit(single, data)

    (tmp_path / "ddp").mkdir()
    trainer = ddp_trainer(
        tmp_path / "ddp", 1, 2, SaveRankState(tmp_path / "ddp"), strategy=strategy
    )
    trainer.fit(model(), tiny_data())
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    initial = model().state_dict()
    compared = [name for name in initial if name.startswith(TRAINED)]
    changed = {
        n.split(".")[0] for n in compared if not torch.equal(single.state_dict()[n], initial[n])
    }
    assert changed == {prefix[:-1] for prefix in TRAINED}  # one step moved every network
    for name in compared:
        for rank in ranks:
            torch.testing.assert_close(
                rank[name], single.state_dict()[name], rtol=1e-5, atol=1e-6, msg=name
            )
    wrapping = torch.load(tmp_path / "ddp" / "rank1_wrapping.pt", weights_only=True)
    if strategy == "per_network":
        assert wrapping == {"whole_module": False, "per_network": sorted(TRAINED_NETWORKS)}
    else:
        assert wrapping == {"whole_module": True, "per_network": []}
    # Teardown removed the per-network wrappers: the trained module is a plain module again.
    assert trainer.lightning_module._distributed_networks == {}


def test_per_network_ddp_refuses_modules_it_cannot_wrap():
    strategy = PerNetworkDDPStrategy()
    strategy.model = BoringModel()
    with pytest.raises(TypeError, match="needs a wespe EnhancerModule.*strategy: ddp"):
        strategy.configure_ddp()


@pytest.mark.slow
def test_ddp_training_keeps_ranks_identical_saves_and_resumes(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    model = tiny_wespe(ema_decay=0.9)
    trainer = ddp_trainer(
        tmp_path,
        3,
        2,
        SaveRankState(tmp_path),
        ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0),
        RankRandomStreams(tmp_path, seed_offset=100),
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
    trainer = ddp_trainer(
        tmp_path / "resumed",
        5,
        2,
        SaveRankState(tmp_path / "resumed"),
        RankRandomStreams(tmp_path / "resumed"),
    )
    trainer.fit(resumed, tiny_data(), ckpt_path=checkpoints / "last.ckpt")
    # Each process continues its own random stream, not rank 0's.
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}_save.pt", weights_only=True)
        started = torch.load(tmp_path / "resumed" / f"rank{rank}_start.pt", weights_only=True)
        assert torch.equal(saved, started), rank
    assert len(last["rng_states"]) == 2
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_ddp_benchmark_counts_what_each_strategy_all_reduces(tmp_path, monkeypatch):
    # The README's claim in numbers: per network, each iteration all-reduces every trained
    # parameter once; the whole-module wrapper twice (all buckets in both steps). Same weights.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ddp as benchmark  # spawned processes import it by this name too

    args = argparse.Namespace(
        config=CONFIGS / "quickstart.yaml", devices=2, iterations=2, warmup=0, seed=0,
        overrides=["--data.init_args.patch_size=32", "--data.init_args.batch_size=2"],
    )  # fmt: skip
    runs = {name: benchmark.train(name, args, tmp_path / f"{name}.json") for name in STRATEGIES}
    per_network, whole_module = runs["per_network"], runs["whole_module"]
    parameters = per_network["trained_parameters"]
    assert per_network["allreduced_floats_per_iteration"] == parameters
    assert whole_module["allreduced_floats_per_iteration"] == 2 * parameters
    for name, value in per_network["state"].items():
        assert torch.equal(value, whole_module["state"][name]), name


@pytest.mark.parametrize(
    ("override", "expected"),
    [([], PerNetworkDDPStrategy), (["--trainer.strategy=ddp_find_unused_parameters_true"], None)],
)
def test_ddp_config_builds_either_strategy(tmp_path, override, expected):
    args = ["-c", str(CONFIGS / "quickstart.yaml"), "-c", str(CONFIGS / "trainer" / "ddp_cpu.yaml")]
    cli = cli_main([*args, *tiny_overrides(tmp_path), *override], run=False)
    strategy = cli.trainer.strategy
    if expected is not None:
        assert type(strategy) is expected
    else:  # Lightning's whole-module DDP, searching for unused parameters
        assert type(strategy).__name__ == "DDPStrategy"
        assert strategy._ddp_kwargs == {"find_unused_parameters": True}
    assert cli.trainer.num_devices == 2


@pytest.mark.slow
def test_per_network_ddp_also_trains_the_automatic_optimization_module(tmp_path):
    # SupervisedEnhancer: one network, Lightning's automatic optimization. Its step over 2 ranks
    # with batch 2 each equals one process with batch 4, as for WESPE.
    def model():
        torch.manual_seed(0)
        return SupervisedEnhancer(generator=Generator(channels=4, num_blocks=1), optimizer=sgd)

    def data(batch_size):
        return EmbeddedSampleDataModule(
            patch_size=32, batch_size=batch_size, patches_per_epoch=8, max_size=64,
            paired_training=True,
        )  # fmt: skip

    single = model()
    ddp_trainer(tmp_path / "single", 1, 1).fit(single, data(4))
    (tmp_path / "ddp").mkdir()
    trainer = ddp_trainer(tmp_path / "ddp", 1, 2, SaveRankState(tmp_path / "ddp"))
    trainer.fit(model(), data(2))
    wrapping = torch.load(tmp_path / "ddp" / "rank1_wrapping.pt", weights_only=True)
    assert wrapping == {"whole_module": False, "per_network": ["generator"]}
    initial = model().state_dict()
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in single.state_dict().items():
        if name.startswith("generator."):
            for rank in ranks:
                torch.testing.assert_close(rank[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(single.generator.to_image.weight, initial["generator.to_image.weight"])
