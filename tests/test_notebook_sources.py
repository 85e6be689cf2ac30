"""The committed notebooks are the source: what JupyterLab saves is what is committed. These
checks keep them reviewable: no outputs, stable cell ids, valid nbformat 4.5, one ``parameters``
cell, a title, and no functions or classes in cells (logic belongs in ``helpers``).

Each failure names the notebook and the cell (index, id, first source line) and says how to fix
it. Ids are read from the file and only checked to be present, unique and not a bare cell index:
the ``NN-ii`` ids of the first cells are stored names, never recomputed, so inserting a cell
renames none of its neighbours (JupyterLab gives a new cell a random id).

The checks read the raw JSON: ``nbformat.read`` and ``nbformat.validate`` silently add missing
ids and rename duplicate ones, which would hide exactly what is checked here.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: Every notebook source; executed copies (``*.executed.ipynb``, git-ignored) are not sources.
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.endswith(".executed.ipynb"))

DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s", re.MULTILINE)


def strip_command(path: Path) -> str:
    """The command that removes outputs and execution counts from ``path`` in place."""
    return f".venv/bin/jupyter nbconvert --clear-output --inplace notebooks/{path.name}"


def load_raw(path: Path) -> dict[str, Any]:
    """The notebook as stored (plain JSON, nothing added or repaired)."""
    return json.loads(path.read_text(encoding="utf-8"))


def source_of(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def where(path: Path, index: int, cell: dict[str, Any]) -> str:
    """``NN_name.ipynb cell 4 (id '04-04', first line 'table = ...')``."""
    lines = [line for line in source_of(cell).splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    if len(first) > 70:
        first = first[:67] + "..."
    return f"{path.name} cell {index} (id {cell.get('id')!r}, first line {first!r})"


def output_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        found = []
        if cell.get("outputs"):
            found.append(f"{len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"execution_count {cell['execution_count']}")
        if found:
            problems.append(
                f"{where(path, i, cell)} has {' and '.join(found)}; strip outputs with: {strip_command(path)}"
            )
    return problems


def id_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    problems = []
    first_index: dict[str, int] = {}
    for i, cell in enumerate(nb.get("cells", [])):
        cell_id = cell.get("id")
        if not cell_id:
            problems.append(
                f"{where(path, i, cell)} has no id; open and save the notebook in JupyterLab, "
                f"or run {strip_command(path)}, which adds one"
            )
            continue
        if cell_id in first_index:
            problems.append(
                f"{where(path, i, cell)} repeats the id of cell {first_index[cell_id]}; "
                "give this cell a new unique id in the file (ids must never repeat)"
            )
        else:
            first_index[cell_id] = i
        if cell_id.isdigit() and int(cell_id) == i:
            problems.append(
                f"{where(path, i, cell)} has its position as id; ids must be stable names "
                "(keep stored ids, give new cells random ones), not positions that shift "
                "when a cell is inserted"
            )
    return problems


def format_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    version = (nb.get("nbformat"), nb.get("nbformat_minor"))
    if version[0] != 4 or not isinstance(version[1], int) or version[1] < 5:
        return [
            f"{path.name} is nbformat {version[0]}.{version[1]}, not 4.5 (cell ids need 4.5); "
            "open and save it in JupyterLab 4"
        ]
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
    except nbformat.ValidationError as err:
        return [f"{path.name} is not valid nbformat 4.5: {err.message}"]
    return []


def parameters_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    tagged = [
        (i, c) for i, c in enumerate(nb.get("cells", [])) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(tagged) != 1:
        cells = "; ".join(where(path, i, c) for i, c in tagged) or "none"
        return [
            f"{path.name} needs exactly one cell tagged 'parameters' (papermill injects values after it), "
            f"found {len(tagged)}: {cells}. JupyterLab: select the cell, Property Inspector, Cell Tags"
        ]
    i, cell = tagged[0]
    if cell.get("cell_type") != "code":
        return [f"{where(path, i, cell)} is tagged 'parameters' but is a {cell.get('cell_type')} cell"]
    # papermill's parameter inspection (papermill --help-notebook, and its warning in every batch run)
    # skips any line with more than one '=', so the parameter on it goes unlisted
    return [
        f"{where(path, i, cell)} line {n}: {line.strip()!r} has {line.count('=')} '=' signs; papermill "
        "cannot read it as a parameter and leaves it out of its parameter list: keep '=' out of the comment"
        for n, line in enumerate(source_of(cell).splitlines(), start=1)
        if line.count("=") > 1 and not line.strip().startswith("#")
    ]


def definition_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = source_of(cell)
        for match in DEFINITION.finditer(source):
            line_no = source.count("\n", 0, match.start()) + 1
            line = source[match.start() :].split("\n", 1)[0]
            problems.append(
                f"{where(path, i, cell)} defines {line!r} (cell line {line_no}); logic belongs in "
                "helpers: move it to the module where it belongs (with type hints, a docstring "
                "and a test) and import it in the notebook"
            )
    return problems


def title_problems(path: Path, nb: dict[str, Any]) -> list[str]:
    cells = nb.get("cells", [])
    if not cells or cells[0].get("cell_type") != "markdown" or not source_of(cells[0]).startswith("# "):
        return [
            f"{path.name}: the first cell must be a Markdown title starting with '# '"
            + (f", found {where(path, 0, cells[0])}" if cells else ", the notebook has no cells")
        ]
    return []


CHECKS = [output_problems, id_problems, format_problems, parameters_problems, definition_problems, title_problems]


def all_problems(path: Path) -> list[str]:
    nb = load_raw(path)
    return [p for check in CHECKS for p in check(path, nb)]


# --- the committed notebooks ------------------------------------------------------------------


def test_there_are_notebook_sources():
    assert len(NOTEBOOKS) >= 9, f"expected the numbered notebooks in {NOTEBOOK_DIR}, found {NOTEBOOKS}"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removesuffix("_problems"))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_source(path, check):
    problems = check(path, load_raw(path))
    assert not problems, "\n".join(problems)


# --- the checks catch what they should ----------------------------------------------------------


def _notebook(tmp_path: Path, cells: list, name: str = "42_example.ipynb", minor: int = 5) -> Path:
    """Write a notebook whose cells are given as (cell_type, source, extra fields) exactly as stored."""
    raw_cells = []
    for cell_type, source, extra in cells:
        cell = {"cell_type": cell_type, "metadata": {}, "source": source}
        if cell_type == "code":
            cell.update(outputs=[], execution_count=None)
        cell.update(extra)
        raw_cells.append(cell)
    nb = {"cells": raw_cells, "metadata": {}, "nbformat": 4, "nbformat_minor": minor}
    path = tmp_path / name
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return path


GOOD = [
    ("markdown", "# 42 · Example", {"id": "42-00"}),
    ("code", "x = 1", {"id": "42-01", "metadata": {"tags": ["parameters"]}}),
    ("code", "print(x)", {"id": "3f1c2a9e"}),
]


def test_a_clean_notebook_passes(tmp_path):
    assert all_problems(_notebook(tmp_path, GOOD)) == []


def test_outputs_are_named_with_the_cell_and_the_strip_command(tmp_path):
    cell = (
        "code",
        "y = 2\nprint(y)",
        {"id": "42-02", "execution_count": 3, "outputs": [{"output_type": "stream", "name": "stdout", "text": "2\n"}]},
    )
    problems = all_problems(_notebook(tmp_path, GOOD + [cell]))
    assert len(problems) == 1
    assert "42_example.ipynb cell 3 (id '42-02', first line 'y = 2')" in problems[0]
    assert "1 output(s) and execution_count 3" in problems[0]
    assert ".venv/bin/jupyter nbconvert --clear-output --inplace notebooks/42_example.ipynb" in problems[0]


def test_execution_count_alone_is_caught(tmp_path):
    cell = ("code", "z = 3", {"id": "abc", "execution_count": 1})
    assert output_problems(tmp_path / "42_example.ipynb", load_raw(_notebook(tmp_path, GOOD + [cell])))


def test_missing_repeated_and_positional_ids_are_caught(tmp_path):
    cells = GOOD + [("code", "a = 1", {}), ("code", "b = 2", {"id": "42-01"}), ("markdown", "text", {"id": "5"})]
    path = _notebook(tmp_path, cells)
    problems = id_problems(path, load_raw(path))
    assert len(problems) == 3
    assert "cell 3 (id None, first line 'a = 1') has no id" in problems[0]
    assert "cell 4 (id '42-01', first line 'b = 2') repeats the id of cell 1" in problems[1]
    assert "cell 5 (id '5', first line 'text') has its position as id" in problems[2]


def test_stored_ids_need_not_follow_positions(tmp_path):
    """A cell inserted at the top leaves the stored ids where they were: nothing to renumber."""
    cells = [GOOD[0], ("markdown", "new note", {"id": "d41d8cd9"}), *GOOD[1:]]
    assert all_problems(_notebook(tmp_path, cells)) == []


def test_format_and_version_are_checked(tmp_path):
    old = _notebook(tmp_path, GOOD, name="42_old.ipynb", minor=4)
    assert "nbformat 4.4, not 4.5" in format_problems(old, load_raw(old))[0]
    bad = _notebook(tmp_path, GOOD + [("code", "c = 1", {"id": "has space"})], name="42_bad.ipynb")
    assert "42_bad.ipynb is not valid nbformat 4.5" in format_problems(bad, load_raw(bad))[0]


def test_parameters_cell_must_be_exactly_one_code_cell(tmp_path):
    none = _notebook(tmp_path, [GOOD[0], ("code", "x = 1", {"id": "a"})], name="42_none.ipynb")
    assert "found 0: none" in parameters_problems(none, load_raw(none))[0]
    two = _notebook(
        tmp_path, GOOD + [("code", "y = 1", {"id": "b", "metadata": {"tags": ["parameters"]}})], name="42_two.ipynb"
    )
    assert "found 2" in parameters_problems(two, load_raw(two))[0]
    md = _notebook(
        tmp_path, [GOOD[0], ("markdown", "x", {"id": "a", "metadata": {"tags": ["parameters"]}})], name="42_md.ipynb"
    )
    assert "is a markdown cell" in parameters_problems(md, load_raw(md))[0]


def test_parameter_lines_papermill_cannot_read_are_caught(tmp_path):
    cells = [
        GOOD[0],
        ("code", 'x = 1\nmode = None  # with x="a": a file', {"id": "42-01", "metadata": {"tags": ["parameters"]}}),
        GOOD[2],
    ]
    path = _notebook(tmp_path, cells)
    problems = parameters_problems(path, load_raw(path))
    assert len(problems) == 1 and "line 2" in problems[0] and "keep '=' out of the comment" in problems[0]


def test_definitions_in_code_cells_are_caught(tmp_path):
    cells = GOOD + [
        ("code", ["import os\n", "def show(table):\n", "    return table\n"], {"id": "c1"}),
        ("code", "class Thing:\n    pass", {"id": "c2"}),
        ("code", "f = lambda t: t  # a definition elsewhere: 'def x' mid-line is fine", {"id": "c3"}),
        ("markdown", "def in prose\n\nclass in prose", {"id": "m1"}),
    ]
    path = _notebook(tmp_path, cells)
    problems = definition_problems(path, load_raw(path))
    assert len(problems) == 2
    assert "cell 3 (id 'c1', first line 'import os') defines 'def show(table):' (cell line 2)" in problems[0]
    assert "cell 4 (id 'c2', first line 'class Thing:') defines 'class Thing:'" in problems[1]


def test_title_cell_is_required(tmp_path):
    path = _notebook(tmp_path, GOOD[1:])
    assert "first cell must be a Markdown title" in title_problems(path, load_raw(path))[0]
