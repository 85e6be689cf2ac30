"""Cut a training corpus in the challenge layout from annotated long recordings.

:func:`cut_corpus` takes an annotation table (one row per selection, as the Raven / Audacity / CSV
readers produce it) and the recordings it names, and writes::

    out_dir/
        wav/train_00001.wav ... wav/devel_00001.wav ... wav/test_00001.wav ...
        lab/train.csv  lab/devel.csv  lab/test.csv     header ``filename,label``; test labels real
        manifest.csv                                   one row per clip: where it came from
        corpus.json                                    settings, counts, recordings, skipped, warnings
        README.txt                                     the same in words

so that :func:`helpers.data.corpus.read_corpus`, the notebooks and the training engine read it as
they read the challenge corpus. Every clip is mono 16-bit PCM WAV at ``sample_rate``.

The annotation table has the columns ``recording`` (audio path; relative paths are taken from
``audio_dir``), ``begin``, ``end`` (seconds from the recording's start), ``label`` and, optionally,
``low_freq``, ``high_freq`` (Hz, may be NaN), ``source_file``, ``source_line`` (where the row was
read; copied to the manifest so that every call clip can be traced back to its annotation).

The rules (deterministic for a given ``seed``; :data:`CUT_VERSION` changes whenever they do):

1. **Call clips.** Let ``L`` be ``clip_seconds`` in samples of the recording. A selection no longer
   than ``L`` gives one clip centred on it, shifted to stay inside the recording (a recording
   shorter than one clip gives one clip of its own length). A longer selection gives
   ``ceil(duration / L)`` clips: consecutive windows from its begin, the last one aligned to its
   end (so it may overlap the one before); together they cover the selection exactly.
2. **Background clips** (label ``background_label``) come from the stretches of a recording that lie
   at least ``margin_seconds`` away from every selection of any label (rows skipped for bad labels
   included). Each stretch is tiled with non-overlapping windows of ``L``, centred in the stretch.
   This assumes the annotation is exhaustive: every call in an annotated recording is selected.
3. **Background cap.** Per split at most ``background_per_call`` x the number of call clips of that
   split (``None``: no ratio cap), then at most ``max_background`` over all splits (shared among the
   splits in proportion). The clips are drawn round-robin over the split's recordings (in an order
   shuffled by ``seed``), each recording's windows in an order shuffled by ``seed`` and its name, so
   background is spread over recordings rather than taken from the first long one.
4. **Splits** are by recording, or by the column ``group_by`` (site, recorder, day...): a group is
   never in two splits. See :func:`assign_splits`: first every label is given to train, then to
   devel and test while the label's groups allow it (rarest label first), then the remaining groups
   go, largest first, to the split whose per-label counts they bring closest to ``split``.
   A label found in too few groups to reach every split is named in the summary's warnings.
5. Clips are read with soundfile's seek/read (memory does not grow with a recording's length),
   mixed to mono (or ``channel`` picked), resampled to ``sample_rate`` with soxr HQ and numbered
   per split in the order (label, recording, offset).

Problems are reported, never silently dropped: a recording that is missing or cannot be read skips
its rows; a row with an impossible time or label is skipped; both are listed in
:attr:`CutSummary.skipped` (and ``corpus.json``), each with a one-line reason naming the recording,
the annotation file and line, and the fix. The corpus is built in a temporary folder beside
``out_dir`` and moved into place at the end.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from helpers.core.progress import progress_bar
from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, pad_or_truncate, resample, to_mono, write_wav

CUT_VERSION = 1
SPLITS = ("train", "devel", "test")
#: Columns the annotation table must have.
REQUIRED_COLUMNS = ("recording", "begin", "end", "label")
#: Columns used when present (filled with NaN / the row number otherwise).
OPTIONAL_COLUMNS = ("low_freq", "high_freq", "source_file", "source_line")
#: Default distance (s) between a background clip and any selection: annotators' boundaries are
#: approximate and calls have tails and echoes; one second keeps those out of the background.
DEFAULT_MARGIN_SECONDS = 1.0
#: Default background clips per call clip (per split): the challenge corpus is about half background.
DEFAULT_BACKGROUND_PER_CALL = 1.0
#: A selection may end this far (s) past the recording's end (drawn to the very edge in Raven) and is
#: then clamped to the end; further is an error.
END_TOLERANCE_SECONDS = 0.1
#: Extra audio read on each side of a clip before resampling, so the resampler has no edge effects.
_READ_PAD_SECONDS = 0.05
#: Manifest columns, in order.
MANIFEST_COLUMNS = [
    "filename", "split", "label", "kind", "recording", "group", "offset_s", "duration_s",
    "source_file", "source_line", "begin_s", "end_s", "low_freq", "high_freq", "part", "parts",
    "other_labels", "source_sample_rate", "source_channels",
]
#: Columns of :attr:`CutSummary.skipped`.
SKIPPED_COLUMNS = ["what", "recording", "source_file", "source_line", "reason"]


class CutError(ValueError):
    """The corpus cannot be cut at all (bad settings, or no clip could be cut); the message says why."""


@dataclass(frozen=True)
class _Clip:
    """One planned clip; positions in samples of the source recording."""

    recording: str
    label: str
    kind: str  # "call" or "background"
    start: int
    length: int
    row: dict | None = None  # the annotation row of a call clip
    part: int = 1
    parts: int = 1
    split: str = ""
    group: str = ""


@dataclass
class _Recording:
    """What is known of one readable recording: header facts, clips and background windows."""

    name: str
    path: Path
    sample_rate: int
    channels: int
    frames: int
    length: int  # clip length in samples of this recording
    calls: list[_Clip] = field(default_factory=list)
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (begin, end, label) in samples
    background: list[int] = field(default_factory=list)  # start samples of free windows
    seen: dict = field(default_factory=dict)  # (begin, end, label) in samples -> (source_file, source_line)


@dataclass
class CutSummary:
    """What :func:`cut_corpus` wrote. Usable as a path (``os.fspath``, ``read_corpus(summary)``).

    ``manifest``: one row per clip (columns :data:`MANIFEST_COLUMNS`); ``skipped``: every recording,
    row or clip that was not cut, with the reason (columns :data:`SKIPPED_COLUMNS`); ``warnings``:
    one line each (labels missing from a split, background short of its quota...).
    """

    path: Path
    manifest: pd.DataFrame
    skipped: pd.DataFrame
    warnings: list[str]
    settings: dict

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def counts(self) -> pd.DataFrame:
        """Clips per label (rows) and split (columns), with a ``total`` column."""
        table = pd.crosstab(self.manifest["label"], self.manifest["split"])
        table = table.reindex(columns=list(SPLITS), fill_value=0)
        table["total"] = table.sum(axis=1)
        table.columns.name = None
        return table

    @property
    def recordings(self) -> dict[str, list[str]]:
        """The source recordings of each split (sorted)."""
        return {s: sorted(self.manifest.loc[self.manifest["split"] == s, "recording"].unique()) for s in SPLITS}

    def format(self) -> str:
        """Counts, recordings per split, skipped items and warnings, in words."""
        n_rec = sum(len(v) for v in self.recordings.values())
        lines = [f"{self.path}: {len(self.manifest)} clips from {n_rec} recording(s)",
                 self.counts.to_string(),
                 "recordings: " + ", ".join(f"{s} {len(v)}" for s, v in self.recordings.items())]
        lines += [_skip_line(r._asdict()) for r in self.skipped.itertuples()]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = format


def cut_corpus(annotations: pd.DataFrame, out_dir: str | Path, clip_seconds: float = CLIP_SECONDS,
               sample_rate: int = SAMPLE_RATE, background_label: str = "background",
               margin_seconds: float = DEFAULT_MARGIN_SECONDS,
               background_per_call: float | None = DEFAULT_BACKGROUND_PER_CALL,
               max_background: int | None = None, split: tuple[float, float, float] = (0.7, 0.15, 0.15),
               group_by: str | None = None, seed: int = 0, overwrite: bool = False,
               audio_dir: str | Path | None = None, channel: int | None = None,
               progress: bool = False) -> CutSummary:
    """Cut the annotated recordings into a corpus in the challenge layout at ``out_dir``.

    Args:
        annotations: one row per selection (see the module docstring for the columns).
        out_dir: the corpus folder; refused when it exists and is not empty, unless ``overwrite``.
        clip_seconds: clip length; default 2.99 s (47,860 samples at 16 kHz, the challenge's longest
            clip and the length the features pad to).
        sample_rate: rate of the written clips (Hz); 16 kHz as the challenge corpus.
        background_label: label of the background clips. Selections may carry it too.
        margin_seconds: least distance between a background clip and any selection (default 1 s).
        background_per_call: background clips per call clip, per split (default 1, about the
            challenge's share); ``None`` keeps every free window (subject to ``max_background``).
        max_background: cap on background clips over all splits (default: none).
        split: fractions of train, devel, test (normalised; a 0 leaves that split empty).
        group_by: a column of ``annotations`` whose value (site, recorder...) keeps recordings
            together; default: each recording is its own group. Must be constant per recording.
        seed: drives the split's tie-breaks and the background draw.
        overwrite: replace a non-empty ``out_dir``.
        audio_dir: folder that relative ``recording`` paths are taken from (default: as given).
        channel: 0-based channel to keep; default ``None`` averages the channels.
        progress: show a progress bar over the recordings.

    Returns:
        A :class:`CutSummary` (also written to ``corpus.json`` and ``README.txt``).

    Raises:
        CutError: bad settings or table, or no clip could be cut (with every reason).
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    fractions = _check_settings(clip_seconds, sample_rate, margin_seconds, background_per_call,
                                max_background, split, channel)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another folder or pass "
                              "overwrite=True (--overwrite) to replace it.")
    table = _normalise_table(annotations, group_by)
    skipped: list[dict] = []
    table = _drop_unresolved(table, skipped)
    recordings = _plan_recordings(table, clip_seconds, margin_seconds, audio_dir, channel, skipped, progress)
    if not any(r.calls for r in recordings.values()):
        raise CutError("no clip could be cut:\n" + "\n".join(_skip_line(s) for s in skipped))
    groups = _groups_of(table, recordings, group_by)
    counts = _group_label_counts(recordings, groups)
    assignment, warnings = assign_splits(counts, fractions, seed)
    clips = _calls_with_splits(recordings, groups, assignment)
    background, short = _pick_background(recordings, groups, assignment, clips, background_label,
                                         background_per_call, max_background, seed)
    warnings += short
    settings = {"cut_version": CUT_VERSION, "clip_seconds": clip_seconds, "sample_rate": sample_rate,
                "background_label": background_label, "margin_seconds": margin_seconds,
                "background_per_call": background_per_call, "max_background": max_background,
                "split": list(fractions), "group_by": group_by, "seed": seed, "channel": channel}
    return _write_corpus(out_dir, recordings, clips + background, settings, skipped, warnings, channel,
                         overwrite)


