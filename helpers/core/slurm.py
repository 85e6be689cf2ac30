"""SLURM through submitit, the parts every executor shares: options, the queue, job errors, requeue.

Two executors submit work to SLURM: the training grids (:mod:`helpers.experiments.cluster`, one job
per run) and the archive scan (:mod:`helpers.recordings.scan_slurm`, one job per shard of
recordings). They share one options file (:class:`SlurmOptions`, documented in
:mod:`helpers.experiments.cluster`), one way of telling a live job from a stale entry
(:func:`entry_state`: the job id *and* the submission's unique name), one reading of a failed
job's error (:func:`job_error_report`), and a requeue that survives its own SIGTERM
(:func:`install_robust_requeue`).
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: SLURM job states (``squeue``/``sacct``) of a job waiting to run, or waiting to run again.
QUEUED_STATES = frozenset(
    {
        "PENDING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "SUSPENDED",
        "PREEMPTED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
        "STOPPED",
        "RESIZING",
        "UNKNOWN",
    }
)
#: SLURM job states of a job whose process runs.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
#: The categories the progress lines count, in order.
PROGRESS_CATEGORIES = ("queued", "running", "done", "failed")
#: Lines of the remote traceback kept in a failed row's error (the whole one is in the job's log).
TRACEBACK_TAIL_LINES = 15
#: What to do when SLURM's commands are missing.
NO_SLURM_FIX = (
    "executor='slurm' needs SLURM's commands (sbatch, squeue, sacct) on PATH. On a cluster, run from "
    "a login node; on one machine, start a local SLURM as root with `scripts/slurm_local.sh start`, "
    'then `eval "$(scripts/slurm_local.sh env)"` before starting Python or Jupyter.'
)


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how each run's job runs; the keys of the options file (module docstring).

    Units: ``mem_gb`` in GB, ``timeout_min`` in minutes, ``poll_seconds`` in seconds.
    """

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    timeout_min: int = 60
    max_requeues: int = 3
    array_parallelism: int = 32
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    python: str | None = None
    folder: str | None = None
    poll_seconds: float = 5.0

    def submitit_parameters(self, job_name: str) -> dict[str, Any]:
        """The keyword arguments of ``submitit.AutoExecutor.update_parameters`` for these options."""
        params: dict[str, Any] = {
            "name": job_name,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "timeout_min": self.timeout_min,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.additional_parameters:
            params["slurm_additional_parameters"] = dict(self.additional_parameters)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def _check_option(source: str, name: str, value: Any) -> str | None:
    """Why ``value`` is no good for option ``name`` (None when it is fine)."""

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "partition": (lambda v: v is None or (isinstance(v, str) and v != ""), "a partition name or null"),
        "gpus_per_node": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
        "cpus_per_task": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
        "mem_gb": (lambda v: number(v) and v > 0, "a number of GB > 0"),
        "timeout_min": (lambda v: integer(v) and v >= 1, "an integer number of minutes >= 1"),
        "max_requeues": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
        "array_parallelism": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
        "additional_parameters": (
            lambda v: (
                isinstance(v, dict)
                and all(isinstance(k, str) for k in v)
                and all(isinstance(x, (str, int, float, bool)) for x in v.values())
            ),
            'a mapping of sbatch option names to values, e.g. {"account": "proj42"}',
        ),
        "setup": (
            lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            'a list of shell lines, e.g. ["module load cuda"]',
        ),
        "python": (lambda v: v is None or (isinstance(v, str) and v != ""), "a command or null"),
        "folder": (lambda v: v is None or (isinstance(v, str) and v != ""), "a folder path or null"),
        "poll_seconds": (lambda v: number(v) and v > 0, "a number of seconds > 0"),
    }
    ok, expected = checks[name]
    return None if ok(value) else f"{source}: {name} must be {expected}, got {value!r}; fix that value"


def slurm_options_from_mapping(values: dict[str, Any], source: str = "slurm options") -> SlurmOptions:
    """:class:`SlurmOptions` from a mapping, refusing unknown keys and wrong types with ``source`` named."""
    if not isinstance(values, dict):
        raise ValueError(
            f"{source}: expected a mapping of option names to values (a JSON object), got {type(values).__name__}"
        )
    known = [f.name for f in dataclasses.fields(SlurmOptions)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown}; known keys: {known} (helpers/experiments/cluster.py "
            "documents each). An sbatch directive of its own goes into additional_parameters."
        )
    problems = [p for name, value in values.items() if (p := _check_option(source, name, value))]
    if problems:
        raise ValueError("\n".join(problems))
    return SlurmOptions(**values)


