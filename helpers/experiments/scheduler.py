"""Several training runs at once: a few per GPU, or a process pool with a thread budget on CPU.

Small models leave most of a large GPU idle, so a grid of runs finishes sooner when several run
side by side on one GPU. :func:`run_trainings` takes a list of :class:`~helpers.training.TrainConfig`
and runs each in its own process, at most ``max_per_gpu`` per visible GPU, or at most
``cpu_workers`` at once on a machine without one, and returns one :class:`RunOutcome` per config,
in the order of the configs::

    from helpers.experiments.scheduler import run_trainings
    outcomes = run_trainings([TrainConfig(model="cnn10", seed=s) for s in range(4)], max_per_gpu=2)
    [(o.status, o.run_dir) for o in outcomes]

Decisions, and why:

* **One fresh process per run** (``python -m helpers.experiments.worker JOB.json`` through
  :mod:`subprocess`), not threads and not a ``ProcessPoolExecutor``. Processes, because each run
  needs its own CUDA context and caching allocator and its own GIL. A fresh process per run,
  because (1) each run gets its own environment (``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``)
  before the interpreter even starts, whereas pool workers share one environment and are reused,
  and a CUDA context cannot move to another GPU once created; (2) a run that kills its
  interpreter (out of memory, a segfault in a kernel) fails alone, whereas one dead pool worker
  breaks the whole pool and every pending future with it; (3) nothing is pickled, so configs
  built in a notebook work (spawn would have to re-import ``__main__``); (4) each run's stdout
  and stderr go to ``RUN/worker.log``.
* **GPU choice by ``CUDA_VISIBLE_DEVICES``**, not ``device="cuda:k"``. The child sees exactly one
  GPU, as ``cuda:0``, and its config says ``device="cuda"``. Code that uses the *current*
  device (``torch.cuda.get_rng_state()`` in the resumable checkpoint, cuDNN handles, a stray
  ``.cuda()``) then lands on the assigned GPU instead of opening a second context on GPU 0.
  GPUs are assigned to free slots, the least loaded first, ties broken round robin. A config
  that names ``cuda:k`` is kept on visible GPU ``k``.
* **Thread budget.** On CPU at most ``cpu_workers`` runs at once (default one per core on <= 2
  cores, measured faster than one run with 2 threads; else half the cores), each with
  ``threads_per_run`` torch threads (default: cores // concurrent runs), set both as
  ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` in the child's environment and as
  ``TrainConfig.num_threads``: on 2 cores an oversubscribed BLAS
  pool can cut throughput about tenfold (docs/reference.md §7). More threads than cores is allowed
  (to measure it) but warned about. GPU runs get the same budget for their host threads.
* **Features are extracted once, in the parent**, before any child starts: for every corpus,
  cache folder and sample rate the launched runs need, :func:`helpers.features.cache.load_features`
  fills the cache (on CPU, as :func:`helpers.training.train` does, so the cache holds the same
  numbers whoever filled it). Cache writes are atomic, so concurrent children could not corrupt
  it, but each would otherwise extract the same features again. Preparing the corpus in the
  parent also builds a named corpus (``demo``, ``synthetic``) once instead of in every child.
  Not pre-computed: the waveform-augmentation banks (``time_stretch``/``pitch_shift``), which
  depend on the run's seed; two runs with the same bank key may both compute it (safely).
* **Finished runs are not started again** (no process at all) unless ``redo=True``: a run is
  finished when its folder has ``metrics.json`` and ``record.json`` and its ``config.json`` has
  the same config key. ``redo=True`` deletes the files :func:`~helpers.training.train` writes in
  the run folder (and nothing else) and trains from scratch.
* **A failed run never disappears**: its outcome says ``"failed"`` with the exception type,
  message and the last lines of the traceback, the same goes to ``RUN/failed.json`` (removed when
  a later attempt succeeds), and the other runs go on. Calling again resumes an unfinished run
  from its ``checkpoints/last.pt``.
* Interrupting the parent (Ctrl-C) terminates the children it started; call again to resume.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from helpers.features.extract import available_cores
from helpers.core import run_folder
from helpers.core.fileio import read_json, write_json_atomic
from helpers.core.provenance import PROJECT_ROOT
from helpers.core.progress import progress_bar
from helpers.training.config import TrainConfig

#: The values :attr:`RunOutcome.status` takes.
OUTCOME_STATUSES = ("finished", "skipped", "failed")
#: Environment variables that size the OpenMP/BLAS thread pools of a child.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: How a child trains: ``"python"`` calls :func:`helpers.training.train`; ``"notebook"`` executes
#: ``notebooks/03_train.ipynb`` through papermill with the config as its parameters, leaving the
#: executed notebook (curves, tables, confusions) in the run folder as ``03_train.ipynb``.
VIA = ("python", "notebook")
#: Seconds between checks on the running children (a run takes seconds to hours; 0.2 s is noise).
POLL_SECONDS = 0.2
#: Seconds a child gets to exit after SIGTERM before it is killed, when the parent is interrupted.
TERMINATE_GRACE_SECONDS = 10.0
#: Lines of worker.log quoted in the error of a child that died without an error report.
LOG_TAIL_LINES = 20


@dataclass
class RunOutcome:
    """What became of one config.

    ``config``: the config as run (with the ``device`` and ``num_threads`` the child got; same
    key and run folder as the one passed in). ``status``: ``"finished"`` (trained now),
    ``"skipped"`` (finished before; not started) or ``"failed"``. ``seconds``: wall-clock time of
    the child process (0 when skipped). ``error``: exception type, message, last traceback lines
    and where to look (None unless failed). ``metrics``: the run's ``metrics.json`` (None when
    failed). ``placement``: ``"cpu"`` or ``"gpu <id>"`` (None when no process ran).
    ``log_path``: the child's stdout and stderr.
    """

    config: TrainConfig
    run_dir: Path
    status: str
    seconds: float
    error: str | None = None
    metrics: dict | None = None
    placement: str | None = None
    log_path: Path | None = None


# --- machine ----------------------------------------------------------------------------------


def default_cpu_workers(cores: int | None = None) -> int:
    """Concurrent CPU runs by default: one per core on <= 2 cores, else cores // 2 (two threads each).

    The small convolutions of these models do not keep two threads busy, so on few cores
    concurrent single-threaded runs use the machine better (measured: docs/benchmarks.md,
    "Concurrent runs").
    """
    cores = cores or available_cores()
    return cores if cores <= 2 else cores // 2


def visible_gpus() -> list[str]:
    """Identifiers of the GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries for children.

    Index ``k`` of the list is what this process calls ``cuda:k``; the entry is what a child's
    ``CUDA_VISIBLE_DEVICES`` must say to see that same GPU (a number or a ``GPU-...`` UUID, taken
    from this process's own ``CUDA_VISIBLE_DEVICES`` when that is set). Empty without CUDA.
    """
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [entry.strip() for entry in listed.split(",") if entry.strip()][:count]


# --- run folders ------------------------------------------------------------------------------


def config_finished(config: TrainConfig) -> bool:
    """True when ``config``'s run folder holds a finished run (:func:`helpers.core.run_folder.is_finished`)
    of this very config: a folder reused by another config (same ``run_name``) is not finished for this one.
    """
    run_dir = config.run_dir()
    if not run_folder.is_finished(run_dir):
        return False
    try:
        stored = TrainConfig.from_dict(read_json(run_dir / run_folder.CONFIG))
    except (OSError, ValueError, TypeError):
        return False  # unreadable or from another version: let train() decide
    return stored.key() == config.key()


def clear_run_folder(run_dir: str | Path) -> None:
    """Delete what a run writes in ``run_dir`` (:func:`helpers.core.run_folder.clear`), under the run
    folder's lock: a folder another process is writing is never cleared (RunFolderBusy instead)."""
    with run_folder.lock(run_dir, wait=False):
        run_folder.clear(run_dir)


# --- the children -----------------------------------------------------------------------------


def start_worker(job_file: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``python -m helpers.experiments.worker job_file`` with ``env``, output to ``log_path``.

    The child inherits the working directory, so relative paths in the config (``out_dir``,
    ``cache_dir``, ``data_dir``) mean the same in both processes. (Tests replace this function.)
    """
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "helpers.experiments.worker", str(job_file)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=os.getcwd(),
        )


def child_environment(threads: int, gpu: str | None, hide_gpus: bool) -> dict[str, str]:
    """The parent's environment with the thread pools sized, the GPU chosen and helpers importable."""
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    elif hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run never opens a CUDA context on a shared GPU
    # the folder holding ``helpers``: the child imports the parent's code even when it is not installed
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"  # worker.log is complete up to the moment a child dies
    env.setdefault("MPLBACKEND", "Agg")  # children draw figures without a display
    return env


@dataclass
class _Job:
    """One config on its way through the scheduler."""

    index: int
    config: TrainConfig
    run_dir: Path
    kind: str  # "cpu" or "gpu"
    pinned_gpu: int | None  # index into the visible GPUs when the config names cuda:k
    threads: int
    gpu: int | None = None
    process: Any = None
    started: float = 0.0
    job_file: Path | None = None
    error_file: Path | None = None


def _device_kind(device: str, n_gpus: int) -> tuple[str, int | None]:
    """("gpu", pinned index or None) when the run should take a GPU slot, else ("cpu", None).

    A CUDA device on a machine without visible GPUs takes a CPU slot unchanged, so that the child
    fails with train()'s own message ("CUDA is not available") instead of being silently moved.
    """
    if n_gpus == 0 or device == "cpu":
        return "cpu", None
    if device in ("auto", "cuda"):
        return "gpu", None
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if index.isdigit() and int(index) < n_gpus:
            return "gpu", int(index)
    return "cpu", None


def _choose_gpu(load: list[int], max_per_gpu: int, pinned: int | None, next_gpu: int) -> int | None:
    """A GPU with a free slot, the least loaded first, ties from ``next_gpu`` on (round robin); None if full."""
    n = len(load)
    candidates = [pinned] if pinned is not None else [(next_gpu + i) % n for i in range(n)]
    free = [g for g in candidates if load[g] < max_per_gpu]
    return min(free, key=lambda g: load[g]) if free else None  # min keeps the first of equals


def _read_error(job: _Job, returncode: int) -> dict:
    """The child's error report, or one made from its exit code and the tail of its log."""
    if job.error_file is not None and job.error_file.is_file():
        try:
            return read_json(job.error_file)
        except ValueError:
            pass
    log = job.run_dir / run_folder.WORKER_LOG
    try:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        tail = "(no log)"
    if returncode < 0:
        why = f"the worker process was killed by signal {-returncode} (9 = SIGKILL: often the out-of-memory killer)"
    elif returncode == 0:
        why = "the worker process exited normally but the run folder has no metrics.json"
    else:
        why = f"the worker process exited with code {returncode} without an error report"
    return {"type": "WorkerDied", "message": why, "traceback": tail}


def _fail(
    job_config: TrainConfig, run_dir: Path, report: dict, seconds: float, placement: str | None, returncode: int | None
) -> RunOutcome:
    """The failed outcome, also written to ``run_dir/failed.json``."""
    log = run_dir / run_folder.WORKER_LOG
    fix = (
        f"see {log} for the whole output; fix the cause and call run_trainings again (an unfinished "
        f"run resumes from {run_dir / run_folder.LAST_CHECKPOINT} when it got that far; redo=True "
        "starts it afresh)"
    )
    error = run_folder.record_failure(
        run_dir,
        report,
        config=job_config.to_dict(),
        seconds=seconds,
        fix=fix,
        returncode=returncode,
        placement=placement,
        log=str(log),
    )
    return RunOutcome(
        config=job_config,
        run_dir=run_dir,
        status="failed",
        seconds=seconds,
        error=error,
        metrics=None,
        placement=placement,
        log_path=log if log.is_file() else None,
    )


# --- features -------------------------------------------------------------------------------


def _precompute_features(jobs: list[_Job], corpus_root: str | None, progress: bool) -> dict[int, dict]:
    """Fill the feature cache for every (corpus, cache folder, sample rate) the jobs need.

    Returns error reports by job index for the jobs whose corpus or features could not be
    prepared (those runs fail without starting; the others go on).
    """
    from helpers.features.cache import load_features

    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        source = ("root", str(corpus_root)) if corpus_root else ("named", job.config.corpus, job.config.data_dir)
        groups.setdefault(source, []).append(job)
    errors: dict[int, dict] = {}
    for source, members in groups.items():
        try:
            # The same call the child makes, so the corpus name (the cache folder) is the same.
            if source[0] == "root":
                from helpers.data.corpus import read_corpus

                corpus = read_corpus(source[1])
            else:
                from helpers.data.corpora.named import prepare_corpus

                corpus = prepare_corpus(source[1], source[2], progress=progress)
            wanted = {(j.config.cache_dir, j.config.feature_settings()) for j in members}
            for cache_dir, settings in sorted(wanted, key=lambda w: (w[0], w[1].key())):
                for split in corpus.splits:
                    load_features(
                        corpus.table, split, settings, cache_dir, corpus.name, device="cpu", progress=progress
                    )
        except Exception as exc:  # reported per run below, never swallowed
            from helpers.experiments.worker import error_report

            report = error_report(exc)
            report["message"] = f"preparing the corpus or its features in the parent failed: {report['message']}"
            for job in members:
                errors[job.index] = report
    return errors


def precompute_features(
    configs: list[TrainConfig], corpus_root: str | None = None, progress: bool = True
) -> dict[int, dict]:
    """Fill the feature cache for ``configs`` in this process, as :func:`run_trainings` does before
    it starts any child (and :mod:`helpers.experiments.cluster` before it submits any job).

    Returns error reports (``type``, ``message``, ``traceback``) by index into ``configs`` for the
    configs whose corpus or features could not be prepared; the others are ready.
    """
    jobs = [
        _Job(index=i, config=c, run_dir=c.run_dir(), kind="cpu", pinned_gpu=None, threads=1)
        for i, c in enumerate(configs)
    ]
    return _precompute_features(jobs, corpus_root, progress)


# --- the scheduler ----------------------------------------------------------------------------


def run_trainings(
    configs: list[TrainConfig],
    max_per_gpu: int = 2,
    cpu_workers: int | None = None,
    threads_per_run: int | None = None,
    corpus_root: str | None = None,
    redo: bool = False,
    progress: bool = True,
    via: str = "python",
) -> list[RunOutcome]:
    """Train every config, several at once, each in its own process; one outcome per config, in order.

    Args:
        configs: the runs; their run folders (``config.run_dir()``) must be distinct.
        max_per_gpu: concurrent runs per visible GPU (runs whose device is ``auto``/``cuda``/``cuda:k``).
        cpu_workers: concurrent runs on the CPU (machines without GPU, or ``device="cpu"``);
            default :func:`default_cpu_workers`.
        threads_per_run: torch/OpenMP/BLAS threads per run; default a config's own
            ``num_threads`` when set, else ``max(1, cores // concurrent runs)``.
        corpus_root: a corpus folder every run reads (``read_corpus``) instead of each config's
            ``corpus``/``data_dir`` (``prepare_corpus``).
        redo: train every run from scratch, finished or not (the files train() writes in its run
            folder are deleted first; other files there are left alone).
        progress: print one line per started, finished, failed or skipped run, and feature progress.
        via: ``"python"`` (call :func:`helpers.training.train` in the child) or ``"notebook"`` (a
            papermill run of ``notebooks/03_train.ipynb`` with the config as parameters; the
            executed notebook stays in the run folder). Both train the same way; the notebook
            costs a few seconds more per run (kernel start-up).

    Returns:
        A :class:`RunOutcome` per config, in the order of ``configs``. Failures are returned (and
        written to ``RUN/failed.json``), not raised; only an error in the arguments raises.
    """
    _check_arguments(configs, max_per_gpu, cpu_workers, threads_per_run, via)
    say = _announcer(progress)
    cores = available_cores()
    cpu_workers = cpu_workers or default_cpu_workers(cores)
    outcomes, to_run = _skip_finished(configs, redo, say)
    if not to_run:
        return list(outcomes)  # type: ignore[arg-type]
    gpus = visible_gpus()
    jobs = _plan_jobs(configs, to_run, len(gpus), cores, max_per_gpu, cpu_workers, threads_per_run)
    say(
        f"{len(configs)} runs: {len(jobs)} to train, {len(configs) - len(jobs)} finished before; "
        f"{len(gpus)} GPU(s) x {max_per_gpu}, {cpu_workers} CPU worker(s), {cores} cores"
    )
    pending = _prepare_jobs(jobs, outcomes, redo, corpus_root, progress, say)
    slots = _Slots(gpus=gpus, max_per_gpu=max_per_gpu, cpu_workers=cpu_workers, gpu_load=[0] * len(gpus))
    _run_jobs(pending, slots, outcomes, corpus_root, via, say)
    return list(outcomes)  # type: ignore[arg-type]


# --- the steps of run_trainings, in order ---------------------------------------------------------


def _check_arguments(
    configs: list[TrainConfig], max_per_gpu: int, cpu_workers: int | None, threads_per_run: int | None, via: str
) -> None:
    """Raise ValueError for arguments run_trainings cannot honour, including two configs sharing a run folder."""
    if via not in VIA:
        raise ValueError(f"via={via!r}; use one of {VIA}")
    if max_per_gpu < 1:
        raise ValueError(f"max_per_gpu must be >= 1, got {max_per_gpu}")
    if cpu_workers is not None and cpu_workers < 1:
        raise ValueError(f"cpu_workers must be >= 1 or None, got {cpu_workers}")
    if threads_per_run is not None and threads_per_run < 1:
        raise ValueError(f"threads_per_run must be >= 1 or None, got {threads_per_run}")
    seen: dict[Path, int] = {}
    for i, config in enumerate(configs):
        folder = config.run_dir().resolve()
        if folder in seen:
            raise ValueError(
                f"configs {seen[folder]} and {i} share the run folder {config.run_dir()}; two runs would "
                "overwrite each other: give them distinct run_name or out_dir, or drop the duplicate."
            )
        seen[folder] = i


def _announcer(progress: bool) -> Callable[[str], None]:
    """The function that prints one ``[run_trainings] ...`` line when ``progress`` is on, else nothing."""

    def say(message: str) -> None:
        if progress:
            print(f"[run_trainings] {message}", flush=True)

    return say


def _skip_finished(
    configs: list[TrainConfig], redo: bool, say: Callable[[str], None]
) -> tuple[list[RunOutcome | None], list[int]]:
    """Decide which configs are finished already (never, with ``redo``).

    Returns the outcomes by config index (``"skipped"`` with the stored metrics for a finished run,
    None for the others) and the indices of the configs still to train, in order.
    """
    outcomes: list[RunOutcome | None] = [None] * len(configs)
    to_run: list[int] = []
    for i, config in enumerate(configs):
        if not redo and config_finished(config):
            outcomes[i] = RunOutcome(
                config=config,
                run_dir=config.run_dir(),
                status="skipped",
                seconds=0.0,
                metrics=read_json(config.run_dir() / run_folder.METRICS),
            )
            say(f"skipped {config.run_dir()} (finished before; redo=True trains it again)")
        else:
            to_run.append(i)
    return outcomes, to_run


def _plan_jobs(
    configs: list[TrainConfig],
    to_run: list[int],
    n_gpus: int,
    cores: int,
    max_per_gpu: int,
    cpu_workers: int,
    threads_per_run: int | None,
) -> list[_Job]:
    """One job per config to train: its slot kind (CPU, or GPU with an optional pin) and thread budget.

    The default budget shares the ``cores`` among the runs that can run at once (CPU workers and
    GPU slots); the config's ``num_threads`` becomes that budget. Warns (RuntimeWarning, pointing at
    the caller of run_trainings) when the concurrent CPU runs ask for more threads than there are cores.
    """
    kinds = {i: _device_kind(configs[i].device, n_gpus) for i in to_run}
    n_cpu = sum(kind == "cpu" for kind, _ in kinds.values())
    cpu_concurrent = min(n_cpu, cpu_workers)
    gpu_concurrent = min(len(to_run) - n_cpu, n_gpus * max_per_gpu)
    default_threads = max(1, cores // max(1, cpu_concurrent + gpu_concurrent))
    jobs: list[_Job] = []
    for i in to_run:
        config = configs[i]
        threads = threads_per_run or config.num_threads or default_threads
        kind, pinned = kinds[i]
        jobs.append(
            _Job(
                index=i,
                config=dataclasses.replace(config, num_threads=threads),
                run_dir=config.run_dir(),
                kind=kind,
                pinned_gpu=pinned,
                threads=threads,
            )
        )
    cpu_threads = sorted((j.threads for j in jobs if j.kind == "cpu"), reverse=True)[:cpu_concurrent]
    if sum(cpu_threads) > cores:
        # stacklevel 3: this function, run_trainings, then the line that called run_trainings
        warnings.warn(
            f"{cpu_concurrent} concurrent CPU runs with {'/'.join(map(str, cpu_threads))} threads each "
            f"oversubscribe the {cores} cores; throughput can collapse (docs/reference.md §7). Lower cpu_workers "
            "or threads_per_run unless this is what you want to measure.",
            RuntimeWarning,
            stacklevel=3,
        )
    return jobs


def _prepare_jobs(
    jobs: list[_Job],
    outcomes: list[RunOutcome | None],
    redo: bool,
    corpus_root: str | None,
    progress: bool,
    say: Callable[[str], None],
) -> list[_Job]:
    """Clear the run folders (``redo``) and fill the feature cache; return the jobs ready to start.

    A job whose corpus or features could not be prepared gets its failed outcome (and failed.json)
    here and is left out.
    """
    if redo:
        for job in jobs:
            clear_run_folder(job.run_dir)
    errors = _precompute_features(jobs, corpus_root, progress)
    for job in jobs:
        if job.index in errors:
            outcomes[job.index] = _fail(job.config, job.run_dir, errors[job.index], 0.0, None, None)
            say(f"FAILED {job.run_dir}: {errors[job.index]['message']}")
    return [job for job in jobs if job.index not in errors]


@dataclass
class _Slots:
    """Where runs may start: ``gpu_load[k]`` runs on visible GPU ``k`` (id ``gpus[k]``) out of
    ``max_per_gpu``, ``cpu_workers`` CPU runs, and the GPU the round robin tries first."""

    gpus: list[str]
    max_per_gpu: int
    cpu_workers: int
    gpu_load: list[int]
    next_gpu: int = 0


def _run_jobs(
    pending: list[_Job],
    slots: _Slots,
    outcomes: list[RunOutcome | None],
    corpus_root: str | None,
    via: str,
    say: Callable[[str], None],
) -> None:
    """Start pending jobs as slots free up and collect the children that exit, until all are done.

    Fills ``outcomes`` by job index. Sleeps :data:`POLL_SECONDS` between rounds in which nothing
    started or ended. On any exception (Ctrl-C included) the running children are stopped first.
    """
    scratch = Path(tempfile.mkdtemp(prefix="run_trainings-"))
    # display=False: say() prints each run; the bar feeds a runner's terminal (runs done, time left)
    runs_bar = progress_bar(len(pending), "grid runs", unit="run", display=False)
    running: list[_Job] = []
    try:
        while pending or running:
            started = _start_pending(pending, running, slots, outcomes, corpus_root, scratch, via, say)
            ended = _collect_exited(running, slots, outcomes, runs_bar, say)
            if not (started or ended):
                time.sleep(POLL_SECONDS)
    except BaseException:
        # Ctrl-C or a bug here: do not leave orphans training in the background.
        _stop(running)
        raise
    finally:
        runs_bar.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _start_pending(
    pending: list[_Job],
    running: list[_Job],
    slots: _Slots,
    outcomes: list[RunOutcome | None],
    corpus_root: str | None,
    scratch: Path,
    via: str,
    say: Callable[[str], None],
) -> bool:
    """Start every pending job that has a free slot, in config order (a full GPU does not hold up CPU runs).

    A started job moves to ``running``; one whose process cannot be started fails here (its slot is
    given back). Returns True when any job left ``pending``.
    """
    changed = False
    for job in list(pending):
        placed = _take_slot(job, running, slots)
        if placed is None:
            continue
        config, gpu_id = placed
        pending.remove(job)
        changed = True
        try:
            _launch(job, config, gpu_id, bool(slots.gpus) and config.device == "cpu", corpus_root, scratch, via)
        except OSError as exc:  # cannot create the run folder or start python at all
            from helpers.experiments.worker import error_report

            if job.gpu is not None:
                slots.gpu_load[job.gpu] -= 1
            outcomes[job.index] = _fail(job.config, job.run_dir, error_report(exc), 0.0, None, None)
            say(f"FAILED to start {job.run_dir}: {exc}")
            continue
        running.append(job)
        say(f"started {job.run_dir} on {_placement(job, slots.gpus)} with {job.threads} thread(s)")
    return changed


def _take_slot(job: _Job, running: list[_Job], slots: _Slots) -> tuple[TrainConfig, str | None] | None:
    """Reserve a slot for ``job``: (the config to launch, the GPU id for CUDA_VISIBLE_DEVICES or None),
    or None when every slot of its kind is taken.

    A GPU job gets the least loaded GPU (its pinned one, if any), counted in ``slots.gpu_load``, and
    its config says ``device="cuda"``: the child sees only that GPU, as cuda:0 (see the module docstring).
    """
    if job.kind == "cpu":
        if sum(j.kind == "cpu" for j in running) >= slots.cpu_workers:
            return None
        return job.config, None
    gpu = _choose_gpu(slots.gpu_load, slots.max_per_gpu, job.pinned_gpu, slots.next_gpu)
    if gpu is None:
        return None
    job.gpu, slots.next_gpu = gpu, (gpu + 1) % len(slots.gpus)
    slots.gpu_load[gpu] += 1
    job.config = dataclasses.replace(job.config, device="cuda")
    return job.config, slots.gpus[gpu]


def _collect_exited(
    running: list[_Job], slots: _Slots, outcomes: list[RunOutcome | None], runs_bar: Any, say: Callable[[str], None]
) -> bool:
    """Collect every running child that has exited: free its slot, record its outcome, advance the bar.

    Returns True when any child exited.
    """
    changed = False
    for job in list(running):
        returncode = job.process.poll()
        if returncode is None:
            continue
        running.remove(job)
        changed = True
        if job.gpu is not None:
            slots.gpu_load[job.gpu] -= 1
        outcome = outcomes[job.index] = _collect(job, returncode, _placement(job, slots.gpus))
        runs_bar.update()
        if outcome.status == "finished":
            say(f"finished {job.run_dir} in {outcome.seconds:.1f} s")
        else:
            say(
                f"FAILED {job.run_dir} after {outcome.seconds:.1f} s: {outcome.error.splitlines()[0]} "
                f"(details in {job.run_dir / run_folder.FAILED})"
            )
    return changed


def _placement(job: _Job, gpus: list[str]) -> str:
    return f"gpu {gpus[job.gpu]}" if job.gpu is not None else "cpu"


def _launch(
    job: _Job,
    config: TrainConfig,
    gpu_id: str | None,
    hide_gpus: bool,
    corpus_root: str | None,
    scratch: Path,
    via: str = "python",
) -> None:
    """Write the job file and start the child for ``job``."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    job.job_file = scratch / f"job-{job.index}.json"
    job.error_file = scratch / f"error-{job.index}.json"
    job.error_file.unlink(missing_ok=True)
    write_json_atomic(
        job.job_file,
        {
            "config": config.to_dict(),
            "error_path": str(job.error_file),
            "via": via,
            "corpus_root": str(Path(corpus_root).resolve()) if corpus_root else None,
        },
    )
    env = child_environment(job.threads, gpu_id, hide_gpus)
    job.started = time.monotonic()
    job.process = start_worker(job.job_file, env, job.run_dir / run_folder.WORKER_LOG)


def _collect(job: _Job, returncode: int, placement: str) -> RunOutcome:
    """The outcome of a child that has exited; updates failed.json either way."""
    seconds = time.monotonic() - job.started
    metrics_path = job.run_dir / run_folder.METRICS
    if returncode == 0 and metrics_path.is_file():
        run_folder.clear_failure(job.run_dir)  # an earlier failure is history now
        return RunOutcome(
            config=job.config,
            run_dir=job.run_dir,
            status="finished",
            seconds=seconds,
            metrics=read_json(metrics_path),
            placement=placement,
            log_path=job.run_dir / run_folder.WORKER_LOG,
        )
    return _fail(job.config, job.run_dir, _read_error(job, returncode), seconds, placement, returncode)


def _stop(running: list[_Job]) -> None:
    """Terminate the children still running (SIGTERM, then SIGKILL after a grace period)."""
    for job in running:
        if job.process.poll() is None:
            job.process.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
    for job in running:
        try:
            job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
