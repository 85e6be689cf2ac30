"""An archive scanned as SLURM jobs: shards by duration, one job per shard, reattachable, requeued.

``scan(..., executor="slurm", slurm=OPTIONS, hours_per_job=H)`` (``python -m helpers scan ...
--executor slurm --slurm-config FILE --hours-per-job H``) takes the same options file as the training
grids (:mod:`helpers.experiments.cluster` documents its keys: partition, GPUs, CPUs, memory, time
limit, requeues, array parallelism, setup lines, interpreter; ``folder`` defaults to
``OUT/.slurm``). What happens, and why:

* **Shards by duration.** The recordings a rerun would scan (not finished, header readable; an
  unreadable one is an error row at once) are cut, in the scan's order, into shards of at most
  ``hours_per_job`` hours of audio (a recording longer than that is a shard of its own), submitted
  as one submitit job array; each job scans its shard with the local scan's own code
  (:func:`helpers.recordings.scan_core._scan_locked`), so every per-recording output is exactly a
  local scan's. The folder's tables (combined Raven table, detections, errors, ``scan.json``) are
  built once every shard has ended, from the per-recording outputs, by the same code again.
* **Reattaching.** ``OUT/.slurm/shards.json`` maps each shard to its job (id and the submission's
  unique name) and its recordings. A second call attaches to the shards still queued or running,
  submits nothing for finished recordings, and submits new shards for the rest (a shard whose job
  is gone: failed, cancelled, or the cluster was reset). A live shard written with other scan
  settings makes the call stop with the fix (wait, scancel, or another output folder).
* **Preemption and time limits.** Each job is requeueable (:class:`ScanShardJob` has the
  ``checkpoint`` submitit calls on SLURM's warning signal); requeued, it skips its finished
  recordings and resumes inside the one it was scanning at its last kept batch
  (``NAME.partial.npz``, every minute), so no job is ever too short for its longest file.
* **One bad file never stops a shard**; the errors table names the shard that met it, and a failed
  shard becomes one row per recording it left unfinished, with its job's log paths; the other
  shards go on.
* **Progress**: hours scanned of hours submitted, shards queued / running / done / failed, the rate
  and the time left, one line whenever they change (and at most every ``poll_seconds``).
* **One writer.** The submitting call holds ``OUT/.lock`` while it submits, watches and combines;
  the jobs write only their own recordings' files (atomically) and ``OUT/.slurm/shard-*.json``. A
  local scan into a folder whose shards are still live stops with the fix.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from helpers.core import run_folder
from helpers.core.fileio import read_json, write_json_atomic
from helpers.core.progress import progress_bar
from helpers.core.slurm import (
    SlurmOptions,
    entry_state,
    install_robust_requeue,
    job_error_report,
    progress_category,
    queued_jobs,
    require_slurm,
    slurm_options,
)
from helpers.data.audio import AudioError
from helpers.data.audio_files import FoundAudio
from helpers.recordings.stream import recording_info
from helpers.recordings.scan_core import ScanResult, _finished, _fingerprint, _Scanner, _scan_locked, _write_combined
from helpers.recordings.scan_store import PackStore, open_store

#: The shard map inside the scan folder.
STATE_DIR = ".slurm"
SHARD_MAP = "shards.json"


def plan_shards(recordings: list[tuple[Path, str, float]], hours_per_job: float) -> list[list[tuple[Path, str, float]]]:
    """``(path, name, seconds)`` in order, cut into consecutive shards of at most ``hours_per_job`` hours;
    a recording longer than that is a shard of its own."""
    if not hours_per_job > 0:
        raise ValueError(f"hours_per_job must be > 0, not {hours_per_job!r}")
    limit = hours_per_job * 3600.0
    shards: list[list[tuple[Path, str, float]]] = []
    current: list[tuple[Path, str, float]] = []
    total = 0.0
    for item in recordings:
        if current and total + item[2] > limit:
            shards.append(current)
            current, total = [], 0.0
        current.append(item)
        total += item[2]
    if current:
        shards.append(current)
    return shards


def scanner_settings_key(scanner: _Scanner) -> str:
    """What makes two scans' outputs differ (the score and detection settings), as one short key."""
    return _fingerprint({**scanner.base, **scanner.detect_settings, "fingerprint": scanner.fingerprint})


