"""Notebooks stay runnable: their code cells execute against the installed package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path):
    notebook = json.loads(path.read_text())
    namespace: dict = {}
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    for cell in code:
        assert not cell.get("outputs"), f"{path.name}: commit notebooks without outputs"
        exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
