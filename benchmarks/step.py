"""Training speed of one WESPE iteration: Lightning against a plain PyTorch loop, FLOPs and MFU.

For each model (``quickstart``: the quickstart's networks on 64 px patches; ``paper``: the
paper's networks on 100 px patches with the content loss on VGG-19 up to ``relu5_4``, random
weights where ImageNet's file is absent: the same computation) and each batch size:

- **Lightning**: ``Trainer.fit`` over the module, as ``wespe fit`` runs it (no logger, no
  checkpoints, no progress bar: the training loop alone), fed the same in-memory batches;
- **plain**: the same networks, losses and optimizers in a minimal hand-written loop: the
  generator step (its loss's backward, Adam), the weight average, the discriminator step;
- the ratio Lightning / plain of the median seconds per iteration (the two alternate over
  ``--repeats`` so that drift of the machine hits both alike; target <= 1.03);
- FLOPs of one iteration (``torch.utils.flop_counter``: convolutions and matrix products,
  forward and backward) and the FLOP/s achieved, against the machine's peak measured in the
  same run (a large matrix product and a large 3x3 convolution, the better of the two): the
  model FLOP utilisation (MFU).

Both loops start from the same weights and batches; the largest weight difference after the
run is printed as a check that they computed the same thing.

``--variants`` also times options against the default Lightning run, side by side (speed-up =
default seconds / variant seconds): ``fused_adam`` (Adam's fused kernel; rounding differs from
the default loop's in the last bits), ``channels_last`` (:class:`wespe.callbacks.ChannelsLast`),
``bf16`` (``precision: bf16-mixed``) and ``compile`` (:class:`wespe.callbacks.CompileNetworks`;
the first iteration, which compiles, is reported apart: the first run's with an empty
compilation cache, as on a new machine); ``one_thread`` (one torch thread instead of torch's
default, one per core); and two of wespe's own choices undone: ``log_every_step`` (the loss
terms logged at every step instead of only at the steps the loggers write) and
``recompute_views`` (the discriminator step blurs and grays G(x) again instead of reusing the
generator step's views). A speed-up below 1 is what the choice gains.

``--costs`` times alone, per iteration, the work those two choices save (a whole step's
run-to-run spread hides a few milliseconds). ``--profile`` writes
``<out>/profile_<model>_<batch>.txt``: ``torch.profiler``'s table of the operators of a few
plain iterations, by their own CPU time.

    python benchmarks/step.py                                   # both models, their batch sizes
    python benchmarks/step.py --models paper --batch-sizes 8 30
    python benchmarks/step.py --models quickstart --variants fused_adam channels_last bf16 compile

Writes ``<out>/step_<models>.json`` (``--out``, default ``runs/benchmark/performance``) and prints a
Markdown table. The data pipeline is measured by ``benchmarks/data.py``; here the batches are
in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import timings, training_only_trainer  # noqa: E402

from wespe.module import WESPE  # noqa: E402
from wespe.runs import markdown_table  # noqa: E402

#: Model name -> (patch size, default batch sizes).
MODELS = {"quickstart": (64, [8]), "paper": (100, [8])}
VARIANTS = (
    "one_thread",
    "fused_adam",
    "channels_last",
    "bf16",
    "compile",
    "log_every_step",
    "recompute_views",
)


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": platform.python_version(),
    }


def build_model(name: str, fused_adam: bool = False) -> WESPE:
    """The ``name`` model, freshly initialised from the current random state."""
    if name == "quickstart":
        from wespe.cli import cli_main

        fused = [
            f"--model.init_args.{which}_optimizer.init_args.fused=true"
            for which in ("generator", "discriminator")
        ]
        cli = cli_main(
            [
                "-c",
                str(REPO / "configs" / "quickstart.yaml"),
                "--trainer.logger=false",
                *(fused if fused_adam else []),
            ],
            run=False,
        )
        return cli.model
    if name == "paper":
        from wespe.losses import PerceptualLoss

        adam = partial(torch.optim.Adam, lr=5e-4, fused=fused_adam or None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random VGG weights: the timing is the same
            return WESPE(
                content_loss=PerceptualLoss("relu5_4", weights=None),
                generator_optimizer=adam,
                discriminator_optimizer=adam,
            )
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def make_batches(count: int, batch_size: int, patch_size: int, seed: int) -> list[dict]:
    """``count`` batches of uniform random source and target patches in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 3, patch_size, patch_size)
    return [
        {
            "source": torch.rand(shape, generator=generator),
            "target": torch.rand(shape, generator=generator),
        }
        for _ in range(count)
    ]


