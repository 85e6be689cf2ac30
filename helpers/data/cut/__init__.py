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

This module holds :func:`cut_corpus`, :class:`CutSummary` and the writing of the layout; the input
checks are in :mod:`helpers.data.cut.input`, the clips of each recording (rules 1, 2) in
:mod:`helpers.data.cut.plan`, the splits and the background draw (rules 3, 4) in
:mod:`helpers.data.cut.splits`. Every public name is importable from here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, pad_or_truncate, resample, to_mono, write_wav
from helpers.data.corpus_writer import CorpusWriter
from helpers.data.cut.input import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SKIPPED_COLUMNS,
    CutError,
    check_settings,
    drop_unresolved,
    normalise_table,
    skip_entry,
    skip_line,
)
from helpers.data.cut.plan import END_TOLERANCE_SECONDS, Clip, Recording, call_windows, plan_recordings
from helpers.data.cut.splits import SPLITS, assign_splits, split_clips

__all__ = [
    "CUT_VERSION",
    "DEFAULT_BACKGROUND_PER_CALL",
    "DEFAULT_MARGIN_SECONDS",
    "END_TOLERANCE_SECONDS",
    "MANIFEST_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SKIPPED_COLUMNS",
    "SPLITS",
    "CutError",
    "CutSummary",
    "assign_splits",
    "call_windows",
    "cut_corpus",
]

CUT_VERSION = 1
#: Default distance (s) between a background clip and any selection: annotators' boundaries are
#: approximate and calls have tails and echoes; one second keeps those out of the background.
DEFAULT_MARGIN_SECONDS = 1.0
#: Default background clips per call clip (per split): the challenge corpus is about half background.
DEFAULT_BACKGROUND_PER_CALL = 1.0
#: Extra audio read on each side of a clip before resampling, so the resampler has no edge effects.
_READ_PAD_SECONDS = 0.05
#: Manifest columns, in order.
MANIFEST_COLUMNS = [
    "filename",
    "split",
    "label",
    "kind",
    "recording",
    "group",
    "offset_s",
    "duration_s",
    "source_file",
    "source_line",
    "begin_s",
    "end_s",
    "low_freq",
    "high_freq",
    "part",
    "parts",
    "other_labels",
    "source_sample_rate",
    "source_channels",
]


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
        lines = [
            f"{self.path}: {len(self.manifest)} clips from {n_rec} recording(s)",
            self.counts.to_string(),
            "recordings: " + ", ".join(f"{s} {len(v)}" for s, v in self.recordings.items()),
        ]
        lines += [skip_line(r._asdict()) for r in self.skipped.itertuples()]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = format


def cut_corpus(
    annotations: pd.DataFrame,
    out_dir: str | Path,
    clip_seconds: float = CLIP_SECONDS,
    sample_rate: int = SAMPLE_RATE,
    background_label: str = "background",
    margin_seconds: float = DEFAULT_MARGIN_SECONDS,
    background_per_call: float | None = DEFAULT_BACKGROUND_PER_CALL,
    max_background: int | None = None,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    group_by: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    audio_dir: str | Path | None = None,
    channel: int | None = None,
    progress: bool = False,
) -> CutSummary:
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
    fractions = check_settings(
        clip_seconds, sample_rate, margin_seconds, background_per_call, max_background, split, channel
    )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; choose another folder or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    table = normalise_table(annotations, group_by)
    skipped: list[dict] = []
    table = drop_unresolved(table, skipped)
    recordings = plan_recordings(table, clip_seconds, margin_seconds, audio_dir, channel, skipped, progress)
    if not any(r.calls for r in recordings.values()):
        raise CutError("no clip could be cut:\n" + "\n".join(skip_line(s) for s in skipped))
    clips, warnings = split_clips(
        table, recordings, group_by, fractions, background_label, background_per_call, max_background, seed
    )
    settings = {
        "cut_version": CUT_VERSION,
        "clip_seconds": clip_seconds,
        "sample_rate": sample_rate,
        "background_label": background_label,
        "margin_seconds": margin_seconds,
        "background_per_call": background_per_call,
        "max_background": max_background,
        "split": list(fractions),
        "group_by": group_by,
        "seed": seed,
        "channel": channel,
    }
    return _write_corpus(out_dir, recordings, clips, settings, skipped, warnings, channel, overwrite)


# --- writing ----------------------------------------------------------------------------------------


