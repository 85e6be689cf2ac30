"""Scan long field recordings with a trained checkpoint: per-window scores, detections, Raven tables.

``python -m helpers scan CHECKPOINT AUDIO_FILE_OR_DIR... --out DIR`` or :func:`scan` in a notebook.

Each recording is read in blocks (:func:`helpers.recordings.stream.window_batches`: any length, rate,
channel count and format soundfile reads), cut into windows of the model's clip length every
``hop`` seconds (default half a window), and the windows are scored in batches on the device in
any precision :func:`helpers.evaluation.predict.prepare_scorer` offers (fp32, bf16, int8 calibrated
on the training clips stored in the checkpoint). The audio gets exactly the front end the model
was trained with (the checkpoint's ``feature_settings``).

Detections (:func:`helpers.recordings.detect.detect_events`): a window is a detection of its
best non-background class when its detection score passes ``threshold`` (one value or one per
class); overlapping or touching windows of one class merge into one event whose score is the
highest window score in it. The detection score (``detection_score``) is the best call class's own
score for a flat model, and for a model with a call head (``hierarchy="multitask"``) its P(call),
``1 - score_background``: the head trained to tell calls from background decides what is a call,
the species head which call it is. ``"auto"`` (default) chooses so; the choice is printed, and
recorded in ``scan.json``.

Outputs, for a recording ``site1/rec.wav`` under a scanned folder (relative paths mirrored)::

    OUT/site1/rec.wav.scores.csv        one row per window: begin, end (s), score_<class>...
    OUT/site1/rec.wav.selections.txt    Raven Pro selection table (a header even without detections)
    OUT/site1/rec.wav.labels.txt        Audacity label track
    OUT/site1/rec.wav.detections.csv    plain CSV: file, begin, end, label, score
    OUT/site1/rec.wav.embeddings.npy    a head on a pretrained backbone only: each window's embedding
                                        (windows, dim) float16, which :func:`rescore` reads
    OUT/site1/rec.wav.scan.json         written last: fingerprints, duration, windows, timings
    OUT/detections.selections.txt       every recording in one multi-file Raven table (Begin Path,
                                        File Offset (s)); OUT/detections.csv the same as CSV
    OUT/errors.csv                      recordings that could not be scanned, with the reason
    OUT/skipped.csv                     files a folder walk passed over (not an audio extension) and
                                        file-list entries not found, with the reason
    OUT/scan.json                       settings, checkpoint checksum, versions, summary, real-time factor
    OUT/.lock, OUT/.lock-owner.json     held while a scan writes the folder: one writer at a time

Recordings come from files, folders (walked recursively) and file lists (an archive listed once;
:func:`helpers.data.audio_files.read_file_list`). A recording is scanned as far as it decodes; a
WAV whose header declares more audio than the file holds, and one shorter than a window, are
scanned with a ``note`` saying so. Windows that are mostly zero padding are never detected.

Resuming: every file is written atomically and a recording's ``.scan.json`` last, holding two
fingerprints. The *score* fingerprint covers the checkpoint's SHA-256, the front end, hop,
precision, channel, calibration and the recording's identity: by default (``fingerprint="stat"``)
its size and modification time, so a rerun over finished recordings opens no audio; with
``fingerprint="content"`` the SHA-256 of its bytes, which reads every file on every rerun but
catches a file replaced by another of the same size and time (``cp -p``, ``rsync -a``). The
*detection* fingerprint adds the threshold, background class, merge gap and detection score. A
rerun skips recordings whose fingerprints match, re-derives detections from the stored scores
when only the detection settings changed, and rescans the rest. An interrupted recording has no
``.scan.json`` and is scanned again.

A head on BirdNET embeddings (:mod:`helpers.models.heads`) reads the audio at 48 kHz in 3-s windows
and scores the float16-rounded embeddings it stores; :func:`rescore` (``python -m helpers rescore
CHECKPOINT SCAN_DIR``) applies another head on the same backbone to a scanned folder from those
files alone, with the same outputs, fingerprints and atomic writes as a scan.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.core import run_folder
from helpers.core.fileio import read_json
from helpers.core.hardware import configure_threads
from helpers.core.progress import progress_bar
from helpers.recordings.scan_core import (
    EMBEDDINGS_SUFFIX,
    ERROR_COLUMNS,
    EVENT_COLUMNS,
    FINGERPRINTS,
    MIN_WINDOW_FRACTION,
    RECORDING_COLUMNS,
    SCAN_VERSION,
    ScanResult,
    ScanWriteError,
    _Scanner,
    _scan_locked,
    _write_combined,
    _write_error,
    describe_detection_score,
    find_recordings,
    resolve_detection_score,
    resolve_layout,
)
from helpers.recordings.scan_store import LAYOUTS, open_store


#: The scan's public names, those of its machinery it passes on included.
__all__ = [
    "EMBEDDINGS_SUFFIX",
    "ERROR_COLUMNS",
    "EVENT_COLUMNS",
    "FINGERPRINTS",
    "LAYOUTS",
    "MIN_WINDOW_FRACTION",
    "RECORDING_COLUMNS",
    "SCAN_VERSION",
    "ScanResult",
    "ScanWriteError",
    "default_decode_workers",
    "describe_detection_score",
    "find_recordings",
    "rescore",
    "resolve_detection_score",
    "scan",
]


def default_decode_workers() -> int:
    """Decoding threads of a scan when not told: one, beside the model's threads, on a machine of two
    cores or more; none on one core."""
    return 1 if (os.cpu_count() or 1) >= 2 else 0


def scan(
    checkpoint: str | Path,
    inputs: str | Path | Sequence[str | Path] | None,
    out_dir: str | Path,
    *,
    hop: float | None = None,
    precision: str = "fp32",
    channel: str | int = "mix",
    threshold: float | dict[str, float] = 0.5,
    background: str | None = "background",
    merge_gap: float = 0.0,
    device: str = "auto",
    batch_size: int = 64,
    calibration=None,
    num_threads: int | None = None,
    progress: bool = True,
    detection_score: str = "auto",
    thresholds_from: str | Path | None = None,
    file_list: str | Path | None = None,
    root: str | Path | None = None,
    fingerprint: str = "stat",
    min_window_fraction: float = MIN_WINDOW_FRACTION,
    decode_workers: int | None = None,
    blocks_in_flight: int = 2,
    executor: str = "local",
    slurm=None,
    hours_per_job: float = 1.0,
    layout: str | None = None,
) -> ScanResult:
    """Scan recordings (files or folders, walked recursively, and/or a ``file_list`` of paths relative to
    ``root``) with ``checkpoint`` into ``out_dir``.

    ``hop``: seconds between window starts (None: half the model's clip length). ``precision``:
    fp32, bf16 or int8 (CPU; calibrated on the checkpoint's stored training clips, or on the audio
    of ``calibration``). ``channel``: ``"mix"`` (average) or a 0-based channel index. ``threshold``:
    a score, or one per non-background class; ``background``: the reject class (never detected;
    ignored when the model has no such class). ``detection_score``: what ``threshold`` applies to,
    ``"auto"`` (P(call) for a model with a call head, else the best call class's score), ``"class"``
    or ``"call"`` (module docstring). ``thresholds_from``: a calibration file
    (:func:`helpers.evaluation.calibration.write_calibration`) whose per-class thresholds replace
    ``threshold``, which stays the threshold of the classes it could not calibrate (named in the
    result's settings, ``uncalibrated``). ``fingerprint``: how a rerun knows a recording is
    unchanged (:data:`FINGERPRINTS`). ``min_window_fraction``: windows shorter than this share of
    the model's window (zero-padded) are scored, never detected. ``decode_workers``: threads that decode
    and resample recordings ahead of the model (:class:`~helpers.recordings.scan_core.Prefetcher`; 0:
    in turn with the scoring; None: :func:`default_decode_workers`), each with at most
    ``blocks_in_flight`` window batches waiting. ``executor="slurm"``: the same scan as SLURM jobs, one per
    shard of at most ``hours_per_job`` hours of audio, with the training grids' options (``slurm``: a
    file, a mapping or None); :mod:`helpers.recordings.scan_slurm` says how it shards, resumes and
    reattaches. ``layout``: ``files`` (per-recording files, the default) or ``packed`` (packs of many
    recordings, for archives on cluster file systems; :mod:`helpers.recordings.scan_store`); a folder
    that holds results goes on in its own.

    Files that cannot be read are listed in the result's ``errors`` (and ``OUT/errors.csv``) and the
    others are scanned; files a walk passed over or a list could not resolve are in ``skipped`` (and
    ``OUT/skipped.csv``); a damaged or short recording is scanned with a ``note``. One process writes
    a scan folder at a time (``OUT/.lock``): a second scan into it stops at once, naming the first.
    A full disk or a folder without write permission stops the scan with :class:`ScanWriteError`
    (one line; what is finished stays). See the module docstring for the outputs and how a rerun resumes.
    """
    checkpoint, out = Path(checkpoint), Path(out_dir)
    items = [] if inputs is None else [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found = find_recordings(items, file_list, root)
    configure_threads(num_threads)
    if executor not in ("local", "slurm"):
        raise ValueError(f"executor must be local or slurm, not {executor!r}")
    args = {
        "hop": hop,
        "precision": precision,
        "channel": channel,
        "threshold": threshold,
        "background": background,
        "merge_gap": merge_gap,
        "device": device,
        "batch_size": batch_size,
        "calibration": calibration,
        "detection_score": detection_score,
        "thresholds_from": thresholds_from,
        "fingerprint": fingerprint,
        "min_window_fraction": min_window_fraction,
    }
    scanner = _Scanner(checkpoint, **args)
    workers = default_decode_workers() if decode_workers is None else int(decode_workers)
    if executor == "slurm":
        from helpers.recordings.scan_slurm import scan_on_slurm, scanner_arguments

        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(out, "the scan folder", exc, 0) from None
        return scan_on_slurm(
            scanner,
            checkpoint,
            found,
            out,
            scanner_arguments(**args),
            slurm,
            hours_per_job,
            workers,
            blocks_in_flight,
            progress,
            resolve_layout(out, layout),
        )
    with ExitStack() as stack:
        try:  # only making and locking the folder: an OSError of the scan itself is not "the scan folder"
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(
                run_folder.lock(out, wait=False, purpose="a scan", fix="wait for it to end, or scan into another --out")
            )
        except OSError as exc:
            raise _write_error(out, "the scan folder", exc, 0) from None
        _refuse_live_shards(out)
        return _scan_locked(scanner, checkpoint, found, out, progress, workers, blocks_in_flight, layout=layout)


def _refuse_live_shards(out: Path) -> None:
    """A local scan must not write a folder that SLURM shards of an earlier call still write."""
    from helpers.recordings.scan_slurm import live_shards  # {} without a shard map

    live = live_shards(out)
    if live:
        first = next(iter(live.values()))
        raise RuntimeError(
            f"{out}: SLURM job {first['job_id']} and {len(live) - 1} other(s) still scan into it; "
            "attach to them with executor='slurm' (--executor slurm), scancel them, or scan into "
            "another --out"
        )


def rescore(
    checkpoint: str | Path,
    scan_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    threshold: float | dict[str, float] = 0.5,
    background: str | None = "background",
    merge_gap: float = 0.0,
    detection_score: str = "auto",
    device: str = "cpu",
    progress: bool = True,
    thresholds_from: str | Path | None = None,
) -> ScanResult:
    """Scores and detections of a scanned folder with another head on the same backbone, from the window
    embeddings the scan stored: no audio is read and the backbone does not run.

    ``scan_dir``: a :func:`scan` output made with a head on a pretrained backbone. ``out_dir`` (default
    ``scan_dir``): where the outputs go, in :func:`scan`'s layout, atomically, each recording's
    ``.scan.json`` last, with the fingerprints a scan with ``checkpoint`` would write (so scanning the same
    audio with it afterwards resumes instead of rescanning). Refuses a checkpoint whose backbone or
    backbone settings differ from the scan's. A recording without stored embeddings is listed in ``errors``.
    ``thresholds_from``: per-class thresholds from a calibration file, as in :func:`scan`.
    """
    checkpoint, scan_dir = Path(checkpoint), Path(scan_dir)
    out = Path(out_dir) if out_dir is not None else scan_dir
    summary_path = scan_dir / "scan.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: not found; rescore reads a folder written by scan (--out DIR).")
    stored = read_json(summary_path)["settings"]
    if not isinstance(stored.get("features"), dict) or "backbone" not in stored["features"]:
        raise ValueError(
            f"{scan_dir}: was scanned by a log-mel model, which stores no embeddings; rescoring needs a "
            "scan made with a head on a pretrained backbone (birdnet-*). Scan the audio again instead."
        )
    sr = stored["features"]["sample_rate"]
    scanner = _Scanner(
        checkpoint,
        stored["hop_samples"] / sr,
        "fp32",
        stored.get("channel", "mix"),
        threshold,
        background,
        merge_gap,
        device,
        64,
        None,
        detection_score,
        thresholds_from,
        stored.get("fingerprint", "stat"),
        stored.get("min_window_fraction", MIN_WINDOW_FRACTION),
    )
    if scanner.base["features"] != stored["features"]:
        mine = scanner.base["features"]
        raise ValueError(
            f"{checkpoint}: reads {mine.get('backbone', 'log-mel')} features "
            f"({mine.get('model_sha256', '')[:12]}), but {scan_dir} stores embeddings of "
            f"{stored['features']['backbone']} ({stored['features'].get('model_sha256', '')[:12]}); "
            "rescore with a head trained on the same backbone, or scan the audio again."
        )
    source = open_store(scan_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(out, "the output folder", exc, 0) from None
    with run_folder.lock(
        out, wait=False, purpose="a scan or rescore", fix="wait for it to end, or rescore into another --out"
    ):
        target = source if out.resolve() == scan_dir.resolve() else open_store(out, resolve_layout(out, source.layout))
        return _rescore_locked(scanner, checkpoint, scan_dir, source, target, out, sr, progress)


def _rescore_locked(
    scanner: _Scanner, checkpoint: Path, scan_dir: Path, source, target, out: Path, sr: int, progress: bool
) -> ScanResult:
    rows, all_events, errors, order = [], [], [], {}
    started = time.perf_counter()
    records = source.records()
    bar = progress_bar(len(records), desc="rescore", unit="recording", enabled=progress)
    in_place = target is source
    try:
        for name, record in records.items():
            bar.update(1)
            embeddings = source.read_embeddings(name) if source.complete(name, True) else None
            if embeddings is None:
                errors.append(
                    {
                        "path": record.get("path", name),
                        "error": f"{scan_dir}: no stored embeddings of {name} "
                        "(the scan was interrupted, or made before embeddings were stored); scan it again",
                        "shard": "",
                    }
                )
                continue
            times = source.read_windows(name)[["begin", "end"]]
            if len(times) != len(embeddings):
                errors.append(
                    {
                        "path": record.get("path", name),
                        "error": f"{scan_dir}: {len(embeddings)} embeddings "
                        f"of {name} for {len(times)} windows (damaged); scan it again",
                        "shard": "",
                    }
                )
                continue
            scores = scanner.score_windows(torch.from_numpy(embeddings.astype(np.float32)))
            windows = pd.DataFrame(scores, columns=[f"score_{c}" for c in scanner.classes])
            windows.insert(0, "end", times["end"].to_numpy())
            windows.insert(0, "begin", times["begin"].to_numpy())
            windows.insert(0, "recording", name)
            windows.attrs["embeddings"] = embeddings
            events = scanner.events(windows)
            score_fp, detect_fp = scanner.fingerprints(
                size=record.get("size"), mtime_ns=record.get("mtime_ns"), sha256=record.get("sha256")
            )
            new_record = {
                **record,
                "detections": len(events),
                "score_fingerprint": score_fp,
                "detect_fingerprint": detect_fp,
                "rescored_from": str(scan_dir),
            }
            new_record.pop("rows", None)
            # in place, the files layout keeps its embeddings file (hours of them are not rewritten)
            target.write(
                name,
                windows,
                events,
                new_record,
                scanner.settings.fmin,
                scanner.settings.resolved_fmax,
                embeddings_unchanged=in_place,
            )
            rows.append(
                {
                    "recording": name,
                    "path": record.get("path", name),
                    "duration": record["duration"],
                    "windows": len(windows),
                    "detections": len(events),
                    "status": "rescored",
                    "note": record.get("note", ""),
                }
            )
            all_events.append(events.reindex(columns=EVENT_COLUMNS))
            order[name] = (record.get("path", name), record["duration"])
        target.close()
    finally:
        bar.close()
    wall = time.perf_counter() - started
    result = ScanResult(
        out,
        pd.DataFrame(rows, columns=RECORDING_COLUMNS),
        pd.DataFrame(errors, columns=ERROR_COLUMNS),
        pd.concat(all_events, ignore_index=True) if all_events else pd.DataFrame(columns=EVENT_COLUMNS),
        0.0,
        wall,
        {
            **scanner.base,
            **scanner.detect_settings,
            "device": str(scanner.device),
            "hop_seconds": scanner.hop / sr,
            "checkpoint_path": str(checkpoint),
            "classes": scanner.classes,
            "score": scanner.score,
            "rescored_from": str(scan_dir),
            "layout": target.layout,
            "detection_score": describe_detection_score(scanner.score_from, scanner.background),
        },
    )
    recordings = [(Path(path), name) for name, (path, _) in order.items()]
    _write_combined(result, recordings, {name: {"duration": d} for name, (_, d) in order.items()})
    return result
