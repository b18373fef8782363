"""Read local run records (CSV runs and offline W&B runs) and compare them: ``wespe compare``.

Useful without a W&B account: it reads what the loggers wrote to disk.

- CSV runs: a folder with ``metrics.csv`` (and the ``config.yaml`` the CLI saves beside it).
- W&B runs: a folder ``.../wandb/offline-run-*`` (or ``run-*``) holding ``run-<id>.wandb``, the
  run's record log (LevelDB log format of protobuf ``Record`` messages, as wandb writes it).

The x-axis is the training iteration, counted as iterations done: Lightning's logger step
(``step`` in ``metrics.csv``, ``trainer/global_step`` in W&B) is the 0-based index of the batch
during which a value was logged, so the validation after the 10th iteration is logged at step 9
and read here as iteration 10, as ``train/iteration`` says.

Values that are not finite are kept: a run that diverged shows ``nan``, not its last finite
figure.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["RunRecord", "compare_table", "find_runs", "plot_metric", "read_run", "wandb_records"]

#: Config keys that differ between any two runs for bookkeeping reasons only.
_BOOKKEEPING = (
    "save_dir",
    "default_root_dir",
    "output_dir",
    "dirpath",
    "ckpt_path",
    "logger.init_args.name",
    "logger.init_args.version",
    "logger.init_args.id",
    # How a run is recorded (CSV or W&B, project, tags) is not how it was trained.
    "trainer.logger",
)


@dataclass
class RunRecord:
    """One run: its name, flattened configuration and metric histories ``key -> [(iteration, value)]``."""

    name: str
    path: Path
    config: dict[str, object] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def final(self, key: str) -> float | None:
        """The last logged value of ``key`` (None if never logged; nan or inf if it diverged)."""
        values = self.history.get(key)
        return values[-1][1] if values else None


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        flat: dict[str, object] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def _add(history: dict[str, list[tuple[int, float]]], key: str, step: int, value: object) -> None:
    """Record ``value`` (anything ``float`` reads, nan and inf included) at the iteration of
    logger step ``step``."""
    try:
        number = float(json.loads(value) if isinstance(value, str) and value[:1] == '"' else value)
    except (TypeError, ValueError):
        return
    history.setdefault(key, []).append((step + 1, number))


def wandb_records(path: str | os.PathLike) -> Iterator[object]:
    """The protobuf ``Record`` messages of a ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B":
        raise ValueError(f"{path} is not a W&B run record file (header {ident!r})")
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full/first, middle/last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _read_wandb(folder: Path) -> RunRecord:
    # Normally one file; a folder holding several (a run resumed into it, files moved) is read
    # as one run, oldest file first.
    record_files = sorted(folder.glob("run-*.wandb"), key=lambda f: (f.stat().st_mtime, f.name))
    run = RunRecord(name=folder.name, path=folder)
    records = (record for record_file in record_files for record in wandb_records(record_file))
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run" and record.run.display_name:
            run.name = record.run.display_name
        elif kind == "config":
            for item in record.config.update:
                key = item.key or ".".join(item.nested_key)
                run.config.update(_flatten(json.loads(item.value_json), f"{key}."))
        elif kind == "history":
            row = {
                item.key or "/".join(item.nested_key): item.value_json
                for item in record.history.item
            }
            step = int(float(row.get("trainer/global_step", row.get("_step", 0))))
            for key, value in row.items():
                if not key.startswith("_") and key != "trainer/global_step":
                    _add(run.history, key, step, value)
    # The CLI logs the whole resolved config under "config". Lightning also logs the module's
    # hyper-parameters at the top level, the same settings under other names: keep only the
    # former, named as in config.yaml, so a W&B run and a CSV run compare key by key.
    if any(k.startswith("config.") for k in run.config):
        run.config = {
            k.removeprefix("config."): v for k, v in run.config.items() if k.startswith("config.")
        }
    return run


def _read_csv(folder: Path) -> RunRecord:
    run = RunRecord(name=f"{folder.parent.name}/{folder.name}", path=folder)
    config = folder / "config.yaml"
    if config.is_file():
        run.config = _flatten(yaml.safe_load(config.read_text()) or {})
    with open(folder / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            step = int(float(row.pop("step")))
            row.pop("epoch", None)
            for key, value in row.items():
                if value != "":
                    _add(run.history, key, step, value)
    return run


def read_run(path: str | os.PathLike) -> RunRecord:
    """Read one run folder (CSV or W&B offline run)."""
    folder = Path(path)
    if (folder / "metrics.csv").is_file():
        return _read_csv(folder)
    if any(folder.glob("run-*.wandb")):
        return _read_wandb(folder)
    raise FileNotFoundError(
        f"{folder} is not a run folder: expected metrics.csv (CSV logger) or run-*.wandb (W&B)"
    )


def find_runs(paths: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """Every run folder at or below ``paths``, sorted by path."""
    folders: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        candidates = [path, *path.rglob("*")] if path.is_dir() else []
        for folder in candidates:
            if folder.is_dir() and (
                (folder / "metrics.csv").is_file() or any(folder.glob("run-*.wandb"))
            ):
                folders.add(folder.resolve())  # W&B's latest-run link points at a run folder too
    if not folders:
        raise FileNotFoundError(
            f"no run folder (metrics.csv or run-*.wandb) under {', '.join(map(str, paths))}"
        )
    return [read_run(folder) for folder in sorted(folders)]


def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _format_final(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if math.isfinite(value) else f"{value} (diverged)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table of ``rows`` (cells formatted with ``str``) under ``header``.

    Example:
        >>> print(markdown_table(["run", "psnr"], [["a", 21.5]]))
        | run | psnr |
        |---|---|
        | a | 21.5 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def compare_table(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> str:
    """A markdown table: each run's final metrics, then the configuration keys that differ."""
    if metrics is None:
        metrics = sorted(
            {k for run in runs for k in run.history if k.startswith("val/") and "/samples" not in k}
        )
    lines = [
        markdown_table(
            ["run", *metrics],
            [[run.name, *(_format_final(run.final(m)) for m in metrics)] for run in runs],
        )
    ]
    keys = sorted({k for run in runs for k in run.config})
    differing = [
        k
        for k in keys
        if not any(part in k for part in _BOOKKEEPING)
        and len({json.dumps(run.config.get(k), sort_keys=True, default=str) for run in runs}) > 1
    ]
    lines += ["", "Settings that differ:" if differing else "No settings differ.", ""]
    if differing:
        lines.append(
            markdown_table(
                ["setting", *(run.name for run in runs)],
                [[key, *(_format(run.config.get(key)) for run in runs)] for key in differing],
            )
        )
    return "\n".join(lines)


def plot_metric(runs: Sequence[RunRecord], metric: str, path: str | os.PathLike) -> None:
    """Save a plot of ``metric`` over iterations, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for run in runs:
        points = run.history.get(metric, [])
        if points:
            (line,) = axes.plot(
                [p[0] for p in points], [p[1] for p in points], marker=".", label=run.name
            )
            diverged = [p[0] for p in points if not math.isfinite(p[1])]
            if diverged:  # matplotlib leaves nan out silently: mark where the run diverged
                axes.axvline(diverged[0], color=line.get_color(), linestyle=":")
    axes.set_xlabel("iteration")
    axes.set_ylabel(metric)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
