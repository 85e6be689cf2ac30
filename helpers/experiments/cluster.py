"""Grids on a SLURM cluster through submitit: one job per run, requeued on preemption, reattachable.

:func:`helpers.experiments.grid.run_grid` with ``executor="slurm"`` hands its configs to
:func:`run_on_slurm`, which returns one :class:`~helpers.experiments.scheduler.RunOutcome` per
config, as the local scheduler does, so the grid's table is built the same way::

    from helpers.experiments.grid import run_grid
    table = run_grid(configs, executor="slurm", slurm="slurm.json")   # or a dict, or None (defaults)

The options (:class:`SlurmOptions`) come from a small JSON (or YAML) file, set once per cluster;
every key is optional (defaults in brackets)::

    {
      "partition": "gpu",              # SLURM partition [the cluster's default]
      "gpus_per_node": 1,              # GPUs per job [0]
      "cpus_per_task": 4,              # CPU cores per job; also the run's torch threads [2]
      "mem_gb": 16,                    # memory per job, GB [8]
      "timeout_min": 240,              # time limit per job, minutes; a job that reaches it is requeued
                                       #   and resumes from its last checkpoint [60]
      "max_requeues": 3,               # how often one run may be requeued after a time limit [3]
      "array_parallelism": 16,         # at most this many of the grid's jobs run at once [32]
      "additional_parameters": {"account": "proj42", "qos": "normal"},  # any other #SBATCH directive [{}]
      "setup": ["module load cuda/12.4"],  # shell lines run in the job before Python [[]]
      "python": "/shared/envs/primates/bin/python",  # Python on the nodes [this interpreter]
      "folder": "runs/grid/paper/submitit",  # submitit folder [<out_dir of the first config>/submitit]
      "poll_seconds": 10               # seconds between two looks at the queue [5]
    }

Where things appear (``FOLDER`` is ``folder``)::

    FOLDER/jobs.json                    run folder -> its job: id, job name, submission folder, config key
    FOLDER/<submission>/                one folder per submission (a call that submitted jobs):
        <job id>_0_log.out / .err       each job's stdout and stderr (the failed row names them)
        <job id>_submitted.pkl, ..._result.pkl   submitit's pickles
    RUN/...                             the run folders, exactly as with the local executor

Decisions, and why:

* **One SLURM job per run**, submitted as one job array per call (``array_parallelism`` caps how
  many run at once). A run is the unit that finishes, fails or is retried, as locally.
* **Features are extracted once, in the submitting process**, into the shared feature cache
  (:func:`helpers.experiments.scheduler.precompute_features`), before any job is submitted: the
  jobs then only read it. A run whose features cannot be prepared fails without a job.
* **A finished run folder is never resubmitted** (``redo=True`` cancels the run's job if it is
  still queued or running, clears the folder and submits it again).
* **The grid's state is the run folders plus the submitit folder**, so the notebook can be closed
  (Ctrl-C stops watching, never the jobs) and a later call attaches: a run whose job is still
  queued or running is watched again instead of submitted twice; a failed or vanished job's run is
  submitted again and resumes from its ``checkpoints/last.pt``, as a failed local run does.
* **Stale entries.** A SLURM whose state was reset restarts job ids at 1, so a job id alone may
  name another job, and a reused submitit folder would hand back an earlier job's result. So every
  submission gets a fresh folder and a unique job name (``helpers-grid-<time>-<random>``), and an
  entry of ``jobs.json`` counts only while ``squeue`` lists its id *with its name*.
* **Preemption and time limits**: each job is a :class:`~helpers.experiments.slurm_job.TrainingJob`
  (a ``submitit.helpers.Checkpointable``): on SLURM's warning signal submitit requeues it and
  it resumes from ``RUN/checkpoints/last.pt`` (see :mod:`helpers.experiments.slurm_job`).
* **A failed job is a failed row**: its error (type, message, the remote traceback's last lines)
  and the job's log paths, also in ``RUN/failed.json``; the other jobs go on.
* **Progress**: a progress bar over the runs and one line whenever the counts of queued, running,
  done and failed jobs change. Job states come from submitit's watcher (one ``sacct`` call per
  look for all jobs); whether a job finished comes from its run folder and its result, never from
  the state alone (states lag).
* **Accounting is needed**: without ``slurmdbd`` submitit cannot tell that a job died without a
  result (cancelled, time limit) and waits for ever. Real clusters have it; the local test
  cluster (``scripts/slurm_local.sh``) starts it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from helpers.core import run_folder
from helpers.core.fileio import read_json, write_json_atomic
from helpers.core.slurm import (
    PROGRESS_CATEGORIES,
    SlurmOptions,
    entry_state,
    format_counts,
    job_error_report,
    progress_category,
    queued_jobs,
    require_slurm,
    slurm_options,
)
from helpers.core.progress import progress_bar
from helpers.experiments.scheduler import RunOutcome, clear_run_folder, config_finished, precompute_features
from helpers.training.config import TrainConfig

#: The job map's file name inside the submitit folder.
JOB_MAP = "jobs.json"
#: Seconds :func:`run_on_slurm` waits for a cancelled job to let go of its run folder (``redo``).
CANCEL_GRACE_SECONDS = 60.0


def submitit_folder(configs: list[TrainConfig], options: SlurmOptions) -> Path:
    """The submitit folder (absolute): ``options.folder``, else ``<out_dir of the first config>/submitit``."""
    if options.folder:
        return Path(options.folder).resolve()
    if not configs:
        raise ValueError("no configs and no folder in the SLURM options: nothing says where the submitit folder is")
    return (Path(configs[0].out_dir) / "submitit").resolve()


# --- the job map ----------------------------------------------------------------------------------


def read_job_map(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``FOLDER/jobs.json``: resolved run folder -> ``{"job_id", "name", "folder", "key", "submitted"}``
    ({} when there is none yet)."""
    path = Path(folder) / JOB_MAP
    if not path.is_file():
        return {}
    try:
        entries = read_json(path)
    except ValueError as exc:
        raise ValueError(
            f"{path}: unreadable job map ({exc}); delete it: jobs still queued are then not attached "
            "but submitted again (finished runs are kept)"
        ) from None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a JSON object of run folder -> job; delete the file to start afresh")
    return entries


