"""Scan long field recordings with a trained checkpoint: per-window scores, detections, Raven tables.

``python -m helpers scan CHECKPOINT AUDIO_FILE_OR_DIR... --out DIR`` or :func:`scan` in a notebook.

Each recording is read in blocks (:func:`helpers.data.stream.window_batches`: any length, rate,
channel count and format soundfile reads), cut into windows of the model's clip length every
``hop`` seconds (default half a window), and the windows are scored in batches on the device in
any precision :func:`helpers.evaluation.predict.prepare_scorer` offers (fp32, bf16, int8 calibrated
on the training clips stored in the checkpoint). The audio gets exactly the front end the model
was trained with (the checkpoint's ``feature_settings``).

Detections (:func:`helpers.evaluation.detections.detect_events`): a window is a detection of its
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

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.core import run_folder
from helpers.core.fileio import atomic_write, read_json, sha256_file, write_json_atomic
from helpers.core.hardware import configure_threads
from helpers.core.progress import progress_bar
from helpers.core.provenance import library_versions
from helpers.data.annotation_writers import (write_audacity_labels, write_combined_raven_table, write_events_csv,
                                             write_raven_table)
from helpers.data.audio import AudioError
from helpers.data.audio_files import FoundAudio, find_audio_files, read_file_list
from helpers.data.stream import recording_info, window_batches
from helpers.evaluation.detections import DETECTION_SCORES, detect_events
from helpers.evaluation.predict import load_for_inference, prepare_scorer
from helpers.evaluation.scoring import predict_scores
from helpers.features.birdnet import EmbeddingSettings
from helpers.features.front_end import front_end
from helpers.models.hierarchical import MultiTaskModel

#: Bump when what a scan writes for the same inputs changes; part of every fingerprint.
SCAN_VERSION = 1
EVENT_COLUMNS = ["recording", "begin", "end", "label", "score", "n_windows"]
#: How a rerun knows a recording is unchanged: ``stat`` (size and modification time; no audio read) or
#: ``content`` (SHA-256 of the bytes: every file read on every rerun, but a file replaced by another of
#: the same size and time, as ``cp -p`` or ``rsync -a`` can leave it, is rescanned).
FINGERPRINTS = ("stat", "content")
#: A window covering less than this share of the model's window (zero-padded) is never detected.
MIN_WINDOW_FRACTION = 0.5
#: Skipped files named one by one in :meth:`ScanResult.format` (all are in ``OUT/skipped.csv``).
SKIPPED_SHOWN = 10
#: Columns of a scan's recordings table.
RECORDING_COLUMNS = ["recording", "path", "duration", "windows", "detections", "status", "note"]
#: Columns of a scan's errors table (``shard``: the SLURM shard that met it, empty locally).
ERROR_COLUMNS = ["path", "error", "shard"]
#: Per-recording file of the window embeddings ``(windows, dim)`` float16 of a backbone scan.
EMBEDDINGS_SUFFIX = ".embeddings.npy"


@dataclass
class ScanResult:
    """What :func:`scan` did. ``recordings``: one row per recording (``recording`` relative path,
    ``path``, ``duration`` s, ``windows``, ``detections``, ``status``: scanned, resumed, redetected);
    ``errors``: ``path``, ``error``, ``shard``; ``detections``: every event (:data:`EVENT_COLUMNS`);
    ``skipped``: ``path``, ``reason`` of files passed over (not audio) or list entries not found.
    ``audio_seconds`` and ``wall_seconds`` count the recordings scanned by this call only, and
    ``realtime_factor`` is their ratio (NaN when nothing was scanned)."""

    out_dir: Path
    recordings: pd.DataFrame
    errors: pd.DataFrame
    detections: pd.DataFrame
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def format(self) -> str:
        counts = self.recordings["status"].value_counts().to_dict() if len(self.recordings) else {}
        lines = [f"scan: {len(self.recordings)} recording(s) "
                 f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}), "
                 f"{len(self.errors)} could not be read, {len(self.detections)} detection(s) -> {self.out_dir}"]
        if self.settings.get("score_from"):
            lines.append(f"detection score: {describe_detection_score(self.settings['score_from'], self.settings.get('background'))}")
        if self.settings.get("thresholds_from"):
            lines.append(f"thresholds from {self.settings['thresholds_from']}: {self.settings['threshold']}"
                         + (f"; not calibrated, at the given threshold: {', '.join(self.settings['uncalibrated'])}"
                            if self.settings.get("uncalibrated") else ""))
        if self.audio_seconds:
            lines.append(f"scanned {self.audio_seconds / 3600:.2f} h of audio in {self.wall_seconds:.1f} s wall: "
                         f"{self.realtime_factor:.0f}x real time ({self.settings.get('precision')}, "
                         f"{self.settings.get('device')}, {torch.get_num_threads()} threads)")
        lines += [f"not scanned: {e.path}: {e.error}" for e in self.errors.itertuples()]
        if "note" in self.recordings:
            lines += [f"note: {r.path}: {r.note}" for r in self.recordings.itertuples() if r.note]
        lines += [f"skipped: {k.path}: {k.reason}" for k in self.skipped.head(SKIPPED_SHOWN).itertuples()]
        if len(self.skipped) > SKIPPED_SHOWN:
            lines.append(f"... and {len(self.skipped) - SKIPPED_SHOWN} more skipped: all in {self.out_dir / 'skipped.csv'}")
        return "\n".join(lines)


def describe_detection_score(score_from: str, background: str | None) -> str:
    """What the threshold of a scan is applied to, in words (printed and recorded by :func:`scan`)."""
    if score_from == "call":
        return (f"P(call) = 1 - score_{background} (the model's call head), threshold on it; "
                "label: the best species")
    return "the best call class's own score, threshold on it"


def resolve_detection_score(detection_score: str, model, classes: Sequence[str],
                            background: str | None) -> tuple[str, str | None]:
    """``(score_from, background)`` of a scan: ``"auto"`` takes ``"call"`` for a model with a call head
    (its background class from the model) and ``"class"`` otherwise; ``"call"`` needs a background
    class among ``classes``. Raises ValueError naming the fix."""
    if detection_score not in ("auto", *DETECTION_SCORES):
        raise ValueError(f"detection_score must be auto, {' or '.join(DETECTION_SCORES)}, not {detection_score!r}.")
    if isinstance(model, MultiTaskModel):
        head_background = classes[model.background_index]
        if detection_score in ("auto", "call"):
            return "call", head_background
        return "class", background if background in classes else None
    if detection_score == "call":
        if background not in classes:
            raise ValueError(f"detection_score='call' is 1 - score_{background}, and {background!r} is not a class of "
                             f"this model ({', '.join(classes)}); pass background= its no-call class, or "
                             "detection_score='class'.")
        return "call", background
    return "class", background if background in classes else None


def find_recordings(inputs: Sequence[str | Path] = (), file_list: str | Path | None = None,
                    root: str | Path | None = None) -> FoundAudio:
    """The recordings of a scan: files and folders (walked recursively) and the entries of a file list
    (:func:`helpers.data.audio_files.read_file_list`, relative to ``root``), by the project's one audio
    finder; what was passed over is in ``skipped``. Two recordings with one name are an error."""
    found = FoundAudio()
    if inputs:
        found = find_audio_files(list(inputs))
    if file_list is not None:
        listed = read_file_list(file_list, root)
        found = FoundAudio(found.files + listed.files, found.skipped + listed.skipped)
        names: dict[str, Path] = {}
        for path, name in found.files:
            if name in names and names[name] != path:
                raise ValueError(f"{names[name]} and {path} would both be written as {name}; list each recording once")
            names[name] = path
    if not found.files:
        raise FileNotFoundError(f"no recordings to scan: {len(found.skipped)} listed or found entries could not be "
                                "used" + (f" (first: {found.skipped[0][1]})" if found.skipped else
                                          "; pass audio files, folders or --file-list"))
    return found


class ScanWriteError(RuntimeError):
    """The scan folder cannot be written (full disk, no permission): the scan stops; what is finished stays."""


def _write_error(out: Path, what: str, exc: OSError, finished: int) -> ScanWriteError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason, fix = "no space left on the disk", "free some space or scan into another --out"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason, fix = "permission denied", "scan into an --out folder you may write"
    else:
        reason, fix = exc.strerror or str(exc), "check the disk of the output folder"
    return ScanWriteError(f"{out}: {reason} while writing {what}; {fix}. The {finished} recording(s) finished so far "
                          "are kept and a rerun resumes after them.")


def content_sha256(path: Path) -> str:
    """SHA-256 of a recording's bytes (the ``fingerprint="content"`` option)."""
    return sha256_file(path)


