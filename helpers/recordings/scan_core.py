"""The scan's machinery, one recording at a time: the scanner (model, front end, fingerprints),
finding what is finished, the per-recording outputs and the folder's tables. :mod:`helpers.recordings.scan`
documents the outputs and the resume rules; :func:`helpers.recordings.scan.scan` runs this locally and
:mod:`helpers.recordings.scan_slurm` as SLURM shards.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.core.fileio import atomic_write, sha256_file, write_json_atomic
from helpers.core.progress import progress_bar
from helpers.core.provenance import library_versions
from helpers.data.annotations.writers import (
    write_combined_raven_table,
    write_events_csv,
)
from helpers.data.audio import AudioError
from helpers.data.audio_files import FoundAudio, check_names, find_audio_files, read_file_list
from helpers.recordings.stream import recording_info, window_batches
from helpers.recordings.scan_store import EMBEDDINGS_SUFFIX, LAYOUTS, FileStore, layout_of, open_store  # noqa: F401
from helpers.recordings.detect import DETECTION_SCORES, EVENT_COLUMNS, detect_events
from helpers.evaluation.predict import load_for_inference, prepare_scorer
from helpers.evaluation.scoring import predict_scores
from helpers.features.birdnet import EmbeddingSettings
from helpers.features.front_end import front_end
from helpers.models.hierarchical import MultiTaskModel

#: Bump when what a scan writes for the same inputs changes; part of every fingerprint.
SCAN_VERSION = 1
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
    decode_wait_seconds: float = 0.0  # the model waiting for audio (decoding not ahead of it)
    score_seconds: float = 0.0  # front end and model

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def format(self) -> str:
        counts = self.recordings["status"].value_counts().to_dict() if len(self.recordings) else {}
        lines = [
            f"scan: {len(self.recordings)} recording(s) "
            f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}), "
            f"{len(self.errors)} could not be read, {len(self.detections)} detection(s) -> {self.out_dir}"
        ]
        if self.settings.get("score_from"):
            lines.append(
                "detection score: "
                + describe_detection_score(self.settings["score_from"], self.settings.get("background"))
            )
        if self.settings.get("thresholds_from"):
            lines.append(
                f"thresholds from {self.settings['thresholds_from']}: {self.settings['threshold']}"
                + (
                    f"; not calibrated, at the given threshold: {', '.join(self.settings['uncalibrated'])}"
                    if self.settings.get("uncalibrated")
                    else ""
                )
            )
        if self.audio_seconds:
            lines.append(
                f"scanned {self.audio_seconds / 3600:.2f} h of audio in {self.wall_seconds:.1f} s wall: "
                f"{self.realtime_factor:.0f}x real time ({self.settings.get('precision')}, "
                f"{self.settings.get('device')}, {torch.get_num_threads()} threads)"
            )
        lines += [f"not scanned: {e.path}: {e.error}" for e in self.errors.itertuples()]
        if "note" in self.recordings:
            lines += [f"note: {r.path}: {r.note}" for r in self.recordings.itertuples() if r.note]
        lines += [f"skipped: {k.path}: {k.reason}" for k in self.skipped.head(SKIPPED_SHOWN).itertuples()]
        if len(self.skipped) > SKIPPED_SHOWN:
            lines.append(
                f"... and {len(self.skipped) - SKIPPED_SHOWN} more skipped: all in {self.out_dir / 'skipped.csv'}"
            )
        return "\n".join(lines)


def describe_detection_score(score_from: str, background: str | None) -> str:
    """What the threshold of a scan is applied to, in words (printed and recorded by :func:`scan`)."""
    if score_from == "call":
        return f"P(call) = 1 - score_{background} (the model's call head), threshold on it; label: the best species"
    return "the best call class's own score, threshold on it"


def resolve_detection_score(
    detection_score: str, model, classes: Sequence[str], background: str | None
) -> tuple[str, str | None]:
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
            raise ValueError(
                f"detection_score='call' is 1 - score_{background}, and {background!r} is not a class of "
                f"this model ({', '.join(classes)}); pass background= its no-call class, or "
                "detection_score='class'."
            )
        return "call", background
    return "class", background if background in classes else None


def find_recordings(
    inputs: Sequence[str | Path] = (), file_list: str | Path | None = None, root: str | Path | None = None
) -> FoundAudio:
    """The recordings of a scan: files and folders (walked recursively) and the entries of a file list
    (:func:`helpers.data.audio_files.read_file_list`, relative to ``root``), by the project's one audio
    finder; what was passed over is in ``skipped``. Two recordings with one name are an error."""
    found = FoundAudio()
    if inputs:
        found = find_audio_files(list(inputs))
    if file_list is not None:
        listed = read_file_list(file_list, root)
        found = FoundAudio(found.files + listed.files, found.skipped + listed.skipped)
        check_names(found.files)
    if not found.files:
        raise FileNotFoundError(
            f"no recordings to scan: {len(found.skipped)} listed or found entries could not be "
            "used"
            + (f" (first: {found.skipped[0][1]})" if found.skipped else "; pass audio files, folders or --file-list")
        )
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
    return ScanWriteError(
        f"{out}: {reason} while writing {what}; {fix}. The {finished} recording(s) finished so far "
        "are kept and a rerun resumes after them."
    )


def _fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Scanner:
    """The model, front end and settings of one :func:`scan` call."""

    def __init__(
        self,
        checkpoint: Path,
        hop: float | None,
        precision: str,
        channel: str | int,
        threshold: float | dict,
        background: str | None,
        merge_gap: float,
        device: str,
        batch_size: int,
        calibration,
        detection_score: str = "auto",
        thresholds_from: str | Path | None = None,
        fingerprint: str = "stat",
        min_window_fraction: float = MIN_WINDOW_FRACTION,
    ) -> None:
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
        self.base = {
            "scan_version": SCAN_VERSION,
            "checkpoint": sha256_file(checkpoint),
            "features": self.settings.to_dict(),
            "hop_samples": self.hop,
            "precision": precision,
            "channel": channel,
            "calibration": None
            if calibration is None
            else [str(c) for c in ([calibration] if isinstance(calibration, (str, Path)) else calibration)],
        }
        self.detect_settings = {
            "threshold": threshold,
            "background": self.background,
            "merge_gap": merge_gap,
            "score_from": self.score_from,
        }
        if self.min_window_fraction != MIN_WINDOW_FRACTION:
            self.detect_settings["min_window_fraction"] = self.min_window_fraction
        if thresholds_from is not None:
            self.detect_settings.update(thresholds_from=str(thresholds_from), uncalibrated=self.uncalibrated)

    def fingerprints(
        self, path: Path | None = None, size: int | None = None, mtime_ns: int | None = None, sha256: str | None = None
    ) -> tuple[str, str]:
        """(score, detection) fingerprints of a recording: by its size and modification time (``stat``, the
        default), or by its bytes' SHA-256 (``content``); from its file, or from the values recorded."""
        if self.fingerprint == "content":
            identity = {"sha256": sha256 if sha256 is not None else sha256_file(path)}
        else:
            if path is not None:
                stat = path.stat()
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            identity = {"size": size, "mtime_ns": mtime_ns}
        score_fp = _fingerprint({**self.base, **identity})
        return score_fp, _fingerprint({"scores": score_fp, **self.detect_settings})

    def score_windows(self, features: torch.Tensor) -> np.ndarray:
        return predict_scores(self.scorer, features, batch_size=max(1, len(features)), score=self.score)

    def batches(self, path: Path):
        """The window batches of one recording, decoded, mixed down and resampled for this model."""
        return window_batches(path, self.settings.sample_rate, self.window, self.hop, self.batch_size, self.channel)

    def score_recording(
        self,
        path: Path,
        name: str,
        bar,
        batches=None,
        partial: Path | None = None,
        partial_key: str = "",
        timer: "DecodeTimer | None" = None,
    ) -> pd.DataFrame:
        """Per-window scores of one recording (columns recording, begin, end, score_<class>...). With a
        pretrained backbone the window embeddings (float16) are in ``table.attrs["embeddings"]``, and the
        scores are those of the float16-rounded embeddings, so :func:`rescore` gives the same numbers.

        ``batches``: its window batches (default: decoded here, in turn with the scoring; a
        :class:`Prefetcher` decodes them ahead). ``partial``: a file where the windows scored so far
        are kept every :data:`PARTIAL_EVERY_S` seconds under ``partial_key`` (the score fingerprint); a
        scan interrupted in a long recording resumes scoring at its last kept batch (the audio before
        it is decoded again, which keeps the samples, hence the scores, identical)."""
        done_parts, done_emb = _read_partial(partial, partial_key, self.batch_size) if partial else ([], [])
        parts, done, embeddings = [], 0.0, []
        last_saved = time.perf_counter()
        iterator = iter(batches if batches is not None else self.batches(path))
        k = 0
        while True:
            waited = time.perf_counter()
            batch = next(iterator, None)
            if timer is not None:
                timer.wait += time.perf_counter() - waited
            if batch is None:
                break
            if k < len(done_parts):  # scored before the interruption
                part = done_parts[k]
                if self.stores_embeddings:
                    embeddings.append(done_emb[k])
            else:
                scored = time.perf_counter()
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
                if timer is not None:
                    timer.score += time.perf_counter() - scored
            parts.append(part)
            k += 1
            reached = float(batch.end[-1])
            bar.update(max(0.0, reached - done))
            done = max(done, reached)
            if partial is not None and time.perf_counter() - last_saved > PARTIAL_EVERY_S:
                _write_partial(
                    partial, partial_key, self.batch_size, parts, embeddings if self.stores_embeddings else None
                )
                last_saved = time.perf_counter()
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
        return detect_events(
            windows[heard],
            self.classes,
            threshold=self.threshold,
            background=self.background,
            merge_gap=self.merge_gap,
            score_from=self.score_from,
        )