class ScanShardJob:
    """One shard in a SLURM job: scan these recordings into ``out`` with the scan's settings; returns a
    summary. Requeueable: :meth:`checkpoint` hands submitit the same call, which resumes (finished
    recordings are skipped, a long one resumes at its last kept batch)."""

    def __init__(
        self,
        checkpoint: str,
        files: list[tuple[str, str]],
        out: str,
        scanner_args: dict[str, Any],
        shard: str,
        workdir: str,
        decode_workers: int,
        blocks_in_flight: int,
        threads: int,
        layout: str = "files",
    ) -> None:
        # not self.checkpoint: that name is the method submitit calls on preemption
        self.model_path, self.files, self.out, self.scanner_args = checkpoint, files, out, scanner_args
        self.shard, self.workdir, self.threads = shard, workdir, threads
        self.decode_workers, self.blocks_in_flight, self.layout = decode_workers, blocks_in_flight, layout

    def __call__(self) -> dict[str, Any]:
        install_robust_requeue()
        os.chdir(self.workdir)
        from helpers.core.hardware import configure_threads

        configure_threads(self.threads)
        scanner = _Scanner(Path(self.model_path), **self.scanner_args)
        out = Path(self.out)
        found = FoundAudio([(Path(p), n) for p, n in self.files])
        print(
            f"[slurm job {os.environ.get('SLURM_JOB_ID', '?')}] shard {self.shard}: {len(self.files)} recording(s) "
            f"into {out}",
            flush=True,
        )
        result = _scan_locked(
            scanner,
            Path(self.model_path),
            found,
            out,
            progress=False,
            decode_workers=self.decode_workers,
            blocks_in_flight=self.blocks_in_flight,
            combine=False,
            layout=self.layout,
            pack_prefix=f"shard-{self.shard}",
        )
        errors = [{**e, "shard": self.shard, **_stat(e["path"])} for e in result.errors.to_dict(orient="records")]
        summary = {
            "shard": self.shard,
            "recordings": len(result.recordings),
            "errors": errors,
            "audio_seconds": result.audio_seconds,
            "wall_seconds": result.wall_seconds,
            "decode_wait_seconds": result.decode_wait_seconds,
            "score_seconds": result.score_seconds,
        }
        write_json_atomic(out / STATE_DIR / f"shard-{self.shard}.json", summary)
        return summary

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(
            ScanShardJob(
                self.model_path,
                self.files,
                self.out,
                self.scanner_args,
                self.shard,
                self.workdir,
                self.decode_workers,
                self.blocks_in_flight,
                self.threads,
                self.layout,
            )
        )


def read_shard_map(out: Path) -> dict[str, Any]:
    path = out / STATE_DIR / SHARD_MAP
    if not path.is_file():
        return {"settings": None, "shards": {}}
    try:
        state = read_json(path)
    except ValueError as exc:
        raise ValueError(
            f"{path}: unreadable shard map ({exc}); delete it: shards still queued are then not "
            "attached but their unfinished recordings submitted again (finished ones are kept)"
        ) from None
    return state


def live_shards(out: Path) -> dict[str, dict[str, Any]]:
    """The shards of ``out`` whose jobs are still queued or running ({} without a shard map, or when
    SLURM cannot be asked on this machine)."""
    state = read_shard_map(out)
    if not state["shards"]:
        return {}
    try:
        queue = queued_jobs()
    except RuntimeError:
        return {}
    return {k: v for k, v in state["shards"].items() if entry_state(v, queue) == "live"}