class IterationTimes(pl.Callback):
    """Start time of every training batch (and the end of the last)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.starts.append(time.perf_counter())


def lightning_loop(
    module: WESPE, batches: list[dict], root: Path, variant: str | None = None
) -> list[float]:
    """Seconds of each iteration of ``Trainer.fit`` over ``batches``, with ``variant``'s
    option (the model's own part of it, e.g. fused Adam, is in ``module`` already)."""
    from wespe.callbacks import ChannelsLast, CompileNetworks

    times = IterationTimes()
    if variant == "compile":
        # A new model per run: without a reset, dynamo's guards on the old model's identity
        # pile up until its recompile limit sends the networks back to eager mode.
        torch.compiler.reset()
    if variant == "recompute_views":
        discriminator_losses = module.discriminator_losses
        module.discriminator_losses = lambda target, enhanced, views=None: discriminator_losses(
            target, enhanced
        )
    options = {"compile": [CompileNetworks()], "channels_last": [ChannelsLast()]}
    trainer = training_only_trainer(
        root,
        module.OPTIMIZER_STEPS_PER_ITERATION * len(batches),
        [times, *options.get(variant, [])],
        precision="bf16-mixed" if variant == "bf16" else "32-true",
    )
    every_step = mock.patch("wespe.module.loggers_write_this_step", lambda trainer: True)
    threads = torch.get_num_threads()
    if variant == "one_thread":
        torch.set_num_threads(1)
    try:
        with every_step if variant == "log_every_step" else contextlib.nullcontext():
            trainer.fit(module, DataLoader(batches, batch_size=None))
    finally:
        torch.set_num_threads(threads)
    return [b - a for a, b in zip(times.starts, times.starts[1:], strict=False)]


def plain_iteration(
    module: WESPE, optimizers: list[torch.optim.Optimizer], batch: dict[str, Tensor]
) -> None:
    """One WESPE iteration written out by hand: what ``WESPE.training_step`` computes."""
    generator_optimizer, discriminator_optimizer = optimizers
    discriminators = (module.texture_discriminator, module.color_discriminator)
    for network in discriminators:  # no weight gradients for them from the generator's loss
        network.requires_grad_(False)
    enhanced, terms, views = module.generator_losses(batch["source"])
    generator_optimizer.zero_grad()
    sum(terms.values()).backward()
    generator_optimizer.step()
    for network in discriminators:
        network.requires_grad_(True)
    module.update_ema()
    losses = module.discriminator_losses(batch["target"], enhanced, views)
    discriminator_optimizer.zero_grad()
    (losses["color_d"] + losses["texture_d"]).backward()
    discriminator_optimizer.step()


def plain_ready(module: WESPE) -> list[torch.optim.Optimizer]:
    """``module`` in training mode with its frozen networks' weights read, as ``fit`` prepares
    it (its ``setup``); returns its optimizers, for :func:`plain_iteration`."""
    module.train()
    module.setup("fit")
    return module.configure_optimizers()[0]


def plain_loop(module: WESPE, batches: list[dict]) -> list[float]:
    """Seconds of each iteration of :func:`plain_iteration` over ``batches``."""
    optimizers = plain_ready(module)
    times = []
    for batch in batches:
        start = time.perf_counter()
        plain_iteration(module, optimizers, batch)
        times.append(time.perf_counter() - start)
    return times


def component_costs(name: str, batches: list[dict], root: Path) -> dict[str, float]:
    """Milliseconds per iteration of the work two of wespe's choices save, timed alone (a
    whole step's run-to-run spread hides a few milliseconds): the module's ``self.log`` calls,
    logging the loss terms at every step and only at the steps the loggers write; and the blur
    and gray views of G(x) that the discriminator step would otherwise compute again."""
    costs = {}
    for variant in ("log_every_step", None):
        pl.seed_everything(0, verbose=False)
        module = build_model(name)
        spent = [0.0]
        log = module.log  # log_dict calls it for each value

        def timed(
            *args: object, log: Callable = log, spent: list = spent, **kwargs: object
        ) -> None:
            start = time.perf_counter()
            log(*args, **kwargs)
            spent[0] += time.perf_counter() - start

        module.log = timed
        lightning_loop(module, batches, root, variant)
        key = "logging_every_step_ms" if variant else "logging_ms"
        costs[key] = 1000 * spent[0] / len(batches)
    with torch.no_grad():
        enhanced = module.generator(batches[0]["source"])

        def views() -> None:
            module.color_loss.view(enhanced)
            module.texture_loss.view(enhanced)

        costs["views_of_g_ms"] = 1000 * statistics.median(timings(views, 20))
    return costs


def iteration_flops(module: WESPE, batch: dict[str, Tensor]) -> int:
    """FLOPs of one training iteration (forward and backward, both steps) on a copy."""
    module = copy.deepcopy(module)
    optimizers = plain_ready(module)
    with FlopCounterMode(display=False) as counter:
        plain_iteration(module, optimizers, batch)
    return counter.get_total_flops()


def profile(module: WESPE, batches: list[dict], path: Path) -> None:
    """Write torch.profiler's operator table of plain iterations over ``batches`` (the first,
    a warm-up, left out) to ``path``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    module = copy.deepcopy(module)
    optimizers = plain_ready(module)
    plain_iteration(module, optimizers, batches[0])
    with profiler(activities=[ProfilerActivity.CPU]) as recorded:
        for batch in batches[1:]:
            plain_iteration(module, optimizers, batch)
    table = recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    path.write_text(f"{len(batches) - 1} iterations\n{table}")


def _best_rate(run: Callable[[], object], flops: float, repeats: int = 5) -> float:
    return flops / min(timings(run, repeats))


def measured_peak() -> dict[str, float]:
    """FLOP/s of a large float32 matrix product and a large 3x3 convolution (best of 5), the
    better of the two as the peak; and of the matrix product in bfloat16."""
    n = 2048
    a, b = torch.rand(n, n), torch.rand(n, n)
    x = torch.rand(8, 128, 96, 96)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False)
    conv_flops = 2 * x.shape[0] * 128 * 128 * 9 * x.shape[2] * x.shape[3]
    with torch.no_grad():
        rates = {
            "matmul": _best_rate(lambda: a @ b, 2 * n**3),
            "conv3x3": _best_rate(lambda: conv(x), conv_flops),
        }
    rates["peak"] = max(rates.values())
    with torch.no_grad():  # for reference beside bf16 autocast's speed-up; not the MFU's peak
        a16, b16 = a.bfloat16(), b.bfloat16()
        rates["matmul_bf16"] = _best_rate(lambda: a16 @ b16, 2 * n**3)
    return rates


def max_weight_difference(first: WESPE, second: WESPE) -> float:
    a, b = first.state_dict(), second.state_dict()
    return max(
        (a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point()
    )


def measure(name: str, batch_size: int, args: argparse.Namespace, peak: float) -> dict:
    patch_size = MODELS[name][0]
    batches = make_batches(args.warmup + args.iterations, batch_size, patch_size, args.seed)
    pl.seed_everything(args.seed, verbose=False)
    initial = build_model(name)
    seconds: dict[str, list[float]] = {"lightning": [], "plain": []}
    final: dict[str, WESPE] = {}
    variants: dict[str, dict] = {}
    for repeat in range(args.repeats):
        order = ("lightning", "plain") if repeat % 2 == 0 else ("plain", "lightning")
        for loop in order:
            module = copy.deepcopy(initial)
            if loop == "lightning":
                times = lightning_loop(module, batches, args.out / "lightning_root")
            else:
                times = plain_loop(module, batches)
            seconds[loop].append(statistics.median(times[args.warmup :]))
            final[loop] = module
            print(f"  {name} batch {batch_size} {loop} run {repeat}: {seconds[loop][-1]:.4f} s/it")
    for variant in args.variants:
        measured = measure_variant(name, variant, batches, args, seconds["lightning"])
        seconds[variant] = measured.pop("runs")
        variants[variant] = measured
    flops = iteration_flops(initial, batches[0])
    if args.profile:
        profile(initial, batches[:3], args.out / f"profile_{name}_{batch_size}.txt")
    costs = component_costs(name, batches, args.out / "lightning_root") if args.costs else {}
    per_iteration = {loop: statistics.median(values) for loop, values in seconds.items()}
    achieved = flops / per_iteration["lightning"]
    return {
        "model": name,
        "batch_size": batch_size,
        "patch_size": patch_size,
        "seconds_per_iteration": per_iteration,
        "runs": seconds,
        "images_per_second": batch_size / per_iteration["lightning"],
        "lightning_over_plain": per_iteration["lightning"] / per_iteration["plain"],
        "gflop_per_iteration": flops / 1e9,
        "gflop_per_second": achieved / 1e9,
        "mfu": achieved / peak,
        "max_weight_difference": max_weight_difference(final["lightning"], final["plain"]),
        "component_ms_per_iteration": costs,
        "variants": {
            variant: {
                **extra,
                "speedup": per_iteration["lightning"] / per_iteration[variant],
            }
            for variant, extra in variants.items()
        },
    }


def measure_variant(
    name: str, variant: str, batches: list[dict], args: argparse.Namespace, default: list[float]
) -> dict:
    """``variant``'s Lightning runs, alternating with as many more default runs (appended to
    ``default``), from the same initial weights as the default's."""
    runs, first = [], []
    if variant == "compile":  # the first compilation from an empty cache, as on a new machine
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_")
    for repeat in range(args.repeats):
        for which in ("default", variant) if repeat % 2 else (variant, "default"):
            pl.seed_everything(args.seed, verbose=False)
            module = build_model(name, fused_adam=which == "fused_adam")
            times = lightning_loop(
                module, batches, args.out / "lightning_root", None if which == "default" else which
            )
            (default if which == "default" else runs).append(
                statistics.median(times[args.warmup :])
            )
            if which == variant:
                first.append(times[0])
            print(
                f"  {name} {which} run {repeat}: {statistics.median(times[args.warmup :]):.4f} s/it"
            )
    return {"runs": runs, "first_iteration_seconds": first[0]}


