"""The run folder: its layout, its status ("finished", "failed", "unfinished"), loading it, and the
lock that keeps two processes from writing it at once. The one place that knows these.

A training run (:func:`helpers.training.train`) writes::

    RUN/config.json            the resolved config (TrainConfig.to_dict())
    RUN/record.json            versions, machine, commit, corpus checksum, timings (written last)
    RUN/history.csv            loss and devel UAR/mAP over iterations, plain and EMA models
    RUN/metrics.json           metrics per checkpoint and split, labelled (written just before record.json)
    RUN/checkpoints/           best_plain.pt, best_ema.pt (best devel UAR), last.pt (resumable)
    RUN/predictions/           {split}-{checkpoint}.csv: one row per clip, one score per class
    RUN/submission-test.csv    the challenge submission (filename,prediction)
    RUN/figures/               learning curves, confusion matrix
    RUN/failed.json            why the last attempt failed (the scheduler writes it; removed on success)
    RUN/worker.log             the output of the scheduler's worker process
    RUN/03_train.ipynb         the executed notebook, when the run went through papermill
    RUN/.lock                  held while a process writes the folder (see :func:`lock`)

Status: ``finished`` when ``metrics.json`` and ``record.json`` both exist (training writes them
last, so a crash never leaves a finished-looking folder); else ``failed`` when ``failed.json``
exists; else ``unfinished`` (running, interrupted, or resumable from ``checkpoints/last.pt``).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import filelock
import pandas as pd

from helpers.core.fileio import read_json, write_json_atomic

CONFIG = "config.json"
RECORD = "record.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
SUBMISSION = "submission-test.csv"
FAILED = "failed.json"
WORKER_LOG = "worker.log"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "checkpoints/last.pt"
PREDICTIONS = "predictions"
FIGURES = "figures"
EXECUTED_NOTEBOOK = "03_train.ipynb"
EXECUTIONS = "executions.jsonl"
LOCK = ".lock"
LOCK_OWNER = ".lock-owner.json"
#: Everything a run writes; :func:`clear` removes exactly these and nothing else, so a misconfigured
#: ``out_dir`` can never make it delete unrelated files.
ARTEFACTS = (
    CONFIG,
    RECORD,
    HISTORY,
    METRICS,
    SUBMISSION,
    FAILED,
    WORKER_LOG,
    CHECKPOINT_DIR,
    PREDICTIONS,
    FIGURES,
    EXECUTED_NOTEBOOK,
    EXECUTIONS,
)
FOLDER_STATUSES = ("finished", "failed", "unfinished")


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock (and the caller chose not to wait)."""


