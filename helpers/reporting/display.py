"""Showing grids of training runs in a notebook: the runs a grid will train, the outcome table
of :func:`helpers.experiments.grid.run_grid` with each failed run's error, and the closing check
that stops a batch execution when a run failed.

Notebooks ``04_model_comparison``, ``05_ablation`` and ``07_fusion`` call these; the tables
themselves come from :mod:`helpers.experiments.grid` and :mod:`helpers.experiments.collect`::

    from helpers.reporting.display import check_failed_runs, run_plan, show_grid
    run_plan(configs)                        # one row per config: model, seed, iterations, ...
    table = grid.run_grid(configs)
    failed = show_grid(table)                # displays the table, then each failure's error
    print(check_failed_runs([table]))        # raises RuntimeError when a run failed

IPython is imported only when something is shown, so the module imports without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import pandas as pd

from helpers.experiments.grid import model_label

#: Columns of a :func:`~helpers.experiments.grid.run_grid` table that :func:`show_grid` shows, in
#: this order (``key`` and ``error`` are left out: errors are shown below the table in full).
SHOWN_COLUMNS = ["model", "sample_rate", "seed", "setting", "status", "seconds", "run_dir"]

#: Columns of :func:`run_plan`'s table.
PLAN_COLUMNS = ["model", "seed", "iterations", "batch", "run folder"]


class PlannedRun(Protocol):
    """What :func:`run_plan` reads of a config (a :class:`TrainConfig` has all of it)."""

    model: str
    sample_rate: int
    seed: int
    iterations: int
    batch_size: int

    def run_dir(self) -> Path: ...


def run_plan(configs: Sequence[PlannedRun]) -> pd.DataFrame:
    """One row per config, in order, before anything is trained.

    Columns :data:`PLAN_COLUMNS`: ``model`` is the paper's row name (``"CNN10-8k"``), ``seed``,
    ``iterations`` (optimiser steps; ``"400-800, until flat"`` for a run that stops once its devel curve is
    flat, ``stop_when_flat``), ``batch`` (clips per step) and ``run folder`` (the path as text, where the
    run is written or was already written). No configs: an empty table with these columns.
    """
    rows = [
        {
            "model": model_label(c.model, c.sample_rate),
            "seed": c.seed,
            "iterations": _steps(c),
            "batch": c.batch_size,
            "run folder": str(c.run_dir()),
        }
        for c in configs
    ]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _steps(config: PlannedRun) -> int | str:
    """A run's planned steps: the number, or the range of a run that stops once its devel curve is flat."""
    first = getattr(config, "min_iterations", 0)
    if not getattr(config, "stop_when_flat", False) or first >= config.iterations:
        return config.iterations  # a cap at or below min_iterations: the run takes all its steps
    return f"{first}-{config.iterations}, until flat"


def failure_markdown(run_dir: str, error: Any) -> str:
    """The Markdown that shows one failed run: its folder, then its error as a code block.

    ``error`` is the ``error`` cell of a grid row (the exception and traceback as text), shown
    verbatim.
    """
    return f"**FAILED** `{run_dir}`:\n\n```\n{error}\n```"


def show_grid(table: pd.DataFrame, show: Callable[[Any], None] | None = None) -> pd.DataFrame:
    """Show a :func:`~helpers.experiments.grid.run_grid` table and the error of every failed run.

    ``table`` has one row per config and at least the columns :data:`SHOWN_COLUMNS` plus
    ``error`` (``seconds`` is wall time in s; ``status`` is ``finished``, ``skipped`` or
    ``failed``). Shows ``table[SHOWN_COLUMNS]``, then one Markdown block per failed row
    (:func:`failure_markdown`), in table order. ``show`` replaces IPython's ``display`` (tests
    pass a list's ``append``).

    Returns the failed rows (all columns, the table's index), empty when every run finished or
    was skipped, so a notebook can stop on ``len(failed)``.
    """
    from IPython.display import Markdown

    if show is None:
        from IPython.display import display as show
    missing = [c for c in [*SHOWN_COLUMNS, "error"] if c not in table.columns]
    if missing:
        raise KeyError(f"not a run_grid table: no column(s) {missing}")
    show(table[SHOWN_COLUMNS])
    failed = table[table.status == "failed"]
    for row in failed.itertuples():
        show(Markdown(failure_markdown(row.run_dir, row.error)))
    return failed


def failed_run_dirs(grids: Iterable[pd.DataFrame]) -> list[str]:
    """The ``run_dir`` of every failed row of every table in ``grids``, in order (duplicates kept)."""
    return [r for t in grids for r in t[t.status == "failed"].run_dir]


def check_failed_runs(grids: Iterable[pd.DataFrame], fail_on_error: bool = True) -> str:
    """The closing check of a grid notebook over all its :func:`run_grid` tables.

    Raises ``RuntimeError`` naming the failed run folders when a run failed and ``fail_on_error``
    is true (so a papermill or ``make`` execution stops, after the tables were shown). Otherwise
    returns the line to print: ``"all runs finished"`` or ``"failed runs: [...]"``.
    """
    failed_runs = failed_run_dirs(grids)
    if failed_runs and fail_on_error:
        raise RuntimeError(
            f"{len(failed_runs)} run(s) failed (their rows are in the tables above; each folder "
            f"has failed.json and worker.log): {failed_runs}"
        )
    return "all runs finished" if not failed_runs else f"failed runs: {failed_runs}"
