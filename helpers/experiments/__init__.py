"""Experiments: the paper's experiments as configs and its reference numbers (:mod:`.grid`), the
scheduler that trains many runs at once (:mod:`.scheduler`, one :mod:`.worker` process per run),
the collectors that turn run folders into the paper's tables (:mod:`.collect`) and the papermill
runner of the notebook collection (:mod:`.notebooks`).
"""

from helpers.experiments.collect import (
    ablation_gains,
    ablation_models,
    collect_runs,
    fusion_table,
    latest_finished_run,
    summarise,
    table2,
    table3,
)
from helpers.experiments.grid import run_grid

__all__ = [
    "ablation_gains",
    "ablation_models",
    "collect_runs",
    "fusion_table",
    "latest_finished_run",
    "run_grid",
    "summarise",
    "table2",
    "table3",
]