def scan_on_slurm(
    scanner: _Scanner,
    checkpoint: Path,
    found: FoundAudio,
    out: Path,
    scanner_args: dict[str, Any],
    slurm: SlurmOptions | dict | str | Path | None = None,
    hours_per_job: float = 1.0,
    decode_workers: int = 1,
    blocks_in_flight: int = 2,
    progress: bool = True,
    layout: str = "files",
) -> ScanResult:
    """The SLURM scan (module docstring); ``scanner``/``scanner_args``: the scan's settings, built by
    :func:`helpers.recordings.scan.scan`. Returns what a local scan returns, built from the outputs."""
    options = slurm_options(slurm)
    say = (lambda message: print(f"[scan slurm] {message}", flush=True)) if progress else (lambda message: None)
    started = time.time()
    with run_folder.lock(out, wait=False, purpose="a scan", fix="wait for it to end, or scan into another --out"):
        state = read_shard_map(out)
        key = scanner_settings_key(scanner)
        store = open_store(out, layout)
        before = {name for path, name in found.files if _finished(scanner, store, path, name) is not None}
        pending = [(p, n) for p, n in found.files if n not in before]
        errors: list[dict] = []
        watched: list[tuple[str, Any, dict[str, Any]]] = []
        if pending:
            live = {}
            if state["shards"]:
                require_slurm()
                queue = queued_jobs()
                live = {k: v for k, v in state["shards"].items() if entry_state(v, queue) == "live"}
            if live and state.get("settings") != key:
                first = next(iter(live.values()))
                raise ValueError(
                    f"{out}: SLURM job {first['job_id']} and {len(live) - 1} other(s) are scanning into it "
                    "with other settings; wait for them, scancel them, or scan into another --out"
                )
            covered = {n for v in live.values() for n in v["names"]}
            known = _known_errors(out)
            for shard_id, entry in live.items():
                watched.append((shard_id, _attach(entry), entry))
                say(f"attached to SLURM job {entry['job_id']} (shard {shard_id}, {len(entry['names'])} recording(s))")
            state = {"settings": key, "shards": dict(live)}
            to_plan = []
            for path, name in pending:
                if name in covered:
                    continue
                met = known.get(str(path))
                if met is not None and {k: met.get(k) for k in ("size", "mtime_ns")} == _stat(str(path)):
                    errors.append(met)  # a shard met this error in these very bytes: not submitted again
                    continue
                try:
                    to_plan.append((path, name, float(recording_info(path)["duration"])))
                except AudioError as exc:
                    errors.append({"path": str(path), "error": str(exc), "shard": ""})
            shards = plan_shards(to_plan, hours_per_job)
            if shards:
                require_slurm()
                watched += _submit(
                    shards,
                    scanner,
                    checkpoint,
                    out,
                    scanner_args,
                    options,
                    state,
                    decode_workers,
                    blocks_in_flight,
                    say,
                    layout,
                )
            write_json_atomic(out / STATE_DIR / SHARD_MAP, state)
            say(
                f"{len(found.files)} recording(s): {len(before)} finished before, {len(covered)} in live shards, "
                f"{sum(len(s) for s in shards)} submitted in {len(shards)} shard(s) of at most {hours_per_job:g} h"
            )
            errors += _watch(watched, out, options, say, progress, layout)
        for shard_id, _, _ in watched:
            summary = out / STATE_DIR / f"shard-{shard_id}.json"
            if summary.is_file():
                errors += read_json(summary).get("errors", [])
        errors = [{k: e[k] for k in ("path", "error", "shard")} for e in errors]
        result = _scan_locked(
            scanner,
            checkpoint,
            found,
            out,
            progress=False,
            scan_missing=False,
            extra_errors=errors,
            combine=False,
            layout=layout,
        )
        scanned_now = {n for _, n in pending} & set(result.recordings["recording"])
        result.recordings.loc[result.recordings["recording"].isin(scanned_now), "status"] = "scanned"
        seconds = {r.recording: r.duration for r in result.recordings.itertuples()}
        result.audio_seconds = float(sum(seconds[n] for n in scanned_now))
        result.wall_seconds = time.time() - started
        result.settings.update(executor="slurm", hours_per_job=hours_per_job, shards=len(watched))
        result.errors = result.errors.drop_duplicates(subset=["path"], keep="first").reset_index(drop=True)
        infos = {r.recording: {"duration": r.duration} for r in result.recordings.itertuples()}
        _write_combined(result, found.files, infos)
        return result