def read_slurm_options(path: str | Path) -> SlurmOptions:
    """:class:`SlurmOptions` from a JSON file (``.json``) or a YAML file (``.yaml``/``.yml``).

    Errors name the file, the line (JSON syntax) or the key, and what to write instead.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileNotFoundError(
            f"{path}: cannot read the SLURM options file ({exc}); write one as described in "
            "helpers/experiments/cluster.py, or pass slurm=None for the defaults"
        ) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            values = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); JSON has "
                "no comments or trailing commas, and strings take double quotes"
            ) from None
    return slurm_options_from_mapping(values, str(path))


def slurm_options(value: SlurmOptions | dict | str | Path | None) -> SlurmOptions:
    """The options ``run_grid(..., slurm=value)`` means: defaults (None), a mapping, or a file path."""
    if value is None:
        return SlurmOptions()
    if isinstance(value, SlurmOptions):
        return value
    if isinstance(value, dict):
        return slurm_options_from_mapping(value)
    return read_slurm_options(value)


def queued_jobs() -> dict[str, tuple[str, str]]:
    """This user's jobs in the queue (array tasks one by one): job id -> (job name, state), from ``squeue``."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%j|%T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"squeue failed ({exc}). {NO_SLURM_FIX}") from None
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}. {NO_SLURM_FIX}")
    jobs: dict[str, tuple[str, str]] = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            jobs[parts[0]] = (parts[1], parts[2].upper())
    return jobs


def entry_state(entry: dict[str, Any] | None, queue: dict[str, tuple[str, str]]) -> str:
    """``"live"`` when the queue lists the entry's job id with the entry's job name in a queued or
    running state, ``"gone"`` when it does not (ended, or the id now names another job: a reset
    SLURM restarts ids at 1), ``"none"`` without an entry."""
    if entry is None:
        return "none"
    listed = queue.get(str(entry.get("job_id")))
    if listed is None or listed[0] != entry.get("name") or listed[1] not in QUEUED_STATES | RUNNING_STATES:
        return "gone"
    return "live"


def progress_category(state: str | None) -> str:
    """``"queued"`` or ``"running"`` for a job not done yet, from its SLURM state (None: not seen yet)."""
    return "running" if (state or "").upper().split(" ")[0] in RUNNING_STATES else "queued"


def format_counts(counts: dict[str, int]) -> str:
    """``"3 queued, 1 running, 2 done, 0 failed"``."""
    return ", ".join(f"{counts.get(c, 0)} {c}" for c in PROGRESS_CATEGORIES)


def job_error_report(exception: BaseException | None, state: str | None) -> dict[str, str]:
    """Type, message and traceback tail of a failed job, from submitit's exception.

    ``FailedJobError`` carries the remote traceback between two lines of dashes: its last line
    (``ValueError: unknown model ...``) gives type and message. ``UncompletedJobError`` means the job
    ended without a result (cancelled, time limit without requeue, node failure).
    """
    if exception is None:
        return {
            "type": "JobEndedWithoutRun",
            "message": f"the job ended ({state or 'state unknown'}) without error but the run folder is not finished",
            "traceback": "",
        }
    text = str(exception)
    if type(exception).__name__ == "FailedJobError" and "-" * 22 in text:
        trace = text.split("-" * 22)[1].strip("-\n")
        lines = [line for line in trace.splitlines() if line.strip()]
        last = lines[-1] if lines else text
        kind, sep, message = last.partition(": ")
        if not sep or " " in kind.strip():
            kind, message = "FailedJobError", last
        return {
            "type": kind.strip().rsplit(".", 1)[-1],
            "message": message.strip(),
            "traceback": "\n".join(lines[-TRACEBACK_TAIL_LINES:]),
        }
    lines = text.splitlines()
    return {
        "type": type(exception).__name__,
        "message": lines[0] if lines else text,
        "traceback": "\n".join(lines[1:][-TRACEBACK_TAIL_LINES:]),
    }


def require_slurm() -> None:
    missing = [c for c in ("sbatch", "squeue", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found. {NO_SLURM_FIX}")


def _ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _requeue_ignoring_sigterm(self, countdown: int) -> None:
    """``SlurmJobEnvironment._requeue`` with the ``scontrol`` child immune to the requeue's own SIGTERM."""
    from submitit.core import logger

    subprocess.check_call(["scontrol", "requeue", str(self.job_id)], timeout=60, preexec_fn=_ignore_sigterm)
    logger.get_logger().info(f"Requeued job {self.job_id} ({countdown} remaining timeouts)")  # submitit's own line


def install_robust_requeue() -> None:
    """Make submitit's requeue call survive the SIGTERM it triggers; idempotent. submitit runs
    ``scontrol requeue`` from its signal handler, and the requeue makes SLURM send SIGTERM to the
    job's processes, which can kill that ``scontrol`` before it exits (seen as ``CalledProcessError
    ... died with SIGTERM`` and a failed job). Called first thing in every job."""
    from submitit.slurm import slurm

    slurm.SlurmJobEnvironment._requeue = _requeue_ignoring_sigterm
