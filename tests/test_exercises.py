"""Every numbered notebook ends with workshop exercises whose worked solutions are hidden until opened.

The solutions are ordinary code cells, so every execution of a notebook runs them: the synthetic
executions of tests/test_notebooks.py run all of them (and check that each printed its answer),
and ``make demo`` runs them on the demo corpus. Here: the structure a teacher relies on.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def solution_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_come_with_hidden_worked_solutions(path: Path):
    nb = nbformat.read(path, as_version=4)
    headers = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
    assert len(headers) == 1, f"{path.name}: needs exactly one '## Exercises' markdown cell"
    listed = re.findall(r"^(\d+)\. ", nb.cells[headers[0]].source, flags=re.MULTILINE)
    assert 1 <= len(listed) <= 3 and listed == [str(i) for i in range(1, len(listed) + 1)], (
        f"{path.name}: 1 to 3 exercises numbered 1., 2., ...; found {listed}"
    )
    solutions = solution_cells(nb)
    assert len(solutions) == len(listed), f"{path.name}: {len(listed)} exercises but {len(solutions)} solution cells"
    for n, cell in enumerate(solutions, 1):
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{path.name}: solution {n} must be collapsed (metadata jupyter.source_hidden = true)"
        )
        assert cell.source.startswith(f"# Solution {n}:"), f"{path.name}: solution {n} must start '# Solution {n}: ...'"
        assert nb.cells.index(cell) > headers[0], f"{path.name}: solution {n} comes before the exercises"
        assert "print(" in cell.source or "display(" in cell.source, f"{path.name}: solution {n} shows no answer"
