"""Grid display helpers of the notebooks 04, 05 and 07: the run plan, the outcome table with each
failure's error, and the closing check. Tables are fabricated in run_grid's layout: no training."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.display import Markdown

from helpers.experiments import grid
from helpers.reporting.display import (
    PLAN_COLUMNS,
    SHOWN_COLUMNS,
    check_failed_runs,
    failed_run_dirs,
    failure_markdown,
    run_plan,
    show_grid,
)


def grid_table(statuses: list[str], prefix: str = "runs/x") -> pd.DataFrame:
    """A run_grid table with one row per status; failed rows carry an error naming their row."""
    rows = [
        {
            "run_dir": f"{prefix}/run{i}",
            "key": f"k{i}",
            "model": "cnn10",
            "sample_rate": 8000,
            "seed": i,
            "setting": grid.FULL_SETTING,
            "status": status,
            "error": f"ValueError: boom {i}\nTraceback line" if status == "failed" else None,
            "seconds": 1.5 * i,
        }
        for i, status in enumerate(statuses)
    ]
    return pd.DataFrame(rows, columns=grid.GRID_COLUMNS)


def test_run_plan_has_one_row_per_config_in_order(tmp_path):
    configs = grid.table2_configs(
        "demo", {"out_dir": str(tmp_path / "runs")}, seeds=[0, 1], runs=[("cnn10", 8000), ("cnn6", 16000)]
    )
    plan = run_plan(configs)
    assert list(plan.columns) == PLAN_COLUMNS
    assert list(plan.model) == ["CNN10-8k", "CNN10-8k", "CNN6-16k", "CNN6-16k"]
    assert list(plan.seed) == [0, 1, 0, 1]
    # the demo trains each run until its devel curve is flat, between min_iterations and iterations
    assert list(plan.iterations) == [f"{c.min_iterations}-{c.iterations}, until flat" for c in configs]
    paper = run_plan(grid.table2_configs("paper", {"out_dir": str(tmp_path / "runs")}, runs=[("cnn10", 8000)]))
    assert set(paper.iterations) == {60_000}
    # a cap below min_iterations wins (a quick run takes all its steps)
    quick = run_plan(grid.table2_configs("demo", {"out_dir": str(tmp_path), "iterations": 30}, runs=[("cnn10", 8000)]))
    assert list(quick.iterations) == [30]
    assert list(plan.batch) == [c.batch_size for c in configs]
    assert list(plan["run folder"]) == [str(c.run_dir()) for c in configs]
    assert len(set(plan["run folder"])) == 4
    assert not (tmp_path / "runs").exists()  # planning writes nothing


def test_run_plan_of_no_configs_keeps_its_columns():
    plan = run_plan([])
    assert plan.empty and list(plan.columns) == PLAN_COLUMNS


def test_failure_markdown_shows_folder_and_error_verbatim():
    text = failure_markdown("runs/a", "Traceback\n  x = 1/0\nZeroDivisionError")
    assert text == "**FAILED** `runs/a`:\n\n```\nTraceback\n  x = 1/0\nZeroDivisionError\n```"


def test_show_grid_shows_table_then_each_failure_and_returns_failed_rows():
    table = grid_table(["finished", "failed", "skipped", "failed"])
    shown: list = []
    failed = show_grid(table, show=shown.append)
    assert len(shown) == 3
    pd.testing.assert_frame_equal(shown[0], table[SHOWN_COLUMNS])
    assert all(isinstance(m, Markdown) for m in shown[1:])
    assert "runs/x/run1" in shown[1].data and "ValueError: boom 1\nTraceback line" in shown[1].data
    assert "runs/x/run3" in shown[2].data and "boom 3" in shown[2].data
    assert list(failed.index) == [1, 3] and list(failed.columns) == grid.GRID_COLUMNS


def test_show_grid_without_failures_shows_only_the_table():
    shown: list = []
    failed = show_grid(grid_table(["finished", "skipped"]), show=shown.append)
    assert len(shown) == 1 and failed.empty


def test_show_grid_rejects_a_table_that_is_not_a_grid():
    with pytest.raises(KeyError, match="status"):
        show_grid(grid_table(["finished"]).drop(columns=["status"]), show=lambda _: None)


def test_failed_run_dirs_spans_every_grid_in_order():
    grids = [grid_table(["failed", "finished"], "runs/a"), grid_table(["finished", "failed", "failed"], "runs/b")]
    assert failed_run_dirs(grids) == ["runs/a/run0", "runs/b/run1", "runs/b/run2"]
    assert failed_run_dirs([]) == []


def test_check_failed_runs_raises_or_says_what_failed():
    ok = [grid_table(["finished", "skipped"])]
    bad = ok + [grid_table(["failed"], "runs/f")]
    assert check_failed_runs(ok) == "all runs finished"
    assert check_failed_runs(ok, fail_on_error=False) == "all runs finished"
    with pytest.raises(RuntimeError, match=r"1 run\(s\) failed .*failed.json and worker.log.*runs/f/run0"):
        check_failed_runs(bad)
    assert check_failed_runs(bad, fail_on_error=False) == "failed runs: ['runs/f/run0']"
