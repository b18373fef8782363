"""The ``wespe`` command: Lightning's CLI over the models (:class:`~wespe.module.WESPE`, or the
supervised reference :class:`~wespe.module.SupervisedEnhancer`) and the data modules.

``wespe fit|validate|test|predict -c configs/<name>.yaml``; ``--print_config`` prints a config
that reproduces the run. Training length is given as ``max_iterations`` (one iteration = one
batch = a generator step and a discriminator step); it sets ``trainer.max_steps``, which
Lightning counts in optimizer steps (two per iteration).
"""

from __future__ import annotations

import importlib
import json
import traceback
from pathlib import Path

import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from wespe.callbacks import RunState
from wespe.data.datamodule import UnpairedDataModule
from wespe.loggers import run_folder
from wespe.module import EnhancerModule

__all__ = ["SaveAndLogConfigCallback", "WESPECLI", "cli_main", "compare_main", "main"]


class WESPECLI(LightningCLI):
    """LightningCLI with training length in iterations and resumes that continue the run.

    ``fit --ckpt_path <file>`` continues in the run folder that holds the checkpoint (its
    logger version), and ``--ckpt_path last`` finds the newest ``last.ckpt`` of the configured
    logger's runs. A model setting that differs from the checkpoint's is refused, where
    Lightning would silently take the checkpoint's value.
    """

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

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if config.get("ckpt_path"):
            config.ckpt_path = str(_resolve_checkpoint(config.ckpt_path, config.trainer))
            if subcommand == "fit":
                _continue_run_folder(Path(config.ckpt_path), config.trainer)
        before = self.parser.dump(self.config, skip_check=True, format="json")
        super()._parse_ckpt_path()  # Lightning: the checkpoint's model hyper-parameters win
        after = self.parser.dump(self.config, skip_check=True, format="json")
        changed = _differences(
            json.loads(before)[subcommand]["model"], json.loads(after)[subcommand]["model"]
        )
        if changed:
            raise ValueError(
                f"The model settings given differ from those stored in {config.ckpt_path}:\n  "
                + "\n  ".join(changed)
                + "\nA checkpoint continues the model it was saved with: drop these changes, or "
                "start a new run from its weights instead of resuming."
            )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if "weights_only" in config and config.weights_only is None:
            # A checkpoint is data, not code: never unpickle arbitrary objects from one, whatever
            # torch's default (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns it off). --weights_only
            # false still opts out, for a trusted checkpoint that needs it.
            config.weights_only = True
        if "return_predictions" in config and config.return_predictions is None:
            # EnhancedImageWriter writes each photo as its batch ends; keeping every
            # full-resolution result in memory too would grow with the folder.
            config.return_predictions = False
        iterations = config.get("max_iterations")
        if iterations is None:
            return
        if iterations < 1:
            raise ValueError(f"max_iterations must be >= 1; got {iterations}")
        steps = iterations * import_class(config.model.class_path).OPTIMIZER_STEPS_PER_ITERATION
        given = config.trainer.max_steps
        if given not in (None, -1, steps):
            raise ValueError(
                f"max_iterations={iterations} means trainer.max_steps={steps} (Lightning counts "
                f"optimizer steps), but trainer.max_steps={given} was also given: set only one"
            )
        config.trainer.max_steps = steps

    def instantiate_classes(self) -> None:
        # jsonargparse reports a failing constructor inside "Does not validate against any of
        # the Union subtypes", once per nesting level, with the real message deep inside
        # (e.g. where to put the VGG-19 weights). Raise the constructor's own error instead.
        try:
            super().instantiate_classes()
            return
        except ValueError as error:
            root = _constructor_error(error)
            if root is None:
                raise
        raise root.with_traceback(root.__traceback__)


def _constructor_error(error: BaseException) -> BaseException | None:
    """The first error in ``error``'s chain that was raised outside jsonargparse (None if none)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        if frames and "jsonargparse" not in Path(frames[-1].filename).parts:
            return current
        current = current.__cause__ or current.__context__
    return None


def _differences(given: object, stored: object, path: str = "model") -> list[str]:
    """Settings that differ between two config trees, as 'path: given -> stored' lines."""
    if isinstance(given, dict) and isinstance(stored, dict):
        keys = sorted(set(given) | set(stored))
        return [
            line
            for key in keys
            if key != "dict_kwargs"
            for line in _differences(given.get(key), stored.get(key), f"{path}.{key}")
        ]
    return [] if given == stored else [f"{path}: given {given!r}, checkpoint {stored!r}"]


def _logger_init(trainer_config: object) -> tuple[type | None, Namespace | dict | None]:
    """The configured logger's class and init_args (None, None without one)."""
    logger = trainer_config.get("logger")
    if not isinstance(logger, dict | Namespace) or logger.get("init_args") is None:
        return None, None
    return import_class(logger["class_path"]), logger["init_args"]