def _fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Scanner:
    """The model, front end and settings of one :func:`scan` call."""

    def __init__(self, checkpoint: Path, hop: float | None, precision: str, channel: str | int,
                 threshold: float | dict, background: str | None, merge_gap: float, device: str,
                 batch_size: int, calibration, detection_score: str = "auto",
                 thresholds_from: str | Path | None = None, fingerprint: str = "stat",
                 min_window_fraction: float = MIN_WINDOW_FRACTION) -> None:
        if fingerprint not in FINGERPRINTS:
            raise ValueError(f"fingerprint must be {' or '.join(FINGERPRINTS)}, not {fingerprint!r}.")
        if not 0 <= min_window_fraction <= 1:
            raise ValueError(f"min_window_fraction must lie in [0, 1], not {min_window_fraction!r}.")
        self.fingerprint, self.min_window_fraction = fingerprint, float(min_window_fraction)
        model, self.classes, self.settings, self.score = load_for_inference(checkpoint, device)
        self.score_from, self.background = resolve_detection_score(detection_score, model, self.classes, background)
        self.uncalibrated: list[str] = []
        if thresholds_from is not None:
            # per-class thresholds from reviewed detections; a class without one keeps `threshold`
            from helpers.evaluation.calibration import calibrated_thresholds, read_calibration

            fitted = read_calibration(thresholds_from)
            fallback = None if isinstance(threshold, dict) else float(threshold)
            calls = [c for c in self.classes if c != self.background]
            self.uncalibrated = [c for c in calls if not fitted["classes"].get(c, {}).get("calibrated")]
            threshold = calibrated_thresholds(fitted, self.classes, fallback=fallback, background=self.background)
        self.device = next(model.parameters()).device
        if precision == "int8" and self.device.type != "cpu":
            model, self.device = model.cpu(), torch.device("cpu")
        self.scorer = prepare_scorer(checkpoint, model, self.settings, precision, calibration)
        self.logmel = front_end(self.settings, self.device, num_threads=torch.get_num_threads())
        # A head on a pretrained backbone: each window's embedding is stored, so another head can
        # rescore the scan without the audio (:func:`rescore`).
        self.stores_embeddings = isinstance(self.settings, EmbeddingSettings)
        self.window = self.settings.clip_samples
        self.hop = int(round(hop * self.settings.sample_rate)) if hop else self.window // 2
        if self.hop < 1:
            raise ValueError(f"scan: hop {hop} s is shorter than one sample; use a hop of a few tenths of a second.")
        self.threshold, self.merge_gap, self.batch_size, self.channel = threshold, merge_gap, batch_size, channel
        self.base = {"scan_version": SCAN_VERSION, "checkpoint": sha256_file(checkpoint),
                     "features": self.settings.to_dict(), "hop_samples": self.hop, "precision": precision,
                     "channel": channel, "calibration": None if calibration is None else
                     [str(c) for c in ([calibration] if isinstance(calibration, (str, Path)) else calibration)]}
        self.detect_settings = {"threshold": threshold, "background": self.background, "merge_gap": merge_gap,
                                "score_from": self.score_from}
        if self.min_window_fraction != MIN_WINDOW_FRACTION:
            self.detect_settings["min_window_fraction"] = self.min_window_fraction
        if thresholds_from is not None:
            self.detect_settings.update(thresholds_from=str(thresholds_from), uncalibrated=self.uncalibrated)

    def fingerprints(self, path: Path | None = None, size: int | None = None, mtime_ns: int | None = None,
                     sha256: str | None = None) -> tuple[str, str]:
        """(score, detection) fingerprints of a recording: by its size and modification time (``stat``, the
        default), or by its bytes' SHA-256 (``content``); from its file, or from the values recorded."""
        if self.fingerprint == "content":
            identity = {"sha256": sha256 if sha256 is not None else content_sha256(path)}
        else:
            if path is not None:
                stat = path.stat()
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            identity = {"size": size, "mtime_ns": mtime_ns}
        score_fp = _fingerprint({**self.base, **identity})
        return score_fp, _fingerprint({"scores": score_fp, **self.detect_settings})

    def score_windows(self, features: torch.Tensor) -> np.ndarray:
        return predict_scores(self.scorer, features, batch_size=max(1, len(features)), score=self.score)

    def score_recording(self, path: Path, name: str, bar) -> pd.DataFrame:
        """Per-window scores of one recording (columns recording, begin, end, score_<class>...). With a
        pretrained backbone the window embeddings (float16) are in ``table.attrs["embeddings"]``, and the
        scores are those of the float16-rounded embeddings, so :func:`rescore` gives the same numbers."""
        parts, done, embeddings = [], 0.0, []
        for batch in window_batches(path, self.settings.sample_rate, self.window, self.hop, self.batch_size,
                                    self.channel):
            with torch.inference_mode():
                feats = self.logmel(torch.from_numpy(batch.waves).to(self.device)).float()
            if self.stores_embeddings:
                half = feats.cpu().numpy().astype(np.float16)
                embeddings.append(half)
                feats = torch.from_numpy(half.astype(np.float32)).to(self.device)
            scores = self.score_windows(feats)
            part = pd.DataFrame(scores, columns=[f"score_{c}" for c in self.classes])
            part.insert(0, "end", batch.end)
            part.insert(0, "begin", batch.begin)
            parts.append(part)
            reached = float(batch.end[-1])
            bar.update(max(0.0, reached - done))
            done = max(done, reached)
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "recording", name)
        if self.stores_embeddings:
            table.attrs["embeddings"] = np.concatenate(embeddings)
        return table

    def events(self, windows: pd.DataFrame) -> pd.DataFrame:
        """Detections of the windows; a window mostly of zero padding (a recording shorter than one window
        covers less than ``min_window_fraction`` of it) is scored but never detected: the model never
        heard such a window in training, and the padding's silence alone can pass for a class."""
        seconds = self.window / self.settings.sample_rate
        heard = (windows["end"] - windows["begin"]) >= self.min_window_fraction * seconds - 1e-9
        return detect_events(windows[heard], self.classes, threshold=self.threshold, background=self.background,
                             merge_gap=self.merge_gap, score_from=self.score_from)