# --- checking the input ----------------------------------------------------------------------------


def _check_settings(clip_seconds, sample_rate, margin_seconds, background_per_call, max_background,
                    split, channel) -> tuple[float, float, float]:
    """Refuse impossible settings; return the split fractions normalised to sum 1."""
    if not clip_seconds > 0:
        raise CutError(f"clip_seconds must be positive, not {clip_seconds!r}.")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise CutError(f"sample_rate must be a positive integer (Hz), not {sample_rate!r}.")
    if not margin_seconds >= 0:
        raise CutError(f"margin_seconds must be 0 or more, not {margin_seconds!r}.")
    if background_per_call is not None and not background_per_call >= 0:
        raise CutError(f"background_per_call must be 0 or more (or None), not {background_per_call!r}.")
    if max_background is not None and not max_background >= 0:
        raise CutError(f"max_background must be 0 or more (or None), not {max_background!r}.")
    if channel is not None and not (isinstance(channel, (int, np.integer)) and channel >= 0):
        raise CutError(f"channel must be None (average) or a channel number from 0, not {channel!r}.")
    parts = [float(x) for x in split]
    if len(parts) != 3 or any(not x >= 0 for x in parts) or parts[0] <= 0:
        raise CutError(f"split must be three fractions (train, devel, test) >= 0 with train > 0, not {split!r}.")
    total = sum(parts)
    return tuple(x / total for x in parts)