def table(results: dict) -> str:
    peak = results["peak_gflop_per_second"]
    lines = [
        f"Machine: {results['machine']['processor']}, {results['machine']['cores']} cores, "
        f"{results['machine']['threads']} threads, torch {results['machine']['torch']}, "
        f"Lightning {results['machine']['lightning']}. Measured peak: matmul "
        f"{peak['matmul']:.0f} GFLOP/s, 3x3 conv {peak['conv3x3']:.0f} GFLOP/s (float32; "
        f"bfloat16 matmul {peak['matmul_bf16']:.0f} GFLOP/s). MFU: against the float32 peak.",
        "",
        markdown_table(
            ["model", "batch", "images/s", "s/iteration Lightning", "plain", "Lightning / plain",
             "GFLOP/iteration", "GFLOP/s", "MFU"],
            [
                [f"{r['model']} ({r['patch_size']} px)", r["batch_size"],
                 f"{r['images_per_second']:.1f}", f"{r['seconds_per_iteration']['lightning']:.4f}",
                 f"{r['seconds_per_iteration']['plain']:.4f}", f"{r['lightning_over_plain']:.3f}",
                 f"{r['gflop_per_iteration']:.1f}", f"{r['gflop_per_second']:.0f}",
                 f"{100 * r['mfu']:.0f} %"]
                for r in results["steps"]
            ],
        ),
    ]  # fmt: skip
    variant_rows = [
        [r["model"], r["batch_size"], variant, f"{v['speedup']:.3f}",
         f"{v['first_iteration_seconds']:.2f}"]
        for r in results["steps"]
        for variant, v in r["variants"].items()
    ]  # fmt: skip
    for r in results["steps"]:
        if r["component_ms_per_iteration"]:
            c = r["component_ms_per_iteration"]
            lines += [
                "",
                f"{r['model']}, batch {r['batch_size']}, per iteration, timed alone: "
                f"self.log calls {c['logging_ms']:.2f} ms (every step: "
                f"{c['logging_every_step_ms']:.2f} ms); blur and gray views of G(x) "
                f"{c['views_of_g_ms']:.2f} ms (computed once, not twice).",
            ]
    if variant_rows:
        header = ["model", "batch", "variant", "speed-up over the default", "first iteration (s)"]
        lines += ["", markdown_table(header, variant_rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: each model's own")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=3, help="iterations left out of the timing")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop, alternating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", choices=VARIANTS, default=[])
    parser.add_argument("--profile", action="store_true", help="write torch.profiler's table")
    parser.add_argument(
        "--costs", action="store_true", help="time the logging and the views of G(x) alone"
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmark" / "performance")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    args.out.mkdir(parents=True, exist_ok=True)

    peak = measured_peak()
    results = {
        "machine": machine(),
        "peak_gflop_per_second": {k: v / 1e9 for k, v in peak.items()},
        "steps": [
            measure(name, batch_size, args, peak["peak"])
            for name in args.models
            for batch_size in (args.batch_sizes or MODELS[name][1])
        ],
    }
    results["table"] = table(results)
    (args.out / f"step_{'_'.join(args.models)}.json").write_text(json.dumps(results, indent=2))
    print(results["table"])
    return results


if __name__ == "__main__":
    main()
