"""The notebooks: stored executed, with their figures, small; and they run, in a real Jupyter
kernel, with the fast parameter set (``WESPE_NOTEBOOK_FAST=1``).

``notebooks/regenerate.py`` stores them (full parameters); the kernel runs here the way it runs
there (its :func:`execute`). The executed fast versions are never written back.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def load_regenerate():
    spec = importlib.util.spec_from_file_location(
        "notebooks_regenerate", NOTEBOOK_DIR / "regenerate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = load_regenerate()


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def output_types(cell):
    """The output kinds of a code cell: 'stream', 'error', and the MIME types of rich outputs."""
    kinds = set()
    for output in cell.outputs:
        kinds.add(output.output_type)
        kinds.update(output.get("data", {}))
    return kinds


def test_the_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} >= {"01_losses.ipynb", "02_results.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_was_executed_with_figures_and_is_small(path):
    size = path.stat().st_size
    assert size < regenerate.MAX_BYTES, f"{path.name}: {size} bytes; see notebooks/regenerate.py"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert cells, f"{path.name} has no code cell"
    # Executed top to bottom in one session: counts 1, 2, 3, ... (regenerate.py, not by hand).
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: execution counts {counts}"
    kinds = set().union(*(output_types(cell) for cell in cells))
    assert "error" not in kinds, f"{path.name} is stored with an error output"
    assert "image/png" in kinds, f"{path.name} is stored without a figure"
    # Stored with the full parameter set, which the first code cell prints.
    first = "".join(output.get("text", "") for output in cells[0].outputs)
    assert "parameter set: full" in first, f"{path.name}: first cell printed {first!r}"
    # No path of the temporary folders that change at every run.
    text = json.dumps([cell.outputs for cell in cells])
    assert tempfile.gettempdir() + "/" not in text, f"{path.name}: outputs show a temporary path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_kernel_with_the_fast_parameters(path):
    # Raises CellExecutionError (with the cell's traceback) if any cell raises. One intra-op
    # thread: the fast set's tensors are tiny, and two threads on a busy 2-core machine were
    # several times slower than one.
    notebook = regenerate.execute(path, fast=True, timeout=300, env={"OMP_NUM_THREADS": "1"})
    cells = code_cells(notebook)
    assert all(cell.execution_count for cell in cells)
    first = "".join(output.get("text", "") for output in cells[0].outputs)
    assert "parameter set: fast" in first
    assert "image/png" in set().union(*(output_types(cell) for cell in cells))