def _is_wandb(logger_class: type | None) -> bool:
    return logger_class is not None and issubclass(logger_class, WandbLogger)


def _runs_folder(trainer_config: object) -> Path:
    """The folder holding the configured logger's run folders (Lightning's checkpoint layout):
    ``<save_dir>/<name>``, for W&B ``<save_dir>/<project>`` (its ``name`` is the run's
    display name); Lightning's default without a logger."""
    logger_class, init = _logger_init(trainer_config)
    if init is None:
        return Path(trainer_config.get("default_root_dir") or ".") / "lightning_logs"
    folder = init.get("project") if _is_wandb(logger_class) else init.get("name")
    return Path(init.get("save_dir") or ".") / (folder or "lightning_logs")


def _resolve_checkpoint(ckpt_path: str, trainer_config: object) -> Path:
    """A checkpoint file, with ``"last"`` meaning the newest ``last.ckpt`` of the logger's runs."""
    if ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path {path} does not exist")
        return path
    runs = _runs_folder(trainer_config)
    candidates = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"--ckpt_path last: no */checkpoints/last.ckpt under {runs}; give the checkpoint's path"
        )
    return candidates[-1]


def _continue_run_folder(ckpt_path: Path, trainer_config: object) -> None:
    """Point the logger at the run that ``ckpt_path`` continues.

    CSV: the run folder that holds it (``<save_dir>/<name>/<version>/checkpoints/x.ckpt``).
    W&B: the run whose id the checkpoint stores, wherever the file now is (its display name
    and project stay as configured), in the checkpoint's run folder when it is still in
    Lightning's layout under the configured project.
    """
    logger_class, init = _logger_init(trainer_config)
    if init is None or "version" not in init:
        return
    in_layout = ckpt_path.parent.name == "checkpoints"
    run = ckpt_path.parent.parent
    if _is_wandb(logger_class):
        # mmap: a checkpoint can be large, and only this one entry is needed.
        stored = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        run_id = stored.get("wandb_run_id")
        if run_id is None:
            return  # not a W&B run's checkpoint: a new W&B run starts from its weights
        init["id"], init["version"] = run_id, None
        if in_layout and run.name == run_id and run.parent.name == init.get("project"):
            init["save_dir"] = str(run.parent.parent)
        return
    if in_layout:
        init["save_dir"], init["name"], init["version"] = (
            str(run.parent.parent),
            run.parent.name,
            run.name,
        )


def import_class(class_path: str) -> type:
    """The class a config's ``class_path`` names (a model or a data module)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def cli_main(args: list[str] | None = None, run: bool = True) -> WESPECLI:
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (tests use it)."""
    return WESPECLI(
        EnhancerModule,
        UnpairedDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveAndLogConfigCallback,
        # A resumed run writes its config into the same run folder again.
        save_config_kwargs={"overwrite": True},
        # Always there, whatever the config's callbacks: a resume needs what it saves.
        trainer_defaults={"callbacks": [RunState()]},
        args=args,
        run=run,
    )


class SaveAndLogConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` into the run folder (Lightning's) and also logs the whole resolved
    config to the loggers, so every setting is a column in W&B's run table.

    With W&B, Lightning's log folder is the logger's shared ``save_dir``; the config is then also
    written to the run's own folder (``<save_dir>/<project>/<run id>/``, beside its checkpoints),
    so ``wespe test -c <run>/config.yaml`` works for every run, not only the latest.
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})
        if isinstance(trainer.logger, WandbLogger):
            # run_folder needs no collective call for W&B; this runs on rank 0 only.
            folder = run_folder(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, folder / self.config_filename, skip_none=False, overwrite=True
            )


def compare_main(args: list[str]) -> None:
    """``wespe compare RUN... [--metric KEY] [--plot FILE]``."""
    import argparse

    from wespe.runs import compare_table, find_runs, plot_metric

    parser = argparse.ArgumentParser(
        prog="wespe compare",
        description="Compare local runs (CSV run folders or offline W&B runs): final metrics, "
        "the settings that differ, and a plot of one metric over iterations.",
    )
    parser.add_argument("runs", nargs="+", help="run folders, or folders to search for runs")
    parser.add_argument("--metric", default="val/psnr", help="metric to plot (default val/psnr)")
    parser.add_argument("--plot", default="compare.png", help="where to save the plot")
    options = parser.parse_args(args)
    runs = find_runs(options.runs)
    print(compare_table(runs))
    plot_metric(runs, options.metric, options.plot)
    print(f"\nplot of {options.metric} over iterations: {options.plot}")


def main() -> None:
    """Console entry point of ``wespe`` (kept for ``from wespe.cli import main``)."""
    from wespe.__main__ import main as dispatch

    dispatch()