def write_job_map(folder: str | Path, entries: dict[str, dict[str, Any]]) -> Path:
    """Write ``FOLDER/jobs.json`` atomically (a reader never sees half a file)."""
    path = Path(folder) / JOB_MAP
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, entries)
    return path


def job_entry(job_id: str, job_name: str, submission_folder: Path, config: TrainConfig) -> dict[str, Any]:
    """One job map entry: what identifies the job (id *and* the submission's unique name) and its run."""
    return {
        "job_id": str(job_id),
        "name": job_name,
        "folder": str(submission_folder),
        "key": config.key(),
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "submitted_unix": round(time.time(), 3),
    }


# --- outcomes -------------------------------------------------------------------------------------


def failed_outcome(
    config: TrainConfig,
    report: dict[str, str],
    seconds: float,
    job_id: str | None = None,
    state: str | None = None,
    logs: tuple[Path, Path] | None = None,
) -> RunOutcome:
    """The failed outcome of ``config``'s run, also written to ``RUN/failed.json``.

    ``logs``: the job's (stderr, stdout) files; None when no job ran (its features failed).
    """
    run_dir = config.run_dir()
    where = (
        f"SLURM job {job_id} ended {state or '(state unknown)'}; its logs: {logs[0]} and {logs[1]}"
        if job_id is not None and logs is not None
        else "no SLURM job ran"
    )
    fix = (
        f"fix the cause and call run_grid again: the run is submitted again and resumes from "
        f"{run_dir / run_folder.LAST_CHECKPOINT} when it got that far (redo=True starts it afresh)"
    )
    error = run_folder.record_failure(
        run_dir,
        report,
        config=config.to_dict(),
        seconds=seconds,
        fix=fix,
        where=where,
        returncode=None,
        placement=f"slurm job {job_id}" if job_id else None,
        slurm_job_id=job_id,
        slurm_state=state,
        log=str(logs[0]) if logs else None,
        logs=[str(p) for p in logs] if logs else [],
    )
    return RunOutcome(
        config=config,
        run_dir=run_dir,
        status="failed",
        seconds=seconds,
        error=error,
        metrics=None,
        placement=f"slurm job {job_id}" if job_id else None,
        log_path=logs[0] if logs else None,
    )


def finished_outcome(config: TrainConfig, seconds: float, job_id: str, log: Path | None) -> RunOutcome:
    """The outcome of a run whose job finished it (an earlier failed.json is history now)."""
    run_dir = config.run_dir()
    run_folder.clear_failure(run_dir)
    return RunOutcome(
        config=config,
        run_dir=run_dir,
        status="finished",
        seconds=seconds,
        metrics=read_json(run_dir / run_folder.METRICS),
        placement=f"slurm job {job_id}",
        log_path=log,
    )


# --- running --------------------------------------------------------------------------------------


@dataclass
class _Watched:
    """A job being watched: its config index, submitit job and when it was submitted (time.time())."""

    index: int
    job: Any
    submitted: float


