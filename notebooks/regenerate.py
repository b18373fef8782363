"""Execute the notebooks in a real Jupyter kernel and store them with their outputs.

From the repository root::

    python notebooks/regenerate.py                  # every notebook, full parameters, in place
    python notebooks/regenerate.py 02_results       # some of them
    python notebooks/regenerate.py --fast --output /tmp/preview   # the tests' fast set, elsewhere

Each notebook runs top to bottom in a fresh ``python3`` kernel of this Python environment
(ipykernel's own kernel spec, not whichever ``python3`` kernel Jupyter finds first), with its
folder as the working directory and ``WESPE_NOTEBOOK_FAST`` set to ``1`` (``--fast``) or ``0``.
A cell that raises stops the command, and that notebook is not written. A stored notebook must
stay under :data:`MAX_BYTES` (figures are embedded PNGs): a bigger one is not written and the
command fails.

``tests/test_notebooks.py`` imports :func:`execute` from here, so the tests run the notebooks the
way this command does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

NOTEBOOKS = Path(__file__).resolve().parent
#: Largest stored notebook, in bytes (2 MB): they are read on a code host.
MAX_BYTES = 2_000_000
#: Parameters a user may set for an interactive session; never read from the environment of a
#: regeneration or a test, so the stored outputs do not depend on who ran them.
USER_PARAMETERS = ("WESPE_CHECKPOINT", "WESPE_RUNS")


class ThisPythonKernelManager(AsyncKernelManager):
    """A kernel manager whose ``python3`` kernel is ipykernel's for this Python
    (``sys.executable``), whatever kernel specs Jupyter's folders hold."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        # No kernel folders: only the native kernel, ipykernel's spec for sys.executable.
        return KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The notebooks in ``notebooks/``, or those named (with or without ``.ipynb``)."""
    if not names:
        return sorted(NOTEBOOKS.glob("*.ipynb"))
    paths = [NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb") for name in names]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise SystemExit(f"no such notebook in {NOTEBOOKS}: {', '.join(missing)}")
    return paths


def kernel_environment(fast: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: this one, with the parameter set chosen, inline figures, W&B
    offline and quiet, and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in USER_PARAMETERS}
    env["WESPE_NOTEBOOK_FAST"] = "1" if fast else "0"
    # A non-interactive backend (MPLBACKEND=Agg, as CI machines often set) would leave the
    # figures out of the outputs; the kernel's own default is the inline backend.
    env.pop("MPLBACKEND", None)
    env.setdefault("WANDB_MODE", "offline")
    env["WANDB_SILENT"] = "true"
    env.update(extra or {})
    return env


def execute(
    path: str | os.PathLike, fast: bool, timeout: int = 1800, env: dict[str, str] | None = None
) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` top to bottom in a new kernel and return it with its outputs.

    Args:
        path: the notebook.
        fast: the fast parameter set (``WESPE_NOTEBOOK_FAST=1``) instead of the full one.
        timeout: seconds any one cell may take.
        env: environment variables for the kernel, on top of :func:`kernel_environment`'s.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message shows its traceback.
        nbclient.exceptions.CellTimeoutError: a cell ran longer than ``timeout``.
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        kernel_manager_class=ThisPythonKernelManager,
        # The kernel's own log (a warning that it listens on local TCP ports) is not the notebook's.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        timeout=timeout,
        # Timestamps per cell would change the stored file at every run.
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=kernel_environment(fast, env))
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Execute the notebooks in a Jupyter kernel and store them with outputs."
    )
    parser.add_argument("notebooks", nargs="*", help="names in notebooks/ (default: all)")
    parser.add_argument(
        "--fast", action="store_true", help="the tests' fast parameters (needs --output)"
    )
    parser.add_argument("--output", type=Path, help="write here instead of in place")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    options = parser.parse_args(argv)
    if options.fast and options.output is None:
        parser.error("--fast outputs are not the stored ones: give --output DIR")
    failed = False
    for path in notebook_paths(options.notebooks):
        start = time.perf_counter()
        notebook = execute(path, fast=options.fast, timeout=options.timeout)
        text = nbformat.writes(notebook) + "\n"  # as nbformat.write ends a file
        size = len(text.encode())
        seconds = time.perf_counter() - start
        if size >= MAX_BYTES:
            print(
                f"{path.name}: {size / 1e6:.2f} MB with outputs, over the "
                f"{MAX_BYTES / 1e6:.0f} MB limit: not written (smaller or fewer figures)",
                file=sys.stderr,
            )
            failed = True
            continue
        target = path if options.output is None else options.output / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"{path.name}: executed in {seconds:.0f} s, {size / 1e6:.2f} MB -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