def _write_corpus(
    out_dir: Path,
    recordings: dict[str, Recording],
    clips: list[Clip],
    settings: dict,
    skipped: list[dict],
    warnings: list[str],
    channel: int | None,
    overwrite: bool,
) -> CutSummary:
    """Write the clips, label files, manifest and records in a temporary folder, then move it to ``out_dir``."""
    clips = sorted(clips, key=lambda c: (c.label, c.recording, c.start, c.kind, c.part))
    with CorpusWriter(out_dir, replace=overwrite, splits=tuple(SPLITS)) as corpus:
        written = _write_clips(corpus.work / "wav", recordings, clips, settings, channel, skipped)
        manifest = _number_clips(corpus.work / "wav", recordings, clips, written)
        for row in manifest.itertuples(index=False):
            corpus.register(row.split, row.filename, row.label)
        corpus.write_table("manifest.csv", manifest)
        skipped_frame = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
        skipped_frame["source_line"] = skipped_frame["source_line"].astype("Int64")
        summary = CutSummary(out_dir, manifest, skipped_frame, warnings, settings)
        _write_records(corpus.work, summary)
    return summary


def _write_clips(
    wav_dir: Path,
    recordings: dict[str, Recording],
    clips: list[Clip],
    settings: dict,
    channel: int | None,
    skipped: list[dict],
) -> set[int]:
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
            skipped.append(
                skip_entry(
                    "recording",
                    name,
                    "",
                    None,
                    f"{rec.path} could not be opened to cut its clips "
                    f"({exc}); none of its clips were written. Check the file.",
                )
            )
    return written


def _write_one(
    f: sf.SoundFile, rec: Recording, clip: Clip, path: Path, settings: dict, channel: int | None, skipped: list[dict]
) -> bool:
    """Read, mix, resample and write one clip; on failure report it and return False."""
    target = settings["sample_rate"]
    n_out = (
        int(round(settings["clip_seconds"] * target))
        if clip.length == rec.length
        else int(round(clip.length * target / rec.sample_rate))
    )
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
        skipped.append(
            skip_entry(
                "clip",
                rec.name,
                row.get("source_file", ""),
                row.get("source_line"),
                f"{at}: {error}; not written. Re-export the recording.",
            )
        )
        return False
    mono = data[:, channel] if channel is not None else to_mono(data)
    wave = resample(np.ascontiguousarray(mono), rec.sample_rate, target)
    lead = int(round((clip.start - a) * target / rec.sample_rate))
    write_wav(path, pad_or_truncate(wave[lead:], n_out), target)
    return True


def _number_clips(
    wav_dir: Path, recordings: dict[str, Recording], clips: list[Clip], written: set[int]
) -> pd.DataFrame:
    """Rename the written clips to ``{split}_NNNNN.wav`` in ``clips`` order; return the manifest."""
    counters = dict.fromkeys(SPLITS, 0)
    rows = []
    spans = {
        name: (
            np.array([b for b, _, _ in r.spans], dtype=np.int64),
            np.array([e for _, e, _ in r.spans], dtype=np.int64),
            np.array([lab for _, _, lab in r.spans], dtype=object),
        )
        for name, r in recordings.items()
    }
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
        rows.append(
            {
                "filename": filename,
                "split": c.split,
                "label": c.label,
                "kind": c.kind,
                "recording": c.recording,
                "group": c.group,
                "offset_s": round(c.start / rec.sample_rate, 6),
                "duration_s": round(c.length / rec.sample_rate, 6),
                "source_file": row.get("source_file", ""),
                "source_line": row.get("source_line"),
                "begin_s": row.get("begin"),
                "end_s": row.get("end"),
                "low_freq": row.get("low_freq"),
                "high_freq": row.get("high_freq"),
                "part": c.part,
                "parts": c.parts,
                "other_labels": ";".join(others),
                "source_sample_rate": rec.sample_rate,
                "source_channels": rec.channels,
            }
        )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest["source_line"] = manifest["source_line"].astype("Int64")
    return manifest


def _write_records(folder: Path, summary: CutSummary) -> None:
    """``corpus.json`` (settings, counts, recordings, skipped, warnings) and ``README.txt`` in ``folder``."""
    counts = summary.counts
    record = {
        "name": summary.path.name,
        "generator": "helpers.data.cut.cut_corpus",
        "settings": summary.settings,
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
    text = (
        f"Corpus cut from annotated recordings by helpers.data.cut.cut_corpus (rules: that module's docstring).\n\n"
        f"Settings:\n{settings}\n\n{summary.format()}\n\nRecordings per split:\n{recordings}\n\n"
        "Files: wav/{split}_NNNNN.wav (mono 16-bit PCM), lab/{split}.csv (filename,label; test labels are\n"
        "real), manifest.csv (per clip: split, label, kind call/background, source recording and group,\n"
        "offset_s and duration_s in the source, the annotation's source_file, source_line, begin_s, end_s,\n"
        "part k of parts for long selections, other labels overlapping the clip), corpus.json (all of this).\n"
    )
    (folder / "README.txt").write_text(text, encoding="utf-8")