def run_on_slurm(
    configs: list[TrainConfig],
    slurm: SlurmOptions | dict | str | Path | None = None,
    redo: bool = False,
    corpus_root: str | None = None,
    progress: bool = True,
    via: str = "python",
) -> list[RunOutcome]:
    """Train every config as one SLURM job; one outcome per config, in order (see the module docstring).

    Args:
        configs: the runs; their run folders must be distinct (``run_grid`` ensures it).
        slurm: the options: a :class:`SlurmOptions`, a mapping, a JSON/YAML file, or None (defaults).
        redo: train every run from scratch (a queued or running job of the run is cancelled first).
        corpus_root: a corpus folder every run reads instead of each config's named corpus.
        progress: print the submission and the counts of queued, running, done and failed jobs.
        via: ``"python"`` or ``"notebook"`` (the job executes ``03_train`` through papermill).

    Returns:
        A :class:`RunOutcome` per config: ``finished`` (its job finished it now), ``skipped``
        (finished before) or ``failed`` (``error`` with the job's log paths; also in ``RUN/failed.json``).
        ``seconds`` is the wall time from submission to the end seen here (queueing included).
    """
    options = slurm_options(slurm)
    if not redo and all(config_finished(c) for c in configs):
        # nothing to submit or watch: the table needs no SLURM (e.g. reopened on a laptop)
        return [
            RunOutcome(
                config=c,
                run_dir=c.run_dir(),
                status="skipped",
                seconds=0.0,
                metrics=read_json(c.run_dir() / run_folder.METRICS),
            )
            for c in configs
        ]
    require_slurm()
    say = (lambda message: print(f"[run_grid slurm] {message}", flush=True)) if progress else (lambda message: None)
    folder = submitit_folder(configs, options)
    entries = read_job_map(folder)
    queue = queued_jobs()
    outcomes: list[RunOutcome | None] = [None] * len(configs)
    watched: list[_Watched] = []
    to_submit: list[int] = []
    for i, config in enumerate(configs):
        key = str(config.run_dir().resolve())
        entry = entries.get(key)
        state = entry_state(entry, queue)
        if state == "live" and entry.get("key") != config.key():
            raise ValueError(
                f"{folder / JOB_MAP}: SLURM job {entry['job_id']} is writing {config.run_dir()} for "
                "another config; wait for it, scancel it, or give this config another run_name or out_dir"
            )
        if redo:
            if state == "live":
                _cancel_and_wait(entry, config, say)
            entries.pop(key, None)
            _clear_when_free(config)
            to_submit.append(i)
        elif config_finished(config):
            outcomes[i] = RunOutcome(
                config=config,
                run_dir=config.run_dir(),
                status="skipped",
                seconds=0.0,
                metrics=read_json(config.run_dir() / run_folder.METRICS),
            )
            say(f"skipped {config.run_dir()} (finished before; redo=True trains it again)")
        elif state == "live":
            watched.append(_Watched(i, _attach(entry), float(entry.get("submitted_unix", time.time()))))
            say(f"attached to SLURM job {entry['job_id']} ({queue[entry['job_id']][1].lower()}) of {config.run_dir()}")
        else:
            if state == "gone":
                say(
                    f"job {entry['job_id']} of {config.run_dir()} is no longer queued (ended, or the cluster was "
                    "reset); submitting the run again"
                )
                entries.pop(key, None)
            to_submit.append(i)
    say(
        f"{len(configs)} runs: {len(to_submit)} to submit, {len(watched)} already queued or running, "
        f"{sum(o is not None for o in outcomes)} finished before; submitit folder {folder}"
    )
    if to_submit:
        watched += _submit(configs, to_submit, options, folder, entries, outcomes, corpus_root, via, progress, say)
    if watched:
        _watch(configs, watched, outcomes, options, say, progress)
    return list(outcomes)  # type: ignore[arg-type]


def _attach(entry: dict[str, Any]) -> Any:
    """The submitit job of a live job map entry (its own submission folder: no stale results)."""
    import submitit

    return submitit.SlurmJob(folder=entry["folder"], job_id=str(entry["job_id"]))


def _cancel_and_wait(entry: dict[str, Any], config: TrainConfig, say: Callable[[str], None]) -> None:
    subprocess.run(["scancel", str(entry["job_id"])], capture_output=True, timeout=60)
    say(f"cancelled SLURM job {entry['job_id']} of {config.run_dir()} (redo)")


