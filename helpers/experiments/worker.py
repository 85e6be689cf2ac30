"""The child side of :func:`helpers.experiments.scheduler.run_trainings`: one training run in its own process.

Started as ``python -m helpers.experiments.worker JOB.json`` by the parent, never by hand. The job
file holds the (already adjusted) config, the corpus folder if one was given, and where to write
the error report. The parent has already put the thread and GPU settings into this process's
environment (``OMP_NUM_THREADS``, ``CUDA_VISIBLE_DEVICES``, ...) before the interpreter started,
so they hold before torch is even imported.

Exit status 0: the run finished and its folder is complete. Anything else: the run failed; when
the failure was a Python exception, ``error_path`` holds its type, message and traceback (a crash
that kills the interpreter, e.g. out of memory, leaves no such file and the parent says so).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from helpers.core import run_folder

#: Lines of the traceback kept in the error report (the full one is in the run's worker.log).
TRACEBACK_TAIL_LINES = 15


def run_job(job: dict) -> None:
    """Train the run described by ``job`` (the parent's job file, already parsed)."""
    # Imported here, after the environment is final: torch reads OMP_NUM_THREADS and
    # CUDA_VISIBLE_DEVICES when it initialises.
    from helpers.training.loop import train
    from helpers.training.config import TrainConfig

    config = TrainConfig.from_dict(job["config"])
    print(
        f"run folder {config.run_dir()}; threads {config.num_threads}; device {config.device}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}",
        flush=True,
    )
    if job.get("via", "python") == "notebook":
        run_training_notebook(config, job.get("corpus_root"))
        print("finished", flush=True)
        return
    corpus = None
    if job.get("corpus_root"):
        from helpers.data.corpus import read_corpus

        corpus = read_corpus(job["corpus_root"])
    train(config, corpus=corpus, progress=False, resume=True)  # an interrupted run continues from last.pt
    print("finished", flush=True)


def run_training_notebook(config, corpus_root: str | None = None) -> Path:
    """Train ``config`` by executing ``notebooks/03_train.ipynb`` with papermill; the executed copy
    is ``RUN/03_train.ipynb`` and its figures go to ``RUN/figures``. Relative paths in the config
    keep their meaning: the notebook runs in this process's working directory."""
    from helpers.experiments.notebooks import NOTEBOOK_DIR, run_notebook

    run_dir = config.run_dir()
    parameters = {**config.to_dict(), "figures_dir": str(run_dir / "figures"), "n_listen": 0}
    if corpus_root:
        parameters["corpus_root"] = str(corpus_root)
    out = run_notebook(NOTEBOOK_DIR / "03_train.ipynb", parameters, output_dir=run_dir, cwd=os.getcwd())
    if not run_folder.is_finished(run_dir):
        raise RuntimeError(
            f"{out} ran without error but {run_dir} is not a finished run (no metrics.json and "
            "record.json); open the executed notebook to see why."
        )
    return out


def error_report(exc: BaseException) -> dict:
    """Type, message and the last :data:`TRACEBACK_TAIL_LINES` lines of the traceback of ``exc``."""
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "\n".join(lines[-TRACEBACK_TAIL_LINES:])}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(
            "usage: python -m helpers.experiments.worker JOB.json "
            "(started by helpers.experiments.scheduler.run_trainings)",
            file=sys.stderr,
        )
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        run_job(job)
    except Exception as exc:  # every failure is reported to the parent, none is swallowed
        traceback.print_exc()
        from helpers.core.fileio import write_json_atomic

        write_json_atomic(job["error_path"], error_report(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