def _write_recording_outputs(out: Path, name: str, windows: pd.DataFrame | None, events: pd.DataFrame,
                             scanner: _Scanner, record: dict) -> None:
    """The per-recording files, ``.scan.json`` last (see the module docstring)."""
    base = out / name
    base.parent.mkdir(parents=True, exist_ok=True)
    if windows is not None and "embeddings" in windows.attrs:
        with atomic_write(f"{base}{EMBEDDINGS_SUFFIX}") as fh:
            np.save(fh, windows.attrs["embeddings"], allow_pickle=False)
    if windows is not None:
        with atomic_write(f"{base}.scores.csv", "w") as fh:
            # fixed decimals: %g would round the times of long recordings (0.1 s beyond 10,000 s)
            windows.drop(columns="recording").to_csv(fh, index=False, float_format="%.6f")
    high = scanner.settings.resolved_fmax
    write_raven_table(events, f"{base}.selections.txt", low_freq=scanner.settings.fmin, high_freq=high)
    write_audacity_labels(events, f"{base}.labels.txt")
    write_events_csv(events, f"{base}.detections.csv")
    write_json_atomic(f"{base}.scan.json", record)


def scan(checkpoint: str | Path, inputs: str | Path | Sequence[str | Path] | None, out_dir: str | Path, *,
         hop: float | None = None, precision: str = "fp32", channel: str | int = "mix",
         threshold: float | dict[str, float] = 0.5, background: str | None = "background", merge_gap: float = 0.0,
         device: str = "auto", batch_size: int = 64, calibration=None, num_threads: int | None = None,
         progress: bool = True, detection_score: str = "auto", thresholds_from: str | Path | None = None,
         file_list: str | Path | None = None, root: str | Path | None = None, fingerprint: str = "stat",
         min_window_fraction: float = MIN_WINDOW_FRACTION) -> ScanResult:
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
    the model's window (zero-padded) are scored, never detected.

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
    scanner = _Scanner(checkpoint, hop, precision, channel, threshold, background, merge_gap, device, batch_size,
                       calibration, detection_score, thresholds_from, fingerprint, min_window_fraction)
    try:
        out.mkdir(parents=True, exist_ok=True)
        guard = run_folder.lock(out, wait=False, purpose="a scan", fix="wait for it to end, or scan into another --out")
        guard.__enter__()
    except OSError as exc:
        raise _write_error(out, "the scan folder", exc, 0) from None
    try:
        return _scan_locked(scanner, checkpoint, found, out, progress)
    finally:
        guard.__exit__(None, None, None)