def _clear_when_free(config: TrainConfig) -> None:
    """Clear the run folder, waiting up to :data:`CANCEL_GRACE_SECONDS` for a cancelled job to let go of it."""
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    while True:
        try:
            clear_run_folder(config.run_dir())
            return
        except run_folder.RunFolderBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _submit(
    configs: list[TrainConfig],
    indices: list[int],
    options: SlurmOptions,
    folder: Path,
    entries: dict[str, dict[str, Any]],
    outcomes: list[RunOutcome | None],
    corpus_root: str | None,
    via: str,
    progress: bool,
    say: Callable[[str], None],
) -> list[_Watched]:
    """Fill the feature cache, then submit one job per config (one array) and record them in the job map."""
    import submitit

    from helpers.experiments.slurm_job import TrainingJob

    errors = precompute_features([configs[i] for i in indices], corpus_root, progress)
    ready = []
    for position, i in enumerate(indices):
        if position in errors:
            outcomes[i] = failed_outcome(configs[i], errors[position], 0.0)
            say(f"FAILED {configs[i].run_dir()} before submission: {errors[position]['message']}")
        else:
            ready.append(i)
    if not ready:
        return []
    token = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    job_name = f"helpers-grid-{token}"
    submission = folder / token
    executor_kwargs: dict[str, Any] = {"slurm_max_num_timeout": options.max_requeues}
    if options.python:
        executor_kwargs["slurm_python"] = options.python
    executor = submitit.AutoExecutor(folder=submission, cluster="slurm", **executor_kwargs)
    executor.update_parameters(**options.submitit_parameters(job_name))
    corpus = str(Path(corpus_root).resolve()) if corpus_root else None
    calls = []
    for i in ready:
        config = configs[i]
        run_config = dataclasses.replace(config, num_threads=config.num_threads or options.cpus_per_task)
        calls.append(TrainingJob(run_config.to_dict(), corpus, os.getcwd(), via))
    jobs = executor.submit_array(calls)
    now = time.time()
    for i, job in zip(ready, jobs):
        entries[str(configs[i].run_dir().resolve())] = job_entry(job.job_id, job_name, submission, configs[i])
    write_job_map(folder, entries)
    say(
        f"submitted {len(jobs)} job(s) as {job_name} ({', '.join(j.job_id for j in jobs[:3])}"
        f"{', ...' if len(jobs) > 3 else ''}); logs in {submission}"
    )
    return [_Watched(i, job, now) for i, job in zip(ready, jobs)]


def _watch(
    configs: list[TrainConfig],
    watched: list[_Watched],
    outcomes: list[RunOutcome | None],
    options: SlurmOptions,
    say: Callable[[str], None],
    progress: bool,
) -> None:
    """Wait for the watched jobs, filling ``outcomes``; a line whenever the counts change.

    Ctrl-C stops the watching only: the jobs go on, and a later call attaches to them.
    """
    import submitit

    # display=False: say() prints the counts; the bar feeds a runner's terminal (runs done, time left)
    bar = progress_bar(len(watched), "slurm jobs", unit="run", enabled=progress, display=False)
    counts = {c: 0 for c in PROGRESS_CATEGORIES}
    shown: dict[str, int] | None = None
    pending = list(watched)
    try:
        while pending:
            submitit.SlurmJob.watcher.update()  # one sacct call for every job of this process
            for item in list(pending):
                if not item.job.done():
                    continue
                pending.remove(item)
                outcome = outcomes[item.index] = _collect(configs[item.index], item)
                counts["done" if outcome.status == "finished" else "failed"] += 1
                bar.update()
                if outcome.status == "failed":
                    say(
                        f"FAILED {outcome.run_dir}: {outcome.error.splitlines()[0]} (details in "
                        f"{outcome.run_dir / run_folder.FAILED})"
                    )
            for category in ("queued", "running"):
                counts[category] = sum(progress_category(_state(item.job)) == category for item in pending)
            if counts != shown:
                shown = dict(counts)
                bar.set_postfix(counts)
                say(format_counts(counts))
            if pending:
                time.sleep(options.poll_seconds)
    except KeyboardInterrupt:
        say(f"stopped watching; the {len(pending)} unfinished job(s) go on: call run_grid again to attach to them")
        raise
    finally:
        bar.close()


def _state(job: Any) -> str:
    """The job's last known SLURM state (no extra call: the watcher updated this round)."""
    return job.watcher.get_state(job.job_id, mode="cache")


def _collect(config: TrainConfig, item: _Watched) -> RunOutcome:
    """The outcome of a run whose job is done: finished when its run folder is, else failed with the job's error."""
    job = item.job
    seconds = time.time() - item.submitted
    logs = (Path(job.paths.stderr), Path(job.paths.stdout))
    if config_finished(config):
        return finished_outcome(config, seconds, job.job_id, logs[1])
    exception = job.exception()
    if type(exception).__name__ == "FailedJobError":
        state = "FAILED (the training raised)"  # the result says so; the queue's state may still lag
    else:
        state = job.watcher.get_state(job.job_id, mode="force")
    return failed_outcome(config, job_error_report(exception, state), seconds, job.job_id, state, logs)
