"""What the benchmark scripts share: a Trainer that runs training alone, and Markdown tables."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from wespe.runs import markdown_table


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