def _finished_record(scanner: _Scanner, path: Path, name: str, out: Path) -> dict | None:
    """The ``.scan.json`` of a recording finished with these score settings, without opening its audio
    under the ``stat`` fingerprint; None when it must be scanned."""
    marker = out / f"{name}.scan.json"
    if not marker.is_file():
        return None
    try:
        previous = read_json(marker)
    except (OSError, ValueError):
        return None
    outputs = [out / f"{name}{suffix}" for suffix in (".scores.csv", ".detections.csv")
               + ((EMBEDDINGS_SUFFIX,) if scanner.stores_embeddings else ())]
    try:
        score_fp, _ = scanner.fingerprints(path)
    except OSError:
        return None
    if previous.get("score_fingerprint") == score_fp and all(p.is_file() for p in outputs):
        return previous
    return None


def recording_note(info: dict, window_seconds: float) -> str:
    """What a scan says of a recording besides its scores: a WAV cut short, one shorter than a window."""
    notes = []
    if info.get("declared_frames"):
        notes.append(f"damaged: its header declares {info['declared_frames'] / info['samplerate']:.2f} s but the file "
                     f"holds {info['duration']:.2f} s; scanned as far as it goes (copy it again for the rest)")
    if info["duration"] < window_seconds:
        notes.append(f"shorter than one window ({info['duration']:.2f} s of {window_seconds:.2f} s): zero-padded and "
                     "scored, never detected")
    return "; ".join(notes)


