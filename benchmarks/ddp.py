"""Data-parallel WESPE: Lightning's whole-module DDP against one DDP wrapper per network.

Trains the config's model and data with each strategy on ``--devices`` CPU processes (gloo):

- ``whole_module``: Lightning's ``ddp_find_unused_parameters_true``, one wrapper around the
  LightningModule, searching the autograd graph for unused parameters before each backward pass;
- ``per_network``: :class:`wespe.strategies.PerNetworkDDPStrategy`, one wrapper per network.

For each it prints the median seconds per iteration after ``--warmup`` iterations, the global
images per second, and the floats all-reduced per iteration, counted by a DDP communication
hook on every wrapper. The strategies alternate over ``--repeats`` so that drift of the machine
hits both alike. All runs start from the same weights and patches, so they must end at the same
weights; the largest difference to the first run is printed as a check.

    python benchmarks/ddp.py                                       # the quickstart networks
    python benchmarks/ddp.py --config configs/dped.yaml -- \\
        --model.init_args.content_loss="{class_path: wespe.losses.PerceptualLoss, init_args: {weights: null}}" \\
        --data=wespe.data.EmbeddedSampleDataModule --data.init_args.patch_size=100 \\
        --data.init_args.batch_size=4                              # the paper's networks

Arguments after ``--`` override the config as on the ``wespe`` command line. ``weights: null``
gives the content loss's VGG-19 random weights: the same computation, for timing only (the
whole loss is replaced because jsonargparse reads a lone nested ``...weights=null`` as "None").
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import training_only_trainer  # noqa: E402

STRATEGIES = ("whole_module", "per_network")


class Measure(pl.Callback):
    """Per-process: iteration end times and the floats all-reduced, written to ``out`` on rank 0."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.ends: list[float] = []
        self.allreduced_floats = 0

    # No annotations: DDP checks a hook's annotations, which the __future__ import turns into strings.
    def _count(self, process_group, bucket):  # noqa: ANN001, ANN202
        self.allreduced_floats += bucket.buffer().numel()
        return default_hooks.allreduce_hook(process_group, bucket)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = trainer.strategy.model
        wrappers = [model] if isinstance(model, DistributedDataParallel) else []
        wrappers += list(pl_module._distributed_networks.values())
        for wrapper in wrappers:
            wrapper.register_comm_hook(None, self._count)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.ends.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            state = {k: v.cpu() for k, v in pl_module.state_dict().items()}
            torch.save(state, self.out.with_suffix(".pt"))
            record = {"ends": self.ends, "allreduced_floats": self.allreduced_floats}
            self.out.write_text(json.dumps(record))


def build(config: Path, overrides: list[str]) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The config's model and data module, as ``wespe fit -c config`` would build them."""
    from wespe.cli import cli_main

    cli = cli_main(
        ["-c", str(config), "--trainer.logger=false", "--trainer.devices=1", *overrides], run=False
    )
    return cli.model, cli.datamodule


def train(strategy: str, args: argparse.Namespace, out: Path) -> dict:
    from wespe.strategies import PerNetworkDDPStrategy

    pl.seed_everything(args.seed, verbose=False)
    model, data = build(args.config, args.overrides)
    measure = Measure(out)
    trainer = training_only_trainer(
        out.parent,
        model.OPTIMIZER_STEPS_PER_ITERATION * args.iterations,
        [measure],
        devices=args.devices,
        strategy=(
            PerNetworkDDPStrategy(start_method="spawn")
            if strategy == "per_network"
            else "ddp_spawn_find_unused_parameters_true"
        ),
    )
    trainer.fit(model, data)
    record = json.loads(out.read_text())
    ends = record["ends"]
    seconds = statistics.median(b - a for a, b in itertools.pairwise(ends[args.warmup :]))
    return {
        "seconds_per_iteration": seconds,
        "images_per_second": args.devices * data.batch_size / seconds,
        "allreduced_floats_per_iteration": record["allreduced_floats"] / args.iterations,
        "trained_parameters": sum(
            p.numel() for name in model.TRAINED_NETWORKS for p in getattr(model, name).parameters()
        ),
        "state": torch.load(out.with_suffix(".pt"), weights_only=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.yaml")
    parser.add_argument("--devices", type=int, default=2, help="CPU processes")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="iterations left out of the timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="after --: config overrides")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # one core per process, as on a GPU node one GPU per process

    results: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for name in STRATEGIES:
                out = Path(folder) / f"{name}_{repeat}.json"
                results[name].append(train(name, args, out))
                print(f"{name} run {repeat}: {results[name][-1]['seconds_per_iteration']:.4f} s/it")

    reference = results[STRATEGIES[0]][0]["state"]
    difference = max(
        (run["state"][k].float() - v.float()).abs().max().item()
        for runs in results.values()
        for run in runs
        for k, v in reference.items()
    )
    print(
        f"\n{args.config.name} {' '.join(args.overrides)}\n{args.devices} CPU processes (gloo), "
        f"{args.iterations} iterations, median after {args.warmup}; "
        f"{results[STRATEGIES[0]][0]['trained_parameters']:,} trained parameters\n"
    )
    print("| strategy | s/iteration (each run) | images/s | floats all-reduced per iteration |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        seconds = [run["seconds_per_iteration"] for run in runs]
        print(
            f"| {name} | {statistics.median(seconds):.4f} "
            f"({', '.join(f'{s:.4f}' for s in seconds)}) | "
            f"{statistics.median(r['images_per_second'] for r in runs):.1f} | "
            f"{runs[0]['allreduced_floats_per_iteration']:,.0f} |"
        )
    print(f"\nlargest weight difference between runs: {difference:.2e}")


if __name__ == "__main__":
    main()
