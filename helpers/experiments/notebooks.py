"""Running the notebook collection headless through papermill.

Executed copies go to ``runs/notebooks/`` (committed notebooks stay output-free); a failure
raises :class:`NotebookError` naming the notebook and the failing cell.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
#: The Jupyter kernel `make` registers for the project's virtual environment.
KERNEL_NAME = "primate-calls"


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the executed copy."""


def list_notebooks(notebook_dir: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (``NN_topic.ipynb``) in execution order."""
    return sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))


def default_kernel() -> str:
    """The project's kernel when registered, else ``python3`` (the running interpreter's)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def notebook_parameters(path: str | Path) -> dict:
    """The names and default values assigned in a notebook's cell tagged ``parameters``.

    Values that are not Python literals are returned as their source text.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{Path(path).name}: expected exactly one code cell tagged 'parameters', found {len(cells)}.")
    params: dict = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    try:
                        params[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        params[target.id] = ast.get_source_segment(cells[0].source, node.value)
    return params


def run_notebook(notebook: str | Path, parameters: dict | None = None,
                 output_dir: str | Path = PROJECT_ROOT / "runs" / "notebooks",
                 kernel_name: str | None = None, cwd: str | Path | None = None,
                 log_output: bool = False, timeout: int | None = None) -> Path:
    """Execute one notebook with papermill and return the path of the executed copy.

    ``parameters`` are injected after the ``parameters`` cell; unknown names raise ``ValueError``
    (papermill would only warn, and a typo would silently run the defaults). The kernel is
    explicit (:func:`default_kernel` unless given) and the working directory is the notebook's
    folder, so relative paths in notebooks behave as in JupyterLab.
    """
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_absolute() and not notebook.exists():
        notebook = NOTEBOOK_DIR / notebook
    if notebook.suffix != ".ipynb":
        notebook = notebook.with_suffix(".ipynb")
    parameters = dict(parameters or {})
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{notebook.name}: unknown parameter(s) {unknown}; the parameters cell defines {sorted(known)}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / notebook.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(out), parameters=parameters,
            kernel_name=kernel_name or default_kernel(), language="python",
            cwd=str(cwd or notebook.parent), progress_bar=False, log_output=log_output,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as exc:
        raise NotebookError(
            f"{notebook.name}: cell {exc.cell_index} (execution count {exc.exec_count}) failed with "
            f"{exc.ename}: {exc.evalue}\nThe executed copy with the full traceback is {out}."
        ) from None
    elapsed = time.perf_counter() - start
    _append_log(output_dir, {"notebook": notebook.name, "seconds": round(elapsed, 2), "parameters": parameters})
    return out


def _append_log(output_dir: Path, entry: dict) -> None:
    with open(output_dir / "executions.jsonl", "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


def run_collection(parameters: dict | None = None, notebooks: list[str] | None = None,
                   output_dir: str | Path = PROJECT_ROOT / "runs" / "notebooks",
                   kernel_name: str | None = None, log_output: bool = False) -> list[Path]:
    """Execute the numbered notebooks in order, each with the ``parameters`` it defines.

    A parameter is passed to a notebook only if its ``parameters`` cell defines it, so one set
    (e.g. ``corpus``, ``data_dir``) can drive the whole collection. Stops at the first failure.
    """
    parameters = dict(parameters or {})
    paths = list_notebooks()
    if notebooks:
        wanted = set(notebooks)
        paths = [p for p in paths if p.stem in wanted or p.stem[:2] in wanted]
    done = []
    for path in paths:
        own = notebook_parameters(path)
        chosen = {k: v for k, v in parameters.items() if k in own}
        print(f"[notebooks] {path.name} {chosen}", flush=True)
        done.append(run_notebook(path, chosen, output_dir=output_dir, kernel_name=kernel_name,
                                 log_output=log_output))
    return done