def _normalise_table(annotations: pd.DataFrame, group_by: str | None) -> pd.DataFrame:
    """A copy with every column :func:`cut_corpus` reads, in plain types; ``source_line`` defaults to
    the row's position (from 1) and ``source_file`` to ``<table>`` when the table does not say."""
    if not isinstance(annotations, pd.DataFrame):
        raise CutError(f"annotations must be a pandas DataFrame, not {type(annotations).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in annotations.columns]
    if missing:
        raise CutError(f"the annotation table lacks the column(s) {', '.join(missing)} "
                       f"(it has {', '.join(map(str, annotations.columns))}); read it with the annotation reader "
                       "or rename its columns to recording, begin, end, label.")
    if group_by is not None and group_by not in annotations.columns:
        raise CutError(f"group_by names the column {group_by!r}, which the annotation table does not have "
                       f"(it has {', '.join(map(str, annotations.columns))}).")
    if annotations.empty:
        raise CutError("the annotation table has no rows; there is nothing to cut.")
    t = annotations.reset_index(drop=True).copy()
    for col in OPTIONAL_COLUMNS:
        if col not in t.columns:
            t[col] = np.nan
    t["source_file"] = t["source_file"].where(t["source_file"].notna(), "<table>").astype(str)
    t["source_line"] = t["source_line"].where(t["source_line"].notna(), pd.Series(range(1, len(t) + 1)))
    for col in ("begin", "end", "low_freq", "high_freq"):
        t[col] = pd.to_numeric(t[col], errors="coerce")
    t["label"] = [("" if (isinstance(x, float) and math.isnan(x)) or x is None else str(x).strip())
                  for x in t["label"]]
    return t


def _drop_unresolved(table: pd.DataFrame, skipped: list[dict]) -> pd.DataFrame:
    """Report the rows whose ``recording`` is empty (the annotation reader found no audio for them),
    one entry per recording the annotation names (``recording_name`` when the table has it), and
    return the other rows with ``recording`` as text."""
    missing = table["recording"].isna() | (table["recording"].astype(str).str.strip() == "")
    lost = table[missing]
    names = lost["recording_name"] if "recording_name" in lost.columns else pd.Series("", index=lost.index)
    for name, rows in lost.groupby(names.fillna("").astype(str), sort=True):
        files = ", ".join(sorted(set(rows["source_file"])))
        skipped.append(_skip("recording", name or "(unnamed)", files, None,
                             f"no audio file was found for the recording {name!r} named in {files}; its "
                             f"{len(rows)} selection(s) were not cut. Pass the folder that holds it (audio root) "
                             "or correct the name in the annotations."))
    kept = table[~missing].copy()
    kept["recording"] = kept["recording"].astype(str)
    return kept


def _row_dict(row: pd.Series) -> dict:
    """The annotation fields a call clip carries into the manifest."""
    line = row["source_line"]
    return {"source_file": row["source_file"], "source_line": int(line) if _is_number(line) else line,
            "begin": float(row["begin"]), "end": float(row["end"]),
            "low_freq": row["low_freq"], "high_freq": row["high_freq"]}


def _is_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _skip(what: str, recording: str, source_file, source_line, reason: str) -> dict:
    return {"what": what, "recording": recording, "source_file": source_file,
            "source_line": int(source_line) if _is_number(source_line) else source_line, "reason": reason}


def _skip_line(s: dict) -> str:
    where = f" ({s['source_file']} line {s['source_line']})" if _is_number(s["source_line"]) else ""
    return f"skipped {s['what']} {s['recording']}{where}: {s['reason']}"


# --- planning clips per recording ----------------------------------------------------------------


def _plan_recordings(table: pd.DataFrame, clip_seconds: float, margin_seconds: float,
                     audio_dir: str | Path | None, channel: int | None, skipped: list[dict],
                     progress: bool) -> dict[str, _Recording]:
    """Open every recording's header, check its rows, plan its call clips and background windows.

    Recordings and rows that cannot be used are appended to ``skipped``. Returns the readable
    recordings by name (sorted).
    """
    recordings = {}
    by_name = dict(list(table.groupby("recording", sort=True)))
    for name in progress_bar(None, "cut corpus", unit="recording", display=progress, iterable=list(by_name)):
        rows = by_name[name]
        rec = _open_recording(name, audio_dir, channel, clip_seconds, rows, skipped)
        if rec is None:
            continue
        for _, row in rows.iterrows():
            _plan_row(rec, row, skipped)
        margin = int(round(margin_seconds * rec.sample_rate))
        rec.background = _free_windows(rec.frames, [(b, e) for b, e, _ in rec.spans], margin, rec.length)
        recordings[name] = rec
    return recordings


def _open_recording(name: str, audio_dir, channel: int | None, clip_seconds: float, rows: pd.DataFrame,
                    skipped: list[dict]) -> _Recording | None:
    """The recording's header facts, or None after reporting why it cannot be used."""
    path = Path(name)
    if audio_dir is not None and not path.is_absolute():
        path = Path(audio_dir) / path
    files = sorted(set(rows["source_file"]))
    what_lost = f"its {len(rows)} selection(s) from {', '.join(files)} were not cut"
    reason = None
    if not path.is_file():
        reason = (f"{path} does not exist; {what_lost}. Fix the path in the annotations"
                  + (" or pass the folder that holds the audio (audio_dir / --audio)." if audio_dir is None
                     else f" or check that it is under {audio_dir}."))
    else:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            reason = f"{path} cannot be read as audio ({exc}); {what_lost}. Replace or re-export the file."
        else:
            if info.frames <= 0:
                reason = f"{path} holds no samples; {what_lost}. Replace the file."
            elif channel is not None and channel >= info.channels:
                reason = (f"{path} has {info.channels} channel(s), so channel {channel} does not exist; "
                          f"{what_lost}. Pick a channel below {info.channels} or average them (channel=None).")
    if reason is not None:
        skipped.append(_skip("recording", name, ", ".join(files), None, reason))
        return None
    length = max(1, int(round(clip_seconds * info.samplerate)))
    return _Recording(name, path, int(info.samplerate), int(info.channels), int(info.frames), length)


def _plan_row(rec: _Recording, row: pd.Series, skipped: list[dict]) -> None:
    """Check one annotation row against its recording; add its span and call clips to ``rec``."""
    sr, frames, length = rec.sample_rate, rec.frames, rec.length
    begin, end, label = row["begin"], row["end"], row["label"]
    duration = frames / sr
    problem = None
    if not (math.isfinite(begin) and math.isfinite(end)):
        problem = "begin or end is not a number; write both times in seconds."
    elif begin < 0:
        problem = f"begins at {begin:g} s, before the recording starts; correct the begin time."
    elif end <= begin:
        problem = f"ends ({end:g} s) before it begins ({begin:g} s); swap or correct the times."
    elif begin >= duration or end > duration + END_TOLERANCE_SECONDS:
        problem = (f"selection {begin:g}-{end:g} s goes past the recording's end ({duration:.3f} s); correct "
                   "the times, or check that the row names the right recording.")
    if problem is None or "past the recording's end" in problem:
        # Every selection with usable times keeps background away from it, even one that is skipped.
        b, e = int(round(max(begin, 0) * sr)), int(round(min(end, duration) * sr))
        if e > b:
            rec.spans.append((b, e, label))
    if problem is None and not label:
        problem = "has an empty label; write the call's label."
    elif problem is None and label == "?":
        problem = "has the label '?', which the challenge layout reserves for hidden test labels; write the label."
    if problem is not None:
        skipped.append(_skip("row", rec.name, row["source_file"], row["source_line"], problem))
        return
    b, e = int(round(begin * sr)), min(frames, int(round(end * sr)))
    first = rec.seen.setdefault((b, e, label), (row["source_file"], row["source_line"]))
    if first != (row["source_file"], row["source_line"]):
        skipped.append(_skip("row", rec.name, row["source_file"], row["source_line"],
                             f"repeats the selection at {first[0]} line {first[1]} (same times and label); "
                             "cut once. Remove the repeat (Raven writes one row per view) if it is a mistake."))
        return
    starts = call_windows(b, e, length, frames)
    size = min(length, frames)
    info = _row_dict(row)
    rec.calls += [_Clip(rec.name, label, "call", s, size, info, k + 1, len(starts)) for k, s in enumerate(starts)]


def call_windows(begin: int, end: int, length: int, frames: int) -> list[int]:
    """Start positions of the clips of one selection ``[begin, end)`` (samples; module rule 1).

    No longer than ``length``: one window centred on it, shifted into ``[0, frames]``. Longer:
    ``ceil((end - begin) / length)`` windows from ``begin`` every ``length``, the last one ending at
    ``end``. A recording shorter than ``length`` gives the single start 0.
    """
    if frames <= length:
        return [0]
    span = end - begin
    if span <= length:
        start = int(round((begin + end) / 2 - length / 2))
        return [min(max(start, 0), frames - length)]
    n = math.ceil(span / length)
    return [begin + k * length for k in range(n - 1)] + [end - length]


def _free_windows(frames: int, spans: list[tuple[int, int]], margin: int, length: int) -> list[int]:
    """Start positions of non-overlapping windows of ``length`` at least ``margin`` away from every span.

    Each free stretch is tiled with as many windows as fit, the leftover split evenly at both ends.
    """
    blocked = sorted((max(0, b - margin), min(frames, e + margin)) for b, e in spans)
    merged: list[list[int]] = []
    for b, e in blocked:
        if merged and b <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([b, e])
    edges = [0] + [x for b, e in merged for x in (b, e)] + [frames]
    starts = []
    for g0, g1 in zip(edges[0::2], edges[1::2]):
        n = (g1 - g0) // length if g1 > g0 else 0
        first = g0 + ((g1 - g0) - n * length) // 2
        starts += [first + k * length for k in range(n)]
    return starts


# --- groups and splits -------------------------------------------------------------------------------


def _groups_of(table: pd.DataFrame, recordings: dict[str, _Recording], group_by: str | None) -> dict[str, str]:
    """Recording name -> group name (the recording itself unless ``group_by``)."""
    if group_by is None:
        return {name: name for name in recordings}
    groups = {}
    bad = []
    for name in recordings:
        values = table.loc[table["recording"] == name, group_by]
        distinct = sorted({str(v) for v in values.dropna()})
        if len(distinct) != 1 or values.isna().any():
            bad.append(f"{name} ({', '.join(distinct) or 'empty'}{', and empty' if values.isna().any() and distinct else ''})")
        else:
            groups[name] = distinct[0]
    if bad:
        raise CutError(f"the group column {group_by!r} must hold one value per recording, but these have "
                       f"several or none: {'; '.join(bad)}. Fill in the column or group by another one.")
    return groups


def _group_label_counts(recordings: dict[str, _Recording], groups: dict[str, str]) -> pd.DataFrame:
    """Call clips per group (rows, every readable recording's group) and label (columns)."""
    records = [(groups[name], c.label) for name, rec in recordings.items() for c in rec.calls]
    frame = pd.DataFrame(records, columns=["group", "label"])
    counts = pd.crosstab(frame["group"], frame["label"]) if records else pd.DataFrame()
    counts = counts.reindex(sorted(set(groups.values())), fill_value=0)
    counts.index.name, counts.columns.name = None, None
    return counts.astype(np.int64)


def assign_splits(counts: pd.DataFrame, fractions: tuple[float, float, float],
                  seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """Give each group (row of ``counts``: clips per label) a split; return it and the warnings.

    1. Coverage, rarest label first (fewest groups): a label not yet in train gets the unassigned
       group with that label whose count of it is closest to train's target (fraction x the label's
       total; ties: the group whose total is closest to the split's share of all clips); then
       devel, then test, the same way, but only with a group whose other labels are already in train or have another
       unassigned group left (so train ends up with every label). Splits of fraction 0 are skipped.
    2. The remaining groups, largest first, each go to the split where they reduce most the squared
       gap between the split's per-label counts and ``fraction x total`` (gaps divided by the
       label's total, so rare labels count as much as common ones).

    Ties are broken by a permutation drawn from ``seed``. Every group gets a split.
    """
    active = [k for k, f in enumerate(fractions) if f > 0]
    frac = np.asarray(fractions, dtype=np.float64)
    groups = list(counts.index)
    n = counts.to_numpy(dtype=np.int64)  # groups x labels
    totals = n.sum(axis=0)
    tiebreak = np.random.default_rng(seed).permutation(len(groups))
    have = np.zeros((len(SPLITS), n.shape[1]), dtype=np.int64)
    split_of = np.full(len(groups), -1)
    unassigned_with = (n > 0).sum(axis=0)  # per label: unassigned groups that have it

    def put(g: int, k: int) -> None:
        split_of[g] = k
        have[k] += n[g]
        unassigned_with[:] -= n[g] > 0

    def keeps_train_complete(g: int) -> bool:
        labels = n[g] > 0
        return bool(np.all((have[0][labels] > 0) | (unassigned_with[labels] >= 2)))

    for lab in sorted(range(n.shape[1]), key=lambda j: ((n[:, j] > 0).sum(), str(counts.columns[j]))):
        for k in active:
            if have[k, lab] > 0:
                continue
            free = [g for g in np.flatnonzero((split_of < 0) & (n[:, lab] > 0))
                    if k == 0 or keeps_train_complete(g)]
            if free:
                put(min(free, key=lambda g: (abs(n[g, lab] - frac[k] * totals[lab]),
                                             abs(n[g].sum() - frac[k] * totals.sum()), tiebreak[g])), k)

    scale = np.maximum(totals, 1).astype(np.float64) ** 2
    rest = sorted(np.flatnonzero(split_of < 0), key=lambda g: (-int(n[g].sum()), tiebreak[g]))
    for g in rest:
        cost = {k: float((n[g] * (2 * (have[k] - frac[k] * totals) + n[g]) / scale).sum()) for k in active}
        size = {k: have[k].sum() - frac[k] * totals.sum() for k in active}
        put(g, min(active, key=lambda k: (cost[k], size[k], k)))
    assignment = {g: SPLITS[k] for g, k in zip(groups, split_of)}
    return assignment, _split_warnings(counts, assignment, [SPLITS[k] for k in active])


def _split_warnings(counts: pd.DataFrame, assignment: dict[str, str], active: list[str]) -> list[str]:
    """A line per label absent from a split that should have it, and per split left without groups."""
    warnings = []
    for label in counts.columns:
        holders = [g for g in counts.index if counts.at[g, label] > 0]
        missing = [s for s in active if not any(assignment[g] == s for g in holders)]
        if missing:
            warnings.append(f"label '{label}' is in {len(holders)} group(s) only, so it has no clips in "
                            f"{', '.join(missing)}; annotate it in more recordings to score it there.")
    for s in active:
        if not any(v == s for v in assignment.values()):
            warnings.append(f"split {s} got no recordings ({len(assignment)} group(s) in all); "
                            "add recordings or set its fraction to 0.")
    return warnings


def _calls_with_splits(recordings: dict[str, _Recording], groups: dict[str, str],
                       assignment: dict[str, str]) -> list[_Clip]:
    """Every call clip with its group and split filled in."""
    return [replace(c, split=assignment[groups[name]], group=groups[name])
            for name, rec in recordings.items() for c in rec.calls]


# --- background -----------------------------------------------------------------------------------


def _background_quota(wanted: dict[str, int], available: dict[str, int], cap: int | None) -> dict[str, int]:
    """Background clips per split: what is ``wanted`` and ``available``, then ``cap`` shared in proportion
    (largest remainders first)."""
    want = {s: min(wanted[s], available[s]) for s in SPLITS}
    total = sum(want.values())
    if cap is None or total <= cap:
        return want
    exact = {s: cap * want[s] / total for s in SPLITS}
    quota = {s: int(math.floor(exact[s])) for s in SPLITS}
    for s in sorted(SPLITS, key=lambda s: (-(exact[s] - quota[s]), SPLITS.index(s)))[:cap - sum(quota.values())]:
        quota[s] += 1
    return quota


def _pick_background(recordings: dict[str, _Recording], groups: dict[str, str], assignment: dict[str, str],
                     clips: list[_Clip], background_label: str, per_call: float | None, cap: int | None,
                     seed: int) -> tuple[list[_Clip], list[str]]:
    """Draw the background clips (module rule 3); return them and a warning per split short of windows."""
    split_of = {name: assignment[groups[name]] for name in recordings}
    available = {s: sum(len(r.background) for n, r in recordings.items() if split_of[n] == s) for s in SPLITS}
    calls = {s: sum(1 for c in clips if c.split == s and c.label != background_label) for s in SPLITS}
    wanted = {s: available[s] if per_call is None else int(math.floor(per_call * calls[s] + 1e-9)) for s in SPLITS}
    quota = _background_quota(wanted, available, cap)
    picked, warnings = [], []
    for k, s in enumerate(SPLITS):
        names = sorted(n for n in recordings if split_of[n] == s)
        names = [names[i] for i in np.random.default_rng([seed, k]).permutation(len(names))]
        queues = {n: deque(recordings[n].background[i] for i in _permutation(seed, n, len(recordings[n].background)))
                  for n in names}
        taken = 0
        while taken < quota[s]:
            for n in names:
                if queues[n] and taken < quota[s]:
                    picked.append(_Clip(n, background_label, "background", queues[n].popleft(), recordings[n].length,
                                        split=s, group=groups[n]))
                    taken += 1
        if available[s] < wanted[s]:
            warnings.append(f"split {s}: only {available[s]} background window(s) lie away from every "
                            f"selection (margin included), fewer than the {wanted[s]} wanted ({per_call:g} x "
                            f"{calls[s]} call clips); lower margin_seconds or add recordings with quiet stretches.")
    return picked, warnings


def _permutation(seed: int, name: str, n: int) -> np.ndarray:
    """A permutation of ``n`` drawn from ``seed`` and the recording's name (stable across runs and machines)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(n)


# --- writing ----------------------------------------------------------------------------------------


def _write_corpus(out_dir: Path, recordings: dict[str, _Recording], clips: list[_Clip], settings: dict,
                  skipped: list[dict], warnings: list[str], channel: int | None, overwrite: bool) -> CutSummary:
    """Write the clips, label files, manifest and records in a temporary folder, then move it to ``out_dir``."""
    clips = sorted(clips, key=lambda c: (c.label, c.recording, c.start, c.kind, c.part))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (tmp / "wav").mkdir()
        (tmp / "lab").mkdir()
        written = _write_clips(tmp / "wav", recordings, clips, settings, channel, skipped)
        manifest = _number_clips(tmp / "wav", recordings, clips, written)
        for split in SPLITS:
            manifest.loc[manifest["split"] == split, ["filename", "label"]].to_csv(
                tmp / "lab" / f"{split}.csv", index=False)
        manifest.to_csv(tmp / "manifest.csv", index=False)
        skipped_frame = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
        skipped_frame["source_line"] = skipped_frame["source_line"].astype("Int64")
        summary = CutSummary(out_dir, manifest, skipped_frame, warnings, settings)
        _write_records(tmp, summary)
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _write_clips(wav_dir: Path, recordings: dict[str, _Recording], clips: list[_Clip], settings: dict,
                 channel: int | None, skipped: list[dict]) -> set[int]:
    """Write clip ``i`` of ``clips`` to ``wav_dir/.clip{i}.wav``, one recording open at a time.

    Returns the indices written; a clip that cannot be read is added to ``skipped``."""
    by_recording: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_recording.setdefault(c.recording, []).append(i)
    written = set()
    for name, indices in by_recording.items():
        rec = recordings[name]
        try:
            with sf.SoundFile(str(rec.path)) as f:
                for i in sorted(indices, key=lambda i: clips[i].start):
                    if _write_one(f, rec, clips[i], wav_dir / f".clip{i}.wav", settings, channel, skipped):
                        written.add(i)
        except (sf.LibsndfileError, RuntimeError) as exc:
            skipped.append(_skip("recording", name, "", None, f"{rec.path} could not be opened to cut its clips "
                                 f"({exc}); none of its clips were written. Check the file."))
    return written


def _write_one(f: sf.SoundFile, rec: _Recording, clip: _Clip, path: Path, settings: dict,
               channel: int | None, skipped: list[dict]) -> bool:
    """Read, mix, resample and write one clip; on failure report it and return False."""
    target = settings["sample_rate"]
    n_out = (int(round(settings["clip_seconds"] * target)) if clip.length == rec.length
             else int(round(clip.length * target / rec.sample_rate)))
    pad = int(round(_READ_PAD_SECONDS * rec.sample_rate))
    a, b = max(0, clip.start - pad), min(rec.frames, clip.start + clip.length + pad)
    at = f"{clip.kind} clip at {clip.start / rec.sample_rate:.3f} s"
    try:
        f.seek(a)
        data = f.read(b - a, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        data, error = None, f"cannot be read ({exc})"
    else:
        error = None if len(data) == b - a else f"the file ends early ({len(data)} of {b - a} samples read)"
    if error is None and not np.isfinite(data).all():
        error = "contains NaN or Inf samples"
    if error is not None:
        row = clip.row or {}
        skipped.append(_skip("clip", rec.name, row.get("source_file", ""), row.get("source_line"),
                             f"{at}: {error}; not written. Re-export the recording."))
        return False
    mono = data[:, channel] if channel is not None else to_mono(data)
    wave = resample(np.ascontiguousarray(mono), rec.sample_rate, target)
    lead = int(round((clip.start - a) * target / rec.sample_rate))
    write_wav(path, pad_or_truncate(wave[lead:], n_out), target)
    return True


def _number_clips(wav_dir: Path, recordings: dict[str, _Recording], clips: list[_Clip],
                  written: set[int]) -> pd.DataFrame:
    """Rename the written clips to ``{split}_NNNNN.wav`` in ``clips`` order; return the manifest."""
    counters = dict.fromkeys(SPLITS, 0)
    rows = []
    spans = {name: (np.array([b for b, _, _ in r.spans], dtype=np.int64), np.array([e for _, e, _ in r.spans], dtype=np.int64),
                    np.array([lab for _, _, lab in r.spans], dtype=object)) for name, r in recordings.items()}
    for i, c in enumerate(clips):
        if i not in written:
            continue
        counters[c.split] += 1
        filename = f"{c.split}_{counters[c.split]:05d}.wav"
        os.replace(wav_dir / f".clip{i}.wav", wav_dir / filename)
        rec = recordings[c.recording]
        row = c.row or {}
        bs, es, labels = spans[c.recording]
        others = sorted(set(labels[(bs < c.start + c.length) & (es > c.start)]) - {c.label})
        rows.append({
            "filename": filename, "split": c.split, "label": c.label, "kind": c.kind, "recording": c.recording,
            "group": c.group, "offset_s": round(c.start / rec.sample_rate, 6),
            "duration_s": round(c.length / rec.sample_rate, 6), "source_file": row.get("source_file", ""),
            "source_line": row.get("source_line"), "begin_s": row.get("begin"), "end_s": row.get("end"),
            "low_freq": row.get("low_freq"), "high_freq": row.get("high_freq"), "part": c.part, "parts": c.parts,
            "other_labels": ";".join(others), "source_sample_rate": rec.sample_rate,
            "source_channels": rec.channels,
        })
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest["source_line"] = manifest["source_line"].astype("Int64")
    return manifest


def _write_records(folder: Path, summary: CutSummary) -> None:
    """``corpus.json`` (settings, counts, recordings, skipped, warnings) and ``README.txt`` in ``folder``."""
    counts = summary.counts
    record = {
        "name": summary.path.name, "generator": "helpers.data.cut.cut_corpus", "settings": summary.settings,
        "classes": sorted(summary.manifest["label"].unique()),
        "n_clips": {s: int(counts[s].sum()) for s in SPLITS},
        "counts": {lab: {s: int(counts.at[lab, s]) for s in SPLITS} for lab in counts.index},
        "recordings": summary.recordings,
        "skipped": summary.skipped.astype(object).where(summary.skipped.notna(), None).to_dict("records"),
        "warnings": summary.warnings,
    }
    (folder / "corpus.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    settings = "\n".join(f"  {k}: {v}" for k, v in summary.settings.items())
    recordings = "\n".join(f"  {s}: {', '.join(names) or '(none)'}" for s, names in summary.recordings.items())
    text = (f"Corpus cut from annotated recordings by helpers.data.cut.cut_corpus (rules: that module's docstring).\n\n"
            f"Settings:\n{settings}\n\n{summary.format()}\n\nRecordings per split:\n{recordings}\n\n"
            "Files: wav/{split}_NNNNN.wav (mono 16-bit PCM), lab/{split}.csv (filename,label; test labels are\n"
            "real), manifest.csv (per clip: split, label, kind call/background, source recording and group,\n"
            "offset_s and duration_s in the source, the annotation's source_file, source_line, begin_s, end_s,\n"
            "part k of parts for long selections, other labels overlapping the clip), corpus.json (all of this).\n")
    (folder / "README.txt").write_text(text, encoding="utf-8")


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Replace ``out_dir`` (absent, empty, or anything when ``overwrite``) by ``tmp``."""
    if out_dir.exists():
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        elif not overwrite:
            raise FileExistsError(f"{out_dir} was filled while the corpus was cut; the new corpus was discarded. "
                                  "Choose another folder or pass overwrite=True.")
        elif out_dir.is_dir():
            shutil.rmtree(out_dir)
        else:
            out_dir.unlink()
    tmp.rename(out_dir)