def _stat(path: str) -> dict[str, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return {"size": None, "mtime_ns": None}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _known_errors(out: Path) -> dict[str, dict[str, Any]]:
    """The errors earlier shards met, by path (the latest shard's), with the size and time of the file then."""
    known: dict[str, dict[str, Any]] = {}
    for summary in sorted((out / STATE_DIR).glob("shard-*.json"), key=lambda p: p.stat().st_mtime_ns):
        try:
            for error in read_json(summary).get("errors", []):
                known[error["path"]] = error
        except (OSError, ValueError):
            continue
    return known


def _attach(entry: dict[str, Any]) -> Any:
    import submitit

    return submitit.SlurmJob(folder=entry["folder"], job_id=str(entry["job_id"]))


def _submit(
    shards: list[list[tuple[Path, str, float]]],
    scanner: _Scanner,
    checkpoint: Path,
    out: Path,
    scanner_args: dict[str, Any],
    options: SlurmOptions,
    state: dict[str, Any],
    decode_workers: int,
    blocks_in_flight: int,
    say: Callable[[str], None],
    layout: str,
) -> list[tuple[str, Any, dict[str, Any]]]:
    import submitit

    token = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    job_name = f"helpers-scan-{token}"
    folder = (Path(options.folder) if options.folder else out / STATE_DIR).resolve() / token
    kwargs: dict[str, Any] = {"slurm_max_num_timeout": options.max_requeues}
    if options.python:
        kwargs["slurm_python"] = options.python
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", **kwargs)
    executor.update_parameters(**options.submitit_parameters(job_name))
    ids = [f"{token}-{i:04d}" for i in range(len(shards))]
    calls = [
        ScanShardJob(
            str(checkpoint.resolve()),
            [(str(p.resolve()), n) for p, n, _ in shard],
            str(out.resolve()),
            scanner_args,
            shard_id,
            os.getcwd(),
            decode_workers,
            blocks_in_flight,
            options.cpus_per_task,
            layout,
        )
        for shard_id, shard in zip(ids, shards)
    ]
    jobs = executor.submit_array(calls)
    watched = []
    for shard_id, shard, job in zip(ids, shards, jobs):
        entry = {
            "job_id": str(job.job_id),
            "name": job_name,
            "folder": str(folder),
            "names": [n for _, n, _ in shard],
            "paths": [str(p) for p, _, _ in shard],
            "seconds": sum(s for _, _, s in shard),
            "durations": [s for _, _, s in shard],
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        state["shards"][shard_id] = entry
        watched.append((shard_id, job, entry))
    say(f"submitted {len(jobs)} shard job(s) as {job_name}; logs in {folder}")
    return watched


def _finished_names(out: Path, layout: str, names: list[str]) -> set[str]:
    """Which of ``names`` a job has finished (their marker, or their pack, is written)."""
    if layout == "packed":
        return set(PackStore(out).index) & set(names)
    return {n for n in names if (out / f"{n}.scan.json").is_file()}


def _watch(
    watched: list[tuple[str, Any, dict[str, Any]]],
    out: Path,
    options: SlurmOptions,
    say: Callable[[str], None],
    progress: bool,
    layout: str,
) -> list[dict]:
    """Wait for the shards' jobs; a progress line whenever the counts change. Returns the error rows of
    failed shards (one per recording they left unfinished). Ctrl-C stops the watching, not the jobs."""
    import submitit

    total = sum(e["seconds"] for _, _, e in watched)
    bar = progress_bar(total, "slurm scan", unit="s audio", enabled=progress, display=False)
    pending = list(watched)
    failed: list[dict] = []
    counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
    shown, t0, done_seconds, last_line = None, time.time(), 0.0, 0.0
    try:
        while pending:
            submitit.SlurmJob.watcher.update()
            for item in list(pending):
                shard_id, job, entry = item
                if not job.done():
                    continue
                pending.remove(item)
                finished = _finished_names(out, layout, entry["names"])
                left = [(p, n) for p, n in zip(entry["paths"], entry["names"]) if n not in finished]
                summary = out / STATE_DIR / f"shard-{shard_id}.json"
                if summary.is_file() and not left:
                    counts["done"] += 1
                    continue
                exception = job.exception()
                state = job.watcher.get_state(job.job_id, mode="force")
                report = job_error_report(exception, state)
                logs = f"{job.paths.stderr} and {job.paths.stdout}"
                reported = {e["path"] for e in read_json(summary).get("errors", [])} if summary.is_file() else set()
                counts["failed" if left else "done"] += 1
                failed += [
                    {
                        "path": p,
                        "error": f"shard {shard_id} (SLURM job {job.job_id}, {state}) ended before "
                        f"scanning it: {report['type']}: {report['message']}; its logs: {logs}; "
                        "run the scan again to submit it anew",
                        "shard": shard_id,
                    }
                    for p, n in left
                    if p not in reported
                ]
                say(
                    f"shard {shard_id} (job {job.job_id}) ended {state} with {len(left)} recording(s) unscanned; "
                    f"logs {logs}"
                )
            finished = _finished_names(out, layout, [n for _, _, e in watched for n in e["names"]])
            seconds = sum(dur for _, _, e in watched for n, dur in zip(e["names"], e["durations"]) if n in finished)
            bar.update(max(0.0, seconds - done_seconds))
            done_seconds = seconds
            for category in ("queued", "running"):
                counts[category] = sum(
                    progress_category(job.watcher.get_state(job.job_id, mode="cache")) == category
                    for _, job, _ in pending
                )
            now = time.time()
            if counts != shown or now - last_line > 60:
                shown, last_line = dict(counts), now
                rate = done_seconds / max(now - t0, 1e-9)
                left_s = (total - done_seconds) / rate if rate > 0 else float("nan")
                say(
                    f"{done_seconds / 3600:.2f} of {total / 3600:.2f} h scanned; {counts['queued']} queued, "
                    f"{counts['running']} running, {counts['done']} done, {counts['failed']} failed; "
                    f"{rate:.0f}x real time" + (f", about {left_s / 60:.0f} min left" if left_s == left_s else "")
                )
            if pending:
                time.sleep(options.poll_seconds)
    except KeyboardInterrupt:
        say(f"stopped watching; the {len(pending)} unfinished shard(s) go on: call scan again to attach to them")
        raise
    finally:
        bar.close()
    return failed


def scanner_arguments(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`~helpers.recordings.scan_core._Scanner` a shard job rebuilds it from
    (checkpoint apart), with paths as strings (the job is pickled)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}


__all__ = [
    "SHARD_MAP",
    "STATE_DIR",
    "ScanShardJob",
    "live_shards",
    "plan_shards",
    "scan_on_slurm",
    "scanner_arguments",
    "scanner_settings_key",
]
