"""Planning the clips of each recording (:mod:`helpers.data.cut` rules 1 and 2): its header facts, the
checks of its annotation rows, the call windows of each selection and the background windows away from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import soundfile as sf

from helpers.core.progress import progress_bar
from helpers.data.annotations.checks import DEFAULT_TOLERANCE
from helpers.data.cut.input import is_number, skip_entry

#: Seconds a selection may run past its recording's end and still be cut (clamped to the end): the
#: annotation checks' tolerance, one value for both (helpers.data.annotations.checks.DEFAULT_TOLERANCE).
END_TOLERANCE_SECONDS = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Clip:
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
class Recording:
    """What is known of one readable recording: header facts, clips and background windows."""

    name: str
    path: Path
    sample_rate: int
    channels: int
    frames: int
    length: int  # clip length in samples of this recording
    calls: list[Clip] = field(default_factory=list)
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (begin, end, label) in samples
    background: list[int] = field(default_factory=list)  # start samples of free windows
    seen: dict = field(default_factory=dict)  # (begin, end, label) in samples -> (source_file, source_line)


def plan_recordings(
    table: pd.DataFrame,
    clip_seconds: float,
    margin_seconds: float,
    audio_dir: str | Path | None,
    channel: int | None,
    skipped: list[dict],
    progress: bool,
) -> dict[str, Recording]:
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


def _open_recording(
    name: str, audio_dir, channel: int | None, clip_seconds: float, rows: pd.DataFrame, skipped: list[dict]
) -> Recording | None:
    """The recording's header facts, or None after reporting why it cannot be used."""
    path = Path(name)
    if audio_dir is not None and not path.is_absolute():
        path = Path(audio_dir) / path
    files = sorted(set(rows["source_file"]))
    what_lost = f"its {len(rows)} selection(s) from {', '.join(files)} were not cut"
    reason = None
    if not path.is_file():
        reason = f"{path} does not exist; {what_lost}. Fix the path in the annotations" + (
            " or pass the folder that holds the audio (audio_dir / --audio)."
            if audio_dir is None
            else f" or check that it is under {audio_dir}."
        )
    else:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            reason = f"{path} cannot be read as audio ({exc}); {what_lost}. Replace or re-export the file."
        else:
            if info.frames <= 0:
                reason = f"{path} holds no samples; {what_lost}. Replace the file."
            elif channel is not None and channel >= info.channels:
                reason = (
                    f"{path} has {info.channels} channel(s), so channel {channel} does not exist; "
                    f"{what_lost}. Pick a channel below {info.channels} or average them (channel=None)."
                )
    if reason is not None:
        skipped.append(skip_entry("recording", name, ", ".join(files), None, reason))
        return None
    length = max(1, int(round(clip_seconds * info.samplerate)))
    return Recording(name, path, int(info.samplerate), int(info.channels), int(info.frames), length)


def _plan_row(rec: Recording, row: pd.Series, skipped: list[dict]) -> None:
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
        problem = (
            f"selection {begin:g}-{end:g} s goes past the recording's end ({duration:.3f} s); correct "
            "the times, or check that the row names the right recording."
        )
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
        skipped.append(skip_entry("row", rec.name, row["source_file"], row["source_line"], problem))
        return
    b, e = int(round(begin * sr)), min(frames, int(round(end * sr)))
    first = rec.seen.setdefault((b, e, label), (row["source_file"], row["source_line"]))
    if first != (row["source_file"], row["source_line"]):
        skipped.append(
            skip_entry(
                "row",
                rec.name,
                row["source_file"],
                row["source_line"],
                f"repeats the selection at {first[0]} line {first[1]} (same times and label); "
                "cut once. Remove the repeat (Raven writes one row per view) if it is a mistake.",
            )
        )
        return
    starts = call_windows(b, e, length, frames)
    size = min(length, frames)
    info = _row_dict(row)
    rec.calls += [Clip(rec.name, label, "call", s, size, info, k + 1, len(starts)) for k, s in enumerate(starts)]


def call_windows(begin: int, end: int, length: int, frames: int) -> list[int]:
    """Start positions of the clips of one selection ``[begin, end)`` (samples; :mod:`helpers.data.cut` rule 1).

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


def _row_dict(row: pd.Series) -> dict:
    """The annotation fields a call clip carries into the manifest."""
    line = row["source_line"]
    return {
        "source_file": row["source_file"],
        "source_line": int(line) if is_number(line) else line,
        "begin": float(row["begin"]),
        "end": float(row["end"]),
        "low_freq": row["low_freq"],
        "high_freq": row["high_freq"],
    }
