"""Tiny helpers to write output-free notebooks from Python lists of cells.

Used by tools/make_notebooks.py; the committed .ipynb files are what users open.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

KERNELSPEC = {"name": "primate-calls", "display_name": "Python (primate-calls)", "language": "python"}


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, parameters: bool = False):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


def write(path: Path, cells: list) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