def _scan_locked(scanner: _Scanner, checkpoint: Path, found: FoundAudio, out: Path, progress: bool) -> ScanResult:
    recordings = found.files
    errors: list[dict] = []
    infos: dict[str, dict] = {}
    finished: dict[str, dict] = {}
    for path, name in recordings:
        previous = _finished_record(scanner, path, name, out)
        if previous is not None:
            finished[name] = previous
            infos[name] = {"duration": previous["duration"], "samplerate": previous.get("sample_rate"),
                           "channels": previous.get("channels")}
            continue
        try:
            infos[name] = recording_info(path)
        except AudioError as exc:
            errors.append({"path": str(path), "error": str(exc), "shard": ""})
    rows, all_events, scanned_seconds, wall = [], [], 0.0, 0.0
    total = sum(i["duration"] for i in infos.values())
    bar = progress_bar(total, desc="scan", unit="s audio", enabled=progress)
    try:
        for path, name in recordings:
            if name not in infos:
                continue
            try:
                row, events, seconds = _scan_one(scanner, path, name, out, infos[name], bar, errors,
                                                 finished.get(name))
            except OSError as exc:
                raise _write_error(out, f"the outputs of {name}", exc, len(rows)) from None
            if row is None:
                continue
            rows.append(row)
            all_events.append(events)
            if row["status"] == "scanned":
                scanned_seconds += row["duration"]
                wall += seconds
    finally:
        bar.close()
    result = ScanResult(out, pd.DataFrame(rows, columns=RECORDING_COLUMNS),
                        pd.DataFrame(errors, columns=ERROR_COLUMNS),
                        pd.concat(all_events, ignore_index=True) if all_events else
                        pd.DataFrame(columns=EVENT_COLUMNS),
                        scanned_seconds, wall,
                        {**scanner.base, **scanner.detect_settings, "device": str(scanner.device),
                         "hop_seconds": scanner.hop / scanner.settings.sample_rate, "checkpoint_path": str(checkpoint),
                         "classes": scanner.classes, "score": scanner.score, "fingerprint": scanner.fingerprint,
                         "detection_score": describe_detection_score(scanner.score_from, scanner.background)},
                        found.skipped_table())
    try:
        _write_combined(result, recordings, infos)
    except OSError as exc:
        raise _write_error(out, "the folder's tables", exc, len(rows)) from None
    return result


