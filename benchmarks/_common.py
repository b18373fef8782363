"""What the benchmark scripts share: the machine's description, a timing loop, a Trainer that
runs training alone, Markdown tables, and loading one script from another."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytorch_lightning as pl
import torch

from wespe.runs import markdown_table


@functools.cache
def script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module, executed once per process (benchmarks/ is not a
    package)."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine_line() -> str:
    """The processor, core count and torch version, for a table's title."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``run``, after one left out (allocation, kernel
    selection)."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def training_only_trainer(
    root: Path, max_steps: int, callbacks: list[pl.Callback], **overrides: object
) -> pl.Trainer:
    """A CPU Trainer for ``max_steps`` optimizer steps of training alone: no validation,
    logger, checkpoints, progress bar or model summary, so that timings are the loop's."""
    options = dict(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
    )
    return pl.Trainer(**{**options, **overrides})


def markdown(title: str, header: list[str], rows: list[list[object]]) -> str:
    """A title line, then a Markdown table of ``rows`` under ``header``."""
    return f"{title}\n\n{markdown_table(header, rows)}"