def is_finished(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a finished run (``metrics.json`` and ``record.json``)."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS).is_file() and (run_dir / RECORD).is_file()


def status(run_dir: str | Path) -> str:
    """``"finished"``, ``"failed"`` or ``"unfinished"`` (see the module docstring)."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return "finished"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "unfinished"


def failure(run_dir: str | Path) -> dict[str, Any] | None:
    """The content of ``failed.json`` when the run's status is failed, else None."""
    run_dir = Path(run_dir)
    return read_json(run_dir / FAILED) if status(run_dir) == "failed" else None


def write_failure(run_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``failed.json`` (atomically) with ``report``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / FAILED, report)
    return run_dir / FAILED


def record_failure(
    run_dir: str | Path,
    report: dict[str, Any],
    *,
    config: dict[str, Any],
    seconds: float,
    fix: str,
    where: str = "",
    **details: Any,
) -> str:
    """The one builder of ``failed.json``, for every executor: ``report`` (``type``, ``message``,
    ``traceback`` of the error), the run's ``config`` (a dict), its ``seconds``, the ``fix`` and what the
    executor knows besides (``details``: placement, return code, job id, logs...). Writes it and returns
    the error text a failed outcome shows (``where`` is its last line's start); a folder that cannot be
    written is said in that text, never raised."""
    run_dir = Path(run_dir)
    error = (
        f"{report['type']}: {report['message']}\n{report.get('traceback', '')}\n"
        f"{where + '; ' if where else ''}run folder: {run_dir}; {fix}"
    )
    record = {
        "status": "failed",
        "run_dir": str(run_dir),
        "error_type": report["type"],
        "message": report["message"],
        "traceback": report.get("traceback", ""),
        "seconds": round(seconds, 3),
        **details,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "fix": fix,
    }
    try:
        write_failure(run_dir, record)
    except OSError as exc:
        error += f"\n(could not write {run_dir / FAILED}: {exc})"
    return error


def clear_failure(run_dir: str | Path) -> None:
    """Remove ``failed.json`` (a later attempt succeeded)."""
    (Path(run_dir) / FAILED).unlink(missing_ok=True)


def last_step(run_dir: str | Path) -> int | None:
    """The last step in ``history.csv``, or None when there is none (yet)."""
    try:
        steps = pd.read_csv(Path(run_dir) / HISTORY, usecols=["step"])["step"]
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    return int(steps.max()) if len(steps) else None


def load(run_dir: str | Path) -> dict[str, Any]:
    """Config, metrics, history and record of a finished run folder (for collectors and notebooks).

    Raises FileNotFoundError naming the folder and its status when it is not finished."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise FileNotFoundError(
            f"{run_dir}: not a finished run (status {status(run_dir)}); train it first "
            "(helpers.training.train or notebooks/03_train) or pick another folder."
        )
    return {
        "config": read_json(run_dir / CONFIG),
        "metrics": read_json(run_dir / METRICS),
        "history": pd.read_csv(run_dir / HISTORY),
        "record": read_json(run_dir / RECORD),
    }


def clear(run_dir: str | Path) -> None:
    """Delete the files and folders a run writes in ``run_dir`` (:data:`ARTEFACTS`) and nothing else."""
    run_dir = Path(run_dir)
    for name in ARTEFACTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def find(paths_or_root: str | Path | Iterable[str | Path]) -> list[Path]:
    """Run folders (folders with a ``config.json``) at or below each given path, sorted, unique."""
    paths = [paths_or_root] if isinstance(paths_or_root, (str, Path)) else list(paths_or_root)
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such folder; give a run folder or a folder of run folders")
        if (p / CONFIG).is_file():
            found.add(p)
        found.update(c.parent for c in p.rglob(CONFIG))
    return sorted(found)


def latest_finished(root: str | Path) -> Path:
    """The most recently finished run folder below ``root`` (by the time of its metrics.json).

    Raises ``FileNotFoundError`` naming ``root`` and the fix when none has finished."""
    finished = [p for p in find(root) if is_finished(p)]
    if not finished:
        raise FileNotFoundError(
            f"no finished training run below {root}; run notebooks/03_train.ipynb (or helpers.training.train) "
            "first, or pass run_dir explicitly."
        )
    return max(finished, key=lambda p: (p / METRICS).stat().st_mtime_ns)


def _owner(run_dir: Path) -> str:
    try:
        info = read_json(run_dir / LOCK_OWNER)
        return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


@contextmanager
def lock(
    run_dir: str | Path,
    wait: bool = True,
    timeout: float | None = None,
    on_wait: Any = None,
    purpose: str = "same config trained elsewhere",
    fix: str = "give this run another run_name or out_dir",
) -> Iterator[Path]:
    """Hold ``RUN/.lock`` (an OS file lock, released when the process dies) while writing ``run_dir``.

    A second process that trains the same config at the same time (two notebooks, a notebook and
    a grid) waits here until the first is done (``wait=True``, the default; ``timeout`` seconds
    at most, None = no limit), then finds the run finished and loads it; with ``wait=False`` it
    stops at once with :class:`RunFolderBusy` naming the holder. ``on_wait(message)`` is called once
    when it has to wait (the training engine prints the message). Not re-entrant across processes
    only: the same process may not take it twice. ``purpose`` and ``fix`` word the message for
    other folders written by one process at a time (a scan folder).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    file_lock = filelock.FileLock(str(run_dir / LOCK), thread_local=False)
    try:
        file_lock.acquire(timeout=0)
    except filelock.Timeout:
        message = f"{run_dir} is being written by {_owner(run_dir)} ({purpose})"
        if not wait:
            raise RunFolderBusy(f"{message}; wait for it to finish, or {fix}.") from None
        if on_wait is not None:
            on_wait(f"{message}; waiting for it to finish")
        try:
            file_lock.acquire(timeout=-1 if timeout is None else timeout)
        except filelock.Timeout:
            raise RunFolderBusy(f"{message}; still busy after {timeout} s. Wait longer, or {fix}.") from None
    try:
        write_json_atomic(
            run_dir / LOCK_OWNER,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        )
        yield run_dir
    finally:
        (run_dir / LOCK_OWNER).unlink(missing_ok=True)
        file_lock.release()


#: Inference checkpoints in order of preference: the best EMA weights, the best plain ones, the final
#: plain ones (the one checkpoint of a head fitted by scikit-learn).
PREFERRED_CHECKPOINTS = ("best_ema", "best_plain", "last_plain")


def preferred_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of a finished run that scoring and scanning use (:data:`PREFERRED_CHECKPOINTS`).
    Raises FileNotFoundError naming the folder when it holds none of them."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    for name in PREFERRED_CHECKPOINTS:
        if (folder / f"{name}.pt").is_file():
            return folder / f"{name}.pt"
    raise FileNotFoundError(f"{folder}: no {', '.join(n + '.pt' for n in PREFERRED_CHECKPOINTS)}; train the run first.")


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    """``RUN/checkpoints/NAME.pt`` (whether or not it exists yet): the one place that path is built."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{name}.pt"


def checkpoint_file(run_dir: str | Path, name: str | None = None) -> Path:
    """``RUN/checkpoints/NAME.pt`` (``"last"``: the resumable ``last.pt``) when the run has it, else its
    :func:`preferred_checkpoint` (a run trained without EMA has no ``best_ema``)."""
    if name:
        path = Path(run_dir) / LAST_CHECKPOINT if name == "last" else checkpoint_path(run_dir, name)
        if path.is_file():
            return path
    return preferred_checkpoint(run_dir)


class RunMetrics:
    """A run's ``metrics.json``, read through names instead of nested keys: :attr:`checkpoints`,
    :attr:`preferred` (the first of :data:`PREFERRED_CHECKPOINTS` it scored), :meth:`split` (one
    checkpoint's scores on one split: ``uar``, ``map``, ``confusion_matrix``, ``per_class_recall``...)."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        self.raw = metrics

    @classmethod
    def of(cls, run_dir: str | Path) -> "RunMetrics":
        return cls(read_json(Path(run_dir) / METRICS))

    @property
    def classes(self) -> list[str]:
        return list(self.raw["classes"])

    @property
    def checkpoints(self) -> list[str]:
        return list(self.raw["checkpoints"])

    @property
    def preferred(self) -> str:
        for name in PREFERRED_CHECKPOINTS:
            if name in self.raw["checkpoints"]:
                return name
        raise KeyError(f"metrics name none of {', '.join(PREFERRED_CHECKPOINTS)} (they hold {self.checkpoints})")

    def splits(self, checkpoint: str) -> dict[str, dict[str, Any]]:
        """Every split's scores of one checkpoint, by split name."""
        try:
            return self.raw["checkpoints"][checkpoint]["splits"]
        except KeyError:
            raise KeyError(f"metrics hold no scores of {checkpoint} (checkpoints: {self.checkpoints})") from None

    def split(self, checkpoint: str, split: str) -> dict[str, Any]:
        try:
            return self.raw["checkpoints"][checkpoint]["splits"][split]
        except KeyError:
            raise KeyError(
                f"metrics hold no {split} scores of {checkpoint} (checkpoints: {self.checkpoints})"
            ) from None