def _scan_one(scanner: _Scanner, path: Path, name: str, out: Path, info: dict, bar, errors: list[dict],
              previous: dict | None = None) -> tuple[dict | None, pd.DataFrame | None, float]:
    """Scan (or resume) one recording; ``(summary row, events, wall seconds)``, or ``(None, None, 0)``
    after listing it in ``errors``. ``previous``: its ``.scan.json`` when its scores are current
    (:func:`_finished_record`). Writing errors (OSError) are the caller's."""
    started = time.perf_counter()
    try:
        sha = None
        if scanner.fingerprint == "content":
            sha = previous["sha256"] if previous and previous.get("sha256") else content_sha256(path)
        score_fp, detect_fp = scanner.fingerprints(path, sha256=sha)
        if previous is not None:
            windows = None
            status = "resumed"
            if previous.get("detect_fingerprint") != detect_fp:
                windows = pd.read_csv(out / f"{name}.scores.csv")
                windows.insert(0, "recording", name)
                status = "redetected"
            bar.update(info["duration"])
        else:
            windows, status = scanner.score_recording(path, name, bar), "scanned"
    except (AudioError, OSError, RuntimeError, ValueError) as exc:
        errors.append({"path": str(path), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                       "shard": ""})
        return None, None, 0.0
    if windows is None:
        events = pd.read_csv(out / f"{name}.detections.csv").rename(columns={"file": "recording"})
        events["recording"] = name
        n_windows = previous["windows"]
    else:
        events = scanner.events(windows)
        n_windows = len(windows)
    seconds = time.perf_counter() - started
    note = previous.get("note", "") if previous is not None else recording_note(
        info, scanner.window / scanner.settings.sample_rate)
    if status != "resumed":
        stat = path.stat()
        record = {"recording": name, "path": str(path), "duration": info["duration"], "windows": n_windows,
                  "detections": len(events), "score_fingerprint": score_fp, "detect_fingerprint": detect_fp,
                  "seconds": seconds if status == "scanned" else previous.get("seconds"),
                  "sample_rate": info["samplerate"], "channels": info["channels"],
                  "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "note": note,
                  "embeddings": f"{Path(name).name}{EMBEDDINGS_SUFFIX}" if scanner.stores_embeddings else None}
        if sha is not None:
            record["sha256"] = sha
        _write_recording_outputs(out, name, windows if status == "scanned" else None, events, scanner, record)
    row = {"recording": name, "path": str(path), "duration": info["duration"], "windows": n_windows,
           "detections": len(events), "status": status, "note": note}
    return row, events.reindex(columns=EVENT_COLUMNS), seconds


