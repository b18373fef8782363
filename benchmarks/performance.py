"""The performance benchmarks in one command: training step, blur, data pipeline, enhancement.

Runs, one after the other in this process (so nothing else should run on the machine):

- ``step.py``: a WESPE iteration under Lightning against a plain loop, FLOPs, MFU, and the
  speed options (fused Adam, channels_last, bf16, torch.compile) on the quickstart;
- ``blur.py``: the color loss's blur against the seed blog's and a two-pass one;
- ``data.py``: what the data pipeline delivers, and the share of training spent waiting for it;
- ``enhance.py memory``: megapixels per second and peak memory of ``wespe enhance``.

and writes ``<out>/results.json`` (every figure, with the machine) and ``<out>/table.md`` (the
tables the README's Performance section quotes), beside each part's own JSON.

    python benchmarks/performance.py            # about 15 minutes on 2 CPU cores
    python benchmarks/performance.py --quick    # a smoke run: small sizes, few iterations
    python benchmarks/performance.py --only blur data   # run parts again; the others' figures stay
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import script as _script  # noqa: E402


def parts(out: Path, quick: bool) -> dict[str, tuple[str, list[str]]]:
    """Each part's script and arguments, full or quick."""
    folder = ["--out", str(out)]
    if quick:
        return {
            "step_quickstart": ("step", [*folder, "--models", "quickstart", "--iterations", "2",
                                         "--warmup", "1", "--repeats", "1", "--variants", "fused_adam"]),
            "step_paper": ("step", [*folder, "--models", "paper", "--batch-sizes", "1",
                                    "--iterations", "1", "--warmup", "1", "--repeats", "1"]),
            "blur": ("blur", [*folder, "--shapes", "2x3x64x64", "--repeats", "3"]),
            "data": ("data", [*folder, "--quick", "--photos", "1", "--megapixels", "0.3"]),
            "enhance": ("enhance", [*folder, "memory", "--sizes", "0.3", "--generators", "quickstart"]),
        }  # fmt: skip
    return {
        "step_quickstart": ("step", [*folder, "--models", "quickstart", "--costs",
                                     "--variants", *_script("step").VARIANTS]),
        "step_paper": ("step", [*folder, "--models", "paper", "--iterations", "6", "--warmup", "2",
                                "--repeats", "2", "--variants", "channels_last", "bf16",
                                "--profile"]),
        "blur": ("blur", folder),
        "data": ("data", folder),
        "enhance": ("enhance", [*folder, "memory", "--sizes", "2"]),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmark" / "performance")
    parser.add_argument("--quick", action="store_true", help="a smoke run, not figures to quote")
    parser.add_argument(
        "--only", nargs="+", choices=tuple(parts(Path(), False)), help="run these parts only"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    saved = args.out / "results.json"
    results: dict = {"quick": args.quick, "seconds": {}}
    if args.only and saved.is_file():  # a part run again replaces its figures, the rest stay
        results = json.loads(saved.read_text())
        if results.get("quick") != args.quick:
            parser.error(f"{saved} holds a {'quick' if results.get('quick') else 'full'} run; "
                         "rerun every part, or parts of the same kind")  # fmt: skip
    every = parts(args.out, args.quick)
    commands = {
        name: f"python benchmarks/{script_name}.py {' '.join(arguments[2:])}"
        for name, (script_name, arguments) in every.items()
    }
    for name, (script_name, arguments) in every.items():
        if args.only and name not in args.only:
            continue
        print(f"\n## {name}: {commands[name]}", flush=True)
        script = _script(script_name)
        start = time.perf_counter()
        results[name] = script.main(arguments)
        results["seconds"][name] = time.perf_counter() - start

    saved.write_text(json.dumps(results, indent=2, default=str))
    # Every part returns its Markdown table with its figures.
    (args.out / "table.md").write_text(
        "\n".join(
            f"## {name}\n\n`{commands[name]}`\n\n{results[name]['table']}\n"
            for name in every
            if name in results
        )
    )
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'table.md'}")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
