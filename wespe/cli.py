"""The ``wespe`` command: Lightning's CLI over the models (:class:`~wespe.module.WESPE`, or the
supervised reference :class:`~wespe.module.SupervisedEnhancer`) and the data modules.

``wespe fit|validate|test|predict -c configs/<name>.yaml``; ``--print_config`` prints a config
that reproduces the run. Training length is given as ``max_iterations`` (one iteration = one
batch = a generator step and a discriminator step); it sets ``trainer.max_steps``, which
Lightning counts in optimizer steps (two per iteration).
"""

from __future__ import annotations

import importlib

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from wespe.data.datamodule import UnpairedDataModule
from wespe.module import EnhancerModule

__all__ = ["WESPECLI", "cli_main", "main"]


class WESPECLI(LightningCLI):
    """LightningCLI with training length in iterations."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--max_iterations",
            type=int | None,
            default=None,
            help=(
                "Training length in iterations (batches). Sets trainer.max_steps to this "
                "times the model's optimizer steps per iteration (2 for WESPE), since Lightning "
                "counts each optimizer step."
            ),
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        iterations = config.get("max_iterations")
        if iterations is None:
            return
        if iterations < 1:
            raise ValueError(f"max_iterations must be >= 1; got {iterations}")
        steps = iterations * _model_class(config.model.class_path).OPTIMIZER_STEPS_PER_ITERATION
        given = config.trainer.max_steps
        if given not in (None, -1, steps):
            raise ValueError(
                f"max_iterations={iterations} means trainer.max_steps={steps} (Lightning counts "
                f"optimizer steps), but trainer.max_steps={given} was also given: set only one"
            )
        config.trainer.max_steps = steps


def _model_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def cli_main(args: list[str] | None = None, run: bool = True) -> WESPECLI:
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (tests use it)."""
    return WESPECLI(
        EnhancerModule,
        UnpairedDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # A resumed run writes its config into the same run folder again.
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main() -> None:
    """Console entry point of ``wespe``."""
    cli_main()