def _write_combined(result: ScanResult, recordings: list[tuple[Path, str]], infos: dict[str, dict]) -> None:
    """The folder-wide tables and ``scan.json`` (see the module docstring)."""
    out = result.out_dir
    order = {name: (str(path), infos[name]["duration"]) for path, name in recordings
             if name in set(result.recordings["recording"])}
    write_combined_raven_table(result.detections, order, out / "detections.selections.txt",
                               low_freq=result.settings["features"]["fmin"],
                               high_freq=result.settings["features"]["fmax"] or
                               result.settings["features"]["sample_rate"] / 2)
    write_events_csv(result.detections, out / "detections.csv")
    with atomic_write(out / "errors.csv", "w") as fh:
        result.errors.to_csv(fh, index=False)
    with atomic_write(out / "skipped.csv", "w") as fh:
        result.skipped.to_csv(fh, index=False)
    write_json_atomic(out / "scan.json", {
        "settings": result.settings, "versions": library_versions(),
        "summary": {"recordings": len(result.recordings), "errors": len(result.errors),
                    "detections": len(result.detections), "audio_hours_scanned": result.audio_seconds / 3600,
                    "wall_seconds": result.wall_seconds, "realtime_factor": result.realtime_factor,
                    "threads": torch.get_num_threads(),
                    "status": result.recordings["status"].value_counts().to_dict() if len(result.recordings) else {}},
        "recordings": result.recordings.to_dict(orient="records"), "errors": result.errors.to_dict(orient="records"),
        "skipped": result.skipped.to_dict(orient="records")})