#: Seconds of scoring between two saves of a long recording's windows so far (``NAME.partial.npz``).
PARTIAL_EVERY_S = 60.0
PARTIAL_SUFFIX = ".partial.npz"


def _write_partial(
    path: Path, key: str, batch_size: int, parts: list[pd.DataFrame], embeddings: list[np.ndarray] | None
) -> None:
    table = pd.concat(parts, ignore_index=True)
    arrays = {
        "key": np.array(key),
        "batch_size": np.array(batch_size),
        "n_batches": np.array(len(parts)),
        "sizes": np.array([len(p) for p in parts]),
        "columns": np.array(list(table.columns)),
        "values": table.to_numpy(np.float64),
    }
    if embeddings is not None:
        arrays["embeddings"] = np.concatenate(embeddings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def _read_partial(path: Path, key: str, batch_size: int) -> tuple[list[pd.DataFrame], list[np.ndarray]]:
    """The batches a partial file keeps, when it was written with this key and batch size; else none."""
    if path is None or not path.is_file():
        return [], []
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or int(data["batch_size"]) != batch_size:
                return [], []
            sizes, columns, values = data["sizes"], list(data["columns"]), data["values"]
            embeddings = data["embeddings"] if "embeddings" in data else None
    except (OSError, ValueError, KeyError):
        return [], []
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    parts = [pd.DataFrame(values[a:b], columns=columns) for a, b in zip(bounds[:-1], bounds[1:])]
    return parts, [embeddings[a:b] for a, b in zip(bounds[:-1], bounds[1:])] if embeddings is not None else []


class DecodeTimer:
    """Seconds the scan's model waited for audio (``wait``) and spent scoring (``score``)."""

    def __init__(self) -> None:
        self.wait = 0.0
        self.score = 0.0


class Prefetcher:
    """Decoding, mixing down and resampling ahead of the model: ``workers`` threads each decode one
    recording at a time, in the scan's order, into a queue of at most ``depth`` window batches, so
    at most ``workers * depth`` batches are in memory; the model takes them recording by recording.
    ``workers=0`` decodes in the model's thread, in turn with the scoring. Threads suffice: libsndfile
    (through CFFI) and soxr release the GIL while they work. An error while decoding reaches the
    consumer as the exception it was, where that recording's batches are read; a recording the
    consumer leaves early (its generator closed) stops its worker, which takes the next one."""

    _END = object()

    def __init__(self, scanner: _Scanner, paths: list[Path], workers: int, depth: int = 2) -> None:
        if workers < 0 or depth < 1:
            raise ValueError(f"decode_workers must be >= 0 and the batches in flight >= 1, not {workers}, {depth}")
        self.scanner, self.paths, self.workers, self.depth = scanner, list(paths), int(workers), int(depth)
        self.slots: list[tuple[queue.Queue, threading.Event]] = []
        self.pool = None
        if self.workers:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scan-decode")

    def _fill(self, path: Path, q: queue.Queue, cancel: threading.Event) -> None:
        try:
            for batch in self.scanner.batches(path):
                while not cancel.is_set():
                    try:
                        q.put(batch, timeout=0.2)
                        break
                    except queue.Full:  # the model is behind
                        continue
                if cancel.is_set():
                    return
            q.put(self._END)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    def _start_until(self, index: int) -> None:
        """Recordings up to ``index + workers - 1`` are being decoded (or were)."""
        while len(self.slots) < len(self.paths) and len(self.slots) < index + self.workers:
            q, cancel = queue.Queue(maxsize=self.depth), threading.Event()
            self.slots.append((q, cancel))
            self.pool.submit(self._fill, self.paths[len(self.slots) - 1], q, cancel)

    def batches(self, index: int):
        """The batches of ``paths[index]``; call for 0, 1, 2... in order."""
        if not self.workers:
            yield from self.scanner.batches(self.paths[index])
            return
        self._start_until(index)
        q, cancel = self.slots[index]
        try:
            while True:
                item = q.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # done with it, or left early: its worker goes on to the next recording
            self._start_until(index + 1)

    def close(self) -> None:
        if self.pool is not None:
            for _, cancel in self.slots:
                cancel.set()
            self.pool.shutdown(wait=True, cancel_futures=True)


def _finished(scanner: _Scanner, store, path: Path, name: str) -> dict | None:
    """The record of a recording finished with these score settings (without opening its audio under the
    ``stat`` fingerprint); None when it must be scanned."""
    previous = store.record(name)
    if previous is None or not store.complete(name, scanner.stores_embeddings):
        return None
    try:
        score_fp, _ = scanner.fingerprints(path)
    except OSError:
        return None
    return previous if previous.get("score_fingerprint") == score_fp else None


def recording_note(info: dict, window_seconds: float) -> str:
    """What a scan says of a recording besides its scores: a WAV cut short, one shorter than a window."""
    notes = []
    if info.get("declared_frames"):
        notes.append(
            f"damaged: its header declares {info['declared_frames'] / info['samplerate']:.2f} s but the file "
            f"holds {info['duration']:.2f} s; scanned as far as it goes (copy it again for the rest)"
        )
    if info["duration"] < window_seconds:
        notes.append(
            f"shorter than one window ({info['duration']:.2f} s of {window_seconds:.2f} s): zero-padded and "
            "scored, never detected"
        )
    return "; ".join(notes)


def resolve_layout(out: Path, layout: str | None) -> str:
    """The layout a scan of ``out`` writes: the folder's own when it holds results, else ``layout``
    (default ``files``); asking for the other one of a folder that holds results is an error."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be {' or '.join(LAYOUTS)}, not {layout!r}")
    present = layout_of(out)
    has_results = present == "packed" or (
        out.is_dir() and any(p != out / "scan.json" for p in out.rglob("*.scan.json"))
    )
    if layout is not None and has_results and present != layout:
        raise ValueError(
            f"{out}: holds a scan in the {present} layout; scan into another --out for the {layout} "
            f"one, or leave --layout out to go on in {present}"
        )
    return present if has_results else (layout or "files")


def _scan_locked(
    scanner: _Scanner,
    checkpoint: Path,
    found: FoundAudio,
    out: Path,
    progress: bool,
    decode_workers: int = 0,
    blocks_in_flight: int = 2,
    scan_missing: bool = True,
    extra_errors: list[dict] | None = None,
    combine: bool = True,
    layout: str | None = None,
    pack_prefix: str | None = None,
) -> ScanResult:
    """Scan what is not finished (with ``scan_missing``; else list it in ``extra_errors``' terms), read back
    what is, and write the folder's tables (``combine``), in the folder's ``layout``."""
    recordings = found.files
    store = open_store(out, resolve_layout(out, layout), pack_prefix)
    errors: list[dict] = list(extra_errors or [])
    infos: dict[str, dict] = {}
    finished: dict[str, dict] = {}
    failed_paths = {e["path"] for e in errors}
    for path, name in recordings:
        previous = _finished(scanner, store, path, name)
        if previous is not None:
            finished[name] = previous
            infos[name] = {
                "duration": previous["duration"],
                "samplerate": previous.get("sample_rate"),
                "channels": previous.get("channels"),
            }
            continue
        if not scan_missing:
            if str(path) not in failed_paths:
                errors.append(
                    {"path": str(path), "error": "not scanned: no job finished it; run the scan again", "shard": ""}
                )
            continue
        try:
            infos[name] = recording_info(path)
        except AudioError as exc:
            errors.append({"path": str(path), "error": str(exc), "shard": ""})
    to_scan = [(path, name) for path, name in recordings if name in infos and name not in finished]
    prefetch = Prefetcher(scanner, [p for p, _ in to_scan], decode_workers, blocks_in_flight)
    position = {name: i for i, (_, name) in enumerate(to_scan)}
    timer = DecodeTimer()
    rows, all_events, scanned_seconds, wall = [], [], 0.0, 0.0
    total = sum(i["duration"] for i in infos.values())
    bar = progress_bar(total, desc="scan", unit="s audio", enabled=progress)
    try:
        for path, name in recordings:
            if name not in infos:
                continue
            batches = prefetch.batches(position[name]) if name in position else None
            try:
                row, events, seconds = _scan_one(
                    scanner, store, path, name, out, infos[name], bar, errors, finished.get(name), batches, timer
                )
            except OSError as exc:
                raise _write_error(out, f"the outputs of {name}", exc, len(rows)) from None
            finally:
                if batches is not None:
                    batches.close()
            if row is None:
                continue
            rows.append(row)
            all_events.append(events)
            if row["status"] == "scanned":
                scanned_seconds += row["duration"]
                wall += seconds
        try:
            store.close()
        except OSError as exc:
            raise _write_error(out, "the last pack", exc, len(rows)) from None
    finally:
        bar.close()
        prefetch.close()
    result = ScanResult(
        out,
        pd.DataFrame(rows, columns=RECORDING_COLUMNS),
        pd.DataFrame(errors, columns=ERROR_COLUMNS),
        pd.concat(all_events, ignore_index=True) if all_events else pd.DataFrame(columns=EVENT_COLUMNS),
        scanned_seconds,
        wall,
        {
            **scanner.base,
            **scanner.detect_settings,
            "device": str(scanner.device),
            "hop_seconds": scanner.hop / scanner.settings.sample_rate,
            "checkpoint_path": str(checkpoint),
            "classes": scanner.classes,
            "score": scanner.score,
            "fingerprint": scanner.fingerprint,
            "decode_workers": decode_workers,
            "blocks_in_flight": blocks_in_flight,
            "layout": store.layout,
            "detection_score": describe_detection_score(scanner.score_from, scanner.background),
        },
        found.skipped_table(),
        timer.wait,
        timer.score,
    )
    if combine:
        try:
            _write_combined(result, recordings, infos)
        except OSError as exc:
            raise _write_error(out, "the folder's tables", exc, len(rows)) from None
    return result


def _scan_one(
    scanner: _Scanner,
    store,
    path: Path,
    name: str,
    out: Path,
    info: dict,
    bar,
    errors: list[dict],
    previous: dict | None = None,
    batches=None,
    timer: DecodeTimer | None = None,
) -> tuple[dict | None, pd.DataFrame | None, float]:
    """Scan (or resume) one recording; ``(summary row, events, wall seconds)``, or ``(None, None, 0)``
    after listing it in ``errors``. ``previous``: its ``.scan.json`` when its scores are current
    (:func:`_finished`); ``batches``: its window batches when decoded ahead. Writing errors
    (OSError) are the caller's."""
    started = time.perf_counter()
    partial = out / f"{name}{PARTIAL_SUFFIX}"
    try:
        sha = None
        if scanner.fingerprint == "content":
            sha = previous["sha256"] if previous and previous.get("sha256") else sha256_file(path)
        score_fp, detect_fp = scanner.fingerprints(path, sha256=sha)
        if previous is not None:
            windows = None
            status = "resumed"
            if previous.get("detect_fingerprint") != detect_fp:
                windows = store.read_windows(name)
                status = "redetected"
            bar.update(info["duration"])
        else:
            windows = scanner.score_recording(path, name, bar, batches, partial, score_fp, timer)
            status = "scanned"
    except (AudioError, OSError, RuntimeError, ValueError) as exc:
        errors.append(
            {"path": str(path), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__, "shard": ""}
        )
        return None, None, 0.0
    if windows is None:
        events = store.read_events(name)
        n_windows = previous["windows"]
    else:
        events = scanner.events(windows)
        n_windows = len(windows)
    seconds = time.perf_counter() - started
    note = (
        previous.get("note", "")
        if previous is not None
        else recording_note(info, scanner.window / scanner.settings.sample_rate)
    )
    if status != "resumed":
        stat = path.stat()
        record = {
            "recording": name,
            "path": str(path),
            "duration": info["duration"],
            "windows": n_windows,
            "detections": len(events),
            "score_fingerprint": score_fp,
            "detect_fingerprint": detect_fp,
            "seconds": seconds if status == "scanned" else previous.get("seconds"),
            "sample_rate": info["samplerate"],
            "channels": info["channels"],
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "note": note,
            "embeddings": f"{Path(name).name}{EMBEDDINGS_SUFFIX}" if scanner.stores_embeddings else None,
        }
        if sha is not None:
            record["sha256"] = sha
        store.write(
            name,
            windows if status == "scanned" else None,
            events,
            record,
            scanner.settings.fmin,
            scanner.settings.resolved_fmax,
        )
        partial.unlink(missing_ok=True)
    row = {
        "recording": name,
        "path": str(path),
        "duration": info["duration"],
        "windows": n_windows,
        "detections": len(events),
        "status": status,
        "note": note,
    }
    return row, events.reindex(columns=EVENT_COLUMNS), seconds


def _write_combined(result: ScanResult, recordings: list[tuple[Path, str]], infos: dict[str, dict]) -> None:
    """The folder-wide tables and ``scan.json`` (see the module docstring)."""
    out = result.out_dir
    order = {
        name: (str(path), infos[name]["duration"])
        for path, name in recordings
        if name in set(result.recordings["recording"])
    }
    write_combined_raven_table(
        result.detections,
        order,
        out / "detections.selections.txt",
        low_freq=result.settings["features"]["fmin"],
        high_freq=result.settings["features"]["fmax"] or result.settings["features"]["sample_rate"] / 2,
    )
    write_events_csv(result.detections, out / "detections.csv")
    with atomic_write(out / "errors.csv", "w") as fh:
        result.errors.to_csv(fh, index=False)
    with atomic_write(out / "skipped.csv", "w") as fh:
        result.skipped.to_csv(fh, index=False)
    write_json_atomic(
        out / "scan.json",
        {
            "settings": result.settings,
            "versions": library_versions(),
            "summary": {
                "recordings": len(result.recordings),
                "errors": len(result.errors),
                "detections": len(result.detections),
                "audio_hours_scanned": result.audio_seconds / 3600,
                "wall_seconds": result.wall_seconds,
                "realtime_factor": result.realtime_factor,
                "decode_wait_seconds": result.decode_wait_seconds,
                "score_seconds": result.score_seconds,
                "threads": torch.get_num_threads(),
                "status": result.recordings["status"].value_counts().to_dict() if len(result.recordings) else {},
            },
            "recordings": result.recordings.to_dict(orient="records"),
            "errors": result.errors.to_dict(orient="records"),
            "skipped": result.skipped.to_dict(orient="records"),
        },
    )