def rescore(checkpoint: str | Path, scan_dir: str | Path, out_dir: str | Path | None = None, *,
            threshold: float | dict[str, float] = 0.5, background: str | None = "background", merge_gap: float = 0.0,
            detection_score: str = "auto", device: str = "cpu", progress: bool = True,
            thresholds_from: str | Path | None = None) -> ScanResult:
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
        raise ValueError(f"{scan_dir}: was scanned by a log-mel model, which stores no embeddings; rescoring needs a "
                         "scan made with a head on a pretrained backbone (birdnet-*). Scan the audio again instead.")
    sr = stored["features"]["sample_rate"]
    scanner = _Scanner(checkpoint, stored["hop_samples"] / sr, "fp32", stored.get("channel", "mix"), threshold,
                       background, merge_gap, device, 64, None, detection_score, thresholds_from,
                       stored.get("fingerprint", "stat"), stored.get("min_window_fraction", MIN_WINDOW_FRACTION))
    if scanner.base["features"] != stored["features"]:
        mine = scanner.base["features"]
        raise ValueError(f"{checkpoint}: reads {mine.get('backbone', 'log-mel')} features "
                         f"({mine.get('model_sha256', '')[:12]}), but {scan_dir} stores embeddings of "
                         f"{stored['features']['backbone']} ({stored['features'].get('model_sha256', '')[:12]}); "
                         "rescore with a head trained on the same backbone, or scan the audio again.")
    markers = sorted(p for p in scan_dir.rglob("*.scan.json") if p != summary_path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(out, "the output folder", exc, 0) from None
    with run_folder.lock(out, wait=False, purpose="a scan or rescore",
                         fix="wait for it to end, or rescore into another --out"):
        return _rescore_locked(scanner, checkpoint, scan_dir, out, markers, sr, progress)


def _rescore_locked(scanner: _Scanner, checkpoint: Path, scan_dir: Path, out: Path, markers: list[Path], sr: int,
                    progress: bool) -> ScanResult:
    rows, all_events, errors, order = [], [], [], {}
    started = time.perf_counter()
    bar = progress_bar(len(markers), desc="rescore", unit="recording", enabled=progress)
    try:
        for marker in markers:
            name = marker.relative_to(scan_dir).as_posix()[:-len(".scan.json")]
            record = read_json(marker)
            source = scan_dir / f"{name}{EMBEDDINGS_SUFFIX}"
            times_path = scan_dir / f"{name}.scores.csv"
            bar.update(1)
            if not source.is_file() or not times_path.is_file():
                errors.append({"path": record.get("path", name), "error": f"{source}: no stored embeddings (the "
                               "scan was interrupted, or made before embeddings were stored); scan it again",
                               "shard": ""})
                continue
            embeddings = np.load(source, allow_pickle=False)
            times = pd.read_csv(times_path, usecols=["begin", "end"])
            if len(times) != len(embeddings):
                errors.append({"path": record.get("path", name), "error": f"{source}: {len(embeddings)} embeddings "
                               f"for {len(times)} windows (damaged); scan it again", "shard": ""})
                continue
            scores = scanner.score_windows(torch.from_numpy(embeddings.astype(np.float32)))
            windows = pd.DataFrame(scores, columns=[f"score_{c}" for c in scanner.classes])
            windows.insert(0, "end", times["end"].to_numpy())
            windows.insert(0, "begin", times["begin"].to_numpy())
            windows.insert(0, "recording", name)
            windows.attrs["embeddings"] = embeddings
            events = scanner.events(windows)
            score_fp, detect_fp = scanner.fingerprints(size=record.get("size"), mtime_ns=record.get("mtime_ns"),
                                                       sha256=record.get("sha256"))
            new_record = {**record, "detections": len(events), "score_fingerprint": score_fp,
                          "detect_fingerprint": detect_fp, "rescored_from": str(scan_dir)}
            if out.resolve() == scan_dir.resolve():
                windows.attrs.pop("embeddings")  # already there: do not rewrite hours of embeddings
            (out / f"{name}.scan.json").unlink(missing_ok=True)  # outputs change: the marker goes first
            _write_recording_outputs(out, name, windows, events, scanner, new_record)
            rows.append({"recording": name, "path": record.get("path", name), "duration": record["duration"],
                         "windows": len(windows), "detections": len(events), "status": "rescored",
                         "note": record.get("note", "")})
            all_events.append(events.reindex(columns=EVENT_COLUMNS))
            order[name] = (record.get("path", name), record["duration"])
    finally:
        bar.close()
    wall = time.perf_counter() - started
    result = ScanResult(out, pd.DataFrame(rows, columns=RECORDING_COLUMNS), pd.DataFrame(errors, columns=ERROR_COLUMNS),
                        pd.concat(all_events, ignore_index=True) if all_events else pd.DataFrame(columns=EVENT_COLUMNS),
                        0.0, wall,
                        {**scanner.base, **scanner.detect_settings, "device": str(scanner.device),
                         "hop_seconds": scanner.hop / sr, "checkpoint_path": str(checkpoint),
                         "classes": scanner.classes, "score": scanner.score, "rescored_from": str(scan_dir),
                         "detection_score": describe_detection_score(scanner.score_from, scanner.background)})
    recordings = [(Path(path), name) for name, (path, _) in order.items()]
    _write_combined(result, recordings, {name: {"duration": d} for name, (_, d) in order.items()})
    return result
